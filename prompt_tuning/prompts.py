"""Everything about making a prompt: its spec, its initializers, the modules and the prepend.

A prompt is a [P, H] array prepended to the embedded encoder input
([B, T, H] -> [B, P+T, H]); only the encoder is prompted (paper section 2).

Making one, in order:

  PromptSpec        what gin's PROMPT = @make_prompt() builds: the length P, the
                    initializer factory (PROMPT_INIT) and, for a bank, K
  PromptContext     what an initializer may use: the frozen model's embedding
                    table [V, H], the task's vocabulary and the task's label
                    words (the words a class-label init starts from)
  spec.initializer(context)   -> init(rng, shape) (Flax's initializer form)
  spec.module(init)           -> the Prompt / PromptBank factory the T5 encoder calls
  spec.initialize(init, rng, H) -> the prompt's values, as the module makes them

Every initializer factory takes its own settings (what gin binds, e.g. the
class labels or the init text) and one keyword, `context`; nothing inspects
signatures or reads gin back. The factories (paper section 3.2):

  random_uniform        U[-scale, scale], scale 0.5 (the paper's range; the
                        reference code's flax `uniform(0.5)` samples [0, 0.5))
  sampled_vocab         rows of the N = min(5000, pieces) most frequent pieces
  class_labels          one position per label word: mean of its sub-token rows,
                        the rest filled like sampled_vocab
  from_string           a string's token rows, the rest filled like sampled_vocab
  from_file             a .npy [P, H] (prompt transfer; read without pickle)
  from_array            given values (a prompt restored from a checkpoint)

Initializers are traceable (jax.eval_shape of a prompted model runs them
abstractly); host-side work (tokenising labels, reading a file) does not
depend on the key.

Shape letters: B batch, T input length, P prompt length, H hidden, V vocabulary,
K number of prompts in a bank.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning.configurable import gin

Array = jax.Array
PromptInit = Callable[[Array, Sequence[int]], Array]

# Ids 0, 1, 2 of a T5 SentencePiece model: pad, EOS, unk.
SPECIAL_IDS = (0, 1, 2)
SAMPLED_VOCAB_POPULATION = 5000


class PromptError(ValueError):
    """A prompt that cannot be built as asked (bad length, file or label words)."""


@dataclasses.dataclass(frozen=True)
class PromptContext:
    """What an initializer may read, filled in by whoever builds the model (the trainer).

    embeddings   the frozen model's token embedding table [V, H] (host array), or None
    vocabulary   the task's vocabulary (`encode(text) -> ids`; `base_vocab_size` pieces), or None
    label_words  the task's label words for a class-label init (`prompt_tuning.data.label_words`),
                 or None when the task declares none
    task_name    for error messages
    """

    embeddings: Any = None
    vocabulary: Any = None
    label_words: Optional[tuple[str, ...]] = None
    task_name: str = ""


def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    if len(shape) != 2:
        raise PromptError(f"a prompt is [P, H]; got shape {tuple(shape)}")
    length, hidden = int(shape[0]), int(shape[1])
    if length <= 0:
        raise PromptError(
            f"prompt length must be >= 1, got {length}; configure a model without a prompt instead"
        )
    return length, hidden


def _need(context: Optional[PromptContext], what: str, factory: str):
    value = getattr(context, what, None) if context is not None else None
    if value is None:
        raise PromptError(f"{factory} needs `{what}` in its PromptContext (the trainer fills it from the loaded model)")
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
) -> Array:
    """Ids [count] drawn from the first min(population, num_pieces) ids (paper section 3.2).

    Without replacement while count <= the candidates (the paper), with
    replacement beyond. pad/EOS/unk are excluded unless `include_special`
    (the reference code draws from 0..4999 and so includes them). Raises
    PromptError when no id is left to draw.
    """
    top = min(population, num_pieces)
    candidates = jnp.arange(0 if include_special else len(SPECIAL_IDS), top)
    if candidates.shape[0] == 0:
        raise PromptError(f"no vocabulary ids to sample from (num_pieces={num_pieces})")
    replace = count > candidates.shape[0]
    return jax.random.choice(rng, candidates, (count,), replace=replace)


@gin.configurable
def random_uniform(scale: float = 0.5, *, context: Optional[PromptContext] = None) -> PromptInit:
    """U[-scale, scale]; the paper's random init uses scale 0.5. Needs nothing from `context`."""
    del context

    def init(rng, shape, dtype=jnp.float32):
        _check_shape(shape)
        return jax.random.uniform(rng, shape, dtype, minval=-scale, maxval=scale)

    return init


