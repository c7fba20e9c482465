"""Evaluation and inference from checkpoints: what `prompt_tuning.eval` and `prompt_tuning.infer` run.

The model is built as for training (trainer.build: the frozen model from
INITIAL_CHECKPOINT_PATH, the prompt from PROMPT), then CHECKPOINT_PATH, a
trainer checkpoint (a MODEL_DIR, its checkpoints/ or best/ dir, or one
<step>/ dir), replaces the prompt (or, for model tuning, every parameter it
holds); an exported method's directory (method_params.safetensors, e.g. prefix
tuning's plain prefixes from `prompt_tuning.export`) replaces the method's parameters. With INITIAL_CHECKPOINT_PATH = None, the frozen model is the copy a
randomly initialised run keeps in MODEL_DIR/frozen_model. A prompt saved as .npy is evaluated with PROMPT_INIT =
@prompts.from_file and no CHECKPOINT_PATH.

Outputs go to OUTPUT_DIR (default: <MODEL_DIR>/eval_<split> or
<MODEL_DIR>/infer_<split> when CHECKPOINT_PATH is a trainer directory, <export>/eval_<split> for an
exported method, else
./runs/<eval|infer>-<time>):
    metrics.jsonl + TensorBoard files (eval), predictions_<task>.jsonl (both)
"""
from __future__ import annotations

import datetime
import os
from typing import Mapping, Optional, Sequence

import gin
import jax

from prompt_tuning import prompts
from prompt_tuning.checkpoints import save_restore
from prompt_tuning.models import t5
from prompt_tuning.training import evaluation, input_pipeline, metrics_writer, partitioning, trainer


def _output_dir(output_dir: Optional[str], checkpoint_path: Optional[str], kind: str, split: str) -> str:
    if output_dir:
        return output_dir
    if checkpoint_path and save_restore.is_method_export(checkpoint_path):
        return os.path.join(checkpoint_path, f"{kind}_{split}")
    if checkpoint_path:
        directory, _ = save_restore.find_state_dir(checkpoint_path)
        return os.path.join(os.path.dirname(directory), f"{kind}_{split}")
    return os.path.join("runs", f"{kind}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}")


def _setup(*, model_config, task_name, prompt, initial_checkpoint_path, checkpoint_path, seed,
           random_init_frozen_model, mesh, methods=()):
    overrides, step = None, None
    if checkpoint_path:
        overrides, step = save_restore.read_params(checkpoint_path)
        if not initial_checkpoint_path and not random_init_frozen_model and not save_restore.is_method_export(
                checkpoint_path):
            # A run whose frozen model was randomly initialised keeps a copy in MODEL_DIR/frozen_model.
            directory, _ = save_restore.find_state_dir(checkpoint_path)
            copy = os.path.join(os.path.dirname(directory), trainer.FROZEN_COPY_DIR)
            initial_checkpoint_path = copy if os.path.isdir(copy) else None
    setup = trainer.build(model_config=model_config, task_name=task_name, prompt=prompt,
                          initial_checkpoint_path=initial_checkpoint_path, trainable_regex=trainer.ALL_REGEX,
                          seed=seed, mesh=mesh, random_init_frozen_model=random_init_frozen_model,
                          overrides=overrides, methods=methods)
    return setup, step


