"""Span corruption and prefix LM: one fixed example each, then properties over many seeds."""
import numpy as np
import pytest
import seqio
import tensorflow as tf

from prompt_tuning.data import pretraining, tasks
from tests.conftest import shared_path

V = 32100  # vocabulary size with 100 extra ids: <extra_id_0> = 32099


def _reconstruct(inputs, targets, vocab_size=V):
    """Fill each sentinel of the inputs with the target tokens that follow the same sentinel."""
    spans, current = {}, None
    for tok in targets:
        if tok >= vocab_size - 100:
            current = tok
            spans[current] = []
        else:
            spans[current].append(tok)
    out = []
    for tok in inputs:
        out.extend(spans[tok] if tok >= vocab_size - 100 else [tok])
    return out


def test_span_corruption_fixed_example():
    #        A   x   x   B   C   y   D   z  z  z
    tokens = tf.constant([10, 11, 12, 13, 14, 15, 16, 17, 18, 19])
    mask = tf.constant([0, 1, 1, 0, 0, 1, 0, 1, 1, 1]) > 0
    inputs, targets = pretraining.corrupt_spans(tokens, mask, V)
    assert inputs.numpy().tolist() == [10, 32099, 13, 14, 32098, 16, 32097]
    assert targets.numpy().tolist() == [32099, 11, 12, 32098, 15, 32097, 17, 18, 19]


def test_noise_mask_fixed_seed_is_deterministic():
    seeds = tf.constant([[1, 2], [3, 4]])
    a = pretraining.random_spans_noise_mask(100, 0.15, seeds).numpy()
    b = pretraining.random_spans_noise_mask(100, 0.15, seeds).numpy()
    np.testing.assert_array_equal(a, b)
    c = pretraining.random_spans_noise_mask(100, 0.15, tf.constant([[5, 6], [7, 8]])).numpy()
    assert not np.array_equal(a, c)


@tf.function
def _masks(length, seeds):
    return tf.map_fn(lambda s: pretraining.random_spans_noise_mask(length, 0.15, s), seeds,
                     fn_output_signature=tf.TensorSpec([None], tf.bool))


@pytest.mark.parametrize("length", [114, 568])
def test_noise_mask_properties_over_many_seeds(length):
    seeds = tf.reshape(tf.range(2000 * 4, dtype=tf.int32), [2000, 2, 2])
    masks = _masks(tf.constant(length), seeds).numpy()
    num_noise = masks.sum(axis=1)
    # The number of noise tokens and of spans is fixed by the length; only their placement is random.
    assert (num_noise == round(length * 0.15)).all()
    density = masks.mean()
    starts = masks & ~np.pad(masks[:, :-1], ((0, 0), (1, 0)))
    mean_span = masks.sum() / starts.sum()
    assert abs(density - 0.15) < 0.01
    # Spans per sequence = round(noise / 3): the mean span is exactly noise / spans, near 3.
    noise = round(length * 0.15)
    assert mean_span == pytest.approx(noise / round(noise / 3))
    assert abs(mean_span - 3.0) < 0.2
    assert not masks[:, 0].any() and masks[:, -1].all()  # kept span first, noise span last
    # Placement is spread out: every position but the first is noise for some seed.
    assert masks[:, 1:].any(axis=0).all()
    # Span lengths vary (not a fixed pattern).
    assert len({tuple(np.flatnonzero(m)) for m in masks[:50]}) == 50


def test_mean_span_length_over_many_lengths_and_seeds():
    spans, noise = 0, 0
    for i, length in enumerate(range(50, 1050, 25)):
        seeds = tf.reshape(tf.range(40 * 4, dtype=tf.int32) + 1000 * i, [40, 2, 2])
        masks = _masks(tf.constant(length), seeds).numpy()
        noise += masks.sum()
        spans += (masks & ~np.pad(masks[:, :-1], ((0, 0), (1, 0)))).sum()
    assert abs(noise / spans - 3.0) < 0.05


def test_inputs_and_targets_reconstruct_the_tokens_over_many_seeds():
    rng = np.random.default_rng(0)
    for seed in range(200):
        n = int(rng.integers(2, 300))
        tokens = tf.constant(rng.integers(3, 32000, size=n), tf.int32)
        mask = pretraining.random_spans_noise_mask(n, 0.15, tf.constant([[seed, 1], [seed, 2]]))
        inputs, targets = pretraining.corrupt_spans(tokens, mask, V)
        assert _reconstruct(inputs.numpy().tolist(), targets.numpy().tolist()) == tokens.numpy().tolist()


def test_random_spans_helper_fills_inputs_exactly():
    # T5's defaults: 512 input tokens with EOS come from 568 raw tokens; targets need 114.
    assert pretraining.random_spans_helper(512, 0.15, 3.0) == (568, 114)