@gin.configurable
def sampled_vocab(
    *, context: Optional[PromptContext] = None, population: int = SAMPLED_VOCAB_POPULATION,
    include_special: bool = False,
) -> PromptInit:
    """Each row is the embedding of a piece among the `population` most frequent.

    Needs `context.embeddings` [V, H]; `context.vocabulary` (if given) bounds
    the draw to the SentencePiece pieces (extra ids excluded).
    """

    def init(rng, shape, dtype=jnp.float32):
        length, hidden = _check_shape(shape)
        table = _need(context, "embeddings", "sampled_vocab")
        if table.shape[1] != hidden:
            raise PromptError(f"embedding width {table.shape[1]} != prompt width {hidden}")
        vocabulary = context.vocabulary
        pieces = _num_pieces(vocabulary) if vocabulary is not None else table.shape[0]
        ids = sample_vocab_ids(rng, length, pieces, population=population, include_special=include_special)
        return jnp.take(jnp.asarray(table), ids, axis=0).astype(dtype)

    return init


def _fill_after(rows: list[np.ndarray], rng, shape, dtype, context: PromptContext, what: str, **fill_kw):
    """Stacks fixed `rows` at the start and fills the rest by sampled vocabulary."""
    length, hidden = _check_shape(shape)
    if len(rows) > length:
        raise PromptError(f"{len(rows)} {what} do not fit in a prompt of length {length}")
    parts = [jnp.asarray(np.stack(rows).astype(np.float32))] if rows else []
    if len(rows) < length:
        fill = sampled_vocab(context=context, **fill_kw)
        parts.append(fill(rng, (length - len(rows), hidden), jnp.float32))
    return jnp.concatenate(parts, axis=0).astype(dtype)


@gin.configurable
def class_labels(
    labels: Optional[Sequence[str]] = None, *, context: Optional[PromptContext] = None, **fill_kw
) -> PromptInit:
    """Class-label init: position i is the mean embedding of the sub-tokens of label word i.

    `labels` (gin: class_labels.labels) default to `context.label_words`, the
    task's label words (its verbalizers, or the paper's task words for ReCoRD
    and WSC). The positions after them are filled like sampled_vocab
    (`fill_kw`: population, include_special). Raises PromptError when there
    are no label words, one encodes to no tokens, or they do not fit in P.
    """

    def init(rng, shape, dtype=jnp.float32):
        table = np.asarray(_need(context, "embeddings", "class_labels"))
        vocab = _need(context, "vocabulary", "class_labels")
        words = labels if labels is not None else context.label_words
        if not words:
            raise PromptError(f"the class-label prompt init needs label words and task {context.task_name!r} "
                              f"declares none; set --gin.class_labels.labels=[...]")
        rows = []
        for word in words:
            ids = list(vocab.encode(word))
            if not ids:
                raise PromptError(f"class label {word!r} encodes to no tokens")
            rows.append(table[ids].mean(axis=0))
        return _fill_after(rows, rng, shape, dtype, context, "class labels", **fill_kw)

    return init


@gin.configurable
def from_string(text: str = gin.REQUIRED, *, context: Optional[PromptContext] = None, **fill_kw) -> PromptInit:
    """The first positions are the token embeddings of `text` (no EOS); the rest as sampled_vocab.

    Needs `context.embeddings` and `context.vocabulary`; PromptError when the
    text's tokens do not fit in P.
    """

    def init(rng, shape, dtype=jnp.float32):
        table = np.asarray(_need(context, "embeddings", "from_string"))
        vocab = _need(context, "vocabulary", "from_string")
        rows = [table[i] for i in vocab.encode(text)]
        return _fill_after(rows, rng, shape, dtype, context, "tokens of the init string", **fill_kw)

    return init


