"""Cached greedy decoding equals naive re-running of the full decoder."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning import prompts
from prompt_tuning.models import decoding, t5


def _model_and_params(prompt_length=0, seed=0):
    config = t5.get_config("test", vocab_size=64)
    factory = functools.partial(prompts.Prompt, length=prompt_length) if prompt_length else None
    model = t5.T5(config, factory)
    variables = model.init(jax.random.PRNGKey(seed), jnp.ones((2, 6), jnp.int32), jnp.ones((2, 3), jnp.int32))
    return model, nn.meta.unbox(variables["params"])


def _naive_greedy(model, params, tokens, length):
    out = np.zeros((tokens.shape[0], length), np.int32)
    done = np.zeros(tokens.shape[0], bool)
    for i in range(length):
        dec_in = np.concatenate([np.zeros((tokens.shape[0], 1), np.int32), out[:, :i]], axis=1)
        logits = model.apply({"params": params}, tokens, dec_in)
        nxt = np.asarray(jnp.argmax(logits[:, -1], -1))
        nxt = np.where(done, 0, nxt)
        out[:, i] = nxt
        done |= nxt == decoding.EOS_ID
    return out


def test_cached_greedy_matches_naive_recompute():
    for prompt_length in (0, 3):
        model, params = _model_and_params(prompt_length)
        # Zero the pad and EOS logits: with 62 random others, one is positive at every step,
        # so decoding runs the full length and exercises the cache.
        params["decoder"]["logits_dense"]["kernel"] = params["decoder"]["logits_dense"]["kernel"].at[:, :2].set(0.0)
        tokens = jnp.array([[5, 6, 7, 8, 1, 0], [9, 10, 11, 1, 0, 0]], jnp.int32)
        got = np.asarray(decoding.greedy_decode(model, params, tokens, max_decode_length=7))
        want = _naive_greedy(model, params, tokens, 7)
        np.testing.assert_array_equal(got, want)
        assert (got > 0).all(), "EOS was suppressed, so every position must be generated"


def test_greedy_stops_and_pads_after_eos():
    model, params = _model_and_params()
    tokens = jnp.array([[5, 6, 1, 0, 0, 0], [7, 8, 9, 1, 0, 0]], jnp.int32)
    first = _naive_greedy(model, params, tokens, 2)
    # Declare row 0's second token to be "EOS": row 0 must stop there, row 1 runs on.
    eos = int(first[0, 1])
    got = np.asarray(decoding.greedy_decode(model, params, tokens, max_decode_length=5, eos_id=eos))
    assert got[0, 1] == eos and (got[0, 2:] == decoding.PAD_ID).all()
    np.testing.assert_array_equal(got[0, :2], first[0])


def test_sequence_log_likelihood_ignores_padding_and_matches_manual_sum():
    model, params = _model_and_params(seed=1)
    tokens = jnp.array([[5, 6, 7, 1]], jnp.int32)
    targets = jnp.array([[12, 13, 1, 0, 0]], jnp.int32)
    dec_in = jnp.array([[0, 12, 13, 1, 0]], jnp.int32)
    score = decoding.sequence_log_likelihood(model, params, tokens, dec_in, targets)
    logits = model.apply({"params": params}, tokens, dec_in, targets)
    logp = np.asarray(jax.nn.log_softmax(logits, -1))[0]
    manual = logp[0, 12] + logp[1, 13] + logp[2, 1]
    np.testing.assert_allclose(float(score[0]), manual, rtol=1e-5)


def test_label_log_likelihoods_encode_once_equals_scoring_each_pair():
    """Rank scores with one encoding per input equal the repeat-the-input scores (the old
    evaluation.rank layout, row i*C + j) within 1e-5; a mismatched decoder batch is an error."""
    for prompt_length in (0, 3):
        model, params = _model_and_params(prompt_length, seed=2)
        tokens = jnp.array([[5, 6, 7, 8, 1, 0], [9, 10, 11, 1, 0, 0], [12, 1, 0, 0, 0, 0]], jnp.int32)
        targets = np.array([[20, 1, 0, 0], [21, 22, 1, 0], [23, 1, 0, 0]], np.int32)  # C = 3 labels
        dec_in = np.concatenate([np.zeros((3, 1), np.int32), targets[:, :-1]], axis=1)
        got = np.asarray(decoding.label_log_likelihoods(model, params, tokens, dec_in, targets))
        n, c = tokens.shape[0], len(targets)
        want = np.asarray(decoding.sequence_log_likelihood(
            model, params, jnp.repeat(tokens, c, axis=0), np.tile(dec_in, (n, 1)), np.tile(targets, (n, 1))))
        assert got.shape == (n, c)
        np.testing.assert_allclose(got.reshape(-1), want, rtol=1e-5, atol=1e-5)
        assert len(set(np.round(want, 4))) > 3, "scores must differ across rows for the check to mean anything"
    encoded, mask = model.apply({"params": params}, tokens, method=model.encode)
    with pytest.raises(ValueError, match="not a multiple"):
        model.apply({"params": params}, encoded, mask, jnp.zeros((4, 2), jnp.int32), method=model.decode)
