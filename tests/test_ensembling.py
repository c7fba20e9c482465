"""Mixed-prompt batches and ensembles: row independence, vote and tie rule, Table 3 summaries."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning import ensembling, prompts
from prompt_tuning.models import decoding, t5

K, P, L = 3, 4, 6


@pytest.fixture(scope="module")
def bank():
    """A random 'test'-size model with a bank of K prompts; pad/EOS logits zeroed so decoding runs L steps."""
    config = t5.get_config("test", vocab_size=64)
    model = ensembling.bank_model(config, K, P)
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.ones((2, 5), jnp.int32), jnp.ones((2, 3), jnp.int32),
                                    prompt_index=jnp.zeros((2,), jnp.int32))
    params = nn.meta.unbox(variables["params"])
    params["decoder"]["logits_dense"]["kernel"] = params["decoder"]["logits_dense"]["kernel"].at[:, :2].set(0.0)
    frozen = {**params, "encoder": {k: v for k, v in params["encoder"].items() if k != "prompt"}}
    # Prompts far apart (scale 3) so that each prompt steers the outputs differently.
    bank = np.asarray(jax.random.uniform(jax.random.PRNGKey(1), (K, P, config.emb_dim), minval=-3, maxval=3))
    return config, model, frozen, bank


@functools.lru_cache(maxsize=None)
def _single_model(config):
    # One instance: jit's static `model` argument then hits the compile cache.
    return t5.T5(config, functools.partial(prompts.Prompt, length=P))


def _single(config, frozen, prompt):
    """The ordinary one-prompt model and params for one bank entry."""
    model = _single_model(config)
    params = {**frozen, "encoder": {**frozen["encoder"], "prompt": {"prompt": jnp.asarray(prompt)}}}
    return model, params


TOKENS = np.array([[5, 6, 7, 8, 1, 0], [9, 10, 11, 1, 0, 0], [12, 5, 13, 14, 15, 1],
                   [20, 21, 1, 0, 0, 0], [30, 31, 32, 1, 0, 0]], np.int32)
INDEX = np.array([2, 0, 1, 2, 0], np.int32)


def test_mixed_batch_equals_separate_single_prompt_batches(bank):
    config, model, frozen, prompt_bank = bank
    params = ensembling.bank_params(frozen, prompt_bank)
    mixed = ensembling.serve_mixed(model, params, TOKENS, INDEX, max_decode_length=L)
    targets = np.where(mixed > 0, mixed, 0)
    mixed_scores = ensembling.score_mixed(model, params, TOKENS, targets, INDEX)
    assert (mixed > 1).all(), "EOS suppressed: every position is a generated token"
    for k in range(K):
        rows = np.flatnonzero(INDEX == k)
        single_model, single_params = _single(config, frozen, prompt_bank[k])
        alone = np.asarray(decoding.greedy_decode(single_model, single_params, jnp.asarray(TOKENS[rows]),
                                                  max_decode_length=L))
        np.testing.assert_array_equal(mixed[rows], alone)
        alone_scores = decoding.sequence_log_likelihood(
            single_model, single_params, jnp.asarray(TOKENS[rows]),
            jnp.asarray(ensembling.shift_right(targets[rows])), jnp.asarray(targets[rows]))
        np.testing.assert_allclose(mixed_scores[rows], np.asarray(alone_scores), rtol=1e-5, atol=1e-5)
    # The prompts matter: the same input under different prompts gives different outputs.
    again = ensembling.serve_mixed(model, params, TOKENS[:1].repeat(K, 0), np.arange(K), max_decode_length=L)
    assert len({tuple(r) for r in again}) > 1


def test_ensemble_generate_and_rank_replicate_each_example_under_every_prompt(bank):
    config, model, frozen, prompt_bank = bank
    params = ensembling.bank_params(frozen, prompt_bank)
    out, scores = ensembling.ensemble_generate(model, params, TOKENS[:2], max_decode_length=L)
    assert out.shape == (2, K, L) and scores.shape == (2, K)
    labels = np.array([[7, 1, 0, 0, 0, 0], [8, 9, 1, 0, 0, 0]], np.int32)  # length L: one compile
    ranked = ensembling.ensemble_rank(model, params, TOKENS[:2], labels)
    assert ranked.shape == (2, K, 2)
    for k in range(K):
        single_model, single_params = _single(config, frozen, prompt_bank[k])
        alone = np.asarray(decoding.greedy_decode(single_model, single_params, jnp.asarray(TOKENS[:2]),
                                                  max_decode_length=L))
        np.testing.assert_array_equal(out[:, k], alone)
        # Rows: example 0 x labels 0, 1; example 1 x labels 0, 1; then each example's own output,
        # whose log-likelihood is that prompt's tie-break confidence.
        tgt = np.concatenate([np.tile(labels, (2, 1)), alone])
        enc = jnp.asarray(np.concatenate([TOKENS[:2].repeat(2, 0), TOKENS[:2]]))
        want = np.asarray(decoding.sequence_log_likelihood(
            single_model, single_params, enc, jnp.asarray(ensembling.shift_right(tgt)), jnp.asarray(tgt)))
        np.testing.assert_allclose(ranked[:, k].reshape(-1), want[:4], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(scores[:, k], want[4:], rtol=1e-5, atol=1e-5)


def test_bank_params_replaces_an_existing_prompt_and_checks_shapes(bank):
    config, _, frozen, prompt_bank = bank
    with_prompt = {**frozen, "encoder": {**frozen["encoder"], "prompt": {"prompt": jnp.zeros((P, config.emb_dim))}}}
    params = ensembling.bank_params(with_prompt, prompt_bank)
    assert params["encoder"]["prompt"]["prompt"].shape == (K, P, config.emb_dim)
    assert params["token_embedder"] is frozen["token_embedder"]
    with pytest.raises(ensembling.EnsembleError, match="width"):
        ensembling.bank_params(frozen, np.zeros((2, P, config.emb_dim + 1)))
    with pytest.raises(ensembling.EnsembleError, match="one \\[P, H\\] shape"):
        ensembling.stack_prompts([np.zeros((3, 4)), np.zeros((2, 4))])
    with pytest.raises(ensembling.EnsembleError, match="prompt_index"):
        ensembling.serve_mixed(ensembling.bank_model(config, K, P), params, TOKENS[:2], [0, K], max_decode_length=2)
    assert ensembling.stack_prompts([np.ones((3, 4)), np.zeros((3, 4))]).shape == (2, 3, 4)


def test_majority_vote_and_tie_rule():
    # Clear majority wins even against higher-scoring minority voters.
    assert ensembling.majority_vote([["a", "b", "a"]], [[-5.0, -0.1, -5.0]]) == ["a"]
    # A tie is broken by the voters' summed log-likelihood...
    assert ensembling.majority_vote([["a", "b", "b", "a"]], [[-1.0, -0.5, -0.6, -2.0]]) == ["b"]
    assert ensembling.majority_vote([["a", "b", "b", "a"]], [[-0.1, -0.5, -0.6, -0.2]]) == ["a"]
    # ...then by the lowest prompt index among the tied answers.
    assert ensembling.majority_vote([["x", "y"], ["y", "x"]]) == ["x", "y"]
    assert ensembling.majority_vote([["x", "y", "z", "z", "y"]], [[0.0, -1.0, -1.0, -1.0, -1.0]]) == ["y"]
    # Invalid answers abstain; all invalid -> invalid.
    assert ensembling.majority_vote([[-1, -1, 3]], abstain=-1) == [3]
    assert ensembling.majority_vote([[None, None]]) == [None]


def test_rank_vote_uses_each_voters_own_class_score():
    scores = np.array([[[-0.1, -3.0], [-2.0, -0.5], [-0.2, -1.0]],   # votes 0, 1, 0 -> 0
                       [[-0.1, -3.0], [-2.0, -0.05], [-9, -9]]])     # votes 0, 1, 0(tied -9: argmax first)
    voted, per_prompt = ensembling.rank_vote(scores)
    np.testing.assert_array_equal(per_prompt, [[0, 1, 0], [0, 1, 0]])
    np.testing.assert_array_equal(voted, [0, 0])
    two = np.array([[[-0.3, -3.0], [-2.0, -0.2]]])  # 1 vote each: class 1's voter is more confident
    assert ensembling.rank_vote(two)[0].tolist() == [1]


def test_summarize_average_best_ensemble_and_overall_score():
    per_prompt = [{"acc": 0.5, "f1": 0.7}, {"acc": 0.8, "f1": 0.6}, {"acc": 0.6, "f1": 0.6}]
    s = ensembling.summarize(per_prompt, {"acc": 0.9, "f1": 0.8})
    assert s["average"] == pytest.approx({"acc": 19 / 30, "f1": 19 / 30})
    assert s["best"] == {"acc": 0.8, "f1": 0.6}  # task score 0.7 beats 0.6 and 0.6
    rows = ensembling.summary_rows({"cb": s, "rte": ensembling.summarize([{"acc": 0.5}], {"acc": 0.7})})
    overall = rows[-1]
    assert overall["task"] == "overall" and overall["ensemble"] == pytest.approx((0.85 + 0.7) / 2)
    table = ensembling.format_table(rows)
    assert "| cb | score | 63.3 | 70.0 | 85.0 |" in table
    with pytest.raises(ensembling.EnsembleError):
        ensembling.summarize([{"acc": 1.0}, {"f1": 1.0}], {"acc": 1.0})
