"""Length bucketing: batches cut to a few padded lengths give the fixed-padding loss, gradient and
scores; the order stays a pure function of the step (resume is bit-identical)."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning import prompts
from prompt_tuning.models import t5
from prompt_tuning.training import evaluation, input_pipeline, partitioning, trainer
from tests.conftest import shared_path
from tests.training import synthetic_tasks as st


def test_lengths_and_buckets():
    tokens = np.array([[5, 6, 1, 0, 0], [0, 0, 0, 0, 0], [4, 0, 3, 1, 0], [2, 2, 2, 2, 1]])
    assert input_pipeline.input_lengths(tokens).tolist() == [3, 0, 4, 5]
    assert input_pipeline.check_length_buckets([4, 2], 5) == (2, 4, 5)
    assert input_pipeline.check_length_buckets(None, 5) is None
    assert [input_pipeline.bucket_length(n, (2, 4, 5)) for n in (1, 2, 3, 5)] == [2, 2, 4, 5]
    with pytest.raises(input_pipeline.TaskError, match="exceed the inputs length 5"):
        input_pipeline.check_length_buckets([2, 8], 5)
    with pytest.raises(input_pipeline.TaskError, match="positive ints"):
        input_pipeline.check_length_buckets([0, 2], 5)


SYNTH_LENGTHS = {"inputs": 20, "targets": 4}  # the synthetic inputs are 15-20 tokens long


def test_bucketed_order_is_a_function_of_the_step_and_a_reordering_within_windows():
    st.register()
    kw = dict(task_name=st.TASK, lengths=SYNTH_LENGTHS, batch_size=4, seed=3)
    plain = input_pipeline.TrainData(**kw)
    bucketed = input_pipeline.TrainData(**kw, length_buckets=[16, 18], bucket_window=4)
    again = input_pipeline.TrainData(**kw, length_buckets=[16, 18], bucket_window=4)
    lengths, seen = set(), []
    for step in range(12):  # 3 windows of 4 batches; 48 of the 64 examples
        batch, idx = bucketed.batch(step), bucketed.batch_indices(step)
        for k, v in again.batch(step).items():
            np.testing.assert_array_equal(batch[k], v)
        width = batch["encoder_input_tokens"].shape[1]
        assert width in (16, 18, 20) and batch["encoder_input_tokens"].shape[0] == 4
        lengths.add(width)
        # The cut drops padding only: the rows are the stored rows.
        full = plain._arrays["encoder_input_tokens"][idx]
        np.testing.assert_array_equal(batch["encoder_input_tokens"], full[:, :width])
        assert not full[:, width:].any()
        seen.extend(idx.tolist())
    assert lengths == {16, 18, 20}, "every buckets must occur for the test to mean anything"
    want = [i for s in range(12) for i in plain.batch_indices(s)]
    assert sorted(seen) == sorted(want)  # the same examples, reordered within each window
    assert seen != want


def test_bucketing_needs_the_memory_order():
    st.register()
    with pytest.raises(input_pipeline.TaskError, match="in-memory training order"):
        input_pipeline.TrainData(st.TASK, st.LENGTHS, 4, mode="stream", length_buckets=[8])


RTE_LENGTHS = {"inputs": 512, "targets": 8}


@pytest.fixture(scope="module")
def rte_task():
    from prompt_tuning.data import tasks, vocab

    data_dir = shared_path("superglue", "RTE")
    voc = vocab.get_vocabulary(str(shared_path("t5", "spiece.model")))
    return tasks.register_jsonl_task("test_buckets_rte", "rte", str(data_dir),
                                     split_files={"train": "train32.jsonl", "validation": "dev32.jsonl"},
                                     vocabulary=voc)


def _rte_model():
    config = t5.get_config("test")
    model = t5.T5(config, functools.partial(prompts.Prompt, length=5))
    tokens = jnp.ones((1, 1), jnp.int32)
    params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), tokens, tokens, tokens)["params"])
    return model, params


def test_bucketed_batches_of_real_rte_give_the_fixed_padding_loss_and_prompt_gradient(rte_task):
    model, params = _rte_model()
    trainable, frozen = trainer.split_params(params, trainer.PROMPT_REGEX)

    @jax.jit
    def loss_and_grad(trainable, batch):
        def loss(t):
            logits = model.apply({"params": trainer.merge_params(frozen, t)}, batch["encoder_input_tokens"],
                                 batch["decoder_input_tokens"], batch["decoder_target_tokens"])
            return trainer.cross_entropy_loss(logits, batch["decoder_target_tokens"],
                                              batch["decoder_loss_weights"])[0]
        return jax.value_and_grad(loss)(trainable)

    data = input_pipeline.TrainData(rte_task.name, RTE_LENGTHS, batch_size=8, length_buckets=[64, 128, 256],
                                    bucket_window=4)
    widths = []
    for step in range(4):  # the 32 real examples, in 4 length-sorted batches
        batch = data.batch(step)
        fixed = {k: v[data.batch_indices(step)].astype(np.int32) for k, v in data._arrays.items()}
        assert fixed["encoder_input_tokens"].shape[1] == 512
        widths.append(batch["encoder_input_tokens"].shape[1])
        loss_b, grad_b = loss_and_grad(trainable, batch)
        loss_f, grad_f = loss_and_grad(trainable, fixed)
        np.testing.assert_allclose(loss_b, loss_f, rtol=1e-5)
        g_b, g_f = (np.asarray(g["encoder"]["prompt"]["prompt"]) for g in (grad_b, grad_f))
        assert np.abs(g_f).max() > 0
        assert np.abs(g_b - g_f).max() <= 1e-5 * np.abs(g_f).max()
    assert min(widths) < 256 and max(widths) < 512, widths  # real cuts happened


def test_bucketed_eval_scores_equal_fixed_padding_row_for_row(rte_task):
    model, params = _rte_model()
    mesh = partitioning.make_mesh()
    es = input_pipeline.load_eval_set(rte_task, "validation", RTE_LENGTHS)
    labels = ["entailment", "not_entailment"]
    fixed = evaluation.rank_scores(model, params, es, labels, batch_size=8, mesh=mesh)
    bucketed = evaluation.rank_scores(model, params, es, labels, batch_size=8, mesh=mesh,
                                      length_buckets=[64, 128, 256])
    np.testing.assert_allclose(bucketed, fixed, rtol=1e-5, atol=1e-5)
    assert len(np.unique(np.round(fixed, 4))) > 8
    gen = functools.partial(evaluation.generate, model, params, es, batch_size=8, mesh=mesh, max_decode_length=3)
    assert gen(length_buckets=[64, 128, 256]) == gen()


def test_resume_with_buckets_equals_uninterrupted(tmp_path):
    st.register()
    config = t5.get_config("test", vocab_size=st.VOCAB_SIZE)
    kw = dict(mixture_or_task_name=st.TASK, task_feature_lengths=SYNTH_LENGTHS, batch_size=8, model_config=config,
              initial_checkpoint_path=None, random_init_frozen_model=True,
              prompt=prompts.make_prompt(4, prompts.random_uniform), log_period=1, eval_split=None,
              length_buckets=[16, 18])
    full = trainer.train_and_evaluate(model_dir=str(tmp_path / "a"), train_steps=4, checkpoint_period=100, **kw)
    trainer.train_and_evaluate(model_dir=str(tmp_path / "b"), train_steps=2, checkpoint_period=1, **kw)
    resumed = trainer.train_and_evaluate(model_dir=str(tmp_path / "b"), train_steps=4, checkpoint_period=1, **kw)
    key = lambda out: np.asarray(out["params"]["encoder"]["prompt"]["prompt"])
    np.testing.assert_array_equal(key(resumed), key(full))
    plain = trainer.train_and_evaluate(model_dir=str(tmp_path / "c"), train_steps=4, checkpoint_period=100,
                                       **{**kw, "length_buckets": None})
    assert not np.array_equal(key(plain), key(full))  # bucketing did change the order
