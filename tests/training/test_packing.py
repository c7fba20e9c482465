"""Packing with per-example prompts: a packed batch of real RTE examples scores every example as the
unpacked batch does (logits, per-example losses, batch loss, prompt gradient), with one prompt and
with a PromptBank; a segment-boundary leak fails these checks; packed training resumes exactly."""
import functools

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning import prompts
from prompt_tuning.models import t5
from prompt_tuning.training import input_pipeline, packing, trainer
from tests.training.conftest import RTE_LENGTHS, real_rte_task
from tests.training import synthetic_tasks as st

P = 5


def test_pack_places_each_example_after_its_own_prompt_slots():
    enc = np.array([[7, 8, 1, 0], [9, 1, 0, 0], [5, 6, 4, 1], [3, 1, 0, 0]])
    dec_t = np.array([[11, 1, 0], [12, 1, 0], [13, 14, 1], [15, 1, 0]])
    dec_in = np.concatenate([np.zeros((4, 1), int), dec_t[:, :-1]], axis=1)
    feats = {"encoder_input_tokens": enc, "decoder_target_tokens": dec_t, "decoder_input_tokens": dec_in,
             "decoder_loss_weights": (dec_t > 0).astype(int)}
    spec = packing.Packing(width=10, target_width=6, prompt_length=2, row_multiple=3)
    out, layout = packing.pack(feats, spec, prompt_index=np.array([0, 1, 2, 3]))
    assert layout.rows == 3 and out["encoder_input_tokens"].shape == (3, 10)  # 2 rows used, padded to 3
    # First-fit decreasing on 2 + length: example 2 (6 slots) opens row 0, 0 (5) opens row 1, then 1 (4)
    # fills row 0 and 3 (4) goes to row 1.
    assert layout.row.tolist() == [1, 0, 0, 1]
    np.testing.assert_array_equal(out["encoder_input_tokens"][0], [0, 0, 5, 6, 4, 1, 0, 0, 9, 1])
    np.testing.assert_array_equal(out["encoder_segment_ids"][0], [1, 1, 1, 1, 1, 1, 2, 2, 2, 2])
    np.testing.assert_array_equal(out["encoder_prompt_slots"][0], [0, 1, -1, -1, -1, -1, 0, 1, -1, -1])
    np.testing.assert_array_equal(out["encoder_prompt_index"][0], [2, 2, 0, 0, 0, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(out["decoder_target_tokens"][0], [13, 14, 1, 12, 1, 0])
    np.testing.assert_array_equal(out["decoder_input_tokens"][0], [0, 13, 14, 0, 12, 0])  # shifted per segment
    np.testing.assert_array_equal(out["decoder_segment_ids"][0], [1, 1, 1, 2, 2, 0])
    assert not out["encoder_segment_ids"][2].any() and (out["encoder_prompt_slots"][2] == -1).all()
    np.testing.assert_array_equal(packing.unpack(out["decoder_target_tokens"], layout, 3), dec_t)
    with pytest.raises(packing.PackingError, match="example 2 needs 6 encoder slots"):
        packing.pack(feats, packing.Packing(width=5, target_width=6, prompt_length=2))
    with pytest.raises(packing.PackingError, match="no room"):
        packing.Packing(width=2, target_width=6, prompt_length=2)


# -- real RTE examples through the model ---------------------------------------------------------

@pytest.fixture(scope="module")
def rte_batch():
    task = real_rte_task("test_packing_rte", "train", "train32.jsonl")
    arrays = input_pipeline.convert_split(task.name, "train", RTE_LENGTHS)
    return {k: v.astype(np.int32) for k, v in arrays.items()}  # the 32 real examples, padded to 512


def _model(bank: int = 0):
    config = t5.get_config("test")
    factory = (functools.partial(prompts.PromptBank, num_prompts=bank, length=P) if bank
               else functools.partial(prompts.Prompt, length=P))
    model = t5.T5(config, factory)
    tokens = jnp.ones((1, 1), jnp.int32)
    params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), tokens, tokens, tokens)["params"])
    return model, params


