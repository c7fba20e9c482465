"""Pretraining objectives for the ablations (paper section 3.3), as seqio token preprocessors.

- Span corruption (T5): about `noise_density` (0.15) of the tokens are
  dropped in random spans of mean length `mean_noise_span_length` (3); each
  dropped span becomes one sentinel in the inputs, and the targets list the
  dropped spans, each after its sentinel:
      tokens  A x B y          (A, B kept; x, y dropped spans)
      inputs  A <0> B <1>
      targets <0> x <1> y
  Spans alternate kept / dropped starting with a kept one, and the numbers of
  noise tokens and spans are fixed by the length (`random_spans_noise_mask`).
  Documents are concatenated and cut into pieces whose corrupted inputs fit
  the inputs length exactly (`random_spans_helper`), as in T5.
- Prefix LM ("LM adaptation"): a random split point k in [1, n-1]; inputs are
  the first k tokens, targets the rest, so inputs + targets = the text.
- "Span corruption + sentinel" (downstream): `add_sentinels` puts
  `<extra_id_0>` before every target, so targets look like pretraining
  outputs. The paper states only this ("prepend all downstream targets with a
  sentinel"), and the reference code's `add_sentinel_to_targets` does the
  same: that is the default. `in_inputs=True` also appends the sentinel to the
  inputs, T5's `add_task_with_sentinels` form (`..._1_sentinel` tasks).

Sentinel i is id vocab_size - 1 - i (`<extra_id_0>` = 32099 with 100 extra
ids). Randomness is stateless, from seqio's per-preprocessor seeds, so a
dataset built with the same seed is identical. The algorithms follow T5's
`t5.data.preprocessors` (not a dependency of this project).
"""
from __future__ import annotations

from typing import Mapping, Optional

import seqio
import tensorflow as tf

DEFAULT_INPUTS_LENGTH = 512
MAX_CHUNK_TOKENS = 65536


# ---------------------------------------------------------------------------
# Noise masks and sentinels (pure functions of tensors)
# ---------------------------------------------------------------------------


def _random_segmentation(num_items, num_segments, seed):
    """`num_segments` positive lengths adding up to `num_items`, every split equally likely."""
    # Choose num_segments - 1 of the num_items - 1 gaps between items as segment starts.
    starts = tf.cast(tf.range(num_items - 1) < num_segments - 1, tf.int32)
    starts = tf.pad(seqio.utils.stateless_shuffle(starts, seed), [[1, 0]])
    segment_id = tf.cumsum(starts)
    return tf.math.segment_sum(tf.ones_like(segment_id), segment_id)


def random_spans_noise_mask(length, noise_density: float, seeds, mean_noise_span_length: float = 3.0):
    """bool [length]: round(length * density) noise tokens in round(that / mean span) spans.

    Kept and noise spans alternate, starting with kept, so the sequence ends
    in noise; at least one token of each kind (lengths < 2 are padded to 2
    for the computation and cut back). `seeds`: int32 [2, 2].
    """
    orig_length = length
    length = tf.maximum(length, 2)
    num_noise = tf.cast(tf.round(tf.cast(length, tf.float32) * noise_density), tf.int32)
    num_noise = tf.minimum(tf.maximum(num_noise, 1), length - 1)
    num_spans = tf.cast(tf.round(tf.cast(num_noise, tf.float32) / mean_noise_span_length), tf.int32)
    num_spans = tf.maximum(num_spans, 1)
    noise_lengths = _random_segmentation(num_noise, num_spans, seeds[0])
    kept_lengths = _random_segmentation(length - num_noise, num_spans, seeds[1])
    interleaved = tf.reshape(tf.stack([kept_lengths, noise_lengths], axis=1), [-1])
    span_starts = tf.cumsum(interleaved)[:-1]
    is_start = tf.math.unsorted_segment_sum(tf.ones_like(span_starts), span_starts, length)
    span_number = tf.cumsum(is_start)
    return tf.equal(span_number % 2, 1)[:orig_length]


