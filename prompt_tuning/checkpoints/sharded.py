"""Sharded, streamed loading: a checkpoint read slice by slice straight into sharded jax.Arrays.

    shardings = nn.meta.unbox(partitioning.param_shardings(abstract_params, mesh))
    params, step = load_sharded(path, config, shardings, dtype=frozen_dtype)

`loading.load_params` materialises every array whole on the host in float32
(about 44 GB for T5 1.1 XXL) before it is placed. Here, for each parameter,
each process asks its own devices' shardings which slice each device holds
(`Sharding.addressable_devices_indices_map`), reads each distinct slice once
from the checkpoint (TensorStore reads only the zarr chunks the slice touches;
safetensors copies only the slice out of its memory map), casts it, copies it
to the devices that hold it, and drops it before the next slice. A process
therefore never reads a slice that none of its devices hold, and the host
memory in flight is one slice (and its cast copy): the peak stays within a
small multiple of the largest single shard, whatever the model size.

Formats and validation are `loading`'s (T5X TensorStore zarr, Hugging Face
safetensors, this project's native safetensors): a wrong config fails on
shapes alone, before any array is read. The arrays equal `load_params`'s,
cast to `dtype`.
"""
from __future__ import annotations

import os
from typing import Callable, Mapping, Optional, Union

import jax
import numpy as np
from flax import traverse_util

from prompt_tuning.checkpoints import loading
from prompt_tuning.checkpoints.errors import CheckpointError
from prompt_tuning.models import t5

DTypeLike = Union[str, np.dtype, type]


def _index_key(index: tuple, shape: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """A hashable, normalised form of a device's index (tuple of slices, step 1)."""
    return tuple(s.indices(n)[:2] for s, n in zip(index, shape))


def shard_slices(sharding: jax.sharding.Sharding, shape: tuple[int, ...]) -> dict:
    """{((start, stop), ...) per dim: [local devices holding that slice]} for this process."""
    groups: dict = {}
    for device, index in sharding.addressable_devices_indices_map(tuple(shape)).items():
        groups.setdefault(_index_key(index, shape), []).append(device)
    return groups


def largest_shard_bytes(shapes: Mapping[str, tuple[int, ...]], shardings, itemsize: int = 4) -> int:
    """The bytes of the largest single slice any local device holds (the loader's unit of host memory)."""
    best = 0
    for name, shape in shapes.items():
        for key in shard_slices(_sharding_of(shardings, name), shape):
            best = max(best, int(np.prod([b - a for a, b in key], dtype=np.int64)) * itemsize)
    return best


def _sharding_of(shardings, name: str):
    if isinstance(shardings, jax.sharding.Sharding):
        return shardings
    try:
        return shardings[name]
    except KeyError:
        raise CheckpointError(f"no sharding given for parameter {name}") from None


def _place(ckpt, name: str, shape: tuple[int, ...], sharding, dtype: np.dtype) -> jax.Array:
    arrays = []
    for key, devices in shard_slices(sharding, shape).items():
        host = ckpt.read_slice(name, tuple(slice(a, b) for a, b in key))
        if not np.issubdtype(host.dtype, np.floating):
            raise CheckpointError(f"{name} has non-float dtype {host.dtype}")
        host = np.ascontiguousarray(host, dtype=dtype)
        arrays.extend(jax.device_put(host, d) for d in devices)
        del host  # one slice in flight at a time (an XLA:CPU device may keep it as its buffer)
    return jax.make_array_from_single_device_arrays(tuple(shape), sharding, arrays)


def load_sharded(path: str, config: t5.T5Config, shardings,
                 dtype: Union[DTypeLike, Callable[[str], DTypeLike]] = np.float32) -> tuple[dict, Optional[int]]:
    """(nested dict of jax.Arrays with T5X names and the given shardings, step or None).

    `shardings`: a nested dict of jax.sharding.Sharding matching the model's
    parameter tree without a prompt (e.g. unboxed `partitioning.param_shardings`),
    or one Sharding for every array. `dtype`: the arrays' dtype, or a function
    of the 'a/b/c' name giving it (e.g. bfloat16 for frozen weights, float32
    for trainable ones). Raises CheckpointError (one line) for a missing or
    mismatched checkpoint, a non-float array, or a parameter without sharding.
    """
    path = os.fspath(path)
    ckpt, fmt = loading.open_checkpoint(path, config)
    flat_shardings = shardings if isinstance(shardings, jax.sharding.Sharding) else \
        traverse_util.flatten_dict(dict(shardings), sep="/")
    out = {}
    for name, shape in loading.abstract_param_shapes(config).items():
        target = np.dtype(dtype(name) if callable(dtype) and not isinstance(dtype, type) else dtype)
        try:
            out[tuple(name.split("/"))] = _place(ckpt, name, shape, _sharding_of(flat_shardings, name), target)
        except CheckpointError as e:
            raise CheckpointError(f"{e} (in {path})") from None
    step = ckpt.step if fmt == loading.T5X else None
    return traverse_util.unflatten_dict(out), step