@gin.configurable
def evaluate_checkpoint(
    *,
    mixture_or_task_name: str = gin.REQUIRED,
    task_feature_lengths: Mapping[str, int] = gin.REQUIRED,
    model_config: t5.T5Config = gin.REQUIRED,
    initial_checkpoint_path: Optional[str] = gin.REQUIRED,
    prompt: Optional[prompts.PromptSpec] = None,
    checkpoint_path: Optional[str] = None,
    split: str = "validation",
    mode: str = evaluation.GENERATE,
    batch_size: int = 32,
    max_examples: Optional[int] = None,
    output_dir: Optional[str] = None,
    verbalizers: Optional[Mapping[str, Sequence[str]]] = None,
    seed: int = 0,
    random_init_frozen_model: bool = False,
    methods: Sequence = (),
    multitask_tasks: Optional[Sequence[str]] = None,
    mesh=None,
) -> dict:
    """The task's metrics for one checkpoint; also written to OUTPUT_DIR. Returns {'task/metric': value}.

    With multi-task prompts each task is evaluated with its index in the task order (MULTITASK_TASKS, default
    the mixture's tasks sorted by name: trainer.task_order)."""
    mesh = mesh or partitioning.make_mesh()
    partitioning.check_batch_size(batch_size, mesh)
    order = trainer.task_order(methods, mixture_or_task_name, multitask_tasks)
    sets = input_pipeline.load_eval_sets(mixture_or_task_name, split, task_feature_lengths, max_examples, order)
    setup, step = _setup(model_config=model_config, task_name=mixture_or_task_name, prompt=prompt,
                         initial_checkpoint_path=initial_checkpoint_path, checkpoint_path=checkpoint_path,
                         seed=seed, random_init_frozen_model=random_init_frozen_model, mesh=mesh,
                         methods=methods)
    out = _output_dir(output_dir, checkpoint_path, "eval", split)
    metrics, predictions = evaluation.evaluate(setup.model, setup.params, sets, mode=mode, batch_size=batch_size,
                                               mesh=mesh, verbalizers=verbalizers)
    if jax.process_index() == 0:
        os.makedirs(out, exist_ok=True)
    writer = metrics_writer.MetricsWriter(out)
    writer.write(step or 0, "eval", metrics)
    writer.close()
    for es in sets:
        evaluation.write_predictions(os.path.join(out, f"predictions_{es.name}.jsonl"), es, predictions[es.name])
    if jax.process_index() == 0:
        where = f" (checkpoint step {step})" if step is not None else ""
        print(f"{split} metrics{where}: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items())))
        print(f"written to {out}")
    return metrics


@gin.configurable
def infer(
    *,
    mixture_or_task_name: str = gin.REQUIRED,
    task_feature_lengths: Mapping[str, int] = gin.REQUIRED,
    model_config: t5.T5Config = gin.REQUIRED,
    initial_checkpoint_path: Optional[str] = gin.REQUIRED,
    prompt: Optional[prompts.PromptSpec] = None,
    checkpoint_path: Optional[str] = None,
    split: str = "validation",
    batch_size: int = 32,
    max_examples: Optional[int] = None,
    max_decode_length: Optional[int] = None,
    output_dir: Optional[str] = None,
    seed: int = 0,
    random_init_frozen_model: bool = False,
    methods: Sequence = (),
    multitask_tasks: Optional[Sequence[str]] = None,
    mesh=None,
) -> dict[str, list[str]]:
    """Greedy predictions for a split, written as predictions_<task>.jsonl. Returns {task: [text]}.
    Multi-task prompts: each task with its index, as evaluate_checkpoint."""
    mesh = mesh or partitioning.make_mesh()
    partitioning.check_batch_size(batch_size, mesh)
    order = trainer.task_order(methods, mixture_or_task_name, multitask_tasks)
    sets = input_pipeline.load_eval_sets(mixture_or_task_name, split, task_feature_lengths, max_examples, order)
    setup, _ = _setup(model_config=model_config, task_name=mixture_or_task_name, prompt=prompt,
                      initial_checkpoint_path=initial_checkpoint_path, checkpoint_path=checkpoint_path,
                      seed=seed, random_init_frozen_model=random_init_frozen_model, mesh=mesh,
                      methods=methods)
    out = _output_dir(output_dir, checkpoint_path, "infer", split)
    result = {}
    for es in sets:
        length = max_decode_length or es.features["decoder_target_tokens"].shape[1]
        preds = evaluation.generate(setup.model, setup.params, es, batch_size=batch_size, mesh=mesh,
                                    max_decode_length=length)
        path = os.path.join(out, f"predictions_{es.name}.jsonl")
        evaluation.write_predictions(path, es, preds)
        result[es.name] = preds
        if jax.process_index() == 0:
            print(f"{len(preds)} predictions for {es.name} -> {path}")
    return result