def test_sentinels_prepended_to_targets_and_optionally_appended_to_inputs(vocab):
    features = tasks.output_features(vocab)
    ds = tf.data.Dataset.from_tensors({"inputs": tf.constant([5, 6, 7, 8]), "targets": tf.constant([9])})
    out = next(iter(pretraining.add_sentinels(ds, features)))
    assert out["targets"].numpy().tolist() == [32099, 9] and out["inputs"].numpy().tolist() == [5, 6, 7, 8]
    out = next(iter(pretraining.add_sentinels(ds, features, {"inputs": 4}, in_inputs=True)))
    # Inputs of length 4 with EOS: 2 tokens, the sentinel, then (later) EOS.
    assert out["inputs"].numpy().tolist() == [5, 6, 32099]


@pytest.fixture(scope="module")
def shakespeare_tasks(vocab):
    path = shared_path("corpora", "tinyshakespeare.txt")
    return tasks.register_text_pretraining_tasks("test_shakespeare", {"train": str(path)}, vocab)


def _first(name, lengths, n, seed=0):
    ds = seqio.get_mixture_or_task(name).get_dataset(lengths, split="train", shuffle=False, seed=seed)
    return list(ds.take(n).as_numpy_iterator())


def test_span_corruption_task_on_real_text(shakespeare_tasks, vocab):
    lengths = {"inputs": 128, "targets": 32}
    exs = _first("test_shakespeare_span_corruption", lengths, 20)
    raw, _ = pretraining.random_spans_helper(128)
    full = 0
    for ex in exs:
        inputs, targets = list(ex["inputs"]), list(ex["targets"])
        assert inputs[-1] == 1 and targets[-1] == 1 and len(inputs) <= 128
        original = _reconstruct(inputs[:-1], targets[:-1])
        assert len(original) <= raw
        if len(original) == raw:
            # Lines are concatenated 128 at a time and cut into `raw`-token pieces (the last of each group
            # is shorter); a full piece fills the inputs exactly.
            full += 1
            assert len(inputs) == 128
            assert sum(t >= 32000 for t in inputs) == round(round(raw * 0.15) / 3)
    assert full >= len(exs) // 2
    # The reconstructed pieces are consecutive stretches of the tokenized corpus.
    text = vocab.decode(_reconstruct(list(exs[0]["inputs"][:-1]), list(exs[0]["targets"][:-1])))
    assert text.split()[:3] == ["First", "Citizen:", "Before"]
    again = _first("test_shakespeare_span_corruption", lengths, 20)
    assert all(np.array_equal(a["inputs"], b["inputs"]) for a, b in zip(exs, again))


def test_prefix_lm_fixed_example():
    ds = tf.data.Dataset.from_tensors({"targets": tf.range(3, 13)})
    with seqio.utils.map_seed_manager(42):
        ex = next(iter(pretraining.prefix_lm(ds, {"inputs": 64})))
    inputs, targets = ex["inputs"].numpy().tolist(), ex["targets"].numpy().tolist()
    assert inputs + targets == list(range(3, 13)) and 1 <= len(inputs) <= 9


def test_prefix_lm_properties_over_many_seeds():
    ks = [int(pretraining.random_prefix_length(10, tf.constant([s, 0]))) for s in range(500)]
    counts = np.bincount(ks, minlength=10)
    assert counts[0] == 0 and (counts[1:] > 30).all()  # uniform over [1, 9] (~55 each)
    assert int(pretraining.random_prefix_length(2, tf.constant([0, 0]))) == 1
    assert int(pretraining.random_prefix_length(1, tf.constant([0, 0]))) == 0
    rng = np.random.default_rng(0)
    docs = [rng.integers(3, 32000, size=int(rng.integers(2, 60))).astype(np.int32) for _ in range(40)]
    ds = tf.data.Dataset.from_generator(lambda: ({"targets": d} for d in docs),
                                        output_signature={"targets": tf.TensorSpec([None], tf.int32)})
    fractions = []
    for seed in range(10):
        with seqio.utils.map_seed_manager(seed):
            out = list(pretraining.prefix_lm(ds, {"inputs": 64}).as_numpy_iterator())
        assert len(out) == len(docs)
        for ex, doc in zip(out, docs):
            assert ex["inputs"].tolist() + ex["targets"].tolist() == doc.tolist()
            assert len(ex["inputs"]) >= 1 and len(ex["targets"]) >= 1
            fractions.append(len(ex["inputs"]) / len(doc))
    assert 0.4 < np.mean(fractions) < 0.6


def test_prefix_lm_input_plus_target_is_the_text(shakespeare_tasks, vocab):
    lines = [l for l in open(shared_path("corpora", "tinyshakespeare.txt")).read().split("\n") if l.strip()]
    exs = _first("test_shakespeare_prefix_lm", {"inputs": 512, "targets": 512}, 30)
    for ex, line in zip(exs, lines):
        tokens = list(ex["inputs"][:-1]) + list(ex["targets"][:-1])
        assert tokens == list(vocab.encode(line))
