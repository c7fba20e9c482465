"""One entry point to load a frozen T5 from any supported checkpoint format.

    params, step = load_params(path, config)
    model = T5(config, prompt_factory=...)
    variables = {'params': {**params, 'encoder': {**params['encoder'], 'prompt': prompt_params}}}

Formats, detected from what is at `path`:
  't5x'          legacy T5X: a `checkpoint_<step>/` dir, its `checkpoint` msgpack file,
                 or a model dir with several `checkpoint_<step>/` (the latest is taken);
  'huggingface'  transformers T5: a dir with model.safetensors[.index.json] + config.json,
                 the index file, or a single .safetensors file with HF names;
  'native'       this project's params.safetensors + config.json (see native.py),
                 or a single .safetensors file with T5X ('a/b/c') names.

Every array is checked against the model's abstract parameter tree before any
large array is read, so a wrong config fails in milliseconds with a one-line
`CheckpointError` that names the key and both shapes. The result is a nested
dict of float32 numpy arrays (the contents of `variables['params']`, unboxed,
without a prompt) and the checkpoint's training step (None where the format
does not record one; T5X's Adafactor continues counting from it).
"""
from __future__ import annotations

import functools
import os
import re
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from flax.linen import meta

from prompt_tuning.checkpoints import huggingface, native, t5x
from prompt_tuning.checkpoints.errors import CheckpointError
from prompt_tuning.models import t5

__all__ = ["CheckpointError", "detect_format", "load_params", "open_checkpoint", "config_from_checkpoint",
           "abstract_param_shapes"]

T5X, HUGGINGFACE, NATIVE = "t5x", "huggingface", "native"


@functools.lru_cache(maxsize=16)
def abstract_param_shapes(config: t5.T5Config) -> dict[str, tuple[int, ...]]:
    """{'encoder/layers_0/attention/query/kernel': (H, N*D), ...} of `T5(config)` without a prompt."""
    tokens = jnp.ones((1, 1), jnp.int32)
    variables = jax.eval_shape(
        lambda: t5.T5(config).init(jax.random.PRNGKey(0), tokens, tokens, tokens)
    )
    params = meta.unbox(variables["params"])
    return {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(params, sep="/").items()}


class _NativeCheckpoint:
    """native.py's safetensors file through the reader interface (names are already T5X's)."""

    def __init__(self, file: str):
        self.reader = huggingface.SafetensorsReader([file])
        self.names, self.shape = self.reader.names, self.reader.shape

    def read(self, name: str) -> np.ndarray:
        return np.asarray(self.reader.read(name), np.float32)

    def read_slice(self, name: str, index: tuple) -> np.ndarray:
        return self.reader.read_slice(name, index)


