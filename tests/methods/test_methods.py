"""LoRA, IA3 and Houlsby adapters attached to a frozen T5: what each method guarantees.

Per method: it adds exactly its own parameters (the trainable regex selects
those and nothing of the plain model); at initialisation the model computes
the frozen model's logits exactly; training steps (trainer.train_step, jitted
as the trainer does) leave every frozen array bit-identical and lower the loss
on a tiny synthetic task; the compiled step forms no gradient for a frozen
weight (benchmarks/hlo.py), and the same check finds them in a step that trains
everything, so it cannot pass vacuously; cached greedy decoding with the method
equals re-running the whole decoder.
"""
import functools
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from benchmarks import hlo
from prompt_tuning import methods
from prompt_tuning.models import decoding, t5
from prompt_tuning.training import trainer
from tests.methods import delta_training
from tests.models.test_decoding import _naive_greedy

# No activation row count (B*T = 30, B*L = 12) equals a weight dim (H = N*D = 32, F = 64, V = 96) or a
# method's rank / bottleneck (4): an activation can never pass for a weight gradient.
CONFIG = t5.get_config("test", vocab_size=96)
B, T, L, RANK = 3, 10, 4, 4

METHODS = {
    "lora": methods.LoRA(rank=RANK, alpha=8.0),
    "ia3": methods.IA3(),
    "adapters": methods.Adapters(size=RANK),
}
# Parameters each method adds to the test model (2 encoder, 2 decoder layers).
EXPECTED_COUNTS = {
    "lora": 2 * 2 * 2 + 2 * 2 * 2 * 2,  # (q, v) x (a, b): 2 encoder layers x 1 attention, 2 decoder x 2
    "ia3": 2 * 3 + 2 * 5,  # k, v per attention + wo per layer
    "adapters": (2 * 2 + 2 * 3) * 4,  # per sublayer: down/up kernel and bias
}


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    enc = rng.integers(2, CONFIG.vocab_size, size=(B, T)).astype(np.int32)
    enc[1, 7:] = 0  # padding
    targets = rng.integers(2, CONFIG.vocab_size, size=(B, L)).astype(np.int32)
    dec_in = np.concatenate([np.zeros((B, 1), np.int32), targets[:, :-1]], axis=1)
    return {"encoder_input_tokens": enc, "decoder_input_tokens": dec_in, "decoder_target_tokens": targets,
            "decoder_loss_weights": (targets > 0).astype(np.float32)}


_flat = delta_training.flat


def _init(model):
    """(model, its initial params on the host, unboxed)."""
    batch = _batch()
    variables = model.init(jax.random.PRNGKey(0), batch["encoder_input_tokens"], batch["decoder_input_tokens"],
                           batch["decoder_target_tokens"])
    return model, jax.tree.map(np.asarray, nn.meta.unbox(variables["params"]))


@functools.lru_cache(maxsize=None)
def _params(name):
    return _init(t5.T5(CONFIG, methods=(METHODS[name],)))


def _unflat(flat):
    return traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})


def _plain_keys():
    """The parameter names of the plain test model (no method)."""
    b = _batch()
    return set(_flat(nn.meta.unbox(jax.eval_shape(lambda: t5.T5(CONFIG).init(
        jax.random.PRNGKey(0), b["encoder_input_tokens"], b["decoder_input_tokens"]))["params"])))


def _assert_cached_decoding_matches_recompute(model, flat):
    """Cached greedy decoding of `model` with the params `flat` ({'a/b/c': array}) equals re-running the whole
    decoder; the logits kernel's pad and EOS columns are zeroed so that every position is generated from the
    cache. Returns the params tree decoded with."""
    flat = dict(flat)
    flat["decoder/logits_dense/kernel"] = flat["decoder/logits_dense/kernel"].copy()
    flat["decoder/logits_dense/kernel"][:, :2] = 0.0
    params = _unflat(flat)
    tokens = jnp.array([[5, 6, 7, 8, 1, 0], [9, 10, 11, 1, 0, 0]], jnp.int32)
    got = np.asarray(decoding.greedy_decode(model, params, tokens, max_decode_length=7))
    np.testing.assert_array_equal(got, _naive_greedy(model, params, tokens, 7))
    assert (got > 0).all()
    return params