def load_prompt_file(path: str, shape: Sequence[int], dtype=jnp.float32) -> Array:
    """Reads a [P, H] float .npy without pickle; PromptError for a missing, non-float,
    wrongly shaped or non-finite file."""
    length, hidden = _check_shape(shape)
    if not os.path.exists(path):
        raise PromptError(f"prompt file not found: {path}")
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as e:  # object arrays need pickle: refuse them
        raise PromptError(f"prompt file {path} is not a plain numeric .npy ({e})") from None
    except (EOFError, OSError) as e:  # empty, truncated or unreadable
        raise PromptError(f"prompt file {path} cannot be read ({type(e).__name__}: {e})") from None
    if not np.issubdtype(arr.dtype, np.floating):
        raise PromptError(f"prompt file {path} holds {arr.dtype}, expected a float array")
    if arr.shape != (length, hidden):
        raise PromptError(f"prompt file {path} has shape {arr.shape}, expected ({length}, {hidden})")
    if not np.all(np.isfinite(arr)):
        raise PromptError(f"prompt file {path} contains NaN or infinite values")
    return jnp.asarray(arr, dtype)


@gin.configurable
def from_file(path: str = gin.REQUIRED, *, context: Optional[PromptContext] = None) -> PromptInit:
    """Prompt transfer: a saved prompt [P, H] (.npy), cast to the model's dtype."""
    del context

    def init(rng, shape, dtype=jnp.float32):
        del rng
        return load_prompt_file(path, shape, dtype)

    return init


def from_array(values, *, context: Optional[PromptContext] = None) -> PromptInit:
    """Given values: a prompt [P, H] or bank [K, P, H] restored from a checkpoint.

    For a bank, give it to `PromptSpec.module` whole (it replaces the
    per-prompt init). PromptError when the shape asked for differs.
    """
    del context
    values = np.asarray(values)

    def init(rng, shape, dtype=jnp.float32):
        del rng
        if tuple(shape) != values.shape:
            raise PromptError(f"the restored prompt has shape {values.shape}, the model asks for {tuple(shape)}")
        return jnp.asarray(values, dtype)

    return init


@dataclasses.dataclass(frozen=True)
class PromptSpec:
    """A prompt of `length` positions made by `init` (an initializer factory of this module).

    `num_prompts` K > 0 makes a PromptBank [K, P, H] instead of one [P, H] prompt.
    """

    length: int
    init: Callable[..., PromptInit]
    num_prompts: Optional[int] = None

    def initializer(self, context: PromptContext) -> PromptInit:
        """The init function `self.init` makes for this context (gin's bindings apply)."""
        return self.init(context=context)

    def module(self, prompt_init: PromptInit, *, bank_values: bool = False):
        """The `(name=...) -> Prompt | PromptBank` factory a `t5.T5` takes as `prompt_factory`.

        `bank_values`: `prompt_init` makes the whole bank [K, P, H] (from_array)
        instead of one prompt per bank row.
        """
        if self.num_prompts:
            return functools.partial(PromptBank, num_prompts=self.num_prompts, length=self.length,
                                     prompt_init=prompt_init, init_whole_bank=bank_values)
        return functools.partial(Prompt, length=self.length, prompt_init=prompt_init)

    def initialize(self, prompt_init: PromptInit, rng: Array, hidden: int) -> np.ndarray:
        """The prompt's values [P, H] (bank: [K, P, H]) on the host: what the module, initialised
        on its own from `rng`, holds as its `prompt` parameter (the trainer's seed + 1 key)."""
        module = self.module(prompt_init)(name=None)
        dummy = jnp.zeros((1, 1, hidden), jnp.float32)
        return np.asarray(nn.meta.unbox(module.init(rng, dummy)["params"])["prompt"])


