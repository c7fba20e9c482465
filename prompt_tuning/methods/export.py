"""Exporting a method-adapted model as a plain checkpoint that the unmodified T5 loads.

    merged_lora_checkpoint(path, params, config, lora)

LoRA: every adapted kernel becomes W + (alpha / r) A B (LoRA.merge), the LoRA
arrays are dropped, and the result is written in the native format
(checkpoints/native.py: params.safetensors with T5X names + config.json), so
`INITIAL_CHECKPOINT_PATH=<path>` with no METHODS serves the adapted model at
no extra inference cost. Not imported by prompt_tuning.methods (it reaches
into checkpoints/).
"""
from __future__ import annotations

from typing import Mapping

from flax import traverse_util

from prompt_tuning.checkpoints import loading, native
from prompt_tuning.methods.lora import LoRA
from prompt_tuning.models import t5


def merged_lora_checkpoint(path: str, params: Mapping, config: t5.T5Config, lora: LoRA) -> dict:
    """Writes the merged plain model to `path` (native format) and returns its parameter tree.

    params: the adapted model's whole tree (frozen weights and lora_a / lora_b).
    Raises ValueError when the merged tree is not exactly the plain model's
    (e.g. another method's parameters remain, or a shape differs).
    """
    merged = lora.merge(params)
    got = {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(merged, sep="/").items()}
    expected = loading.abstract_param_shapes(config)
    if got != expected:
        extra = sorted(set(got) - set(expected))[:3]
        missing = sorted(set(expected) - set(got))[:3]
        raise ValueError(f"the merged parameters are not the plain model's: extra {extra}, missing {missing}")
    native.save(path, merged, config)
    return merged
