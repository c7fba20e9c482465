"""The training loop: prompt tuning (or model tuning) of a frozen T5, read top to bottom.

    1. Configurables   the model size and the trainable-parameter regex (the prompt: prompts.make_prompt)
    2-3. Loss, steps   T5X's cross entropy with z-loss; train_step, eval_step (jit-able; nothing closed
                       over but the model and optimizer): in steps.py, gin-free, re-exported here
    4. Setup           frozen model + prompt -> trainable / frozen trees placed on the mesh: in
                       model_setup.py, re-exported here (build, Setup, prompt_array, task_order)
    5. The run         train_and_evaluate: start-up checks, resume, loop, checkpoints, evaluation

Prompt-only optimisation. The parameters are split by a regex (default: the
prompt) into `trainable` and `frozen` trees; `jax.grad` is taken with respect
to `trainable` only, so no gradient is ever formed for a frozen weight, and the
optimizer holds state only for `trainable`. `frozen` is an argument of the
jitted step (not a closed-over constant, which XLA would copy into the
program); the train state is donated. Model tuning is the same code with the
regex '.*' and no prompt.

Determinism. Step s uses the batch `TrainData.batch(s)` (each process reads its rows of it) and the dropout key
fold_in(seed, s); the train state holds the step and the optimizer state. A
run resumed from its latest checkpoint therefore repeats exactly what an
uninterrupted run computes.

Shape letters: B batch, T input length, L target length, P prompt length,
H hidden, V vocabulary.
"""
from __future__ import annotations

import functools
import math
import os
import shutil
import signal
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax

from prompt_tuning import fault_points, prompts
from prompt_tuning.checkpoints import native, save_restore
from prompt_tuning.models import t5
from prompt_tuning.training import (config_checks, evaluation, input_pipeline, metrics_writer, optimizer, packed_eval,
                                    packing, partitioning, preemption, run_dir, steps)
from prompt_tuning.training.config_checks import ConfigError
from prompt_tuning.training.model_setup import Setup, build, prompt_array, task_order  # noqa: F401 (re-exported)
from prompt_tuning.training.steps import (ALL_REGEX, PROMPT_REGEX, cross_entropy_loss, eval_step, merge_params,  # noqa: F401
                                          split_params, train_step)

FROZEN_COPY_DIR = "frozen_model"  # MODEL_DIR/frozen_model: a randomly initialised frozen model (native format)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last checkpoint is left as it was."""


# ---------------------------------------------------------------------------
# 1. Configurables
# ---------------------------------------------------------------------------


@gin.configurable
def t5_config(size: str = gin.REQUIRED, **overrides) -> t5.T5Config:
    """A T5 1.1 size ('small' ... 'xxl', 'tiny', 'test') with T5Config field overrides."""
    try:
        return t5.get_config(size, **overrides)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"model config: {e}") from None


# ---------------------------------------------------------------------------
# 2-3. Loss and pure steps: prompt_tuning/training/steps.py (gin-free; re-exported here)
# ---------------------------------------------------------------------------

# ---------------------------------------------------------------------------
# 4. Setup: prompt_tuning/training/model_setup.py (build, Setup, prompt_array, task_order; re-exported here)
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# 5. The run
# ---------------------------------------------------------------------------


def _say(*args) -> None:
    if jax.process_index() == 0:
        print(*args, flush=True)


def _format_metrics(metrics: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items()))


def _check_finite(step: int, metrics: Mapping, last_saved: Optional[int]) -> float:
    """The loss of `step` (0-based); NonFiniteLossError if it or the updated parameters are not finite."""
    values = partitioning.fetch({"loss": metrics["loss"], "ok": metrics["params_finite"]})
    loss = float(values["loss"])
    if not math.isfinite(loss) or not bool(values["ok"]):
        what = f"loss is {loss}" if not math.isfinite(loss) else "the updated parameters are not finite"
        kept = (f"the last good checkpoint (step {last_saved}) is intact" if last_saved is not None
                else "no checkpoint was written")
        raise NonFiniteLossError(f"{what} at step {step + 1}; stopping ({kept}). "
                                 f"Lower the learning rate or check the data")
    return loss


