"""Packed evaluation (training/packed_eval.py): on real RTE validation examples and a tiny random model,
rank classification over the verbalizers, the gold-target scores and the eval loss from packed rows (a
prompt per segment) equal unpacked evaluation's row for row; a segment leak fails the check; the trainer
evaluates packed under the packed-training switch with the unpacked run's metrics."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning import prompts
from prompt_tuning.models import t5
from prompt_tuning.training import evaluation, input_pipeline, packed_eval, packing, partitioning, steps, trainer
from tests.training.conftest import RTE_LENGTHS, real_rte_task
from tests.training import synthetic_tasks as st

P = 5
LABELS = ["entailment", "not_entailment"]


@pytest.fixture(scope="module")
def rte_validation():
    """32 real RTE validation examples (dev32.jsonl), padded to 512 as fixed-padding evaluation reads them."""
    task = real_rte_task("test_packed_eval_rte", "validation", "dev32.jsonl")
    return input_pipeline.load_eval_set(task, "validation", RTE_LENGTHS)


@pytest.fixture(scope="module")
def model_and_params():
    model = t5.T5(t5.get_config("test"), functools.partial(prompts.Prompt, length=P))
    tokens = jnp.ones((1, 1), jnp.int32)
    return model, nn.meta.unbox(model.init(jax.random.PRNGKey(0), tokens, tokens, tokens)["params"])


def _spec(es):
    width = P + int(input_pipeline.input_lengths(es.features["encoder_input_tokens"]).max()) + 20
    return packing.Packing(width=width, target_width=4 * RTE_LENGTHS["targets"], prompt_length=P)


def _check_rank_packed_equals_unpacked(es, model, params):
    mesh = partitioning.make_mesh()
    spec = _spec(es)
    _, layout = packing.pack({k: es.features[k][:16] for k in es.features}, spec)
    assert layout.rows <= 8 and np.bincount(layout.row).max() >= 3  # real packing: 16 examples in a few rows
    unpacked = evaluation.rank_scores(model, params, es, LABELS, batch_size=16, mesh=mesh)
    packed = evaluation.rank_scores(model, params, es, LABELS, batch_size=16, mesh=mesh, packing=spec)
    assert unpacked.shape == packed.shape == (32, 2)
    assert len(np.unique(np.round(unpacked, 4))) > 16  # the scores vary from example to example
    np.testing.assert_allclose(packed, unpacked, rtol=1e-5, atol=1e-5)
    assert (packed.argmax(1) == unpacked.argmax(1)).all()
    # The task's own metrics (predictions through the postprocessor) agree too.
    kw = dict(mode=evaluation.RANK, batch_size=16, mesh=mesh, verbalizers={es.name: LABELS})
    packed_metrics = evaluation.evaluate(model, params, [es], packing=spec, **kw)
    assert packed_metrics == evaluation.evaluate(model, params, [es], **kw)


def test_packed_rank_classification_of_real_rte_equals_unpacked(rte_validation, model_and_params):
    _check_rank_packed_equals_unpacked(rte_validation, *model_and_params)


def test_a_segment_leak_fails_the_rank_equality(rte_validation, model_and_params, monkeypatch):
    """The fault injected: attention across segments (the segment mask reverted). The jitted scorers are
    retraced with the fault (caches cleared before) and without it (cleared after)."""
    jax.clear_caches()
    monkeypatch.setattr(t5, "_same_segment", lambda q, k: jnp.ones((q.shape[0], 1, q.shape[1], k.shape[1]), bool))
    try:
        with pytest.raises(AssertionError):
            _check_rank_packed_equals_unpacked(rte_validation, *model_and_params)
    finally:
        monkeypatch.undo()
        jax.clear_caches()


def test_packed_gold_scores_and_loss_of_real_rte_equal_unpacked(rte_validation, model_and_params):
    model, params = model_and_params
    mesh = partitioning.make_mesh()
    es, spec = rte_validation, _spec(rte_validation)
    unpacked = evaluation._score(model, params, es.features, 16, mesh)
    packed = packed_eval.target_scores(model, params, es.features, spec=spec, batch_size=16, mesh=mesh)
    assert unpacked.shape == (32,) and np.all(unpacked < 0)
    np.testing.assert_allclose(packed, unpacked, rtol=1e-5, atol=1e-5)

    loss_fn = jax.jit(functools.partial(steps.eval_step, model=model, z_loss=1e-4))
    plain = [loss_fn(params, chunk) for chunk, _ in input_pipeline.eval_batches(es.features, 16)]
    sums = packed_eval.loss_sums(loss_fn, params, es.features, spec=spec, batch_size=16, mesh=mesh)
    assert sums["tokens"] == sum(float(s["tokens"]) for s in plain) > 32
    np.testing.assert_allclose(sums["nll_sum"], sum(float(s["nll_sum"]) for s in plain), rtol=1e-5)


def test_label_rows_put_each_label_at_each_segment():
    packed = {"encoder_segment_ids": np.array([[1, 1, 2, 2, 2, 0], [1, 1, 1, 0, 0, 0]])}
    layout = packing.Layout(row=np.array([0, 1, 0]), encoder_start=np.array([0, 0, 2]),
                            decoder_start=np.array([0, 0, 3]), input_length=np.array([1, 2, 2]),
                            target_length=np.array([3, 3, 3]), rows=2)
    targets = np.array([[7, 1, 0], [8, 9, 1]])
    inputs = np.array([[0, 7, 0], [0, 8, 9]])
    rows = packed_eval.label_rows(packed, layout, inputs, targets, target_width=6)
    np.testing.assert_array_equal(rows["decoder_target_tokens"], [[7, 1, 0, 7, 1, 0], [8, 9, 1, 8, 9, 1],
                                                                  [7, 1, 0, 0, 0, 0], [8, 9, 1, 0, 0, 0]])
    np.testing.assert_array_equal(rows["decoder_input_tokens"][1], [0, 8, 9, 0, 8, 9])
    np.testing.assert_array_equal(rows["decoder_segment_ids"], [[1, 1, 0, 2, 2, 0], [1, 1, 1, 2, 2, 2],
                                                                [1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0]])


def test_the_trainer_evaluates_packed_with_the_unpacked_metrics(tmp_path):
    """pack_width (the packed-training switch) packs the rank evaluation and the eval loss."""
    st.register()
    kw = dict(mixture_or_task_name=st.TASK, task_feature_lengths={"inputs": 20, "targets": 4}, batch_size=8,
              model_config=t5.get_config("test", vocab_size=st.VOCAB_SIZE), initial_checkpoint_path=None,
              random_init_frozen_model=True, prompt=prompts.make_prompt(4, prompts.random_uniform), log_period=1,
              train_steps=0, checkpoint_period=100, eval_mode=evaluation.RANK, eval_batch_size=6,
              verbalizers={st.TASK: list(st.LABELS)}, eval_before_training=True)
    calls = []
    original = packed_eval.rank_scores
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(packed_eval, "rank_scores", lambda *a, **k: calls.append(1) or original(*a, **k))
        packed = trainer.train_and_evaluate(model_dir=str(tmp_path / "packed"), pack_width=3 * (20 + 4),
                                            pack_target_width=12, **kw)["metrics_before"]
    plain = trainer.train_and_evaluate(model_dir=str(tmp_path / "plain"), **kw)["metrics_before"]
    assert calls and set(packed) == set(plain) == {f"{st.TASK}/accuracy", f"{st.TASK}/loss"}
    assert packed[f"{st.TASK}/accuracy"] == plain[f"{st.TASK}/accuracy"]
    np.testing.assert_allclose(packed[f"{st.TASK}/loss"], plain[f"{st.TASK}/loss"], rtol=1e-5)
