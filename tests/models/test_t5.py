"""T5 1.1 model: published sizes, masks, padding invariance and the prompted encoder."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning import prompts
from prompt_tuning.models import t5

# Paper, Table 4 (T5 1.1 parameter counts).
TABLE_4 = {
    "small": 76_961_152,
    "base": 247_577_856,
    "large": 783_150_080,
    "xl": 2_849_757_184,
    "xxl": 11_135_332_352,
}


def _abstract_params(config, prompt_length=0):
    factory = functools.partial(prompts.Prompt, length=prompt_length) if prompt_length else None
    model = t5.T5(config, factory)
    return jax.eval_shape(
        lambda: model.init(jax.random.PRNGKey(0), jnp.ones((1, 4), jnp.int32), jnp.ones((1, 2), jnp.int32))
    )["params"]


@pytest.mark.parametrize("size", sorted(TABLE_4))
def test_parameter_counts_match_table_4(size):
    params = _abstract_params(t5.get_config(size))  # shapes only: nothing is allocated
    assert sum(int(np.prod(p.value.shape)) for p in jax.tree.leaves(params, is_leaf=lambda x: isinstance(x, nn.Partitioned))) == TABLE_4[size]


def test_xxl_prompt_of_length_100_has_409600_parameters():
    params = _abstract_params(t5.get_config("xxl"), prompt_length=100)
    assert np.prod(params["encoder"]["prompt"]["prompt"].value.shape) == 409_600


def test_every_parameter_has_logical_axis_names():
    params = _abstract_params(t5.get_config("test"), prompt_length=3)
    specs = nn.get_partition_spec(params)
    for path, spec in jax.tree_util.tree_leaves_with_path(specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)):
        assert len(spec) >= 1 and all(isinstance(a, str) for a in spec if a is not None), path
    assert specs["token_embedder"]["embedding"] == jax.sharding.PartitionSpec("vocab", "embed")
    assert specs["encoder"]["prompt"]["prompt"] == jax.sharding.PartitionSpec("prompt", "embed")


def _init(prompt_length=0, seed=0, **overrides):
    config = t5.get_config("test", vocab_size=100, **overrides)
    factory = functools.partial(prompts.Prompt, length=prompt_length) if prompt_length else None
    model = t5.T5(config, factory)
    variables = model.init(jax.random.PRNGKey(seed), jnp.ones((2, 5), jnp.int32), jnp.ones((2, 3), jnp.int32))
    return model, nn.meta.unbox(variables["params"])


def test_encoder_mask_values_with_prompt():
    model, params = _init(prompt_length=3)
    tokens = jnp.array([[4, 5, 1, 0, 0], [6, 7, 8, 9, 1]], jnp.int32)
    encoded, mask = model.apply({"params": params}, tokens, method=model.encode)
    assert encoded.shape == (2, 8, 32)
    np.testing.assert_array_equal(np.asarray(mask), [[1, 1, 1, 1, 1, 1, 0, 0], [1] * 8])


@pytest.mark.parametrize("prompt_length", [0, 4])
def test_appending_padding_leaves_real_positions_unchanged(prompt_length):
    model, params = _init(prompt_length=prompt_length, seed=3)
    tokens = jnp.array([[4, 5, 6, 1], [7, 8, 1, 0]], jnp.int32)
    dec_in = jnp.array([[0, 11, 12], [0, 13, 0]], jnp.int32)
    targets = jnp.array([[11, 12, 1], [13, 1, 0]], jnp.int32)
    pad = lambda x, n: jnp.pad(x, ((0, 0), (0, n)))
    enc_a, _ = model.apply({"params": params}, tokens, method=model.encode)
    enc_b, _ = model.apply({"params": params}, pad(tokens, 6), method=model.encode)
    real = np.asarray(jnp.concatenate([jnp.ones((2, prompt_length), bool), tokens > 0], 1))
    width = enc_a.shape[1]
    np.testing.assert_allclose(np.asarray(enc_a)[real], np.asarray(enc_b[:, :width])[real], atol=1e-5)
    logits_a = model.apply({"params": params}, tokens, dec_in, targets)
    logits_b = model.apply({"params": params}, pad(tokens, 6), pad(dec_in, 4), pad(targets, 4))
    t_real = np.asarray(targets > 0)
    np.testing.assert_allclose(np.asarray(logits_a)[t_real], np.asarray(logits_b[:, :3])[t_real], atol=1e-5)


def test_prompt_equal_to_token_embeddings_equals_those_tokens_in_the_input():
    """The prompt is exactly a prefix of the embedded input: same positions, mask and bias."""
    model, params = _init(prompt_length=3, seed=4)
    plain, _ = _init(prompt_length=0, seed=4)
    prefix = jnp.array([21, 22, 23])
    params["encoder"]["prompt"]["prompt"] = params["token_embedder"]["embedding"][prefix]
    tokens = jnp.array([[4, 5, 6, 1, 0]], jnp.int32)
    prompted, _ = model.apply({"params": params}, tokens, method=model.encode)
    frozen = {k: v for k, v in params.items()}
    frozen["encoder"] = {k: v for k, v in params["encoder"].items() if k != "prompt"}
    joined = jnp.concatenate([prefix[None], tokens], axis=1)
    reference, _ = plain.apply({"params": frozen}, joined, method=plain.encode)
    np.testing.assert_allclose(np.asarray(prompted)[0, :7], np.asarray(reference)[0, :7], atol=1e-5)


def test_dropout_is_active_only_when_enabled():
    model, params = _init(prompt_length=2, dropout_rate=0.5)
    tokens = jnp.array([[4, 5, 6, 1]], jnp.int32)
    a, _ = model.apply({"params": params}, tokens, method=model.encode)
    b, _ = model.apply({"params": params}, tokens, method=model.encode)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    c, _ = model.apply({"params": params}, tokens, enable_dropout=True, method=model.encode,
                       rngs={"dropout": jax.random.PRNGKey(1)})
    assert not np.allclose(np.asarray(a), np.asarray(c))


def test_unknown_size_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown T5 size 'huge'"):
        t5.get_config("huge")


def _prompt_grad_and_memory(remat: str):
    """(loss, prompt gradient, compiled temp bytes) of a prompt-tuning loss at 'test' size."""
    import functools

    from prompt_tuning import prompts as prompts_lib

    config = t5.get_config("test", vocab_size=64, remat=remat)
    model = t5.T5(config, functools.partial(prompts_lib.Prompt, length=4))
    rng = np.random.default_rng(0)
    enc = jnp.asarray(rng.integers(2, 64, (4, 48)), jnp.int32)
    dec = jnp.asarray(rng.integers(2, 64, (4, 6)), jnp.int32)
    params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), enc[:1, :2], dec[:1, :2])["params"])
    prompt = params["encoder"]["prompt"]

    def loss(p):
        full = {**params, "encoder": {**params["encoder"], "prompt": p}}
        logits = model.apply({"params": full}, enc, dec, dec, enable_dropout=True,
                             rngs={"dropout": jax.random.PRNGKey(1)})
        return jnp.mean(jax.nn.logsumexp(logits, -1))

    fn = jax.jit(jax.value_and_grad(loss))
    value, grad = fn(prompt)
    temp = fn.lower(prompt).compile().memory_analysis().temp_size_in_bytes
    return float(value), np.asarray(grad["prompt"]), temp, str(jax.make_jaxpr(loss)(prompt))


def test_remat_keeps_parameters_outputs_and_gradients_and_saves_memory():
    base_loss, base_grad, base_temp, base_jaxpr = _prompt_grad_and_memory("none")
    for policy in ("full", "dots"):
        loss, grad, temp, jaxpr = _prompt_grad_and_memory(policy)
        assert "checkpoint" in jaxpr or "remat" in jaxpr
        np.testing.assert_allclose(loss, base_loss, rtol=1e-6)
        np.testing.assert_allclose(grad, base_grad, rtol=1e-5, atol=1e-7)
        if policy == "full":
            assert temp < base_temp, (temp, base_temp)
    assert "checkpoint" not in base_jaxpr and "remat" not in base_jaxpr
    shapes = lambda remat: jax.tree.map(lambda x: x.shape, nn.meta.unbox(
        _abstract_params(t5.get_config("test", remat=remat), prompt_length=3)))
    assert shapes("full") == shapes("none")  # same parameter names: checkpoints load either way
    with pytest.raises(ValueError, match="remat must be one of"):
        t5.get_config("test", remat="some")
