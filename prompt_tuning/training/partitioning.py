"""The device mesh, logical-axis rules, and placing parameters and batches on it.

The mesh has two axes, T5X's names: 'data' (batch rows are split over it) and
'model' (the large parameter dims are split over it). Parameters carry logical
axis names from the model (`vocab`, `embed`, `joined_kv`, `mlp`, `heads`,
`relpos_buckets`, `prompt`); `logical_axis_rules` maps each to a mesh axis or
to None (replicated), T5X's standard rules by default.

A dim is only split when its size divides the mesh axis size; otherwise it is
replicated (a 2-head 'tiny' model on a 4-way model axis still runs). The
batch is always split over 'data': BATCH_SIZE must divide by the data-axis size.

Multi-host: `initialize_distributed` wraps `jax.distributed.initialize`. Each
process reads only the rows of the global batch that its devices hold
(`process_rows`; the pipeline is deterministic) and `global_batch(..., rows=)`
hands each device its slice, so the trajectory is the same for any number of
processes and devices.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from prompt_tuning.configurable import gin

DATA, MODEL = "data", "model"

# T5X's `standard_logical_axis_rules()` (1-D model parallelism), plus the prompt.
STANDARD_RULES: tuple[tuple[str, Optional[str]], ...] = (
    ("batch", DATA),
    ("vocab", MODEL),
    ("embed", None),
    ("mlp", MODEL),
    ("heads", MODEL),
    ("kv", None),
    ("joined_kv", MODEL),
    ("relpos_buckets", None),
    ("abspos_buckets", None),
    ("length", None),
    ("prompt", None),
)


class PartitioningError(ValueError):
    """A mesh or batch that does not fit the available devices."""


@gin.configurable
def make_mesh(num_partitions: int = 1, devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
    """A (data, model) mesh over all devices: model axis `num_partitions`, data the rest."""
    devices = list(devices if devices is not None else jax.devices())
    if num_partitions < 1 or len(devices) % num_partitions:
        raise PartitioningError(
            f"num_partitions={num_partitions} does not divide the {len(devices)} available devices"
        )
    grid = np.asarray(devices, dtype=object).reshape(len(devices) // num_partitions, num_partitions)
    return Mesh(grid, (DATA, MODEL))


@gin.configurable
def logical_axis_rules(extra_rules: Sequence[tuple[str, Optional[str]]] = ()) -> tuple:
    """`extra_rules` first (they win), then T5X's standard rules."""
    return tuple(tuple(r) for r in extra_rules) + STANDARD_RULES


def _spec(names: Sequence[Optional[str]], shape: Sequence[int], mesh: Mesh, rules) -> PartitionSpec:
    used, out = set(), []
    for name, size in zip(names, shape):
        axis = None
        for logical, mesh_axis in rules:
            if logical != name:
                continue
            if mesh_axis is None:
                break
            if mesh_axis not in used and size % mesh.shape[mesh_axis] == 0:
                axis = mesh_axis
                break
        if axis is not None:
            used.add(axis)
        out.append(axis)
    return PartitionSpec(*out)


def param_shardings(boxed_params, mesh: Mesh, rules=None):
    """A NamedSharding per leaf of a boxed (nn.LogicallyPartitioned) tree, abstract or concrete.

    Unboxed leaves (no logical names) are replicated.
    """
    rules = logical_axis_rules() if rules is None else rules

    def one(leaf):
        if isinstance(leaf, nn.LogicallyPartitioned):
            return NamedSharding(mesh, _spec(leaf.names, leaf.value.shape, mesh, rules))
        return NamedSharding(mesh, PartitionSpec())

    return jax.tree.map(one, boxed_params, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))


def optimizer_state_shardings(tx, params, param_shardings, mesh: Mesh):
    """Shardings for `tx.init(params)`: a parameter's sharding for its same-shaped statistics
    (e.g. Adafactor's unfactored v), replicated for the rest (counters, factored row/column
    vectors, which are small)."""
    import optax

    rep = replicated(mesh)
    abstract = jax.eval_shape(tx.init, params)
    return optax.tree_map_params(
        tx, lambda leaf, sharding, p: sharding if tuple(leaf.shape) == tuple(np.shape(p)) else rep,
        abstract, param_shardings, params, transform_non_params=lambda _: rep,
    )


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding of an array held whole on every device of `mesh`."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Rows of every [B, ...] batch array over the 'data' axis."""
    return NamedSharding(mesh, PartitionSpec(DATA))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """PartitioningError unless `batch_size` divides over the mesh's data axis."""
    if batch_size % mesh.shape[DATA]:
        raise PartitioningError(
            f"BATCH_SIZE={batch_size} is not divisible by the mesh's data axis ({mesh.shape[DATA]} "
            f"= devices / num_partitions)"
        )


