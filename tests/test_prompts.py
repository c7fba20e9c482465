"""Prompt initializers, the prompt file loader and the prompt modules (paper section 3.2)."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning import prompts
from tests.conftest import shared_path


class FakeVocab:
    """A vocabulary with `base_vocab_size` pieces and a fixed word -> ids table."""

    def __init__(self, pieces, words=None):
        self.base_vocab_size = pieces
        self.words = words or {}

    def encode(self, text):
        return [i for w in text.split() for i in self.words[w]]


def _id_table(rows, width=3):
    """Row i of the table is [i, i, ...]: a sampled row names its id."""
    return np.repeat(np.arange(rows, dtype=np.float32)[:, None], width, axis=1)


def _ctx(table, vocab, label_words=None):
    return prompts.PromptContext(embeddings=table, vocabulary=vocab, label_words=label_words, task_name="t")


def _ids(prompt):
    prompt = np.asarray(prompt)
    assert (prompt == prompt[:, :1]).all()
    return prompt[:, 0].astype(int)


def test_random_uniform_range_and_scale():
    x = np.asarray(prompts.random_uniform()(jax.random.PRNGKey(0), (100, 64)))
    assert x.min() >= -0.5 and x.max() <= 0.5
    # The paper's range is symmetric: both ends are reached (the reference code's flax uniform is [0, 0.5)).
    assert x.min() < -0.49 and x.max() > 0.49 and abs(x.mean()) < 0.02
    y = np.asarray(prompts.random_uniform(scale=0.1)(jax.random.PRNGKey(0), (100, 64)))
    assert y.min() >= -0.1 and y.max() <= 0.1 and y.min() < -0.09


def test_sampled_vocab_draws_distinct_frequent_non_special_rows():
    table = _id_table(6000)  # 5900 pieces + 100 extra ids
    init = prompts.sampled_vocab(context=_ctx(table, FakeVocab(5900)))
    ids = _ids(init(jax.random.PRNGKey(1), (150, 3)))
    assert len(set(ids)) == 150, "without replacement while P <= N"
    assert ids.min() >= 3, "pad, EOS and unk are excluded by default"
    assert ids.max() < 5000, "only the 5000 most frequent pieces"


def test_sampled_vocab_small_vocab_never_draws_extra_ids_and_include_special():
    table = _id_table(60)  # 50 pieces + 10 extra ids
    vocab = FakeVocab(50)
    ids = _ids(prompts.sampled_vocab(context=_ctx(table, vocab), include_special=True)(
        jax.random.PRNGKey(2), (50, 3)))
    assert sorted(ids) == list(range(50)), "P == N with specials included: every piece once, no extra id"
    ids = _ids(prompts.sampled_vocab(context=_ctx(table, vocab))(jax.random.PRNGKey(2), (80, 3)))
    assert ids.min() >= 3 and ids.max() < 50, "P > N falls back to sampling with replacement"


def test_class_labels_are_sub_token_means_then_sampled_fill():
    table = np.random.RandomState(0).normal(size=(200, 4)).astype(np.float32)
    vocab = FakeVocab(150, {"entailment": [10], "not_entailment": [20, 21, 22]})
    init = prompts.class_labels(["entailment", "not_entailment"], context=_ctx(table, vocab))
    p = np.asarray(init(jax.random.PRNGKey(0), (5, 4)))
    np.testing.assert_allclose(p[0], table[10], rtol=1e-6)
    np.testing.assert_allclose(p[1], table[[20, 21, 22]].mean(0), rtol=1e-6)
    for row in p[2:]:  # the fill rows are vocabulary rows among the first 150 pieces
        match = np.where(np.all(np.isclose(table[:150], row), axis=1))[0]
        assert len(match) == 1 and match[0] >= 3


def test_class_labels_with_real_t5_vocabulary():
    import seqio

    vocab = seqio.SentencePieceVocabulary(str(shared_path("t5", "spiece.model")))
    table = np.random.RandomState(0).normal(size=(32128, 4)).astype(np.float32)
    p = np.asarray(prompts.class_labels(["not_entailment"], context=_ctx(table, vocab))(
        jax.random.PRNGKey(0), (3, 4)))
    ids = vocab.encode("not_entailment")
    assert len(ids) > 1, "a multi-piece label exercises the mean"
    np.testing.assert_allclose(p[0], table[ids].mean(0), rtol=1e-5)


def test_class_labels_that_do_not_fit_raise():
    vocab = FakeVocab(50, {"a": [5], "b": [6], "c": [7]})
    init = prompts.class_labels(["a", "b", "c"], context=_ctx(_id_table(60), vocab))
    with pytest.raises(prompts.PromptError, match="3 class labels do not fit in a prompt of length 2"):
        init(jax.random.PRNGKey(0), (2, 3))


def test_class_labels_default_to_the_context_label_words_and_explicit_labels_win():
    vocab = FakeVocab(50, {"a": [5], "b": [6], "c": [7]})
    ctx = _ctx(_id_table(60), vocab, label_words=("a", "b"))
    assert list(_ids(prompts.class_labels(context=ctx)(jax.random.PRNGKey(0), (3, 3)))[:2]) == [5, 6]
    assert list(_ids(prompts.class_labels(["c"], context=ctx)(jax.random.PRNGKey(0), (3, 3)))[:1]) == [7]
    with pytest.raises(prompts.PromptError, match="needs label words and task 't' declares none"):
        prompts.class_labels(context=_ctx(_id_table(60), vocab))(jax.random.PRNGKey(0), (3, 3))


def test_initializers_without_context_say_what_they_need():
    with pytest.raises(prompts.PromptError, match="sampled_vocab needs `embeddings`"):
        prompts.sampled_vocab()(jax.random.PRNGKey(0), (3, 3))


def test_spec_module_and_initialize_agree_and_from_array_restores():
    spec = prompts.make_prompt(4, prompts.random_uniform)
    init = spec.initializer(prompts.PromptContext())
    values = spec.initialize(init, jax.random.PRNGKey(1), 6)
    params = spec.module(init)(name=None).init(jax.random.PRNGKey(1), jnp.zeros((1, 2, 6)))["params"]
    np.testing.assert_array_equal(values, np.asarray(nn.meta.unbox(params)["prompt"]))
    restored = spec.module(prompts.from_array(values))(name=None).init(jax.random.PRNGKey(9), jnp.zeros((1, 2, 6)))
    np.testing.assert_array_equal(np.asarray(nn.meta.unbox(restored["params"])["prompt"]), values)
    bank = prompts.make_prompt(4, prompts.random_uniform, num_prompts=2)
    bank_values = bank.initialize(bank.initializer(prompts.PromptContext()), jax.random.PRNGKey(1), 6)
    assert bank_values.shape == (2, 4, 6)
    got = bank.module(prompts.from_array(bank_values), bank_values=True)(name=None).init(
        jax.random.PRNGKey(5), jnp.zeros((1, 2, 6)))
    np.testing.assert_array_equal(np.asarray(nn.meta.unbox(got["params"])["prompt"]), bank_values)
    with pytest.raises(prompts.PromptError, match="positive int"):
        prompts.make_prompt(0, prompts.random_uniform)


def test_from_string_places_tokens_first():
    vocab = FakeVocab(50, {"hello": [7], "world": [8, 9]})
    p = prompts.from_string("hello world", context=_ctx(_id_table(60), vocab))(jax.random.PRNGKey(0), (5, 3))
    assert list(_ids(p)[:3]) == [7, 8, 9]


def test_prompt_length_zero_is_an_error():
    with pytest.raises(prompts.PromptError, match="prompt length must be >= 1"):
        prompts.random_uniform()(jax.random.PRNGKey(0), (0, 4))
    module = prompts.Prompt(length=0)
    with pytest.raises(prompts.PromptError, match="prompt length must be >= 1"):
        module.init(jax.random.PRNGKey(0), jnp.zeros((1, 3, 4)))


def test_from_file_casts_float64_fixture(tmp_path):
    path = shared_path("t5", "prompt_5x256.npy")
    p = prompts.from_file(str(path))(None, (5, 256))
    assert p.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(p), np.load(path).astype(np.float32))


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((4, 8), np.float32), r"has shape \(4, 8\), expected \(5, 8\)"),
        (np.full((5, 8), np.nan, np.float32), "contains NaN or infinite values"),
        (np.zeros((5, 8), np.int32), "holds int32, expected a float array"),
        (np.array([{"a": 1}] * 5, dtype=object), "not a plain numeric .npy"),
    ],
)
def test_from_file_rejects_bad_files(tmp_path, array, message):
    path = tmp_path / "prompt.npy"
    np.save(path, array, allow_pickle=True)
    with pytest.raises(prompts.PromptError, match=message):
        prompts.load_prompt_file(str(path), (5, 8))


def test_missing_prompt_file():
    with pytest.raises(prompts.PromptError, match="prompt file not found"):
        prompts.load_prompt_file("/nonexistent/prompt.npy", (5, 8))


def test_prompt_bank_gathers_one_prompt_per_row():
    bank = prompts.PromptBank(num_prompts=3, length=2)
    x = jnp.zeros((4, 5, 6))
    variables = bank.init(jax.random.PRNGKey(0), x)
    table = jax.random.normal(jax.random.PRNGKey(1), (3, 2, 6))
    out = bank.apply({"params": {"prompt": table}}, x, jnp.array([2, 0, 0, 1]))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(table)[[2, 0, 0, 1]])
    assert jax.tree.leaves(variables)[0].shape == (3, 2, 6)


def test_prepend_prompt_mask_values():
    prompt = jnp.ones((2, 3, 4))
    emb = jnp.zeros((2, 5, 4))
    mask = jnp.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], jnp.int32)
    x, m = prompts.prepend_prompt(prompt, emb, mask)
    assert x.shape == (2, 8, 4)
    np.testing.assert_array_equal(np.asarray(m), [[1, 1, 1, 1, 1, 1, 0, 0], [1] * 8])
    np.testing.assert_array_equal(np.asarray(x[:, :3]), 1.0)


@pytest.mark.parametrize("factory, kwargs", [
    (prompts.random_uniform, {}), (prompts.sampled_vocab, {}), (prompts.class_labels, {"labels": ["a"]}),
    (prompts.from_string, {"text": "a b"}),
])
def test_initializers_trace_abstractly_inside_a_model_init(factory, kwargs):
    """The model is built once with the real initializer: jax.eval_shape of its init must work."""
    vocab = FakeVocab(50, {"a": [5], "b": [6]})
    spec = prompts.make_prompt(4, functools.partial(factory, **kwargs))
    module = spec.module(spec.initializer(_ctx(_id_table(60), vocab)))(name=None)
    shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros((1, 2, 3))))
    assert nn.meta.unbox(shapes["params"])["prompt"].shape == (4, 3)
