"""IA3 (Liu et al., 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context Learning").

Learned vectors, initialised at one, that rescale element-wise:

    keys     k = (x W_k) * l_k       l_k [N*D]   every attention (self and cross)
    values   v = (x W_v) * l_v       l_v [N*D]
    FFN      (gelu(x W_i0) * x W_i1) * l_ff, then W_o     l_ff [F]

Parameters: `<attention>/key/ia3_scale`, `<attention>/value/ia3_scale` and
`<layer>/mlp/wo/ia3_scale` (the FFN vector scales the input of `wo`). This is
the same definition as PEFT's IA3Config default for T5 (`target_modules=['k', 'v', 'wo']`,
`feedforward_modules=['wo']`: outputs of k and v, the input of wo), whose
vectors are stored as `ia3_l.default` [out, 1] for k, v and [1, in] for wo.
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn

from prompt_tuning.configurable import gin
from prompt_tuning.methods import sites
from prompt_tuning.models import layers


@dataclasses.dataclass(frozen=True)
class IA3:
    """Rescaling vectors on the outputs of `outputs` (keys, values) and the inputs of `inputs` (FFN wo)."""

    outputs: str = sites.ATTENTION + r"/(?:key|value)"
    inputs: str = r"(?:encoder|decoder)/layers_\d+/mlp/wo"

    TRAINABLE_REGEX = r".*/ia3_scale"

    def __call__(self, next_fun, args, kwargs, context):
        """The interceptor: scales the targeted Dense layers' outputs or inputs by a learned vector."""
        if sites.matches(context, layers.Dense, self.inputs):
            module, x = context.module, args[0]
            scale = layers._param(module, "ia3_scale", nn.initializers.ones, (x.shape[-1],), (module.axes[0],))
            return next_fun(x * scale.astype(x.dtype), *args[1:], **kwargs)
        y = next_fun(*args, **kwargs)
        if sites.matches(context, layers.Dense, self.outputs):
            module = context.module
            scale = layers._param(module, "ia3_scale", nn.initializers.ones, (y.shape[-1],), (module.axes[1],))
            y = y * scale.astype(y.dtype)
        return y


@gin.configurable
def ia3() -> IA3:
    """`@ia3()` in gin (gin/methods/ia3.gin)."""
    return IA3()