def _scores(model, params, batch, prompt_index=None):
    """(token log-likelihoods [rows, L], batch loss, prompt gradient) of a packed or unpacked batch."""
    trainable, frozen = trainer.split_params(params, trainer.PROMPT_REGEX)
    kwargs = packing.model_kwargs(batch)
    if prompt_index is not None:
        kwargs["prompt_index"] = prompt_index

    def loss(t):
        logits = model.apply({"params": trainer.merge_params(frozen, t)}, batch["encoder_input_tokens"],
                             batch["decoder_input_tokens"], batch["decoder_target_tokens"], **kwargs)
        value, _ = trainer.cross_entropy_loss(logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"])
        logp = jax.nn.log_softmax(logits)
        ll = jnp.take_along_axis(logp, batch["decoder_target_tokens"][..., None], axis=-1)[..., 0]
        return value, jnp.where(batch["decoder_target_tokens"] > 0, ll, 0.0)

    (value, ll), grad = jax.jit(jax.value_and_grad(loss, has_aux=True))(trainable)
    return np.asarray(ll), float(value), np.asarray(grad["encoder"]["prompt"]["prompt"])


def _check_packed_equals_unpacked(rte_batch, bank: int = 0):
    model, params = _model(bank)
    width = P + int(input_pipeline.input_lengths(rte_batch["encoder_input_tokens"]).max()) + 20
    spec = packing.Packing(width=width, target_width=4 * RTE_LENGTHS["targets"], prompt_length=P)
    index = np.random.default_rng(0).integers(0, bank, len(rte_batch["encoder_input_tokens"])) if bank else None
    packed, layout = packing.pack(rte_batch, spec, prompt_index=index)
    segments = packed["encoder_segment_ids"].max(axis=1)
    assert segments.max() >= 3 and layout.rows < 20, segments  # real packing: 32 examples in few rows
    ll_u, loss_u, grad_u = _scores(model, params, rte_batch, None if index is None else jnp.asarray(index))
    ll_p, loss_p, grad_p = _scores(model, params, {k: jnp.asarray(v) for k, v in packed.items()})
    per_example = packing.unpack(ll_p, layout, ll_u.shape[1])
    np.testing.assert_allclose(per_example, ll_u, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(per_example.sum(1), ll_u.sum(1), rtol=1e-5)  # per-example losses
    np.testing.assert_allclose(loss_p, loss_u, rtol=1e-5)
    assert np.abs(grad_u).max() > 0
    assert np.abs(grad_p - grad_u).max() <= 1e-5 * np.abs(grad_u).max()
    if bank:  # every bank row was used and trained
        assert all(np.abs(grad_u[k]).max() > 0 for k in range(bank))


def test_packed_real_rte_scores_loss_and_prompt_gradient_equal_unpacked(rte_batch):
    _check_packed_equals_unpacked(rte_batch)


def test_packed_with_a_prompt_bank_gives_each_segment_its_own_prompt(rte_batch):
    _check_packed_equals_unpacked(rte_batch, bank=3)


@pytest.mark.parametrize("leak", ["segment_mask", "prompt_slot"])
def test_a_segment_boundary_leak_fails_the_equality(rte_batch, monkeypatch, leak):
    """The fault injected: attention across segments (the segment mask reverted), or every segment
    given bank row 0 (the per-segment prompt index dropped): the equality check must fail."""
    if leak == "segment_mask":
        monkeypatch.setattr(t5, "_same_segment", lambda q, k: jnp.ones((q.shape[0], 1, q.shape[1], k.shape[1]), bool))
        with pytest.raises(AssertionError):
            _check_packed_equals_unpacked(rte_batch)
    else:
        original = packing.pack
        monkeypatch.setattr(packing, "pack", lambda f, s, prompt_index=None: original(f, s, None))
        with pytest.raises(AssertionError):
            _check_packed_equals_unpacked(rte_batch, bank=3)


def test_bad_bank_index_at_a_prompt_slot_is_an_error():
    model, params = _model(bank=2)
    tokens = jnp.array([[0, 0, 0, 0, 0, 7, 1]])
    slots = jnp.array([[0, 1, 2, 3, 4, -1, -1]])
    with pytest.raises(prompts.PromptError, match=r"prompt_index must lie in \[0, 2\)"):
        model.apply({"params": params}, tokens, jnp.zeros((1, 2), jnp.int32), jnp.ones((1, 2), jnp.int32),
                    encoder_segment_ids=jnp.ones_like(tokens), encoder_prompt_slots=slots,
                    decoder_segment_ids=jnp.ones((1, 2), jnp.int32), prompt_index=jnp.full_like(tokens, 2))


# -- training --------------------------------------------------------------------------------------

SYNTH_LENGTHS = {"inputs": 20, "targets": 4}


def test_packed_batches_are_a_function_of_the_step():
    st.register()
    spec = packing.Packing(width=3 * (20 + 4), target_width=12, prompt_length=4, row_multiple=2)
    kw = dict(task_name=st.TASK, lengths=SYNTH_LENGTHS, batch_size=8, seed=3)
    plain, packed = input_pipeline.TrainData(**kw), input_pipeline.TrainData(**kw, packing=spec)
    for step in (0, 5, 2):
        batch = packed.batch(step)
        again = input_pipeline.TrainData(**kw, packing=spec).batch(step)
        for k in packing.PACKED_FEATURES:
            np.testing.assert_array_equal(batch[k], again[k])
        assert batch["encoder_input_tokens"].shape[0] in (4, 6)  # 8 examples, 3 a row, rows a multiple of 2
        # The same examples as the unpacked step: the same target tokens, regrouped.
        assert sorted(batch["decoder_target_tokens"][batch["decoder_target_tokens"] > 0].tolist()) == sorted(
            plain.batch(step)["decoder_target_tokens"][plain.batch(step)["decoder_target_tokens"] > 0].tolist())
    with pytest.raises(input_pipeline.TaskError, match="packing and length_buckets"):
        input_pipeline.TrainData(**kw, packing=spec, length_buckets=[16])


def test_packed_training_follows_unpacked_training_and_resumes_exactly(tmp_path):
    st.register()
    config = t5.get_config("test", vocab_size=st.VOCAB_SIZE)
    kw = dict(mixture_or_task_name=st.TASK, task_feature_lengths=SYNTH_LENGTHS, batch_size=8, model_config=config,
              initial_checkpoint_path=None, random_init_frozen_model=True,
              prompt=prompts.make_prompt(4, prompts.random_uniform), log_period=1, eval_split=None,
              pack_width=3 * (20 + 4), pack_target_width=12, pack_row_multiple=2)
    full = trainer.train_and_evaluate(model_dir=str(tmp_path / "a"), train_steps=4, checkpoint_period=100, **kw)
    trainer.train_and_evaluate(model_dir=str(tmp_path / "b"), train_steps=2, checkpoint_period=1, **kw)
    resumed = trainer.train_and_evaluate(model_dir=str(tmp_path / "b"), train_steps=4, checkpoint_period=1, **kw)
    key = lambda out: np.asarray(out["params"]["encoder"]["prompt"]["prompt"])
    np.testing.assert_array_equal(key(resumed), key(full))
    unpacked = {k: v for k, v in kw.items() if not k.startswith("pack_")}
    plain = trainer.train_and_evaluate(model_dir=str(tmp_path / "c"), train_steps=4, checkpoint_period=100, **unpacked)
    start = trainer.train_and_evaluate(model_dir=str(tmp_path / "d"), train_steps=0, checkpoint_period=100, **unpacked)
    moved = np.abs(key(plain) - key(start)).max()
    assert moved > 1e-3  # training moved the prompt, and packing moved it the same way
    assert np.abs(key(full) - key(plain)).max() <= 1e-4 * moved


def test_packing_gin_file_binds_the_trainer():
    from tests.conftest import REPO

    gin.parse_config_files_and_bindings([str(REPO / "gin" / "runs" / "packing.gin")], [])
    assert gin.query_parameter("train_and_evaluate.pack_width") == 612
    with pytest.raises(packing.PackingError, match="multiple of the mesh's data axis"):
        packing.from_settings(612, None, 1, prompt_length=100, targets_length=8, data_axis=2)
    assert packing.from_settings(612, None, 2, prompt_length=100, targets_length=8, data_axis=2).target_width == 32
    assert packing.from_settings(None, None, 1, prompt_length=100, targets_length=8) is None
