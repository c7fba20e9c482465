"""Soft prompts: the P x H parameter, its initializers, and a per-row prompt bank.

A prompt is a [P, H] array prepended to the embedded encoder input
([B, T, H] -> [B, P+T, H]); only the encoder is prompted (paper section 2).

Initializers follow the paper (section 3.2). Each factory returns a Flax-style
`init(rng, shape) -> array`; the ones that need the frozen model's embedding
table [V, H] or the vocabulary take them as keyword arguments, which the
trainer fills in from the loaded checkpoint (so gin files name only the
factory and its own settings, e.g. the class labels):

  random_uniform        U[-scale, scale], scale 0.5 (the paper's range; the
                        reference code's flax `uniform(0.5)` samples [0, 0.5))
  sampled_vocab         rows of the N = min(5000, pieces) most frequent pieces
  class_labels          one position per label: mean of its sub-token rows,
                        the rest filled like sampled_vocab
  from_string           a string's token rows, the rest filled like sampled_vocab
  from_file             a .npy [P, H] (prompt transfer; read without pickle)

Shape letters: B batch, T input length, P prompt length, H hidden, V vocabulary,
K number of prompts in a bank.
"""
from __future__ import annotations

import os
from typing import Callable, Optional, Sequence

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
PromptInit = Callable[[Array, Sequence[int]], Array]

# Ids 0, 1, 2 of a T5 SentencePiece model: pad, EOS, unk.
SPECIAL_IDS = (0, 1, 2)
SAMPLED_VOCAB_POPULATION = 5000


class PromptError(ValueError):
    """A prompt that cannot be built as asked (bad length, file or labels)."""


def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    if len(shape) != 2:
        raise PromptError(f"a prompt is [P, H]; got shape {tuple(shape)}")
    length, hidden = int(shape[0]), int(shape[1])
    if length <= 0:
        raise PromptError(
            f"prompt length must be >= 1, got {length}; configure a model without a prompt instead"
        )
    return length, hidden


def _need(value, what: str, factory: str):
    if value is None:
        raise PromptError(f"{factory} needs `{what}`; the trainer passes it from the loaded model")
    return value


def _num_pieces(vocabulary) -> int:
    """Pieces of the SentencePiece model itself: extra ids (sentinels) excluded."""
    for attr in ("base_vocab_size", "sp_model_size"):
        if hasattr(vocabulary, attr):
            return int(getattr(vocabulary, attr))
    if hasattr(vocabulary, "tokenizer"):
        return int(vocabulary.tokenizer.get_piece_size())
    return int(vocabulary.vocab_size)


def sample_vocab_ids(
    rng: Array, count: int, num_pieces: int, *, population: int = SAMPLED_VOCAB_POPULATION,
    include_special: bool = False,
) -> np.ndarray:
    """Ids of `count` rows drawn from the first min(population, num_pieces) ids.

    Without replacement while count <= the candidates (the paper), with
    replacement beyond. pad/EOS/unk are excluded unless `include_special`
    (the reference code draws from 0..4999 and so includes them).
    """
    top = min(population, num_pieces)
    candidates = jnp.arange(0 if include_special else len(SPECIAL_IDS), top)
    if candidates.shape[0] == 0:
        raise PromptError(f"no vocabulary ids to sample from (num_pieces={num_pieces})")
    replace = count > candidates.shape[0]
    return np.asarray(jax.random.choice(rng, candidates, (count,), replace=replace))


@gin.configurable
def random_uniform(scale: float = 0.5, **unused) -> PromptInit:
    """U[-scale, scale]; the paper's random init uses scale 0.5."""

    def init(rng, shape, dtype=jnp.float32):
        _check_shape(shape)
        return jax.random.uniform(rng, shape, dtype, minval=-scale, maxval=scale)

    return init


@gin.configurable
def sampled_vocab(
    *, embeddings=None, vocabulary=None, population: int = SAMPLED_VOCAB_POPULATION,
    include_special: bool = False, **unused,
) -> PromptInit:
    """Each row is the embedding of a piece among the `population` most frequent."""

    def init(rng, shape, dtype=jnp.float32):
        length, hidden = _check_shape(shape)
        table = _need(embeddings, "embeddings", "sampled_vocab")
        if table.shape[1] != hidden:
            raise PromptError(f"embedding width {table.shape[1]} != prompt width {hidden}")
        pieces = _num_pieces(vocabulary) if vocabulary is not None else table.shape[0]
        ids = sample_vocab_ids(rng, length, pieces, population=population, include_special=include_special)
        return jnp.asarray(np.asarray(table)[ids], dtype)

    return init


def _fill_after(rows: list[np.ndarray], rng, shape, dtype, embeddings, vocabulary, what: str, **fill_kw):
    """Stacks fixed `rows` at the start and fills the rest by sampled vocabulary."""
    length, hidden = _check_shape(shape)
    if len(rows) > length:
        raise PromptError(f"{len(rows)} {what} do not fit in a prompt of length {length}")
    out = np.zeros((length, hidden), np.float32)
    if rows:
        out[: len(rows)] = np.stack(rows)
    if len(rows) < length:
        fill = sampled_vocab(embeddings=embeddings, vocabulary=vocabulary, **fill_kw)
        out[len(rows):] = np.asarray(fill(rng, (length - len(rows), hidden), jnp.float32))
    return jnp.asarray(out, dtype)