@gin.configurable
def make_prompt(length: int = gin.REQUIRED, init: Callable = gin.REQUIRED,
                num_prompts: Optional[int] = None) -> PromptSpec:
    """PROMPT in the gin files: `@make_prompt()` with PROMPT_LENGTH and PROMPT_INIT.

    Raises PromptError when `length` is not a positive int.
    """
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise PromptError(f"PROMPT_LENGTH must be a positive int, got {length!r}")
    return PromptSpec(length, init, num_prompts)


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
    init_whole_bank: bool = False  # prompt_init makes [K, P, H] at once (a restored bank)

    @nn.compact
    def __call__(self, embedded: Array, prompt_index: Optional[Array] = None) -> Array:
        """embedded [B, T, H], prompt_index [B] int in [0, K) -> [B, P, H].

        Raises PromptError for a concrete index outside [0, K); a traced one gives NaN rows instead.
        """
        _check_shape((self.length, embedded.shape[-1]))

        def bank_init(rng, shape):
            if self.init_whole_bank:
                return self.prompt_init(rng, shape)
            keys = jax.random.split(rng, shape[0])
            return jnp.stack([self.prompt_init(k, shape[1:]) for k in keys])

        bank = self.param(
            "prompt", nn.with_logical_partitioning(bank_init, (None, "prompt", "embed")),
            (self.num_prompts, self.length, embedded.shape[-1]),
        )
        if prompt_index is None:
            prompt_index = jnp.zeros((embedded.shape[0],), jnp.int32)
        if not isinstance(prompt_index, jax.core.Tracer):
            idx = np.asarray(prompt_index)
            if idx.size and (idx.min() < 0 or idx.max() >= self.num_prompts):
                raise PromptError(f"prompt_index must lie in [0, {self.num_prompts}), got values in "
                                  f"[{idx.min()}, {idx.max()}]")
        # Under jit the index cannot be checked: an index outside [0, K) gives a NaN prompt (never another
        # prompt, as clamping would), so the outputs show the error.
        return jnp.take(bank, prompt_index, axis=0, mode="fill", fill_value=jnp.nan).astype(embedded.dtype)


def prepend_prompt(prompt: Array, embedded: Array, mask: Array) -> tuple[Array, Array]:
    """prompt [B, P, H], embedded [B, T, H], mask [B, T] -> [B, P+T, H], [B, P+T].

    Prompt positions are always visible (mask 1); the input's padding stays masked.
    """
    prompt_mask = jnp.ones(prompt.shape[:2], mask.dtype)
    return jnp.concatenate([prompt, embedded], axis=1), jnp.concatenate([prompt_mask, mask], axis=1)


def place_prompts(prompt_module: nn.Module, embedded: Array, prompt_slots: Array,
                  prompt_index: Optional[Array] = None) -> Array:
    """Packed rows: each segment's prompt written into its own slots (training/packing.py).

    embedded [B, W, H] (token embeddings; prompt slots hold padding), prompt_slots [B, W] int: j in
    [0, P) puts prompt position j there, -1 keeps the embedding; prompt_index [B, W] int in [0, K)
    picks the PromptBank row per slot (None: row 0; ignored by a single Prompt). -> [B, W, H].
    The module's `prompt` parameter is the unpacked one, so a packed segment sees exactly the
    vectors `prepend_prompt` would put before its example. Raises PromptError for a concrete
    bank index outside [0, K) at a prompt slot; a traced one gives NaN vectors instead.
    """
    hidden = embedded.shape[-1]
    num = getattr(prompt_module, "num_prompts", None)
    if num:  # the whole bank [K, P, H], through the module so that its checks and init apply
        table = prompt_module(jnp.zeros((num, 1, hidden), embedded.dtype), jnp.arange(num))
    else:
        table = prompt_module(jnp.zeros((1, 1, hidden), embedded.dtype))
    k, length = table.shape[0], table.shape[1]
    is_prompt = prompt_slots >= 0
    bank = jnp.zeros_like(prompt_slots) if (prompt_index is None or not num) else prompt_index
    if num and not isinstance(bank, jax.core.Tracer) and not isinstance(prompt_slots, jax.core.Tracer):
        used = np.asarray(bank)[np.asarray(prompt_slots) >= 0]
        if used.size and (used.min() < 0 or used.max() >= k):
            raise PromptError(f"prompt_index must lie in [0, {k}), got values in [{used.min()}, {used.max()}]")
    valid = jnp.logical_and(bank >= 0, bank < k)
    flat = jnp.where(jnp.logical_and(is_prompt, valid), bank * length + prompt_slots, 0)
    vectors = jnp.take(table.reshape(k * length, hidden), flat, axis=0).astype(embedded.dtype)
    vectors = jnp.where(valid[..., None], vectors, jnp.nan)  # never another prompt's vectors
    return jnp.where(is_prompt[..., None], vectors, embedded)