def process_rows(batch_size: int, mesh: Mesh) -> slice:
    """The rows [start, stop) of a [B, ...] global batch that this process's devices hold.

    With one process this is all of them. Raises PartitioningError when the
    rows are not one contiguous range (a mesh whose data axis interleaves
    processes), which per-host input cannot serve.
    """
    check_batch_size(batch_size, mesh)
    index_map = batch_sharding(mesh).addressable_devices_indices_map((batch_size,))
    return contiguous_rows([idx[0] for idx in index_map.values()], batch_size)


def contiguous_rows(slices: Sequence[slice], batch_size: int) -> slice:
    """The union of row slices as one slice; PartitioningError if it has gaps."""
    covered = sorted({r for s in slices for r in range(*s.indices(batch_size))})
    if not covered or covered != list(range(covered[0], covered[-1] + 1)):
        raise PartitioningError(
            f"this process's devices hold rows {covered[:8]}{'...' if len(covered) > 8 else ''} of the batch, "
            f"not one contiguous range; order the mesh's devices by process")
    return slice(covered[0], covered[-1] + 1)


def global_batch(batch: dict[str, np.ndarray], mesh: Mesh, rows: Optional[slice] = None,
                 batch_size: Optional[int] = None) -> dict[str, jax.Array]:
    """Host-side batch -> global [B, ...] arrays split over 'data'.

    Without `rows`, `batch` is the whole global batch (the same on every
    process). With `rows` (from `process_rows(batch_size, mesh)`), `batch`
    holds only those rows of a global batch of `batch_size` rows, and each
    local device takes its slice of them.
    """
    sharding = batch_sharding(mesh)
    if rows is None:
        return {
            k: jax.make_array_from_callback(v.shape, sharding, lambda idx, v=v: v[idx])
            for k, v in batch.items()
        }
    if batch_size is None:
        raise ValueError("global_batch: `rows` needs `batch_size` (the global batch size)")

    def local(v, idx):
        r = slice(*idx[0].indices(batch_size))
        if r.start < rows.start or r.stop > rows.stop:
            raise PartitioningError(f"a local device needs rows {r.start}:{r.stop}, this process read "
                                    f"{rows.start}:{rows.stop}")
        return v[r.start - rows.start:r.stop - rows.start][(slice(None),) + tuple(idx[1:])]

    return {
        k: jax.make_array_from_callback((batch_size,) + v.shape[1:], sharding, lambda idx, v=v: local(v, idx))
        for k, v in batch.items()
    }


def put(tree, shardings):
    """Host arrays (identical on every process) -> global jax.Arrays with `shardings`.

    A leaf that is already a jax.Array with that sharding (e.g. from `checkpoints.sharded`) is kept.
    """
    def one(x, s):
        if isinstance(x, jax.Array) and x.sharding == s:
            return x
        return jax.make_array_from_callback(np.shape(x), s, lambda idx, x=x: np.asarray(x)[idx])

    return jax.tree.map(one, tree, shardings)


def fetch(tree):
    """Global arrays -> host numpy on every process (gathers when split across processes)."""
    from jax.experimental import multihost_utils

    def one(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return np.asarray(x)
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(one, tree)


def initialize_distributed(coordinator_address: Optional[str] = None, num_processes: Optional[int] = None,
                           process_id: Optional[int] = None) -> None:
    """`jax.distributed.initialize` when several processes are asked for (flags or JAX_* env vars).

    On CPU the cross-process collectives need gloo; it is selected here.
    """
    coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and os.environ.get("JAX_NUM_PROCESSES"):
        num_processes = int(os.environ["JAX_NUM_PROCESSES"])
    if process_id is None and os.environ.get("JAX_PROCESS_ID"):
        process_id = int(os.environ["JAX_PROCESS_ID"])
    if not coordinator_address and not num_processes:
        return
    try:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except (AttributeError, ValueError):  # option absent in this jax build
        pass
    jax.distributed.initialize(coordinator_address, num_processes=num_processes, process_id=process_id)
