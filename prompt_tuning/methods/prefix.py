"""Prefix tuning (Li and Liang, 2021, "Prefix-Tuning: Optimizing Continuous Prompts for Generation").

Every targeted attention attends, besides its S real memory positions, to P
trainable key and value vectors (they are never queries):

    softmax(q [K_prefix; K]^T + [b_prefix, b]) [V_prefix; V]      K_prefix, V_prefix [P, N*D]

Sites (`sites`): 'encoder' (encoder self-attention), 'decoder' (decoder
self-attention), 'cross' (encoder-decoder attention); the default is all three,
the paper's definition for an encoder-decoder (its BART code has one prefix per
kind). Positions: the prefix sits at the P positions before the first token,
so T5's relative position bias between query t and prefix position j is that
of distance P + t - j (real positions keep their biases). This is what Hugging
Face's T5 computes for a key/value cache of P past positions, i.e. what PEFT's
prefix tuning gets; cross-attention has no position bias.

Two parameterisations:

  direct (mlp_hidden=None)  `<attention>/prefix_key`, `<attention>/prefix_value` [P, N*D] per
      targeted attention, initialised N(0, 1) (PEFT's, a torch Embedding). Without the MLP and with
      prefixes in every layer this is "deep prompt tuning" (P-tuning v2, Liu et al., 2022).
  reparameterised (mlp_hidden=h)  per site kind an embedding E [P, H] and an MLP producing all its
      layers' prefixes at once, W2 tanh(E W1 + b1) + b2 [P, L * 2 * N*D] (layer i's key is column block
      2i, its value 2i+1), because direct training is unstable (Li and Liang); parameters
      `encoder/prefix_mlp/...` (encoder), `decoder/prefix_mlp/...` (decoder self-attention),
      `decoder/cross_prefix_mlp/...` (cross-attention), each {embedding, hidden/{kernel,bias},
      out/{kernel,bias}}; PEFT's PrefixEncoder with prefix_projection=True, initialised as torch's
      Embedding and Linear. After training `direct_params` keeps only the produced prefixes (the direct
      parameterisation's tree), which `Prefix(..., mlp_hidden=None)` serves.

PEFT 0.21 on T5 differs from the paper: only the decoder self-attention gets a
prefix (T5ForConditionalGeneration passes the cache to the decoder only, and PEFT
empties the cross-attention cache), and its [P, 2 * L * N*D] embedding is laid out
so that decoder layer i reads key block (4i mod 2L) and value block (4i+1 mod 2L)
(layers i and i + L/2 share a prefix). `Prefix(sites=('decoder',))` with those
blocks copied in reproduces it (tests/methods/test_prefix_parity.py); the paper's
three sites are checked against Hugging Face's T5 with the prefixes inserted by
hand in its attention function.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from typing import Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from prompt_tuning.configurable import gin
from prompt_tuning.models import layers

# Site kind -> the attention module's path (layer index captured).
SITES = {
    "encoder": r"encoder/layers_(\d+)/attention",
    "decoder": r"decoder/layers_(\d+)/self_attention",
    "cross": r"decoder/layers_(\d+)/encoder_decoder_attention",
}
# Site kind -> (stack, name of its reparameterisation MLP in that stack).
MLPS = {"encoder": ("encoder", "prefix_mlp"), "decoder": ("decoder", "prefix_mlp"), "cross": ("decoder", "cross_prefix_mlp")}


def _torch_linear_init(key, shape, dtype=jnp.float32, fan_in=None):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): torch.nn.Linear's default for weight and bias."""
    bound = 1.0 / np.sqrt(fan_in if fan_in is not None else shape[0])
    return jax.random.uniform(key, shape, dtype, -bound, bound)