def _evaluate_split(setup: Setup, params, task_name: str, split: str, lengths, mode: str, batch_size: int,
                    max_examples: Optional[int], mesh, verbalizers, model_dir: str, order=None,
                    packed=None) -> dict:
    """{'<split>/<task>/<metric>': value} of `params` on `split` (TEST_SPLITS: reported, never selected on).

    Predictions go to MODEL_DIR/test_predictions/<split>_<task>.jsonl (one row per example, with the
    inputs and target) so paired tests can be recomputed.
    """
    sets = input_pipeline.load_eval_sets(task_name, split, lengths, max_examples, order)
    metrics, predictions = evaluation.evaluate(setup.model, params, sets, mode=mode, batch_size=batch_size,
                                               mesh=mesh, verbalizers=verbalizers, packing=packed)
    for es in sets:
        evaluation.write_predictions(os.path.join(model_dir, "test_predictions", f"{split}_{es.name}.jsonl"), es,
                                     predictions[es.name])
    return {f"{split}/{k}": v for k, v in metrics.items()}


@gin.configurable
def train_and_evaluate(
    *,
    model_dir: Optional[str] = None,
    mixture_or_task_name: str = gin.REQUIRED,
    task_feature_lengths: Mapping[str, int] = gin.REQUIRED,
    train_steps: int = gin.REQUIRED,
    batch_size: int = gin.REQUIRED,
    model_config: t5.T5Config = gin.REQUIRED,
    initial_checkpoint_path: Optional[str] = gin.REQUIRED,
    prompt: Optional[prompts.PromptSpec] = None,
    trainable_regex: str = PROMPT_REGEX,
    methods: Sequence[Any] = (),
    multitask_tasks: Optional[Sequence[str]] = None,
    optimizer_factory: Callable[..., optax.GradientTransformation] = optimizer.adafactor,
    adafactor_step_from_checkpoint: bool = False,
    z_loss: float = 1e-4,
    loss_normalizing_factor: Optional[float] = None,
    seed: int = 0,
    checkpoint_period: int = 1000,
    keep_checkpoints: int = 1,
    eval_period: Optional[int] = None,
    eval_split: Optional[str] = "validation",
    eval_mode: str = evaluation.GENERATE,
    eval_batch_size: Optional[int] = None,
    eval_max_examples: Optional[int] = None,
    eval_before_training: bool = True,
    early_stopping_metric: Optional[str] = None,
    patience: Optional[int] = None,
    test_splits: Sequence[str] = (),
    verbalizers: Optional[Mapping[str, Sequence[str]]] = None,
    train_split: str = "train",
    data_mode: str = "auto",
    length_buckets: Optional[Sequence[int]] = None,
    pack_width: Optional[int] = None,
    pack_target_width: Optional[int] = None,
    pack_row_multiple: int = 1,
    log_period: int = 10,
    random_init_frozen_model: bool = False,
    gin_files: Sequence[str] = (),
    config_str: str = "",
    mesh=None,
) -> dict:
    """Trains (resuming MODEL_DIR if it holds this configuration), evaluates, checkpoints.

    Returns {'model_dir', 'step', 'metrics_before', 'metrics_after', 'metrics_test', 'best', 'preempted',
    'early_stopped', 'params'}.
    patience: early stopping (None: off). Training stops at the first evaluation that is `patience`
    evaluations after the best one (no improvement of the validation value in `patience` evaluations,
    i.e. step - best step >= patience * eval_period); TRAIN_STEPS is then only a cap. The rule reads
    only the best step (best/best.json) and the current step, so a run killed anywhere and resumed
    stops at the same step, and rerunning a stopped run trains no further. The stop is recorded in
    metrics.jsonl as kind 'early_stop' ({'best_step', 'patience'}).
    multitask_tasks: with a method that reads a task index per row (multi-task prompts), the task order
    (gin MULTITASK_TASKS; default: the mixture's tasks sorted by name): each training row and each task's
    eval set carries its task's position in it as encoder_prompt_index (input_pipeline.task_order).
    pack_width / pack_target_width / pack_row_multiple: packed training rows, a prompt per segment
    (training/packing.py; None: off). Each step packs the unpacked step's examples, so the loss and
    prompt gradient are unpacked training's. Evaluation packs too: rank classification, the score metrics
    and the eval loss run on packed rows of eval_batch_size examples (training/packed_eval.py; the same
    predictions, scores and loss); generation is not packed (length_buckets, if set, apply to it).
    Everything that can be checked before training is checked before
    MODEL_DIR is created (settings: config_checks.check_run_settings). One
    process at a time: MODEL_DIR's lock is taken before the model is built
    (run_dir.RunLock). Resuming restores the newest verified checkpoint and
    evaluates a checkpointed step whose evaluation was not recorded, so a run
    killed anywhere ends as an uninterrupted one. A fresh run that fails before
    its first checkpoint removes MODEL_DIR (a non-finite loss keeps it). See prompt_tuning/training/README.md for the gin
    macros behind each argument.
    """
    # -- start-up checks: nothing is written until all of them pass --------
    if not isinstance(train_steps, int) or train_steps < 0:
        raise ConfigError(f"TRAIN_STEPS must be an int >= 0, got {train_steps!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"BATCH_SIZE must be a positive int, got {batch_size!r}")
    if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 1):
        raise ConfigError(f"train_and_evaluate.patience must be None or an int >= 1, got {patience!r}")
    if patience is not None and not eval_split:
        raise ConfigError("train_and_evaluate.patience needs EVAL_SPLIT: early stopping watches the validation value")
    config_checks.check_run_settings(
        checkpoint_period=checkpoint_period, eval_period=eval_period, log_period=log_period,
        keep_checkpoints=keep_checkpoints, task_feature_lengths=task_feature_lengths,
        model_config=model_config if isinstance(model_config, t5.T5Config) else None, batch_size=batch_size,
        prompt_length=prompt.length if isinstance(prompt, prompts.PromptSpec) else 0)
    if model_dir is None:
        model_dir = run_dir.default_model_dir(gin_files)
    fingerprint = run_dir.fingerprint()
    resuming = run_dir.check(model_dir, fingerprint)
    lock = run_dir.RunLock(model_dir)
    if os.path.isdir(model_dir):
        lock.acquire()  # a second run on this directory stops here, before any work
    try:
        input_pipeline.check_feature_lengths(mixture_or_task_name, task_feature_lengths)
        length_buckets = input_pipeline.check_length_buckets(length_buckets, task_feature_lengths["inputs"])
        input_pipeline.check_split(mixture_or_task_name, train_split)
        eval_period = eval_period or checkpoint_period
        mesh = mesh or partitioning.make_mesh()
        partitioning.check_batch_size(batch_size, mesh)
        eval_batch_size = eval_batch_size or batch_size
        partitioning.check_batch_size(eval_batch_size, mesh)
        order = task_order(methods, mixture_or_task_name, multitask_tasks)
        eval_sets = []
        if eval_split:
            eval_sets = input_pipeline.load_eval_sets(mixture_or_task_name, eval_split, task_feature_lengths,
                                                      eval_max_examples, order)
        for split in test_splits:
            if not eval_sets:
                raise ConfigError("TEST_SPLITS needs EVAL_SPLIT: the test score is taken at the best validation "
                                  "checkpoint")
            input_pipeline.check_split(mixture_or_task_name, split)
        setup = build(model_config=model_config, task_name=mixture_or_task_name, prompt=prompt,
                      initial_checkpoint_path=initial_checkpoint_path, trainable_regex=trainable_regex, seed=seed,
                      mesh=mesh, random_init_frozen_model=random_init_frozen_model, methods=methods)
        if eval_mode not in (evaluation.GENERATE, evaluation.RANK):
            raise ConfigError(f"EVAL_MODE must be {evaluation.GENERATE!r} or {evaluation.RANK!r}, got {eval_mode!r}")
        if eval_mode == evaluation.RANK:
            for es in eval_sets:
                if not evaluation.verbalizers_of(es.name, verbalizers):
                    raise ConfigError(f"eval_mode 'rank' needs verbalizers for task {es.name!r}; set "
                                      f"train_and_evaluate.verbalizers = {{{es.name!r}: [...]}}")
        initial_step = 0
        if adafactor_step_from_checkpoint:
            if setup.checkpoint_step is None:
                _say("note: adafactor_step_from_checkpoint is set but the initial checkpoint records no step; "
                     "Adafactor's counter starts at 0")
            initial_step = int(setup.checkpoint_step or 0)
        tx = optimizer_factory(initial_step=initial_step)
        packed = _packing(pack_width, pack_target_width, pack_row_multiple, prompt, task_feature_lengths, mesh)
        if packed and any(not getattr(m, "PACKABLE", True) for m in methods):
            raise ConfigError("packed rows (pack_width) place positions per segment; METHODS that add positions "
                              "(prefix tuning, P-tuning) do not support them: unset pack_width")
        data = input_pipeline.TrainData(mixture_or_task_name, task_feature_lengths, batch_size, seed=seed,
                                        split=train_split, mode=data_mode,
                                        length_buckets=None if packed else length_buckets, packing=packed,
                                        task_order=order)
    except BaseException:
        lock.release()  # a failed start-up leaves the directory to the next command
        raise

    # -- the run directory and the initial (or restored) state --------------
    created = not os.path.exists(model_dir)
    try:
        run_dir.claim(model_dir, fingerprint, gin_files, config_str, lock)
    except BaseException:
        lock.release()
        raise
    try:
        fault_points.reached("startup")
        return _run_in(model_dir, resuming=resuming, setup=setup, tx=tx, data=data, mesh=mesh, eval_sets=eval_sets,
                       seed=seed, z_loss=z_loss, loss_normalizing_factor=loss_normalizing_factor,
                       keep_checkpoints=keep_checkpoints, train_steps=train_steps, checkpoint_period=checkpoint_period,
                       eval_period=eval_period, eval_mode=eval_mode, eval_batch_size=eval_batch_size,
                       eval_before_training=eval_before_training, early_stopping_metric=early_stopping_metric,
                       patience=patience, verbalizers=verbalizers, log_period=log_period, length_buckets=length_buckets,
                       test_splits=test_splits, task_name=mixture_or_task_name,
                       task_feature_lengths=task_feature_lengths, eval_max_examples=eval_max_examples,
                       task_order=order)
    except Exception as e:
        # A fresh run that fails before its first checkpoint leaves nothing behind (not even MODEL_DIR).
        committed = save_restore.TrainCheckpoints.has_committed(model_dir)
        if created and not committed and not isinstance(e, NonFiniteLossError) and jax.process_index() == 0:
            shutil.rmtree(model_dir, ignore_errors=True)
        raise
    finally:
        lock.release()