@gin.configurable
def class_labels(
    labels: Sequence[str] = gin.REQUIRED, *, embeddings=None, vocabulary=None, **fill_kw
) -> PromptInit:
    """Position i is the mean embedding of the sub-tokens of labels[i]."""

    def init(rng, shape, dtype=jnp.float32):
        table = np.asarray(_need(embeddings, "embeddings", "class_labels"))
        vocab = _need(vocabulary, "vocabulary", "class_labels")
        rows = []
        for label in labels:
            ids = list(vocab.encode(label))
            if not ids:
                raise PromptError(f"class label {label!r} encodes to no tokens")
            rows.append(table[ids].mean(axis=0))
        return _fill_after(rows, rng, shape, dtype, table, vocab, "class labels", **fill_kw)

    return init


@gin.configurable
def from_string(text: str = gin.REQUIRED, *, embeddings=None, vocabulary=None, **fill_kw) -> PromptInit:
    """The first positions are the token embeddings of `text` (no EOS)."""

    def init(rng, shape, dtype=jnp.float32):
        table = np.asarray(_need(embeddings, "embeddings", "from_string"))
        vocab = _need(vocabulary, "vocabulary", "from_string")
        rows = [table[i] for i in vocab.encode(text)]
        return _fill_after(rows, rng, shape, dtype, table, vocab, "tokens of the init string", **fill_kw)

    return init


def load_prompt_file(path: str, shape: Sequence[int], dtype=jnp.float32) -> Array:
    """Reads a [P, H] float .npy without pickle; clear errors for bad files."""
    length, hidden = _check_shape(shape)
    if not os.path.exists(path):
        raise PromptError(f"prompt file not found: {path}")
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as e:  # object arrays need pickle: refuse them
        raise PromptError(f"prompt file {path} is not a plain numeric .npy ({e})") from None
    if not np.issubdtype(arr.dtype, np.floating):
        raise PromptError(f"prompt file {path} holds {arr.dtype}, expected a float array")
    if arr.shape != (length, hidden):
        raise PromptError(f"prompt file {path} has shape {arr.shape}, expected ({length}, {hidden})")
    if not np.all(np.isfinite(arr)):
        raise PromptError(f"prompt file {path} contains NaN or infinite values")
    return jnp.asarray(arr, dtype)


@gin.configurable
def from_file(path: str = gin.REQUIRED, **unused) -> PromptInit:
    """Prompt transfer: a saved prompt, cast to the model's dtype."""

    def init(rng, shape, dtype=jnp.float32):
        del rng
        return load_prompt_file(path, shape, dtype)

    return init


class Prompt(nn.Module):
    """One learned prompt `prompt` [P, H], broadcast over the batch."""

    length: int
    prompt_init: PromptInit = random_uniform()

    @nn.compact
    def __call__(self, embedded: Array, prompt_index: Optional[Array] = None) -> Array:
        """embedded [B, T, H] -> prompt [B, P, H] in the embedded dtype."""
        del prompt_index
        _check_shape((self.length, embedded.shape[-1]))
        prompt = self.param(
            "prompt", nn.with_logical_partitioning(self.prompt_init, ("prompt", "embed")),
            (self.length, embedded.shape[-1]),
        )
        return jnp.broadcast_to(prompt.astype(embedded.dtype), (embedded.shape[0],) + prompt.shape)


class PromptBank(nn.Module):
    """K prompts `prompt` [K, P, H]; row b of the batch uses prompt_index[b].

    One frozen model then serves a batch mixing prompts: ensembles (the same
    example under K prompts) or several tasks at once.
    """

    num_prompts: int
    length: int
    prompt_init: PromptInit = random_uniform()

    @nn.compact
    def __call__(self, embedded: Array, prompt_index: Optional[Array] = None) -> Array:
        """embedded [B, T, H], prompt_index [B] int -> [B, P, H]."""
        _check_shape((self.length, embedded.shape[-1]))

        def bank_init(rng, shape):
            keys = jax.random.split(rng, shape[0])
            return jnp.stack([self.prompt_init(k, shape[1:]) for k in keys])

        bank = self.param(
            "prompt", nn.with_logical_partitioning(bank_init, (None, "prompt", "embed")),
            (self.num_prompts, self.length, embedded.shape[-1]),
        )
        if prompt_index is None:
            prompt_index = jnp.zeros((embedded.shape[0],), jnp.int32)
        return jnp.take(bank, prompt_index, axis=0).astype(embedded.dtype)


def prepend_prompt(prompt: Array, embedded: Array, mask: Array) -> tuple[Array, Array]:
    """prompt [B, P, H], embedded [B, T, H], mask [B, T] -> [B, P+T, H], [B, P+T].

    Prompt positions are always visible (mask 1); the input's padding stays masked.
    """
    prompt_mask = jnp.ones(prompt.shape[:2], mask.dtype)
    return jnp.concatenate([prompt, embedded], axis=1), jnp.concatenate([prompt_mask, mask], axis=1)