def noise_span_to_unique_sentinel(tokens, noise_mask, vocab_size: int):
    """Each run of noise tokens -> one sentinel, the k-th run getting id vocab_size - 1 - k."""
    prev_noise = tf.pad(noise_mask[:-1], [[1, 0]])
    first_noise = tf.logical_and(noise_mask, tf.logical_not(prev_noise))
    later_noise = tf.logical_and(noise_mask, prev_noise)
    sentinels = vocab_size - tf.cumsum(tf.cast(first_noise, tokens.dtype))
    tokens = tf.where(first_noise, sentinels, tokens)
    return tf.boolean_mask(tokens, tf.logical_not(later_noise))


def nonnoise_span_to_unique_sentinel(tokens, noise_mask, vocab_size: int):
    """The targets' side of span corruption: the kept spans replaced by sentinels (T5's same-named function)."""
    return noise_span_to_unique_sentinel(tokens, tf.logical_not(noise_mask), vocab_size)


def corrupt_spans(tokens, noise_mask, vocab_size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """(inputs, targets) of span corruption for `tokens` [n] and `noise_mask` [n]."""
    return (noise_span_to_unique_sentinel(tokens, noise_mask, vocab_size),
            nonnoise_span_to_unique_sentinel(tokens, noise_mask, vocab_size))


def random_spans_helper(inputs_length: int, noise_density: float = 0.15,
                        mean_noise_span_length: float = 3.0) -> tuple[int, int]:
    """(raw tokens per example, targets length incl. EOS) so corrupted inputs + EOS fill `inputs_length`."""

    def lengths(tokens: int) -> tuple[int, int]:
        noise = int(round(tokens * noise_density))
        spans = int(round(noise / mean_noise_span_length))
        return tokens - noise + spans + 1, noise + spans + 1

    tokens = inputs_length - 1
    while lengths(tokens + 1)[0] <= inputs_length:
        tokens += 1
    _, targets_length = lengths(tokens)
    if noise_density == 0.5 and targets_length > inputs_length:
        tokens, targets_length = tokens - 1, targets_length - 1
    return tokens, targets_length


# ---------------------------------------------------------------------------
# Dataset transformations
# ---------------------------------------------------------------------------


def select_random_chunk(dataset: tf.data.Dataset, max_length: int = MAX_CHUNK_TOKENS,
                        feature_key: str = "targets") -> tf.data.Dataset:
    """One random max_length-aligned chunk of each (non-empty) token sequence."""

    @seqio.map_over_dataset(num_seeds=1)
    def chunk(x, seed):
        tokens = x[feature_key]
        n = tf.shape(tokens)[0]
        num_chunks = (n + max_length - 1) // max_length
        start = max_length * tf.random.stateless_uniform([], seed=seed, maxval=num_chunks, dtype=tf.int32)
        return {feature_key: tokens[start:tf.minimum(start + max_length, n)]}

    dataset = dataset.filter(lambda x: tf.size(x[feature_key]) > 0)
    return chunk(dataset)


def reduce_concat_tokens(dataset: tf.data.Dataset, feature_key: str = "targets",
                         batch_size: int = 128) -> tf.data.Dataset:
    """Concatenates `batch_size` documents at a time (so short documents still fill examples)."""
    dataset = dataset.map(lambda x: {feature_key: x[feature_key]})
    dataset = dataset.padded_batch(batch_size, padded_shapes={feature_key: [-1]})

    def concat(x):
        tokens = tf.reshape(x[feature_key], [-1])
        return {feature_key: tf.boolean_mask(tokens, tokens != 0)}  # drops the batch padding (id 0)

    return dataset.map(concat, num_parallel_calls=tf.data.AUTOTUNE)


def split_tokens(dataset: tf.data.Dataset, max_tokens: int, feature_key: str = "targets") -> tf.data.Dataset:
    """Cuts each sequence into pieces of `max_tokens` (the last may be shorter)."""

    def pieces(x):
        tokens = x[feature_key]
        n = tf.size(tokens)
        num = (n + max_tokens - 1) // max_tokens
        padded = tf.pad(tokens, [[0, num * max_tokens - n]])
        lengths = tf.concat([tf.fill([num - 1], max_tokens), [n - (num - 1) * max_tokens]], axis=0)
        return tf.data.Dataset.from_tensor_slices(
            {feature_key: tf.reshape(padded, [num, max_tokens]), "_length": lengths})

    dataset = dataset.filter(lambda x: tf.size(x[feature_key]) > 0).flat_map(pieces)
    return dataset.map(lambda x: {feature_key: x[feature_key][: x["_length"]]})


def _inputs_length(sequence_length: Optional[Mapping[str, int]]) -> int:
    if sequence_length and sequence_length.get("inputs"):
        return int(sequence_length["inputs"])
    return DEFAULT_INPUTS_LENGTH


def span_corruption(dataset: tf.data.Dataset, sequence_length: Optional[Mapping[str, int]] = None,
                    output_features: Optional[Mapping[str, seqio.Feature]] = None,
                    noise_density: float = 0.15, mean_noise_span_length: float = 3.0) -> tf.data.Dataset:
    """T5's span corruption on tokenized 'targets' -> {'inputs', 'targets'} (EOS added later)."""
    vocab_size = output_features["targets"].vocabulary.vocab_size
    tokens_length, _ = random_spans_helper(_inputs_length(sequence_length), noise_density, mean_noise_span_length)
    dataset = select_random_chunk(dataset)
    dataset = reduce_concat_tokens(dataset)
    dataset = split_tokens(dataset, tokens_length)

    @seqio.map_over_dataset(num_seeds=2)
    def corrupt(x, seeds):
        tokens = x["targets"]
        mask = random_spans_noise_mask(tf.size(tokens), noise_density, seeds, mean_noise_span_length)
        inputs, targets = corrupt_spans(tokens, mask, vocab_size)
        return {"inputs": inputs, "targets": targets}

    return corrupt(dataset)


def random_prefix_length(n, seed):
    """Uniform split point in [1, n - 1] (0 when n < 2): the number of input tokens."""
    hi = tf.maximum(n - 1, 0)
    lo = tf.minimum(hi, 1)
    return tf.random.stateless_uniform([], seed=seed, minval=lo, maxval=hi + 1, dtype=tf.int32)


def prefix_lm(dataset: tf.data.Dataset, sequence_length: Optional[Mapping[str, int]] = None,
              output_features: Optional[Mapping[str, seqio.Feature]] = None) -> tf.data.Dataset:
    """T5's prefix LM: pieces of inputs_length - 1 tokens split at a random point (inputs + targets = piece)."""
    del output_features
    dataset = select_random_chunk(dataset)
    dataset = split_tokens(dataset, _inputs_length(sequence_length) - 1)

    @seqio.map_over_dataset(num_seeds=1)
    def split(x, seed):
        tokens = x["targets"]
        k = random_prefix_length(tf.size(tokens), seed)
        return {"inputs": tokens[:k], "targets": tokens[k:]}

    return split(dataset)


def add_sentinels(dataset: tf.data.Dataset, output_features: Mapping[str, seqio.Feature],
                  sequence_length: Optional[Mapping[str, int]] = None, in_inputs: bool = False) -> tf.data.Dataset:
    """Prepends `<extra_id_0>` to the targets (and with `in_inputs`, appends it to the inputs).

    Runs after tokenization and before `append_eos_after_trim`. An appended
    input sentinel survives trimming: the inputs are cut to leave room for it
    and the EOS. A prepended target sentinel survives anyway (trimming cuts the end).
    """
    vocab = output_features["targets"].vocabulary
    sentinel = vocab.vocab_size - 1
    max_inputs = (sequence_length or {}).get("inputs")

    @seqio.map_over_dataset
    def add(x):
        x = dict(x)
        x["targets"] = tf.concat([tf.constant([sentinel], x["targets"].dtype), x["targets"]], axis=0)
        if in_inputs:
            inputs = x["inputs"]
            if max_inputs:
                inputs = inputs[: max(int(max_inputs) - 2, 0)]
            x["inputs"] = tf.concat([inputs, tf.constant([sentinel], inputs.dtype)], axis=0)
        return x

    return add(dataset)
