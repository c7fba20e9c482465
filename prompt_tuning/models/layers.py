"""Building blocks of T5 1.1, named as in T5X's `examples/t5/layers.py`.

Parameter names and storage shapes follow T5X checkpoints exactly, so a T5X
checkpoint maps onto these modules key for key:
  - attention kernels are stored 2-D: query/key/value [H, heads*head_dim],
    out [heads*head_dim, H] (T5X's DenseGeneral flattens its kernels);
  - layer norms have only `scale` (RMS norm, no bias, no mean subtraction);
  - the relative position table is `rel_embedding` [heads, buckets].

Every parameter is created with logical axis names (T5X's names: `vocab`,
`embed`, `joined_kv`, `mlp`, `heads`, `relpos_buckets`) so that one rule set
in `training/partitioning.py` shards them on a (data, model) mesh.

Shape letters: B batch, T (query) length, S (key/memory) length, H hidden
size (emb_dim), V vocabulary, N heads, D head_dim, F mlp_dim.
"""
from __future__ import annotations

import functools
from typing import Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Initializer = Callable[..., Array]

# T5X's initializers: fan-in scaled normals for dense kernels, unit normal for
# the embedding. The 1/sqrt(D) attention scaling is folded into the query
# initializer, which is why T5 attention does not divide the logits.
default_kernel_init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
embedding_init = nn.initializers.normal(stddev=1.0)
relpos_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")


def _param(module: nn.Module, name: str, init: Initializer, shape, axes, dtype=jnp.float32):
    return module.param(name, nn.with_logical_partitioning(init, axes), shape, dtype)


class LayerNorm(nn.Module):
    """T5's RMS norm: x / sqrt(mean(x^2) + eps) * scale, computed in float32."""

    epsilon: float = 1e-6
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x = jnp.asarray(x, jnp.float32)
        scale = _param(self, "scale", nn.initializers.ones, (x.shape[-1],), ("embed",))
        var = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
        y = x * jax.lax.rsqrt(var + self.epsilon)
        return jnp.asarray(y * scale, self.dtype)


class Dense(nn.Module):
    """A bias-free dense layer with a 2-D kernel [in, out] and logical axes."""

    features: int
    axes: tuple[str, str]
    kernel_init: Initializer = default_kernel_init
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kernel = _param(self, "kernel", self.kernel_init, (x.shape[-1], self.features), self.axes)
        return jnp.dot(x.astype(self.dtype), kernel.astype(self.dtype))


class Embed(nn.Module):
    """Token embedding table `embedding` [V, H]; `attend` gives tied logits."""

    num_embeddings: int
    features: int
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        """Declares `embedding` [V, H] (T5X's init, partitioned ('vocab', 'embed'))."""
        self.embedding = _param(
            self, "embedding", embedding_init, (self.num_embeddings, self.features), ("vocab", "embed")
        )

    def __call__(self, ids: Array) -> Array:
        """ids [B, T] int -> [B, T, H]."""
        # A gather, not a one-hot matmul: the one-hot costs B*T*V*H FLOPs.
        return jnp.take(self.embedding, ids, axis=0).astype(self.dtype)

    def attend(self, x: Array) -> Array:
        """x [B, T, H] -> [B, T, V] logits against the (tied) embedding."""
        return jnp.dot(x.astype(self.dtype), self.embedding.T.astype(self.dtype))


class MlpBlock(nn.Module):
    """Gated-GELU MLP of T5 1.1: wo(gelu(x wi_0) * (x wi_1))."""

    mlp_dim: int
    activations: Sequence[str] = ("gelu", "linear")
    dropout_rate: float = 0.0
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, deterministic: bool) -> Array:
        """x [B, T, H] -> [B, T, H]."""
        acts = []
        for i, act in enumerate(self.activations):
            name = "wi" if len(self.activations) == 1 else f"wi_{i}"
            h = Dense(self.mlp_dim, ("embed", "mlp"), dtype=self.dtype, name=name)(x)
            if act == "gelu":
                # T5X uses the tanh approximation (flax's default), as does HF's gelu_new.
                h = nn.gelu(h, approximate=True)
            elif act == "relu":
                h = nn.relu(h)
            elif act != "linear":
                raise ValueError(f"unknown MLP activation {act!r}")
            acts.append(h)
        h = functools.reduce(jnp.multiply, acts)
        h = nn.Dropout(self.dropout_rate, broadcast_dims=(-2,))(h, deterministic=deterministic)
        return Dense(x.shape[-1], ("mlp", "embed"), dtype=self.dtype, name="wo")(h)


def relative_position_bucket(
    relative_position: np.ndarray | Array, bidirectional: bool, num_buckets: int, max_distance: int
):
    """T5's bucketing of (memory - query) offsets: exact for small, log-spaced for large."""
    ret = 0
    n = -relative_position
    if bidirectional:
        num_buckets //= 2
        ret += (n < 0).astype(jnp.int32) * num_buckets
        n = jnp.abs(n)
    else:
        n = jnp.maximum(n, 0)
    max_exact = num_buckets // 2
    is_small = n < max_exact
    val_if_large = max_exact + (
        jnp.log(n.astype(jnp.float32) / max_exact + np.finfo(np.float32).eps)
        / np.log(max_distance / max_exact)
        * (num_buckets - max_exact)
    ).astype(jnp.int32)
    val_if_large = jnp.minimum(val_if_large, num_buckets - 1)
    return ret + jnp.where(is_small, n, val_if_large)