def _logits(model, params, batch):
    return np.asarray(model.apply({"params": params}, batch["encoder_input_tokens"], batch["decoder_input_tokens"],
                                  batch["decoder_target_tokens"]))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_adds_only_its_own_parameters_and_starts_at_the_frozen_model(name):
    model, params = _params(name)
    regex = METHODS[name].TRAINABLE_REGEX
    trainable, frozen = trainer.split_params(params, regex)
    assert len(_flat(trainable)) == EXPECTED_COUNTS[name]
    plain_model = t5.T5(CONFIG)
    assert set(_flat(frozen)) == _plain_keys()  # the regex takes nothing of the plain model
    batch = _batch()
    np.testing.assert_array_equal(_logits(model, params, batch), _logits(plain_model, frozen, batch))
    # A non-zero method parameter changes the output (the attachment is live).
    perturbed = {k: (v + 0.5 if re.fullmatch(regex, k) else v) for k, v in _flat(params).items()}
    perturbed = _unflat(perturbed)
    assert np.abs(_logits(model, perturbed, batch) - _logits(plain_model, frozen, batch)).max() > 1e-3


@pytest.mark.parametrize("name", sorted(METHODS))
def test_training_changes_only_the_method_and_lowers_the_loss(name):
    model, params = _params(name)
    delta_training.train_only_the_delta(model, params, METHODS[name].TRAINABLE_REGEX, _batch(), lr=1e-2, loss_ratio=0.8)


def _compiled(name, regex):
    model, params = _params(name)
    trainable, frozen = trainer.split_params(params, regex)
    step, tx = delta_training.jitted_step(model, lr=1e-3)
    state = delta_training.initial_state(tx, trainable)
    text = step.lower(state, frozen, _batch(), jax.random.PRNGKey(0)).compile().as_text()
    return text, trainable, frozen


@pytest.mark.parametrize("name", sorted(METHODS))
def test_no_gradient_is_formed_for_a_frozen_weight(name):
    text, trainable, frozen = _compiled(name, METHODS[name].TRAINABLE_REGEX)
    weights = list(hlo.kernel_shapes(frozen).values())
    assert hlo.ambiguous_dims(weights, [B * T, B * L, RANK]) == set()
    assert hlo.weight_gradient_ops(text, weights) == []
    assert any(op.backward for op in hlo.matmul_ops(text))  # there is a backward pass
    if name != "ia3":  # LoRA's and the adapters' own gradients are matmuls the reader sees
        assert hlo.weight_gradient_ops(text, [v.shape for v in _flat(trainable).values() if v.ndim == 2])


def test_the_check_finds_weight_gradients_when_everything_trains():
    text, _, frozen = _compiled("lora", trainer.ALL_REGEX)
    found = {op.shape for op in hlo.weight_gradient_ops(text, hlo.kernel_shapes(frozen).values())}
    for shape in hlo.kernel_shapes(frozen).values():
        assert shape in found or tuple(reversed(shape)) in found, shape


def test_bad_configuration_is_a_clear_error():
    with pytest.raises(ValueError, match="rank must be a positive int"):
        methods.LoRA(rank=0)
    with pytest.raises(ValueError, match="adapter activation"):
        methods.Adapters(activation="tanh")


@pytest.mark.parametrize("name", sorted(METHODS))
def test_cached_greedy_decoding_with_the_method_matches_naive_recompute(name):
    model, params = _params(name)
    rng = np.random.default_rng(1)
    regex = METHODS[name].TRAINABLE_REGEX
    flat = {k: (v + 0.3 * rng.normal(size=v.shape).astype(np.float32) if re.fullmatch(regex, k) else v)
            for k, v in _flat(params).items()}
    _assert_cached_decoding_matches_recompute(model, flat)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_the_method_attaches_the_same_under_rematerialisation(name):
    # T5Config.remat wraps the blocks in nn.remat: the method's parameters, logits and gradients are unchanged.
    _, params = _params(name)
    regex = METHODS[name].TRAINABLE_REGEX
    flat = {k: (v + 0.3 if re.fullmatch(regex, k) else v) for k, v in _flat(params).items()}
    params = _unflat(flat)
    batch = _batch()
    results = []
    for remat in ("none", "full"):
        model = t5.T5(CONFIG.replace(remat=remat), methods=(METHODS[name],))
        shapes = _flat(nn.meta.unbox(jax.eval_shape(lambda: model.init(
            jax.random.PRNGKey(0), batch["encoder_input_tokens"], batch["decoder_input_tokens"]))["params"]))
        assert set(shapes) == set(flat)
        trainable, frozen = trainer.split_params(params, regex)
        loss = lambda t: model.apply({"params": trainer.merge_params(frozen, t)}, batch["encoder_input_tokens"],
                                     batch["decoder_input_tokens"]).mean()
        results.append((_logits(model, params, batch), jax.grad(loss)(trainable)))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    for a, b in zip(jax.tree.leaves(results[0][1]), jax.tree.leaves(results[1][1])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
