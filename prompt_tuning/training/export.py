"""Exporting a trained method as a plain model: what `python -m prompt_tuning.export` runs.

The adapted model is rebuilt as for evaluation (inference._setup: the frozen
model from INITIAL_CHECKPOINT_PATH, or a random run's MODEL_DIR/frozen_model,
the method's parameters from CHECKPOINT_PATH), then LoRA is merged into the
weights (methods.export.merged_lora_checkpoint) and written to OUTPUT_DIR in
the native format. The result loads with no METHODS and PROMPT = None, e.g. as
INITIAL_CHECKPOINT_PATH of gin/runs/eval.gin after gin/runs/model_finetune.gin.
With `--gin.export_merged.peft_adapter=True` the LoRA arrays are written unmerged as a
Hugging Face PEFT adapter instead (methods.export.peft_lora_adapter:
adapter_model.safetensors + adapter_config.json for peft.PeftModel.from_pretrained).
"""
from __future__ import annotations

from typing import Optional, Sequence

import gin
import jax

from prompt_tuning.methods import LoRA
from prompt_tuning.methods import export as method_export
from prompt_tuning.models import t5
from prompt_tuning.training import inference, partitioning, trainer


@gin.configurable
def export_merged(
    *,
    mixture_or_task_name: str = gin.REQUIRED,
    model_config: t5.T5Config = gin.REQUIRED,
    initial_checkpoint_path: Optional[str] = gin.REQUIRED,
    methods: Sequence = (),
    checkpoint_path: Optional[str] = gin.REQUIRED,
    output_dir: Optional[str] = gin.REQUIRED,
    seed: int = 0,
    random_init_frozen_model: bool = False,
    peft_adapter: bool = False,
    mesh=None,
) -> str:
    """Writes the LoRA-merged plain model to `output_dir` and returns that path.

    Raises trainer.ConfigError when METHODS is not exactly one LoRA, or when
    CHECKPOINT_PATH or OUTPUT_DIR is missing.
    """
    if len(methods) != 1 or not isinstance(methods[0], LoRA):
        raise trainer.ConfigError(f"export merges exactly one LoRA method (gin/methods/lora.gin); METHODS is {list(methods)!r}")
    if not checkpoint_path or not output_dir:
        raise trainer.ConfigError("export needs CHECKPOINT_PATH (the trained run) and OUTPUT_DIR (where the merged model goes)")
    mesh = mesh or partitioning.make_mesh()
    setup, step = inference._setup(model_config=model_config, task_name=mixture_or_task_name, prompt=None,
                                   initial_checkpoint_path=initial_checkpoint_path, checkpoint_path=checkpoint_path,
                                   seed=seed, random_init_frozen_model=random_init_frozen_model, mesh=mesh,
                                   methods=tuple(methods))
    params = partitioning.fetch(setup.params)
    if jax.process_index() == 0 and peft_adapter:
        method_export.peft_lora_adapter(output_dir, params, methods[0], base_model_name_or_path=initial_checkpoint_path)
        print(f"LoRA written as a PEFT adapter (checkpoint step {step}): {output_dir}")
    elif jax.process_index() == 0:
        method_export.merged_lora_checkpoint(output_dir, params, model_config, methods[0])
        print(f"LoRA merged into the weights (checkpoint step {step}): {output_dir}")
    return output_dir
