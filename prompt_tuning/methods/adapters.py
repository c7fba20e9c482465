"""Adapters (Houlsby et al., 2019): a bottleneck after every attention and feed-forward sublayer.

The output h [B, T, H] of each attention and each MLP (before T5's dropout
and residual connection) becomes

    h + up(f(down(h)))     down [H, r] + bias [r], up [r, H] + bias [H], f = `activation`

with `up` zero-initialised (kernel and bias), so training starts at the frozen
model. Houlsby et al. also train the layer norms; here only the adapters
train (TRAINABLE_REGEX), add '|.*layer_norm.*' to the regex for the paper's
variant. The default activation is swish, the `adapters` library's HoulsbyConfig
(the paper leaves the non-linearity open).

Parameters: `<sublayer>/adapter/{down,up}/{kernel,bias}`, e.g.
`encoder/layers_0/mlp/adapter/down/kernel` [H, r].
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from prompt_tuning.configurable import gin
from prompt_tuning.methods import sites
from prompt_tuning.models import layers

_ACTIVATIONS = {"swish": jax.nn.swish, "relu": jax.nn.relu, "gelu": lambda x: jax.nn.gelu(x, approximate=True)}


@dataclasses.dataclass(frozen=True)
class Adapters:
    """Houlsby adapters of bottleneck `size` after the sublayers `targets` matches (every attention and MLP)."""

    size: int = 64
    activation: str = "swish"
    targets: str = sites.ATTENTION + r"|(?:encoder|decoder)/layers_\d+/mlp"

    TRAINABLE_REGEX = r".*/adapter/.*"

    def __post_init__(self):
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 1:
            raise ValueError(f"adapter size must be a positive int, got {self.size!r}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"adapter activation must be one of {sorted(_ACTIVATIONS)}, got {self.activation!r}")

    def __call__(self, next_fun, args, kwargs, context):
        """The interceptor: passes each targeted sublayer's output through a bottleneck adapter."""
        y = next_fun(*args, **kwargs)
        if not (sites.matches(context, layers.MultiHeadDotProductAttention, self.targets)
                or sites.matches(context, layers.MlpBlock, self.targets)):
            return y
        return _Adapter(self.size, self.activation, context.module.dtype, name="adapter")(y)


class _Adapter(nn.Module):
    """down (this module's kernel/bias) and up, under the name `adapter`."""

    features: int
    activation: str
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        hidden = x.shape[-1]
        down = _Dense(self.features, ("embed", None), layers.default_kernel_init, self.dtype, name="down")(x)
        h = _ACTIVATIONS[self.activation](down)
        return x + _Dense(hidden, (None, "embed"), nn.initializers.zeros, self.dtype, name="up")(h)


class _Dense(nn.Module):
    features: int
    axes: tuple
    kernel_init: layers.Initializer
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        kernel = layers._param(self, "kernel", self.kernel_init, (x.shape[-1], self.features), self.axes)
        bias = layers._param(self, "bias", nn.initializers.zeros, (self.features,), (self.axes[1],))
        return jnp.dot(x.astype(self.dtype), kernel.astype(self.dtype)) + bias.astype(self.dtype)


@gin.configurable
def adapters(size: int = 64, activation: str = "swish") -> Adapters:
    """`@adapters()` in gin (ADAPTER_SIZE in gin/methods/adapters.gin)."""
    return Adapters(size=size, activation=activation)
