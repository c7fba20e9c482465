"""Exporting a trained method as plain arrays: LoRA merged or as a PEFT adapter, the others without their
reparameterisation.

    merged_lora_checkpoint(path, params, config, lora)
    peft_lora_adapter(path, params, lora, base_model_name_or_path=None)
    plain_prefixes(path, params, config, prefix, step=None)    prefix tuning: path/method_params.safetensors
    plain_prompt(path, params, p_tuning, hidden)               P-tuning: path/prompt.npy [P, H]
    plain_task_prompts(path, params, multitask)                multi-task prompts: path/task_<k>.npy [P, H]

Prefix tuning: every attention's key and value prefixes [P, N*D] under their
parameter paths (`encoder/layers_0/attention/prefix_key`, ...), the MLP dropped
(Prefix.direct_params) when reparameterised; `Prefix(..., mlp_hidden=None)`
serves them with CHECKPOINT_PATH = path (save_restore.read_params reads the
file). P-tuning and multi-task prompts: plain prompts [P, H] (.npy) that prompt
tuning serves (PROMPT_INIT = @from_file, PROMPT_LENGTH = P), the prompt encoder
or the shared / task split dropped.

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
import re
from typing import Mapping, Optional

import numpy as np
from flax import traverse_util
from safetensors.numpy import save_file

from prompt_tuning.checkpoints import huggingface, loading, native, save_restore
from prompt_tuning.methods.lora import LoRA
from prompt_tuning.methods.multitask import MultiTaskPrompt
from prompt_tuning.methods.prefix import Prefix
from prompt_tuning.methods.ptuning import PTuning
from prompt_tuning.models import t5

PROMPT_FILE = "prompt.npy"
PREFIX_ARRAY = r".*/prefix_(?:key|value)"


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


def plain_prefixes(path: str, params: Mapping, config: t5.T5Config, prefix: Prefix,
                   step: Optional[int] = None) -> dict:
    """Writes prefix tuning's plain per-layer prefixes to path/method_params.safetensors; returns {path: array}.

    params: the trained model's whole tree. Each array is [P, N*D] (P = prefix.length,
    N*D = heads x head size) at its attention's path; a reparameterised Prefix's MLPs are run
    once and dropped. `step` (the checkpoint's) is recorded in the file. Raises ValueError when
    the tree holds no prefixes (or, reparameterised, misses an MLP).
    """
    tree = prefix.direct_params(params, config) if prefix.mlp_hidden is not None else params
    flat = {k: np.asarray(v, np.float32) for k, v in traverse_util.flatten_dict(dict(tree), sep="/").items()
            if re.fullmatch(PREFIX_ARRAY, k)}
    if not flat:
        raise ValueError("no prefix arrays (…/prefix_key, …/prefix_value) in the parameters")
    save_restore.save_method_params(path, flat, step)
    return flat


def plain_prompt(path: str, params: Mapping, p_tuning: PTuning, hidden: int) -> np.ndarray:
    """Writes P-tuning's produced prompt [P, H] (the prompt encoder run once and dropped) to path/prompt.npy."""
    prompt = np.asarray(p_tuning.prompt(params, hidden), np.float32)
    save_restore.save_npy(os.path.join(path, PROMPT_FILE), prompt)
    return prompt


def plain_task_prompts(path: str, params: Mapping, multitask: MultiTaskPrompt) -> np.ndarray:
    """Writes each task's effective prompt [P, H] to path/task_<k>.npy; returns them stacked [K, P, H]."""
    table = np.asarray(multitask.task_prompts(params), np.float32)
    for k, prompt in enumerate(table):
        save_restore.save_npy(os.path.join(path, f"task_{k}.npy"), prompt)
    return table