@dataclasses.dataclass(frozen=True)
class Prefix:
    """Key and value prefixes of length `length` in the attentions `sites` names; MLP-reparameterised if `mlp_hidden`."""

    length: int = 10
    sites: tuple = ("encoder", "decoder", "cross")
    mlp_hidden: Optional[int] = None

    TRAINABLE_REGEX = r".*/prefix_(?:key|value)|(?:encoder|decoder)/(?:cross_)?prefix_mlp/.*"
    PACKABLE = False  # its positions are per row, not per packed segment (the trainer refuses pack_width)

    def __post_init__(self):
        object.__setattr__(self, "sites", tuple(self.sites))
        if not isinstance(self.length, int) or isinstance(self.length, bool) or self.length < 1:
            raise ValueError(f"prefix length must be a positive int, got {self.length!r}")
        if not self.sites or set(self.sites) - set(SITES) or len(set(self.sites)) != len(self.sites):
            raise ValueError(f"prefix sites must be distinct names from {sorted(SITES)}, got {self.sites!r}")
        if self.mlp_hidden is not None and (not isinstance(self.mlp_hidden, int) or self.mlp_hidden < 1):
            raise ValueError(f"prefix mlp_hidden must be None (direct) or a positive int, got {self.mlp_hidden!r}")

    def __call__(self, next_fun, args, kwargs, context):
        """The interceptor: shifts the targeted stacks' position biases, builds the MLPs, extends the memory."""
        module, method = context.module, context.method_name
        path = "/".join(module.path)
        if method == "__call__" and isinstance(module, layers.RelativePositionBiases):
            if path.split("/")[0] in self.sites:  # 'encoder' / 'decoder': that stack's self-attention
                return _shifted_bias(self.length, next_fun, args, kwargs)
        elif method == "extend_memory" and self.mlp_hidden is None:
            site = _site(path, self.sites)
            if site is not None:
                inner = module.num_heads * module.head_dim
                init = nn.initializers.normal(1.0)
                k = layers._param(module, "prefix_key", init, (self.length, inner), (None, "joined_kv"))
                v = layers._param(module, "prefix_value", init, (self.length, inner), (None, "joined_kv"))
                return _extend(k, v, *args, **kwargs)
        elif method == "__call__" and self.mlp_hidden is not None and path in ("encoder", "decoder"):
            c = module.config
            n_layers = c.num_encoder_layers if path == "encoder" else c.num_decoder_layers
            inner = c.num_heads * c.head_dim
            produced = {}
            for kind in self.sites:
                stack, name = MLPS[kind]
                if stack == path:
                    mlp = _PrefixMLP(self.length, self.mlp_hidden, n_layers * 2 * inner, name=name)
                    produced[kind] = mlp(c.emb_dim).reshape(self.length, n_layers, 2, inner)
            if produced:
                with nn.intercept_methods(functools.partial(_insert_produced, produced)):
                    return next_fun(*args, **kwargs)
        return next_fun(*args, **kwargs)

    def direct_params(self, params: Mapping, config) -> dict:
        """The direct parameterisation's tree from a reparameterised one: each MLP's prefixes, the MLPs dropped.

        params: the whole tree (frozen weights and the MLPs). The result serves
        `dataclasses.replace(self, mlp_hidden=None)` with the same logits. Raises
        ValueError if this Prefix is not reparameterised or an MLP is missing.
        """
        if self.mlp_hidden is None:
            raise ValueError("direct_params needs a reparameterised Prefix (mlp_hidden set)")
        flat = traverse_util.flatten_dict(dict(params), sep="/")
        out = {k: v for k, v in flat.items() if not re.fullmatch(self.TRAINABLE_REGEX, k)}
        inner = config.num_heads * config.head_dim
        for kind in self.sites:
            stack, name = MLPS[kind]
            n_layers = config.num_encoder_layers if stack == "encoder" else config.num_decoder_layers
            tree = {k[len(f"{stack}/{name}/"):]: v for k, v in flat.items() if k.startswith(f"{stack}/{name}/")}
            if not tree:
                raise ValueError(f"no {stack}/{name} in the parameters")
            mlp = _PrefixMLP(self.length, self.mlp_hidden, n_layers * 2 * inner)
            variables = {"params": traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in tree.items()})}
            produced = np.asarray(mlp.apply(variables, config.emb_dim)).reshape(self.length, n_layers, 2, inner)
            pattern = SITES[kind].replace(r"(\d+)", "{}")
            for i in range(n_layers):
                out[f"{pattern.format(i)}/prefix_key"] = produced[:, i, 0]
                out[f"{pattern.format(i)}/prefix_value"] = produced[:, i, 1]
        return traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in out.items()})


