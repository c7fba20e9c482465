"""Where a method attaches: a module class, its `__call__`, and a regex on its parameter path.

A site is matched on the intercepted call's module: `isinstance(module, cls)`,
method `__call__`, and `pattern` fully matching the module's path joined by '/'
(the same spelling as the parameter paths the trainer's regex sees, e.g.
'encoder/layers_0/attention/query').
"""
from __future__ import annotations

import re

import flax.linen as nn

# Every attention of T5 1.1: encoder self-attention, decoder self- and cross-attention.
ATTENTION = r"(?:encoder/layers_\d+/attention|decoder/layers_\d+/(?:self_attention|encoder_decoder_attention))"


def module_path(module: nn.Module) -> str:
    """'encoder/layers_0/attention/query' for a bound module."""
    return "/".join(module.path)


def matches(context, cls: type, pattern: str) -> bool:
    """True when an intercepted call is `cls.__call__` on a module whose path fully matches `pattern`."""
    return (context.method_name == "__call__" and isinstance(context.module, cls)
            and re.fullmatch(pattern, module_path(context.module)) is not None)
