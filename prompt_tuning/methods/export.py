"""Exporting a method-adapted model as a plain checkpoint that the unmodified T5 loads, or as a PEFT adapter.

    merged_lora_checkpoint(path, params, config, lora)
    peft_lora_adapter(path, params, lora, base_model_name_or_path=None)

LoRA: every adapted kernel becomes W + (alpha / r) A B (LoRA.merge), the LoRA
arrays are dropped, and the result is written in the native format
(checkpoints/native.py: params.safetensors with T5X names + config.json), so
`INITIAL_CHECKPOINT_PATH=<path>` with no METHODS serves the adapted model at
no extra inference cost. Not imported by prompt_tuning.methods (it reaches
into checkpoints/).

PEFT: the LoRA arrays unmerged, in Hugging Face PEFT's adapter format
(adapter_model.safetensors + adapter_config.json), which
`peft.PeftModel.from_pretrained(<transformers T5 of the frozen weights>, path)`
loads (tests/methods/test_peft_export.py compares its logits with ours).
"""
from __future__ import annotations

import json
import os
from typing import Mapping, Optional

import numpy as np
from flax import traverse_util
from safetensors.numpy import save_file

from prompt_tuning.checkpoints import huggingface, loading, native
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


PEFT_WEIGHTS, PEFT_CONFIG = "adapter_model.safetensors", "adapter_config.json"


def peft_lora_adapter(path: str, params: Mapping, lora: LoRA, base_model_name_or_path: Optional[str] = None) -> dict:
    """Writes the LoRA arrays of `params` to `path` as a PEFT LoRA adapter and returns its state dict.

    Keys `base_model.model.<transformers module>.lora_A.weight` [r, in] (our
    lora_a [in, r] transposed) and `...lora_B.weight` [out, r]; the config names
    every adapted module exactly (target_modules), r, lora_alpha, no dropout,
    task SEQ_2_SEQ_LM. Raises ValueError when there are no LoRA arrays or one
    has no Hugging Face counterpart.
    """
    flat = traverse_util.flatten_dict(dict(params), sep="/")
    tensors, modules = {}, []
    for key in sorted(flat):
        if not key.endswith("/lora_a"):
            continue
        base = key[: -len("/lora_a")]
        hf = huggingface.t5x_to_hf_name(f"{base}/kernel")
        if hf is None or f"{base}/lora_b" not in flat:
            raise ValueError(f"{key}: no Hugging Face module for {base} or no lora_b beside it")
        module = hf[0][: -len(".weight")]
        modules.append(module)
        tensors[f"base_model.model.{module}.lora_A.weight"] = np.ascontiguousarray(np.asarray(flat[key], np.float32).T)
        tensors[f"base_model.model.{module}.lora_B.weight"] = np.ascontiguousarray(
            np.asarray(flat[f"{base}/lora_b"], np.float32).T)
    if not tensors:
        raise ValueError("no LoRA arrays (…/lora_a) in the parameters")
    os.makedirs(path, exist_ok=True)
    save_file(tensors, os.path.join(path, PEFT_WEIGHTS))
    config = {
        "peft_type": "LORA", "task_type": "SEQ_2_SEQ_LM", "r": lora.rank, "lora_alpha": lora.alpha,
        "lora_dropout": 0.0, "target_modules": modules, "bias": "none", "fan_in_fan_out": False,
        "inference_mode": True, "base_model_name_or_path": base_model_name_or_path,
    }
    with open(os.path.join(path, PEFT_CONFIG), "w") as f:
        json.dump(config, f, indent=2)
    return tensors