def detect_format(path: str) -> str:
    """'t5x', 'huggingface' or 'native'; CheckpointError if `path` is missing or none of them."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    if t5x.is_t5x_checkpoint(path):
        return T5X
    if native.is_native_checkpoint(path):
        return NATIVE
    if huggingface.is_hf_checkpoint(path):
        return HUGGINGFACE
    if os.path.isfile(path) and path.endswith(".safetensors"):
        return NATIVE  # a bare safetensors file without HF names: T5X names, checked later
    if os.path.isdir(path) and any(f.endswith(".bin") for f in os.listdir(path)):
        raise CheckpointError(
            f"{path} holds PyTorch .bin weights, which are not read (pickle); convert them to "
            f"model.safetensors (e.g. transformers' save_pretrained(safe_serialization=True))"
        )
    raise CheckpointError(
        f"unknown checkpoint format at {path}: expected a T5X checkpoint_<step> dir (with a "
        f"'checkpoint' file), a Hugging Face dir (model.safetensors + config.json), or params.safetensors"
    )


def _open(path: str, fmt: str):
    if fmt == T5X:
        return t5x.T5XCheckpoint(path)
    if fmt == HUGGINGFACE:
        return huggingface.HFCheckpoint(path)
    file = os.path.join(path, native.PARAMS_FILE) if os.path.isdir(path) else path
    return _NativeCheckpoint(file)


def _few(names, n: int = 3) -> str:
    names = sorted(names)
    more = f", ... ({len(names)} in all)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def _check(ckpt, fmt: str, path: str, expected: dict[str, tuple[int, ...]]) -> None:
    names = set(ckpt.names())
    problems = []
    missing, unexpected = set(expected) - names, names - set(expected)
    if missing:
        problems.append(f"missing {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected {_few(unexpected)}")
    if fmt == HUGGINGFACE and ckpt.unmapped:
        problems.append(f"unknown Hugging Face keys {_few(ckpt.unmapped)}")
    if problems:
        hint = " (a prompt-tuning checkpoint? its prompt is read with t5x.read_variable)" if any(
            "prompt" in n for n in unexpected) else ""
        raise CheckpointError(
            f"{fmt} checkpoint {path} does not match the model config: {'; '.join(problems)}{hint}"
        )
    wrong = [n for n in sorted(expected) if tuple(ckpt.shape(n)) != expected[n]]
    if wrong:
        name = wrong[0]
        source = f" (from {ckpt.hf_name(name)})" if fmt == HUGGINGFACE else ""
        more = f" (and {len(wrong) - 1} more mismatched)" if len(wrong) > 1 else ""
        raise CheckpointError(
            f"shape mismatch for {name}{source} in {path}: model expects {expected[name]}, "
            f"checkpoint has {tuple(ckpt.shape(name))}{more}"
        )


def open_checkpoint(path: str, config: t5.T5Config):
    """(reader, format) of the checkpoint at `path`, validated against `config` (shapes only, no data read).

    The reader has `names()`, `shape(name)`, `read(name)` (float32) and
    `read_slice(name, index)` (stored dtype), with T5X names; `.step` for T5X.
    """
    path = os.fspath(path)
    fmt = detect_format(path)
    ckpt = _open(path, fmt)
    expected = dict(abstract_param_shapes(config))
    if fmt == HUGGINGFACE and config.logits_via_embedding:
        # transformers may write lm_head.weight even when tied; it is the embedding again.
        ckpt.drop("decoder/logits_dense/kernel")
    _check(ckpt, fmt, path, expected)
    return ckpt, fmt


def load_params(path: str, config: t5.T5Config) -> tuple[dict, Optional[int]]:
    """(nested dict of float32 arrays with T5X names, step or None), validated against `config`.

    Every array passes through host memory whole; `sharded.load_sharded` reads
    slice by slice straight into sharded jax.Arrays instead.
    """
    path = os.fspath(path)
    ckpt, fmt = open_checkpoint(path, config)
    expected = dict(abstract_param_shapes(config))
    flat = {}
    for name in expected:
        arr = ckpt.read(name)
        if not np.issubdtype(arr.dtype, np.floating):
            raise CheckpointError(f"{name} in {path} has non-float dtype {arr.dtype}")
        flat[tuple(name.split("/"))] = np.asarray(arr, np.float32)
    step = ckpt.step if fmt == T5X else None
    return traverse_util.unflatten_dict(flat), step


def _layer_count(names, stack: str) -> int:
    pattern = re.compile(rf"{stack}/layers_(\d+)/")
    found = {int(m.group(1)) for n in names for m in [pattern.match(n)] if m}
    return max(found) + 1 if found else 0


def _infer_t5x_config(ckpt, overrides: dict) -> t5.T5Config:
    names = set(ckpt.names())

    def shape(name):
        if name not in names:
            raise CheckpointError(f"cannot infer the config: {name} not in the checkpoint")
        return ckpt.shape(name)

    vocab, emb = shape("token_embedder/embedding")
    # rel_embedding is [heads, buckets], so the head count is in the checkpoint after all.
    heads, buckets = shape("encoder/relpos_bias/rel_embedding")
    heads = overrides.pop("num_heads", heads)
    inner = shape("encoder/layers_0/attention/query/kernel")[1]
    if inner % heads:
        raise CheckpointError(f"attention width {inner} is not a multiple of num_heads={heads}")
    gated = "encoder/layers_0/mlp/wi_0/kernel" in names
    mlp = shape("encoder/layers_0/mlp/wi_0/kernel" if gated else "encoder/layers_0/mlp/wi/kernel")[1]
    fields = dict(
        vocab_size=vocab, emb_dim=emb, num_heads=heads, head_dim=inner // heads, mlp_dim=mlp,
        num_encoder_layers=_layer_count(names, "encoder"), num_decoder_layers=_layer_count(names, "decoder"),
        # The activation is not stored: T5 1.1 is gated-GELU, T5 1.0 plain ReLU.
        mlp_activations=("gelu", "linear") if gated else ("relu",),
        relative_attention_num_buckets=buckets,
        logits_via_embedding="decoder/logits_dense/kernel" not in names,
    )
    fields.update(overrides)
    return t5.T5Config(**fields)


def _native_config(path: str) -> t5.T5Config:
    base = path if os.path.isdir(path) else os.path.dirname(path)
    try:
        return native.load_config(base)
    except (OSError, ValueError, TypeError) as e:
        raise CheckpointError(f"cannot read {native.CONFIG_FILE} of native checkpoint {path}: {e}") from None


def config_from_checkpoint(path: str, **overrides) -> t5.T5Config:
    """The T5Config a checkpoint was made for; `overrides` set T5Config fields.

    Hugging Face and native checkpoints carry a config.json. For T5X it is
    inferred from array shapes (layers, emb, mlp, vocab, buckets, heads from
    the [heads, buckets] relative-position table); what shapes cannot tell is
    T5 1.1's default unless overridden: relative_attention_max_distance=128,
    gated-GELU when wi_0/wi_1 exist (ReLU for a single wi), dropout_rate 0.
    The result is checked against the checkpoint's shapes.
    """
    path = os.fspath(path)
    fmt = detect_format(path)
    ckpt = _open(path, fmt)
    if fmt == T5X:
        config = _infer_t5x_config(ckpt, dict(overrides))
    else:
        config = huggingface.read_config(path) if fmt == HUGGINGFACE else _native_config(path)
        config = config.replace(**overrides)
    expected = dict(abstract_param_shapes(config))
    if fmt == HUGGINGFACE and config.logits_via_embedding:
        ckpt.drop("decoder/logits_dense/kernel")
    _check(ckpt, fmt, path, expected)
    return config
