"""The project's train step (prompt_tuning.training.steps.train_step, which the trainer runs), compiled and timed.

The step is jitted exactly as `trainer.train_and_evaluate` does it: the
model, optimizer and loss settings are bound with functools.partial; the
train state {'step', 'params', 'opt_state'} is argument 0 and donated; the
frozen parameters are argument 1 (an argument, never a closed-over constant);
the batch reaches the device through `partitioning.global_batch`, as in the
training loop.

Modes (weights are random; only shapes matter):
  prompt      prompt tuning: a [P, H] prompt on T input tokens, trainable
              regex steps.PROMPT_REGEX, the paper's Adafactor settings;
  model       model tuning: no prompt, T input tokens, every weight trained,
              gin/runs/model_finetune.gin's Adafactor settings;
  model_pt    model tuning on P+T input tokens: the same tensor shapes as
              the prompt-tuning step everywhere, so the two differ only by
              the gradients they form.

Shape letters: B batch, T input length, L target length, P prompt length.
"""
from __future__ import annotations

import functools
import statistics
import time

import numpy as np

from benchmarks import flops, hlo, machine
from benchmarks.spec import Spec

PROMPT, MODEL, MODEL_PT = "prompt", "model", "model_pt"
MODES = (PROMPT, MODEL, MODEL_PT)
DATA_POOL = 10_000  # examples of the synthetic training split (BoolQ-sized)


def model_config(spec: Spec):
    from prompt_tuning.models import t5

    overrides = {"dropout_rate": spec.dropout_rate, "dtype": spec.dtype, "remat": spec.remat}
    if spec.vocab_size:
        overrides["vocab_size"] = spec.vocab_size
    if spec.num_layers:
        overrides.update(num_encoder_layers=spec.num_layers, num_decoder_layers=spec.num_layers)
    return t5.get_config(spec.size, **overrides)


def input_len(spec: Spec, mode: str) -> int:
    return spec.encoder_len if mode == MODEL_PT else spec.input_len


def host_data(spec: Spec, vocab_size: int, inputs: int, seed: int = 0):
    """The trainer's own `input_pipeline.TrainData` ('memory' mode) over a synthetic split.

    DATA_POOL examples held as uint16 arrays, as `convert_split` holds a real
    split (BoolQ's train split is ~9.4k examples); `batch(step)` is the
    pipeline's real code: the epoch's permutation, the gather, the cast.
    Tokens are random ids >= 3 (no padding: every position costs), targets end
    with EOS (1); the loss weights are targets > 0.
    """
    from prompt_tuning.training import input_pipeline

    class Preloaded(input_pipeline.TrainData):
        def __post_init__(self):  # the arrays are given, not converted from a seqio task
            self.mode = "memory"

    rng = np.random.default_rng(seed)
    dtype = np.uint16 if vocab_size <= 65535 else np.int32
    targets = rng.integers(3, vocab_size, (DATA_POOL, spec.target_len))
    targets[:, -1] = 1
    data = Preloaded("benchmark", {"inputs": inputs, "targets": spec.target_len}, spec.batch, seed=seed)
    data._arrays = {
        "encoder_input_tokens": rng.integers(3, vocab_size, (DATA_POOL, inputs)).astype(dtype),
        "decoder_input_tokens": np.concatenate([np.zeros((DATA_POOL, 1), int), targets[:, :-1]], 1).astype(dtype),
        "decoder_target_tokens": targets.astype(dtype),
        "decoder_loss_weights": (targets > 0).astype(dtype),
    }
    return data


