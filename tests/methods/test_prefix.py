"""Prefix tuning attached to a frozen T5 (methods/prefix.py): what it guarantees, direct and MLP-reparameterised.

It adds exactly its own parameters (the trainable regex takes nothing of the
plain model); training steps (trainer.train_step, jitted) leave every frozen
array bit-identical, update the prefix (or its MLP) and lower the loss; the
compiled step forms no gradient for a frozen weight; cached greedy decoding
equals recomputation; rematerialisation changes nothing; rank classification's
grouped decoder batch equals the repeated one; the MLP's export (direct_params)
served by the direct parameterisation gives the same logits. Parity with PEFT
and with transformers: test_prefix_parity.py.
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import hlo
from prompt_tuning import methods
from prompt_tuning.models import decoding, t5
from prompt_tuning.training import trainer
from tests.methods import delta_training
from tests.methods import test_methods as tm

P, HIDDEN = 5, 6  # P + T = 15, B * P = 15, hidden 6: no weight dim (32, 64, 96) among them
VARIANTS = {"direct": methods.Prefix(length=P), "mlp": methods.Prefix(length=P, mlp_hidden=HIDDEN)}
C = tm.CONFIG
INNER, LE, LD = C.num_heads * C.head_dim, C.num_encoder_layers, C.num_decoder_layers
EXPECTED = {  # arrays, parameters
    "direct": (2 * (LE + 2 * LD), 2 * P * INNER * (LE + 2 * LD)),
    "mlp": (5 * 3, sum(P * C.emb_dim + C.emb_dim * HIDDEN + HIDDEN + (HIDDEN + 1) * 2 * n * INNER for n in (LE, LD, LD))),
}


@functools.lru_cache(maxsize=None)
def _params(name, remat="none"):
    return tm._init(t5.T5(C.replace(remat=remat), methods=(VARIANTS[name],)))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_adds_only_its_own_parameters_and_changes_the_output(name):
    model, params = _params(name)
    trainable, frozen = trainer.split_params(params, methods.Prefix.TRAINABLE_REGEX)
    arrays, count = EXPECTED[name]
    assert len(tm._flat(trainable)) == arrays
    assert sum(v.size for v in tm._flat(trainable).values()) == count
    plain = t5.T5(C)
    b = tm._batch()
    assert set(tm._flat(frozen)) == tm._plain_keys()
    # Unlike LoRA, a prefix changes the output from the start (attention spreads over P more positions).
    assert np.abs(tm._logits(model, params, b) - tm._logits(plain, frozen, b)).max() > 1e-3


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_training_changes_only_the_prefix_and_lowers_the_loss(name):
    model, params = _params(name)  # every prefix array (every MLP array) is updated
    delta_training.train_only_the_delta(model, params, methods.Prefix.TRAINABLE_REGEX, tm._batch(), lr=1e-2,
                                        loss_ratio=0.8)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_no_gradient_is_formed_for_a_frozen_weight(name):
    model, params = _params(name)
    trainable, frozen = trainer.split_params(params, methods.Prefix.TRAINABLE_REGEX)
    step, tx = delta_training.jitted_step(model, lr=1e-3)
    state = delta_training.initial_state(tx, trainable)
    text = step.lower(state, frozen, tm._batch(), jax.random.PRNGKey(0)).compile().as_text()
    weights = list(hlo.kernel_shapes(frozen).values())
    B, T, L = tm.B, tm.T, tm.L
    assert hlo.ambiguous_dims(weights, [B * T, B * L, P, P + T, P + L, B * P, HIDDEN]) == set()
    assert hlo.weight_gradient_ops(text, weights) == []
    assert any(op.backward for op in hlo.matmul_ops(text))
    if name == "mlp":  # the MLP's own kernel gradients are matmuls the reader sees
        assert hlo.weight_gradient_ops(text, [v.shape for k, v in tm._flat(trainable).items() if k.endswith("kernel")])


def _perturbed(name, seed=1):
    _, params = _params(name)
    rng = np.random.default_rng(seed)
    flat = {k: (v + 0.3 * rng.normal(size=v.shape).astype(np.float32) if "prefix" in k else v)
            for k, v in tm._flat(params).items()}
    return flat


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_cached_greedy_decoding_with_prefixes_matches_naive_recompute(name):
    model, _ = _params(name)
    tm._assert_cached_decoding_matches_recompute(model, _perturbed(name))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_rematerialisation_and_grouped_rank_classification_change_nothing(name):
    params = tm._unflat(_perturbed(name))
    batch = tm._batch()
    logits = {}
    for remat in ("none", "full"):
        model, init = _params(name, remat)
        assert set(tm._flat(init)) == set(tm._flat(params))
        logits[remat] = tm._logits(model, params, batch)
    np.testing.assert_array_equal(logits["none"], logits["full"])
    # Rank classification: each input encoded once for its C labels (cross-attention memory batch B, queries B*C).
    model, _ = _params(name)
    enc = batch["encoder_input_tokens"]
    labels_t = jnp.array([[7, 8, 1], [9, 1, 0]], jnp.int32)
    labels_in = jnp.concatenate([jnp.zeros((2, 1), jnp.int32), labels_t[:, :-1]], axis=1)
    grouped = np.asarray(decoding.label_log_likelihoods(model, params, enc, labels_in, labels_t))
    pairs = np.asarray(decoding.sequence_log_likelihood(
        model, params, jnp.repeat(enc, 2, axis=0), jnp.tile(labels_in, (tm.B, 1)), jnp.tile(labels_t, (tm.B, 1))))
    np.testing.assert_allclose(grouped.reshape(-1), pairs, rtol=1e-5, atol=1e-5)


def test_the_mlps_export_served_directly_gives_the_same_logits():
    model, _ = _params("mlp")
    params = tm._unflat(_perturbed("mlp"))
    method = VARIANTS["mlp"]
    exported = method.direct_params(params, C)
    direct = dataclasses.replace(method, mlp_hidden=None)
    direct_model = t5.T5(C, methods=(direct,))
    keys = set(tm._flat(exported))
    assert keys == set(tm._flat(_params("direct")[1]))  # exactly the direct parameterisation's tree
    batch = tm._batch()
    ours, theirs = tm._logits(model, params, batch), tm._logits(direct_model, exported, batch)
    assert np.abs(ours - theirs).max() < 1e-5, np.abs(ours - theirs).max()
    with pytest.raises(ValueError, match="needs a reparameterised Prefix"):
        direct.direct_params(exported, C)


def test_bad_configuration_is_a_clear_error():
    with pytest.raises(ValueError, match="prefix length must be a positive int"):
        methods.Prefix(length=0)
    with pytest.raises(ValueError, match="prefix sites must be distinct names"):
        methods.Prefix(sites=("encoder", "self"))
    with pytest.raises(ValueError, match="mlp_hidden must be None"):
        methods.Prefix(mlp_hidden=0)
