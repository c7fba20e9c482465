"""gin, when it is installed; inert stand-ins for `gin.configurable` and `gin.REQUIRED` when it is not.

The lean core (models, prompts, checkpoint loaders, the train step, partitioning,
the optimizer) marks its functions configurable for the gin files, but must
import on an accelerator image that has JAX, Flax, Optax, Orbax, safetensors and
tensorstore and nothing else. Those modules write

    from prompt_tuning.configurable import gin

and use `@gin.configurable` / `gin.REQUIRED` as before. Without gin the
decorator returns the function unchanged and REQUIRED is a sentinel default
(a caller must then pass the argument itself). The gin-driven entry points
(train.py, eval.py, infer.py, plan.py with --gin_file) import the real gin.
"""
from __future__ import annotations

import types

try:
    import gin as _gin
except ImportError:  # the lean image: no gin
    _gin = None


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


def _configurable(fn=None, *args, **kwargs):
    if fn is None or isinstance(fn, str):  # @configurable("name") / @configurable(module=...)
        return lambda f: f
    return fn


gin = _gin if _gin is not None else types.SimpleNamespace(configurable=_configurable, REQUIRED=_Required())
AVAILABLE = _gin is not None