def build(spec: Spec, mode: str):
    """(jitted step, state, frozen, model, config, data, mesh) for `mode`, on the default device."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from prompt_tuning import prompts
    from prompt_tuning.models import t5
    from prompt_tuning.training import optimizer, partitioning, steps

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    config = model_config(spec)
    if mode == PROMPT:
        model = t5.T5(config, functools.partial(prompts.Prompt, length=spec.prompt_len))
        regex = steps.PROMPT_REGEX
        tx = optimizer.adafactor()  # the paper's prompt-tuning settings (the module's defaults)
    else:
        model = t5.T5(config)
        regex = steps.ALL_REGEX
        # gin/runs/model_finetune.gin
        tx = optimizer.adafactor(optimizer.learning_rate_schedule(0.001), weight_decay_rate=None,
                                 multiply_by_parameter_scale=True)
    tokens = jnp.ones((1, 1), jnp.int32)
    params = jax.jit(lambda: nn.meta.unbox(model.init(jax.random.PRNGKey(0), tokens, tokens, tokens)["params"]))()
    trainable, frozen = steps.split_params(params, regex)
    if spec.frozen_dtype != "float32":
        frozen = jax.tree.map(lambda x: x.astype(spec.frozen_dtype), frozen)
    mesh = partitioning.make_mesh()
    replicated = partitioning.replicated(mesh)
    trainable, frozen = jax.device_put((trainable, frozen), replicated)
    state = {"step": jax.device_put(jnp.zeros((), jnp.int32), replicated), "params": trainable,
             "opt_state": jax.jit(tx.init)(trainable)}
    step = jax.jit(
        functools.partial(steps.train_step, model=model, tx=tx, z_loss=1e-4, loss_normalizing_factor=None),
        donate_argnums=(0,), compiler_options=steps.compiler_options(model),
    )
    data = host_data(spec, config.vocab_size, input_len(spec, mode))
    return step, state, frozen, model, config, data, mesh


def donated_fraction(old_leaves) -> float:
    """The share of the old state's bytes that the step took over (donated buffers are deleted).

    Below 1 only by optax's one-element placeholders (Adafactor's row/column
    statistics of an unfactored parameter), which each update recreates.
    """
    total = sum(x.nbytes for x in old_leaves)
    return sum(x.nbytes for x in old_leaves if x.is_deleted()) / max(total, 1)


def _cost_flops(compiled) -> float:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older jax: one dict per program
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", float("nan")))


def _memory(compiled) -> dict:
    stats = compiled.memory_analysis()
    if stats is None:
        return {}
    out = {k: int(getattr(stats, f"{k}_size_in_bytes", 0)) for k in ("argument", "output", "alias", "temp")}
    # Donated (aliased) outputs reuse argument buffers: live at once are arguments + outputs - aliases + temps.
    out["total"] = out["argument"] + out["output"] - out["alias"] + out["temp"]
    return out


def run(spec: Spec, mode: str) -> dict:
    """Compiles, checks and times one mode; every figure the report needs, as plain JSON values."""
    import jax

    from prompt_tuning.training import partitioning, steps  # noqa: F401  (imported before the baseline)

    rss_start = machine.rss_mb()
    t0 = time.perf_counter()
    step, state, frozen, model, config, data, mesh = build(spec, mode)
    key = jax.random.PRNGKey(0)
    first = partitioning.global_batch(data.batch(0), mesh)
    rss_params = machine.rss_mb()

    t1 = time.perf_counter()
    compiled = step.lower(state, frozen, first, key).compile()
    compile_s = time.perf_counter() - t1
    hlo_text = compiled.as_text()
    weights = hlo.kernel_shapes(frozen if mode == PROMPT else state["params"])
    wgrad = hlo.weight_gradient_ops(hlo_text, weights.values())
    mm_ops = hlo.matmul_ops(hlo_text)
    encoder_len = spec.encoder_len if mode != MODEL else spec.input_len
    rows = {spec.batch * encoder_len, spec.batch * spec.target_len}
    peak_compile = machine.peak_rss_mb()
    reset_ok = machine.reset_peak_rss()

    # A step as the training loop runs it: host batch, transfer, step; then wait for its loss.
    # `host` is the input pipeline's share (batch + transfer); the XLA CPU client may run the
    # program inside the call, so the dispatch is not counted as host time.
    times, host, losses = [], [], []
    before = jax.tree.leaves(state)
    donated = None
    for i in range(spec.warmup + spec.steps):
        ts = time.perf_counter()
        batch = partitioning.global_batch(data.batch(i), mesh)
        th = time.perf_counter()
        state, metrics = compiled(state, frozen, batch, key)
        loss = float(jax.block_until_ready(metrics["loss"]))
        te = time.perf_counter()
        losses.append(loss)
        if donated is None:
            donated = donated_fraction(before)
            del before
        if i >= spec.warmup:
            times.append(te - ts)
            host.append(th - ts)
    peak_steps = machine.peak_rss_mb()
    device_stats = jax.local_devices()[0].memory_stats() or {}  # accelerators only; None on CPU

    analytic = flops.step_flops(config, flops.MODEL if mode != PROMPT else flops.PROMPT, batch=spec.batch,
                                encoder_len=encoder_len, target_len=spec.target_len)
    median = statistics.median(times)
    return {
        "mode": mode,
        "encoder_len": encoder_len,
        "trainable_params": int(sum(x.size for x in jax.tree.leaves(state["params"]))),
        "frozen_params": int(sum(x.size for x in jax.tree.leaves(frozen))),
        "setup_s": t1 - t0,
        "compile_s": compile_s,
        "step_s": times,
        "median_step_s": median,
        "examples_per_s": spec.batch / median,
        "host_s_median": statistics.median(host),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "finite": bool(np.all(np.isfinite(losses))),
        "state_donated_fraction": donated,
        "flops_analytic": analytic,
        "flops_xla": _cost_flops(compiled),
        "flops_hlo_dots": hlo.dot_flops(hlo_text),
        "achieved_flops": analytic["total"] / median,
        "xla_memory": _memory(compiled),
        "rss_mb": {"start": rss_start, "after_setup": rss_params, "peak_compile": peak_compile,
                   "peak_steps": peak_steps, "peak_reset_ok": reset_ok},
        "device_peak_bytes": device_stats.get("peak_bytes_in_use"),
        "hlo": {"matmuls": len(mm_ops), "backward_matmuls": sum(op.backward for op in mm_ops),
                "weight_gradient_matmuls": len(wgrad), "weight_shapes": len(set(weights.values())),
                "host_transfers": len(hlo.host_transfer_ops(hlo_text)),
                "weight_constants": len(hlo.weight_constants(hlo_text, weights.values())),
                "ambiguous_dims": sorted(hlo.ambiguous_dims(weights.values(), rows))},
    }