def _site(path: str, sites) -> Optional[tuple[str, int]]:
    """(kind, layer) of an attention module path among `sites`, or None."""
    for kind in sites:
        m = re.fullmatch(SITES[kind], path)
        if m:
            return kind, int(m.group(1))
    return None


def _insert_produced(produced, next_fun, args, kwargs, context):
    """Interceptor installed around a stack: layer i's attention reads its block of the MLP's output."""
    if context.method_name == "extend_memory":
        site = _site("/".join(context.module.path), produced)
        if site is not None:
            kind, i = site
            return _extend(produced[kind][:, i, 0], produced[kind][:, i, 1], *args, **kwargs)
    return next_fun(*args, **kwargs)


def _extend(k_prefix, v_prefix, key, value, mask, bias):
    """Prepends the prefix [P, N*D] to key / value [B, S, N, D] and P visible positions to the mask."""
    b, _, n, d = key.shape
    p = k_prefix.shape[0]
    expand = lambda x, like: jnp.broadcast_to(x.reshape(p, n, d).astype(like.dtype)[None], (b, p, n, d))
    key = jnp.concatenate([expand(k_prefix, key), key], axis=1)
    value = jnp.concatenate([expand(v_prefix, value), value], axis=1)
    if mask is not None:
        mask = jnp.concatenate([jnp.ones(mask.shape[:-1] + (p,), bool), mask.astype(bool)], axis=-1)
    if bias is not None and bias.shape[-1] != key.shape[1]:
        raise ValueError(f"position bias covers {bias.shape[-1]} memory positions, the prefixed memory {key.shape[1]}")
    return key, value, mask, bias


_RELPOS_SIGNATURE = inspect.signature(layers.RelativePositionBiases.__call__)


def _shifted_bias(length, next_fun, args, kwargs):
    """The bias with P memory positions in front: queries at P + offset + t, keys at 0 ... P + S - 1."""
    bound = _RELPOS_SIGNATURE.bind(None, *args, **kwargs)
    bound.apply_defaults()
    a = bound.arguments
    return next_fun(a["qlen"], a["klen"] + length, a["bidirectional"], query_offset=a["query_offset"] + length)


class _PrefixMLP(nn.Module):
    """embedding [P, H] -> tanh(. W1 + b1) W2 + b2 -> [P, outputs]."""

    length: int
    hidden: int
    outputs: int

    @nn.compact
    def __call__(self, emb_dim: int):
        e = layers._param(self, "embedding", nn.initializers.normal(1.0), (self.length, emb_dim), (None, "embed"))
        h = jnp.tanh(_Dense(self.hidden, ("embed", "mlp"), name="hidden")(e))
        return _Dense(self.outputs, ("mlp", None), name="out")(h)


class _Dense(nn.Module):
    features: int
    axes: tuple

    @nn.compact
    def __call__(self, x):
        fan_in = x.shape[-1]
        kernel = layers._param(self, "kernel", _torch_linear_init, (fan_in, self.features), self.axes)
        bias = layers._param(self, "bias", functools.partial(_torch_linear_init, fan_in=fan_in), (self.features,),
                             (self.axes[1],))
        return jnp.dot(x, kernel) + bias


@gin.configurable
def prefix(length: int = 10, sites=("encoder", "decoder", "cross"), mlp_hidden: Optional[int] = None) -> Prefix:
    """`@prefix()` in gin (PREFIX_LENGTH, PREFIX_MLP_HIDDEN in gin/methods/prefix.gin)."""
    return Prefix(length=length, sites=tuple(sites), mlp_hidden=mlp_hidden)
