"""Reads legacy T5X checkpoints (the format of the released T5 1.1 / LM-adapted models).

A checkpoint is a directory `checkpoint_<step>/` holding

  checkpoint                      msgpack: {'version': 3, 'optimizer': {'target': {...}, 'state': {...}}}
  target.encoder.layers_0.attention.key.kernel/   TensorStore zarr v2 arrays (gzip), one per large array
  ...

Small arrays are stored inline in the msgpack file as flax.serialization
extension types; large ones appear there as a TensorStore spec dict whose
kvstore path names the zarr directory next to the file. Only
`optimizer.target` (the parameters) and `optimizer.state.step` are read: the
Adafactor moments of a 1.1M-step checkpoint are of no use for prompt tuning
and are never decoded (they stay as raw msgpack bytes).

Parameter names are T5X's, which are this project's: the result plugs into
`T5(config)` directly. Arrays come back as float32 numpy arrays.
"""
from __future__ import annotations

import glob
import os
import re
from typing import Any, Optional

import ml_dtypes
import msgpack
import numpy as np
from flax import traverse_util

from prompt_tuning.checkpoints.errors import CheckpointError

CHECKPOINT_FILE = "checkpoint"

# flax.serialization's msgpack extension codes.
_EXT_NDARRAY = 1
_EXT_COMPLEX = 2
_EXT_NPSCALAR = 3
# flax splits arrays above 2**30 bytes into flat chunks under this marker key.
_CHUNKED = "__msgpack_chunked_array__"


def find_checkpoint_file(path: str) -> Optional[str]:
    """The msgpack file of a T5X checkpoint at `path`, or None if `path` is not one.

    `path` may be the `checkpoint` file, a `checkpoint_<step>` directory, or a
    model directory holding several `checkpoint_<step>` directories (the
    highest step is taken, as T5X's `latest_checkpoint` does).
    """
    path = os.fspath(path)
    if os.path.isfile(path):
        return path if os.path.basename(path) == CHECKPOINT_FILE else None
    if not os.path.isdir(path):
        return None
    direct = os.path.join(path, CHECKPOINT_FILE)
    if os.path.isfile(direct):
        return direct
    steps = []
    for sub in glob.glob(os.path.join(path, "checkpoint_*", CHECKPOINT_FILE)):
        m = re.fullmatch(r"checkpoint_(\d+)", os.path.basename(os.path.dirname(sub)))
        if m:
            steps.append((int(m.group(1)), sub))
    return max(steps)[1] if steps else None


def is_t5x_checkpoint(path: str) -> bool:
    """True when `path` is (or holds) a legacy T5X checkpoint directory."""
    return find_checkpoint_file(path) is not None


def _dtype(name) -> np.dtype:
    name = name.decode() if isinstance(name, bytes) else name
    if name == "bfloat16":  # numpy has no bfloat16; jax's comes from ml_dtypes
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def _decode_ext(ext: msgpack.ExtType, where: str):
    if ext.code in (_EXT_NDARRAY, _EXT_NPSCALAR):
        shape, dtype, buf = msgpack.unpackb(ext.data, raw=True)
        arr = np.frombuffer(buf, dtype=_dtype(dtype)).reshape(shape)
        return arr[()] if ext.code == _EXT_NPSCALAR else arr
    if ext.code == _EXT_COMPLEX:
        re_, im = msgpack.unpackb(ext.data)
        return complex(re_, im)
    raise CheckpointError(f"unknown msgpack extension type {ext.code} at {where!r} in the T5X checkpoint")


def _is_ts_spec(node: Any) -> bool:
    return isinstance(node, dict) and "driver" in node and "kvstore" in node


def _is_chunked(node: Any) -> bool:
    return isinstance(node, dict) and _CHUNKED in node


