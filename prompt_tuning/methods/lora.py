"""LoRA (Hu et al., 2021): a trainable low-rank update beside frozen projections.

For a targeted dense layer with kernel W [in, out], the output becomes

    x W + (alpha / r) (x A) B,     A [in, r] ~ U(-1/sqrt(in), 1/sqrt(in)),  B [r, out] = 0,

so training starts at the frozen model. By default the query and value
projections of every attention (encoder self-attention, decoder self- and
cross-attention), as in the paper and PEFT's T5 default (`target_modules=['q', 'v']`).
A's initializer is PEFT's (kaiming-uniform with a = sqrt(5), i.e. the bound
above); the paper only says "random Gaussian".

Parameters: `<projection>/lora_a` [in, r] and `<projection>/lora_b` [r, out],
e.g. `encoder/layers_0/attention/query/lora_a`. PEFT stores the transposes
(`lora_A.default.weight` [r, in], `lora_B.default.weight` [out, r]).
`merge` folds the update into W for inference at no extra cost.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Mapping

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from prompt_tuning.configurable import gin
from prompt_tuning.methods import sites
from prompt_tuning.models import layers

# U(-1/sqrt(fan_in), 1/sqrt(fan_in)): torch's kaiming_uniform_(a=sqrt(5)) as PEFT initialises lora_A.
_A_INIT = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


@dataclasses.dataclass(frozen=True)
class LoRA:
    """Low-rank updates of rank `rank` scaled by alpha / rank beside the dense layers `targets` matches."""

    rank: int = 8
    alpha: float = 8.0
    targets: str = sites.ATTENTION + r"/(?:query|value)"

    TRAINABLE_REGEX = r".*/lora_[ab]"

    def __post_init__(self):
        if not isinstance(self.rank, int) or isinstance(self.rank, bool) or self.rank < 1:
            raise ValueError(f"LoRA rank must be a positive int, got {self.rank!r}")

    @property
    def scaling(self) -> float:
        """alpha / r, the factor on B A."""
        return self.alpha / self.rank

    def __call__(self, next_fun, args, kwargs, context):
        """The interceptor: adds (alpha / r) (x A) B to the output of each targeted Dense."""
        y = next_fun(*args, **kwargs)
        if not sites.matches(context, layers.Dense, self.targets):
            return y
        module, x = context.module, args[0]
        a = layers._param(module, "lora_a", _A_INIT, (x.shape[-1], self.rank), (module.axes[0], None))
        b = layers._param(module, "lora_b", nn.initializers.zeros, (self.rank, y.shape[-1]), (None, module.axes[1]))
        dt = module.dtype
        update = jnp.dot(jnp.dot(x.astype(dt), a.astype(dt)), b.astype(dt))
        return y + (update * self.scaling).astype(y.dtype)

    def merge(self, params: Mapping) -> dict:
        """A parameter tree of the plain model: W + (alpha / r) A B for every adapted kernel, LoRA arrays dropped.

        Computed in float64 on the host and stored as float32. Raises ValueError
        when a `lora_a` has no `lora_b` or `kernel` beside it.
        """
        flat = traverse_util.flatten_dict(dict(params), sep="/")
        out = {k: v for k, v in flat.items() if not re.fullmatch(self.TRAINABLE_REGEX, k)}
        for key in flat:
            if not key.endswith("/lora_a"):
                continue
            base = key[: -len("/lora_a")]
            if f"{base}/lora_b" not in flat or f"{base}/kernel" not in flat:
                raise ValueError(f"{key} has no lora_b or kernel beside it")
            a, b = np.asarray(flat[key], np.float64), np.asarray(flat[f"{base}/lora_b"], np.float64)
            kernel = np.asarray(flat[f"{base}/kernel"])
            out[f"{base}/kernel"] = (kernel.astype(np.float64) + self.scaling * a @ b).astype(kernel.dtype)
        return traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in out.items()})


@gin.configurable
def lora(rank: int = 8, alpha: float = 8.0, targets: str = LoRA.targets) -> LoRA:
    """`@lora()` in gin (LORA_RANK, LORA_ALPHA in gin/methods/lora.gin)."""
    return LoRA(rank=rank, alpha=alpha, targets=targets)