def _packing(width, target_width, row_multiple, prompt, lengths, mesh):
    """The packing.Packing of the pack_* settings (None without pack_width); ConfigError when it cannot run."""
    try:
        return packing.from_settings(width, target_width, row_multiple, prompt_length=getattr(prompt, "length", 0),
                                     targets_length=lengths["targets"], data_axis=mesh.shape[partitioning.DATA],
                                     processes=jax.process_count())
    except packing.PackingError as e:
        raise ConfigError(str(e)) from None


def _run_in(model_dir: str, *, resuming: bool, setup: Setup, tx, data, mesh, eval_sets, seed, z_loss,
            loss_normalizing_factor, keep_checkpoints, train_steps, checkpoint_period, eval_period, eval_mode,
            eval_batch_size, eval_before_training, early_stopping_metric, verbalizers, log_period,
            length_buckets=None, test_splits=(), task_name=None, task_feature_lengths=None,
            eval_max_examples=None, patience=None, task_order=None) -> dict:
    """The run in a claimed, locked MODEL_DIR: restore the newest intact state, catch up on any
    evaluation a killed run did not record, train, checkpoint, evaluate."""
    _say(f"MODEL_DIR: {model_dir}" + (" (resuming)" if resuming else ""))
    frozen_copy = os.path.join(model_dir, FROZEN_COPY_DIR)
    if setup.frozen_host is not None and jax.process_index() == 0 and \
            not os.path.exists(os.path.join(frozen_copy, native.CONFIG_FILE)):  # config.json is written last
        native.save(frozen_copy, setup.frozen_host, setup.config)
    ckpts = save_restore.TrainCheckpoints(model_dir, keep=keep_checkpoints, say=_say)
    writer = metrics_writer.MetricsWriter(model_dir)
    replicated = partitioning.replicated(mesh)
    trainable_shardings = jax.tree.map(lambda x: x.sharding, setup.trainable)
    opt_shardings = partitioning.optimizer_state_shardings(tx, setup.trainable, trainable_shardings, mesh)
    state = {"step": jax.jit(lambda: jnp.zeros((), jnp.int32), out_shardings=replicated)(),
             "params": setup.trainable, "opt_state": jax.jit(tx.init, out_shardings=opt_shardings)(setup.trainable)}
    state_shardings = jax.tree.map(lambda x: x.sharding, state)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
    if ckpts.check_best(abstract):
        restored = ckpts.restore_intact(abstract)
    else:  # the best of the steps already run is lost: rerun them all to rebuild it exactly
        _say("note: restarting from step 0 to rebuild the best checkpoint")
        ckpts.discard_latest()
        restored = None
    if restored is not None:
        state = restored
    start = int(partitioning.fetch(state["step"]))
    frozen = setup.frozen
    dropout_key = jax.device_put(jax.random.PRNGKey(seed), replicated)

    step_fn = steps.jit_train_step(model=setup.model, tx=tx, z_loss=z_loss, loss_normalizing_factor=loss_normalizing_factor,
                                   state_shardings=state_shardings, replicated=replicated)
    loss_fn = jax.jit(functools.partial(eval_step, model=setup.model, z_loss=z_loss), out_shardings=replicated)

    # Kept in memory: every process computes the same metrics and so takes the same decision
    # (a process reading best.json while process 0 rewrites it could disagree and deadlock a save).
    best_value = (ckpts.best_info() or {}).get("value")
    best_step = (ckpts.best_info() or {}).get("step")
    # An evaluation is recorded in metrics.jsonl only after its best-checkpoint update: a step
    # without a record (at or before the restored one) was not fully evaluated and is evaluated again.
    records = {r["step"]: r for r in metrics_writer.read(model_dir, "eval") if r["step"] <= start}
    evaluated = set(records)

    def run_eval(step: int) -> dict:
        nonlocal best_value, best_step
        if not eval_sets:
            return {}
        fault_points.reached("eval_started")
        params = merge_params(frozen, state["params"])
        t0 = time.time()
        metrics, _ = evaluation.evaluate(setup.model, params, eval_sets, mode=eval_mode, batch_size=eval_batch_size,
                                         mesh=mesh, verbalizers=verbalizers, length_buckets=length_buckets,
                                         packing=data.packing)
        for es in eval_sets:
            if data.packing is not None:
                sums = packed_eval.loss_sums(loss_fn, params, es.features, spec=data.packing,
                                             batch_size=eval_batch_size, mesh=mesh)
                metrics[f"{es.name}/loss"] = sums["nll_sum"] / max(sums["tokens"], 1.0)
                continue
            sums = [partitioning.fetch(loss_fn(params, partitioning.global_batch(chunk, mesh)))
                    for chunk, _ in input_pipeline.eval_batches(
                        {k: v[input_pipeline.eval_order(es.features, length_buckets)] for k, v in es.features.items()},
                        eval_batch_size, length_buckets)]
            tokens = sum(float(s["tokens"]) for s in sums)
            metrics[f"{es.name}/loss"] = sum(float(s["nll_sum"]) for s in sums) / max(tokens, 1.0)
        scored = {k: v for k, v in metrics.items() if not k.endswith("/loss")}
        value = evaluation.early_stopping_value(scored, early_stopping_metric)
        if value is not None and (best_value is None or value > best_value):
            ckpts.save_best(state, value, metrics, prompt_array(state["params"]))
            best_value, best_step = value, step
        writer.write(step, "eval", metrics)  # the evaluation's commit: after the best update
        evaluated.add(step)
        _say(f"eval at step {step} ({time.time() - t0:.1f}s): {_format_metrics(metrics)}")
        return metrics

    def patience_exhausted(step: int) -> bool:
        """Early stopping: `patience` evaluations (of eval_period steps) since the best one."""
        return patience is not None and best_step is not None and step - int(best_step) >= patience * eval_period

    def recorded(step: int) -> dict:
        rec = records.get(step) or next((r for r in metrics_writer.read(model_dir, "eval") if r["step"] == step), {})
        return {k: v for k, v in rec.items() if k not in ("step", "kind")}

    metrics_before = {}
    if start == 0 and eval_before_training:
        metrics_before = run_eval(0)
    else:
        metrics_before = recorded(0)
    if eval_sets and 0 < start < train_steps and start % eval_period == 0 and start not in evaluated:
        run_eval(start)  # killed after this checkpoint, before its evaluation was recorded
    # A run that already stopped early (or was killed after its stopping evaluation) trains no further.
    early_stopped = bool(eval_sets) and 0 < start < train_steps and start in evaluated and patience_exhausted(start)

    # -- the loop ----------------------------------------------------------
    last_saved = ckpts.latest_step()
    metrics_after, preempted = {}, False
    pending = None  # (step, metrics) not yet checked: keeps the host one step behind the device
    window, t_window = [], time.time()
    from tqdm import tqdm

    bar = tqdm(total=train_steps, initial=min(start, train_steps), unit="step", dynamic_ncols=True,
               disable=jax.process_index() != 0 or start >= train_steps, mininterval=1.0)
    # This process reads only its rows of each batch (packed batches are read whole: one process).
    rows = None if data.packing is not None else partitioning.process_rows(data.batch_size, mesh)
    if rows is not None and jax.process_count() > 1:
        print(f"process {jax.process_index()} of {jax.process_count()} reads rows {rows.start}:{rows.stop} "
              f"of each batch of {data.batch_size}", flush=True)
    batches = data.iterate(start, rows)
    with preemption.StopSignal() as stop:
        try:
            for step in range(start, train_steps if not early_stopped else start):
                batch = partitioning.global_batch(next(batches), mesh, rows, data.batch_size)
                state, metrics = step_fn(state, frozen, batch, dropout_key)
                if pending is not None:
                    window.append(_check_finite(*pending, last_saved))
                pending = (step, metrics)
                done = step + 1
                bar.update(1)
                if done % log_period == 0 or done == train_steps:
                    window.append(_check_finite(*pending, last_saved))
                    pending = None
                    rate = len(window) / max(time.time() - t_window, 1e-9)
                    writer.write(done, "train", {"loss": float(np.mean(window)), "steps_per_sec": rate})
                    bar.set_postfix(loss=f"{np.mean(window):.4f}")
                    window, t_window = [], time.time()
                stopping = stop.requested()
                if done % checkpoint_period == 0 or done == train_steps or stopping:
                    if pending is not None:
                        _check_finite(*pending, last_saved)
                        pending = None
                    ckpts.save(state, prompt_array(state["params"]))
                    last_saved = done
                if stopping:
                    preempted = True
                    name = signal.Signals(stop.signum).name if stop.signum else "a stop request"
                    bar.close()
                    _say(f"received {name} at step {done}: checkpoint saved in {model_dir}; rerun the same "
                         f"command to resume")
                    break
                if eval_sets and done % eval_period == 0:
                    metrics_after = run_eval(done)
                    if done < train_steps and patience_exhausted(done):
                        early_stopped = True
                        _say(f"early stopping at step {done}: no improvement in {patience} evaluations since "
                             f"step {best_step}")
                        break
        finally:
            bar.close()
    # -- the end of the run ------------------------------------------------
    end = int(partitioning.fetch(state["step"]))
    if not preempted:
        if ckpts.latest_step() != end:
            ckpts.save(state, prompt_array(state["params"]))
        fault_points.reached("final_saved")
        if eval_sets and end not in evaluated:
            metrics_after = run_eval(end)
        elif eval_sets and not metrics_after:
            metrics_after = recorded(end)
        if early_stopped:
            writer.write(end, metrics_writer.EARLY_STOP, {"best_step": best_step, "patience": patience})
    best = ckpts.best_info()
    metrics_test = {}
    if not preempted and test_splits and best is not None:
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
        best_params = merge_params(frozen, ckpts.restore(abstract, which="best")["params"])
        for split in test_splits:
            metrics_test.update(_evaluate_split(setup, best_params, task_name, split, task_feature_lengths,
                                                eval_mode, eval_batch_size, eval_max_examples, mesh, verbalizers,
                                                model_dir, task_order, data.packing))
        writer.write(best["step"], "test", metrics_test)
    writer.close()
    ckpts.close()
    if not preempted:
        _say(f"done: {end} steps in {model_dir}")
        if metrics_before:
            _say(f"validation before training: {_format_metrics(metrics_before)}")
        if metrics_after:
            _say(f"validation after training:  {_format_metrics(metrics_after)}")
        if best is not None:
            prompted = setup.model.prompt_factory is not None
            where = (f"prompt at {os.path.join(model_dir, save_restore.PROMPTS_DIR, 'best.npy')}" if prompted
                     else f"parameters in {os.path.join(model_dir, save_restore.BEST_DIR)}")
            _say(f"best: step {best['step']} (value {best['value']:.4g}); {where}")
        if metrics_test:
            _say(f"test at the best checkpoint (step {best['step']}): {_format_metrics(metrics_test)}")
    return {"model_dir": model_dir, "step": end, "metrics_before": metrics_before, "metrics_after": metrics_after,
            "metrics_test": metrics_test, "best": best, "preempted": preempted, "early_stopped": early_stopped,
            "params": merge_params(frozen, state["params"])}