class RelativePositionBiases(nn.Module):
    """Shared-per-stack relative position bias `rel_embedding` [N, buckets]."""

    num_buckets: int
    max_distance: int
    num_heads: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, qlen: int, klen: int, bidirectional: bool, query_offset: Array | int = 0) -> Array:
        """Returns the bias [1, N, qlen, klen]; `query_offset` shifts query positions (decoding)."""
        table = _param(
            self, "rel_embedding", relpos_init, (self.num_heads, self.num_buckets), ("heads", "relpos_buckets")
        )
        context = jnp.arange(qlen, dtype=jnp.int32)[:, None] + query_offset
        memory = jnp.arange(klen, dtype=jnp.int32)[None, :]
        buckets = relative_position_bucket(memory - context, bidirectional, self.num_buckets, self.max_distance)
        bias = jnp.take(table, buckets, axis=1)  # [N, qlen, klen]
        return bias[None].astype(self.dtype)


class MultiHeadDotProductAttention(nn.Module):
    """T5 attention: no logit scaling, no biases, optional key/value cache.

    With `decode=True` the module keeps `cached_key` / `cached_value` [B, S, N, D]
    and `cache_index` in the `cache` collection and takes one query position
    per call, as T5X's decoding does.
    """

    num_heads: int
    head_dim: int
    dropout_rate: float = 0.0
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(
        self,
        inputs_q: Array,
        inputs_kv: Array,
        mask: Optional[Array] = None,
        bias: Optional[Array] = None,
        *,
        deterministic: bool,
        decode: bool = False,
    ) -> Array:
        """inputs_q [B, T, H], inputs_kv [B, S, H], mask/bias broadcastable to [B, N, T, S].

        inputs_kv may instead be [B / G, S, H] (G an integer): query rows
        b*G ... b*G+G-1 then share memory row b, whose keys and values are
        projected once (mask and bias are still per query row, [B, N, T, S]).
        Raises ValueError if B is not a multiple of the memory batch.
        """
        inner = self.num_heads * self.head_dim
        depth_scaling = np.sqrt(self.head_dim).astype(np.float32)

        def query_init(*args):
            return default_kernel_init(*args) / depth_scaling

        dense = functools.partial(Dense, inner, ("embed", "joined_kv"), dtype=self.dtype)
        split = lambda x: x.reshape(x.shape[:-1] + (self.num_heads, self.head_dim))
        query = split(dense(kernel_init=query_init, name="query")(inputs_q))
        key = split(dense(name="key")(inputs_kv))
        value = split(dense(name="value")(inputs_kv))

        if decode:
            is_initialized = self.has_variable("cache", "cached_key")
            cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
            cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
            cache_index = self.variable("cache", "cache_index", lambda: jnp.array(0, dtype=jnp.int32))
            if is_initialized:
                # One new position per call: write it at cache_index, attend to <= index.
                batch, max_len = cached_key.value.shape[:2]
                idx = cache_index.value
                key = jax.lax.dynamic_update_slice(cached_key.value, key, (0, idx, 0, 0))
                value = jax.lax.dynamic_update_slice(cached_value.value, value, (0, idx, 0, 0))
                cached_key.value, cached_value.value = key, value
                cache_index.value = idx + 1
                visible = (jnp.arange(max_len) <= idx)[None, None, None, :]
                mask = visible if mask is None else jnp.logical_and(mask, visible)

        # The extension point for methods that add memory positions (prefix tuning: methods/prefix.py).
        key, value, mask, bias = self.extend_memory(key, value, mask, bias)

        batch_q, batch_kv = query.shape[0], key.shape[0]
        if batch_q == batch_kv:
            logits = jnp.einsum("btnd,bsnd->bnts", query, key, preferred_element_type=jnp.float32)
        else:
            # Grouped: query rows b*G ... b*G+G-1 attend to memory row b (rank classification
            # scoring G labels against one encoding, see decoding.label_log_likelihoods).
            if batch_q % batch_kv:
                raise ValueError(f"query batch {batch_q} is not a multiple of the memory batch {batch_kv}")
            grouped = query.reshape((batch_kv, batch_q // batch_kv) + query.shape[1:])
            logits = jnp.einsum("bgtnd,bsnd->bgnts", grouped, key, preferred_element_type=jnp.float32)
            logits = logits.reshape((batch_q,) + logits.shape[2:])
        if bias is not None:
            logits = logits + bias.astype(jnp.float32)
        if mask is not None:
            logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
        weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
        weights = nn.Dropout(self.dropout_rate)(weights, deterministic=deterministic)
        if batch_q == batch_kv:
            out = jnp.einsum("bnts,bsnd->btnd", weights, value)
        else:
            grouped = weights.reshape((batch_kv, batch_q // batch_kv) + weights.shape[1:])
            out = jnp.einsum("bgnts,bsnd->bgtnd", grouped, value)
        out = out.reshape(inputs_q.shape[:-1] + (inner,))
        return Dense(inputs_q.shape[-1], ("joined_kv", "embed"), dtype=self.dtype, name="out")(out)

    def extend_memory(self, key: Array, value: Array, mask: Optional[Array], bias: Optional[Array]):
        """The memory the queries attend to: key, value [B, S, N, D], mask / bias broadcastable to [B, N, T, S].

        The identity here. A method that adds memory positions intercepts this
        call (e.g. prefix tuning, prompt_tuning/methods/prefix.py, returns
        [B, P+S, N, D] and a mask over P+S positions); it runs after the decoding
        cache is updated, so the cache holds only the real positions.
        """
        return key, value, mask, bias