class T5XCheckpoint:
    """A parsed `checkpoint` file; arrays are decoded only on request."""

    def __init__(self, path: str):
        file = find_checkpoint_file(path)
        if file is None:
            raise CheckpointError(f"not a T5X checkpoint (no '{CHECKPOINT_FILE}' msgpack file): {path}")
        self.file = file
        self.dir = os.path.dirname(file)
        try:
            with open(file, "rb") as f:
                # Extension types stay as raw ExtType objects: decoding the
                # optimizer state of a large model would waste time and memory.
                state = msgpack.unpackb(f.read(), raw=False, strict_map_key=False)
        except (OSError, ValueError, msgpack.UnpackException) as e:
            raise CheckpointError(f"cannot read T5X checkpoint file {file}: {e}") from None
        if not isinstance(state, dict):
            raise CheckpointError(f"T5X checkpoint file {file} does not hold a dict (not a T5X checkpoint?)")
        opt = state.get("optimizer", state)
        if not isinstance(opt, dict) or not isinstance(opt.get("target"), dict):
            raise CheckpointError(
                f"T5X checkpoint file {file} has no 'optimizer.target' parameters "
                f"(top-level keys: {sorted(state)}); only the legacy msgpack format is supported"
            )
        self.version = state.get("version")
        # Flat {('encoder', 'layers_0', ...): leaf}; a chunked array or a TensorStore
        # spec is itself a dict, so flattening stops at those.
        self.leaves = traverse_util.flatten_dict(
            opt["target"], is_leaf=lambda _, v: _is_ts_spec(v) or _is_chunked(v)
        )
        step = (opt.get("state") or {}).get("step")
        self.step = None if step is None else int(np.asarray(self._decode(step, "state/step")))

    def names(self) -> list[str]:
        """Every parameter name ('encoder/layers_0/attention/query/kernel', ...)."""
        return ["/".join(k) for k in self.leaves]

    def _leaf(self, name: str):
        key = tuple(name.split("/"))
        if key not in self.leaves:
            raise CheckpointError(f"variable {name!r} not in T5X checkpoint {self.dir}")
        return self.leaves[key]

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape without reading the array (TensorStore metadata, or the inline header)."""
        leaf = self._leaf(name)
        if _is_ts_spec(leaf):
            shape = (leaf.get("metadata") or {}).get("shape")
            if shape is None:
                shape = self._open(leaf, name).shape
            return tuple(int(s) for s in shape)
        return tuple(np.shape(self._decode(leaf, name)))

    def read(self, name: str) -> np.ndarray:
        """One variable as float32."""
        return np.asarray(self._decode(self._leaf(name), name), np.float32)

    def read_slice(self, name: str, index: tuple) -> np.ndarray:
        """`array[index]` (a tuple of slices) in the stored dtype; a TensorStore array reads only
        the chunks that the slice touches (inline msgpack arrays are small and decoded whole)."""
        leaf = self._leaf(name)
        if _is_ts_spec(leaf):
            try:
                return np.asarray(self._open(leaf, name)[index].read().result())
            except CheckpointError:
                raise
            except Exception as e:  # tensorstore raises plain ValueError/RuntimeError
                raise CheckpointError(f"cannot read {name!r} from T5X checkpoint {self.dir}: {e}") from None
        return np.asarray(self._decode(leaf, name))[index]

    def _decode(self, leaf, name: str):
        if isinstance(leaf, msgpack.ExtType):
            return _decode_ext(leaf, name)
        if _is_chunked(leaf):
            shape = tuple(leaf["shape"][str(i)] for i in range(len(leaf["shape"])))
            chunks = [self._decode(leaf["chunks"][str(i)], name) for i in range(len(leaf["chunks"]))]
            return np.concatenate(chunks).reshape(shape)
        if _is_ts_spec(leaf):
            ts_array = self._open(leaf, name)
            try:
                return ts_array.read().result()
            except Exception as e:  # tensorstore raises plain ValueError/RuntimeError
                raise CheckpointError(f"cannot read {name!r} from T5X checkpoint {self.dir}: {e}") from None
        if isinstance(leaf, (int, float, np.ndarray, np.generic)):
            return np.asarray(leaf)
        raise CheckpointError(f"unexpected entry of type {type(leaf).__name__} at {name!r} in T5X checkpoint {self.dir}")

    def _zarr_dir(self, spec: dict) -> str:
        kvstore = spec["kvstore"]
        loc = kvstore if isinstance(kvstore, str) else kvstore.get("path", "")  # str: a URL, e.g. gs://b/x
        if spec.get("path"):  # older specs split the directory and the array name
            loc = os.path.join(loc, spec["path"])
        loc = re.sub(r"^file://", "", loc.rstrip("/"))
        # T5X writes the path relative to the checkpoint directory. An absolute,
        # gs:// or bucket-relative one (a copied checkpoint) is looked up by its
        # last component next to the msgpack file.
        first = loc if os.path.isabs(loc) else os.path.join(self.dir, loc)
        if "://" not in loc and os.path.isdir(first):
            return first
        return os.path.join(self.dir, os.path.basename(loc))

    def _open(self, spec: dict, name: str):
        import tensorstore as ts  # deferred: a slow import not needed for HF / native checkpoints

        zarr_dir = self._zarr_dir(spec)
        if not os.path.isdir(zarr_dir):
            raise CheckpointError(f"T5X checkpoint {self.dir} refers to missing array directory {zarr_dir} for {name!r}")
        local = {"driver": spec["driver"], "kvstore": {"driver": "file", "path": zarr_dir + "/"}}
        try:
            return ts.open(local, open=True, read=True).result()
        except Exception as e:
            raise CheckpointError(f"cannot open {name!r} ({zarr_dir}) in T5X checkpoint {self.dir}: {e}") from None


def read_checkpoint(path: str) -> tuple[dict, Optional[int]]:
    """All parameters (nested dict of float32 arrays, T5X names) and the step (None if absent)."""
    ckpt = T5XCheckpoint(path)
    flat = {tuple(n.split("/")): ckpt.read(n) for n in ckpt.names()}
    return traverse_util.unflatten_dict(flat), ckpt.step


def read_variable(path: str, name: str) -> np.ndarray:
    """One parameter, e.g. 'token_embedder/embedding', without reading the others."""
    return T5XCheckpoint(path).read(name)


def read_shapes(path: str) -> dict[str, tuple[int, ...]]:
    """{'encoder/layers_0/attention/query/kernel': (H, N*D), ...} read from metadata only."""
    ckpt = T5XCheckpoint(path)
    return {n: ckpt.shape(n) for n in ckpt.names()}

