"""Exporting a trained method as plain arrays: what `python -m prompt_tuning.export` runs.

The adapted model is rebuilt as for evaluation (inference._setup: the frozen
model from INITIAL_CHECKPOINT_PATH, or a random run's MODEL_DIR/frozen_model,
the method's parameters from CHECKPOINT_PATH); then, by METHODS' one method
(methods/export.py), OUTPUT_DIR gets:

  LoRA             the weights with LoRA merged, in the native format (params.safetensors +
                   config.json): it loads with no METHODS and PROMPT = None, e.g. as
                   INITIAL_CHECKPOINT_PATH of gin/runs/eval.gin after gin/runs/model_finetune.gin.
                   With `--gin.export_merged.peft_adapter=True` the LoRA arrays unmerged as a Hugging
                   Face PEFT adapter instead (adapter_model.safetensors + adapter_config.json).
  prefix tuning    method_params.safetensors: every attention's prefix_key / prefix_value [P, N*D],
                   the MLP dropped; served by gin/methods/prefix.gin with PREFIX_MLP_HIDDEN = None and
                   CHECKPOINT_PATH = OUTPUT_DIR.
  P-tuning         prompt.npy [P, H], the prompt encoder dropped; served by prompt tuning
                   (gin/runs/prompt_finetune.gin, gin/prompts/from_file.gin, PROMPT_LENGTH = P).
  multi-task       task_<k>.npy [P, H], each task's effective prompt; served like P-tuning's.
  prompts
"""
from __future__ import annotations

from typing import Optional, Sequence

import gin
import jax

from prompt_tuning.methods import LoRA, MultiTaskPrompt, Prefix, PTuning
from prompt_tuning.methods import export as method_export
from prompt_tuning.models import t5
from prompt_tuning.training import inference, partitioning, trainer

EXPORTABLE = (LoRA, Prefix, PTuning, MultiTaskPrompt)


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
    """Writes the method's plain export (module docstring) to `output_dir` and returns that path.

    Raises trainer.ConfigError when METHODS is not exactly one LoRA, Prefix, PTuning or
    MultiTaskPrompt, when peft_adapter is asked of another method, or when CHECKPOINT_PATH or
    OUTPUT_DIR is missing.
    """
    if len(methods) != 1 or not isinstance(methods[0], EXPORTABLE):
        raise trainer.ConfigError("export takes exactly one LoRA, prefix tuning, P-tuning or multi-task prompt "
                                  f"method (gin/methods/*.gin); METHODS is {list(methods)!r}")
    method = methods[0]
    if peft_adapter and not isinstance(method, LoRA):
        raise trainer.ConfigError(f"peft_adapter exports LoRA only; METHODS is {list(methods)!r}")
    if not checkpoint_path or not output_dir:
        raise trainer.ConfigError("export needs CHECKPOINT_PATH (the trained run) and OUTPUT_DIR (where the export goes)")
    mesh = mesh or partitioning.make_mesh()
    setup, step = inference._setup(model_config=model_config, task_name=mixture_or_task_name, prompt=None,
                                   initial_checkpoint_path=initial_checkpoint_path, checkpoint_path=checkpoint_path,
                                   seed=seed, random_init_frozen_model=random_init_frozen_model, mesh=mesh,
                                   methods=tuple(methods))
    params = partitioning.fetch(setup.params)
    if jax.process_index() != 0:
        return output_dir
    if isinstance(method, LoRA) and peft_adapter:
        method_export.peft_lora_adapter(output_dir, params, method, base_model_name_or_path=initial_checkpoint_path)
        what = "LoRA written as a PEFT adapter"
    elif isinstance(method, LoRA):
        method_export.merged_lora_checkpoint(output_dir, params, model_config, method)
        what = "LoRA merged into the weights"
    elif isinstance(method, Prefix):
        flat = method_export.plain_prefixes(output_dir, params, model_config, method, step)
        what = f"{len(flat)} plain prefix arrays (serve with PREFIX_MLP_HIDDEN = None, CHECKPOINT_PATH = this dir)"
    elif isinstance(method, PTuning):
        prompt = method_export.plain_prompt(output_dir, params, method, model_config.emb_dim)
        what = f"the plain prompt {list(prompt.shape)} as {method_export.PROMPT_FILE} (serve with PROMPT_INIT = @from_file)"
    else:
        table = method_export.plain_task_prompts(output_dir, params, method)
        what = f"{table.shape[0]} task prompts [{table.shape[1]}, {table.shape[2]}] as task_<k>.npy (serve with PROMPT_INIT = @from_file)"
    print(f"{what} (checkpoint step {step}): {output_dir}")
    return output_dir
