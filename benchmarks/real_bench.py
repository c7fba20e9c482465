"""Throughput on real input lengths: the RTE train set, fixed padding vs length bucketing vs PEFT.

The inputs are the real SuperGLUE RTE train set (`../shared/data/superglue/RTE/train.jsonl`, 2,490
examples) in the project's taskless T5 format with the T5 vocabulary (`data.register_jsonl_task`),
padded to `real_inputs` (512) tokens as TASK_FEATURE_LENGTHS would; the model is T5 1.1 of the
spec's size with random weights and a prompt of P (100). One epoch of `real_batch` (32) examples a
step is laid out six ways, five of them a list of per-step padded input lengths:

  ours fixed       every step at `real_inputs` (what the trainer does by default);
  ours bucketed    `input_pipeline.TrainData(length_buckets=real_buckets)`: the trainer's own order;
  ours packed      the fixed layout's batches, each packed into rows of `real_pack_width` encoder
                   slots (P + 512 by default: every example fits) with a prompt per segment
                   (`training/packing.py`, what gin/runs/packing.gin trains); the row count varies
                   per step and is rounded up to a multiple of `real_pack_row_multiple`;
  peft fixed       every step at `real_inputs`;
  peft dynamic     the epoch's order, each batch padded to its own longest input
                   (transformers' DataCollatorWithPadding);
  peft grouped     dynamic padding plus length grouping: megabatches of 50 batches sorted by length
                   (transformers' `group_by_length`, LengthGroupedSampler).

Timing a whole epoch on a 2-core CPU takes hours, so each distinct shape is timed instead (a fixed
subsample of steps that preserves the length distribution): ours compiles one program per padded
length, so the epoch time is exactly sum over steps of time(length), each length timed on a real
batch of that length (median of `real_steps` steps after the compiling call). PEFT's dynamic shapes
take every length, so its step time is measured at `real_peft_points` lengths (quantiles of the two
dynamic plans, plus the fixed length) and interpolated linearly in between. Examples/s is the
epoch's examples over that time.

Evaluation on RTE-validation-shaped inputs (`real_eval_examples` examples of the train set, the
size of RTE's validation split, in a fixed random subset): rank classification with 2 labels as
before this change (each input repeated per label), encoding once with fixed padding, and encoding
once with length buckets; greedy decoding of `target_len` steps with fixed padding and with buckets.

With a model whose vocabulary is smaller than T5's (the --quick spec), token ids are folded into it
(2 + id mod (V - 2); padding stays 0): the lengths, which are what this measures, are unchanged.
"""
from __future__ import annotations

import os
import statistics
import time
from typing import Optional

import numpy as np

from benchmarks.spec import Spec
from benchmarks import train_bench


def _spec(spec: Spec) -> Spec:
    """The spec with `real_layers` (if set) as the layer count."""
    return spec.replace(num_layers=spec.real_layers) if spec.real_layers else spec


def model_config(spec: Spec):
    """The T5Config of the real-length runs (train_bench's, with `real_layers`)."""
    return train_bench.model_config(_spec(spec))

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RTE_DIR = os.path.join(os.path.dirname(REPO), "shared", "data", "superglue", "RTE")
SPIECE = os.path.join(os.path.dirname(REPO), "shared", "data", "t5", "spiece.model")
TASK = "benchmark_real_rte"
GROUP_MEGABATCH = 50  # transformers' LengthGroupedSampler: megabatches of 50 batches


def missing_data() -> Optional[str]:
    """A skip message if the RTE train set or the T5 vocabulary is absent, else None."""
    for path in (os.path.join(RTE_DIR, "train.jsonl"), SPIECE):
        if not os.path.exists(path):
            return f"real-length benchmark skipped: {path} not found (see ../shared/data/SOURCES.md)"
    return None


def rte_data(spec: Spec, vocab_size: int, buckets=None):
    """input_pipeline.TrainData over the real RTE train set (ids folded into a small vocabulary)."""
    from prompt_tuning.data import tasks, vocab
    from prompt_tuning.training import input_pipeline

    if TASK not in __import__("seqio").TaskRegistry.names():
        tasks.register_jsonl_task(TASK, "rte", RTE_DIR, split_files={"train": "train.jsonl"},
                                  vocabulary=vocab.get_vocabulary(SPIECE))
    data = input_pipeline.TrainData(TASK, {"inputs": spec.real_inputs, "targets": spec.target_len},
                                    spec.real_batch, seed=0, length_buckets=buckets,
                                    bucket_window=spec.real_window)
    if spec.real_max_examples:
        data._arrays = {k: v[: spec.real_max_examples] for k, v in data._arrays.items()}
        data._lengths = data._lengths[: spec.real_max_examples]
    if vocab_size < 32100:
        data._arrays = {k: np.where(v > 0, 2 + v.astype(np.int64) % (vocab_size - 2), 0).astype(np.int32)
                        for k, v in data._arrays.items()}
    return data


def epoch_steps(data) -> int:
    """Full batches in one epoch (the remainder is dropped, as every layout does)."""
    return data.num_examples // data.batch_size


def plans(spec: Spec, data) -> dict:
    """Per-step padded input lengths of one epoch for each layout (see the module docstring), with
    the share of encoder slots (prompt + tokens) that hold a prompt vector or a real token."""
    from prompt_tuning.training import input_pipeline, packing

    steps, b, p = epoch_steps(data), data.batch_size, spec.prompt_len
    lengths = data._lengths
    buckets = input_pipeline.check_length_buckets(list(spec.real_buckets), spec.real_inputs)
    plain = input_pipeline.TrainData.__new__(input_pipeline.TrainData)  # the unbucketed order of the data
    plain.__dict__.update({**data.__dict__, "length_buckets": None})
    bucketed = input_pipeline.TrainData.__new__(input_pipeline.TrainData)
    bucketed.__dict__.update({**data.__dict__, "length_buckets": buckets})
    order = [plain.batch_indices(s) for s in range(steps)]
    by_bucket = [bucketed.batch_indices(s) for s in range(steps)]
    grouped = []
    flat = np.concatenate(order)
    for m in range(0, steps, GROUP_MEGABATCH):
        mega = flat[m * b:min(m + GROUP_MEGABATCH, steps) * b]
        mega = mega[np.argsort(-lengths[mega], kind="stable")]
        grouped += [mega[k:k + b] for k in range(0, len(mega), b)]
    batches = {"ours_fixed": order, "ours_bucketed": by_bucket, "peft_fixed": order, "peft_dynamic": order,
               "peft_grouped": grouped}
    widths = {
        "ours_fixed": [spec.real_inputs] * steps,
        "ours_bucketed": [input_pipeline.bucket_length(int(lengths[i].max()), buckets) for i in by_bucket],
        "peft_fixed": [spec.real_inputs] * steps,
        "peft_dynamic": [int(lengths[i].max()) for i in order],
        "peft_grouped": [int(lengths[i].max()) for i in grouped],
    }
    slot_use = {m: float(sum(np.sum(lengths[i] + p) for i in batches[m]) / sum((w + p) * b for w in widths[m]))
                for m in widths}
    pack = pack_spec(spec)
    targets = input_pipeline.input_lengths(data._arrays["decoder_target_tokens"])
    rows = [packing.plan(lengths[i], targets[i], pack).rows for i in order]
    slot_use["ours_packed"] = float(sum(np.sum(lengths[i] + p) for i in order) / (sum(rows) * pack.width))
    return {"widths": widths, "slot_use": slot_use, "batches": batches, "buckets": list(buckets),
            "packed_rows": rows, "pack_width": pack.width}


def pack_spec(spec: Spec):
    """The packing.Packing of the packed layout."""
    from prompt_tuning.training import packing

    return packing.Packing(spec.real_pack_width or spec.prompt_len + spec.real_inputs, spec.real_pack_target_width,
                           spec.prompt_len, spec.real_pack_row_multiple)


def _timed(fn, steps: int) -> tuple[float, float]:
    """(first call, incl. any compilation; median of the next `steps` calls)."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times)


def run_ours(spec: Spec) -> dict:
    """Ours: train examples/s with fixed padding and with length buckets; eval examples/s."""
    import functools

    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from benchmarks import eval_bench
    from prompt_tuning import prompts
    from prompt_tuning.models import decoding, t5
    from prompt_tuning.training import input_pipeline, packing, partitioning

    config = model_config(spec)
    data = rte_data(spec, config.vocab_size)
    layout = plans(spec, data)
    widths, batches, buckets = layout["widths"], layout["batches"], layout["buckets"]
    b = spec.real_batch
    step, state, frozen, *_ = train_bench.build(_spec(spec).replace(batch=b, input_len=spec.real_inputs), "prompt")
    mesh = partitioning.make_mesh()
    key = jax.random.PRNGKey(0)
    shape_times = {}
    holder = {"state": state}
    for mode in ("ours_fixed", "ours_bucketed"):
        for width in sorted(set(widths[mode]) - set(shape_times)):
            rows = batches[mode][widths[mode].index(width)]  # a real batch that needs this width
            batch = {k: v[rows].astype(np.int32) for k, v in data._arrays.items()}
            batch["encoder_input_tokens"] = batch["encoder_input_tokens"][:, :width]
            batch = partitioning.global_batch(batch, mesh)
            # Compiled once ahead, as train_bench does (a plain call would compile again on the second
            # step: the donated output state's buffers differ from the initial state's).
            t0 = time.perf_counter()
            compiled = step.lower(holder["state"], frozen, batch, key).compile()
            compile_s = time.perf_counter() - t0

            def one():
                holder["state"], metrics = compiled(holder["state"], frozen, batch, key)
                jax.block_until_ready(metrics["loss"])

            first, median = _timed(one, spec.real_steps)
            first += compile_s
            shape_times[width] = {"first_call_s": first, "median_s": median}
            print(f"  ours train width {width}: {median:.2f} s/step (first {first:.1f} s)", flush=True)
    # Packed rows: the fixed layout's batches packed, one compiled shape per row count.
    pack, packed_times = pack_spec(spec), {}
    for n_rows in sorted(set(layout["packed_rows"])):
        rows = batches["ours_fixed"][layout["packed_rows"].index(n_rows)]
        batch = packing.pack({k: v[rows].astype(np.int32) for k, v in data._arrays.items()}, pack)[0]
        batch = partitioning.global_batch(batch, mesh)
        t0 = time.perf_counter()
        compiled = step.lower(holder["state"], frozen, batch, key).compile()
        compile_s = time.perf_counter() - t0

        def one_packed():
            holder["state"], metrics = compiled(holder["state"], frozen, batch, key)
            jax.block_until_ready(metrics["loss"])

        first, median = _timed(one_packed, spec.real_steps)
        packed_times[n_rows] = {"first_call_s": first + compile_s, "median_s": median}
        print(f"  ours packed {n_rows} x {pack.width}: {median:.2f} s/step (first {first + compile_s:.1f} s)",
              flush=True)
    train = {}
    for mode in ("ours_fixed", "ours_bucketed"):
        total = sum(shape_times[w]["median_s"] for w in widths[mode])
        train[mode] = {"epoch_s": total, "examples_per_s": len(widths[mode]) * b / total,
                       "compiled_shapes": len(set(widths[mode])), "slot_use": layout["slot_use"][mode]}
    total = sum(packed_times[r]["median_s"] for r in layout["packed_rows"])
    train["ours_packed"] = {"epoch_s": total, "examples_per_s": len(layout["packed_rows"]) * b / total,
                            "compiled_shapes": len(packed_times), "slot_use": layout["slot_use"]["ours_packed"],
                            "pack_width": pack.width, "mean_rows": float(np.mean(layout["packed_rows"]))}
    summary = {"examples": data.num_examples, "steps_per_epoch": len(widths["ours_fixed"]), "batch": b,
               "buckets": buckets, "shape_times": {str(k): v for k, v in shape_times.items()},
               "packed_shape_times": {str(k): v for k, v in packed_times.items()}, "train": train,
               "eval_batch": spec.real_eval_batch, "mean_input_len": float(np.mean(data._lengths)),
               "p95_input_len": float(np.percentile(data._lengths, 95))}
    if not spec.real_eval_examples:  # --real-eval-examples 0: training only
        return {**summary, "eval": {}, "eval_examples": 0}

    # Evaluation on RTE-validation-shaped inputs.
    model = t5.T5(config, functools.partial(prompts.Prompt, length=spec.prompt_len))
    tokens = jnp.ones((1, 1), jnp.int32)
    params = jax.jit(lambda: nn.meta.unbox(model.init(jax.random.PRNGKey(0), tokens, tokens, tokens)["params"]))()
    n_eval = min(spec.real_eval_examples, data.num_examples)
    eval_rows = np.random.default_rng(1).permutation(data.num_examples)[:n_eval]
    enc = data._arrays["encoder_input_tokens"][eval_rows].astype(np.int32)
    rng = np.random.default_rng(0)
    labels = np.zeros((2, spec.target_len), np.int32)
    labels[:, 0] = rng.integers(3, config.vocab_size, 2)
    labels[:, 1] = decoding.EOS_ID
    dec_in = np.concatenate([np.zeros((2, 1), np.int32), labels[:, :-1]], axis=1)
    eb = spec.real_eval_batch
    cases = {
        "rank_repeat": lambda x: decoding.sequence_log_likelihood(
            model, params, jnp.repeat(x, 2, axis=0), np.tile(dec_in, (x.shape[0], 1)),
            np.tile(labels, (x.shape[0], 1))),
        "rank_once": lambda x: decoding.label_log_likelihoods(model, params, x, dec_in, labels),
        "greedy": lambda x: decoding.greedy_decode(model, params, x, max_decode_length=spec.target_len,
                                                   eos_id=eval_bench.NEVER),
    }
    evaluation = {}
    for name, fn in cases.items():
        for bucketed in ((False, True) if name != "rank_repeat" else (False,)):
            bk = buckets if bucketed else None
            order_e = input_pipeline.eval_order({"encoder_input_tokens": enc}, bk)
            chunks = [c for c, _ in input_pipeline.eval_batches({"encoder_input_tokens": enc[order_e]}, eb, bk)]
            eval_widths = [c["encoder_input_tokens"].shape[1] for c in chunks]
            per_width = {}
            for w in sorted(set(eval_widths)):
                chunk = chunks[eval_widths.index(w)]["encoder_input_tokens"]
                per_width[w] = _timed(lambda: jax.block_until_ready(fn(chunk)), spec.real_steps)[1]
            total = sum(per_width[w] for w in eval_widths)
            label = f"{name}_{'bucketed' if bucketed else 'fixed'}"
            evaluation[label] = {"eval_s": total, "examples_per_s": n_eval / total, "compiled_shapes": len(per_width)}
            print(f"  {label}: {n_eval / total:.2f} ex/s", flush=True)
    return {**summary, "eval": evaluation, "eval_examples": n_eval}


def run_peft(spec: Spec) -> dict:
    """HF PEFT: train examples/s with fixed padding, dynamic padding, dynamic padding + length grouping."""
    import torch

    from benchmarks import peft_bench

    cfg = model_config(spec)
    data = rte_data(spec, cfg.vocab_size)
    layout = plans(spec, data)
    widths = layout["widths"]
    model, opt, _, device, _ = peft_bench.build(_spec(spec))
    b = spec.real_batch
    dynamic = sorted(set(widths["peft_dynamic"]) | set(widths["peft_grouped"]))
    qs = np.linspace(0, 1, max(spec.real_peft_points - 1, 2))
    points = sorted({int(np.quantile(dynamic, q, method="nearest")) for q in qs} | {spec.real_inputs})
    arrays = {k: torch.as_tensor(v.astype(np.int64), device=device) for k, v in data._arrays.items()}
    rows = torch.as_tensor(layout["batches"]["peft_fixed"][0], device=device)
    labels = arrays["decoder_target_tokens"][rows].clone()
    labels[labels == 0] = -100
    times = {}
    for width in points:
        ids = arrays["encoder_input_tokens"][rows][:, :width]

        def one():
            out = model(input_ids=ids, attention_mask=(ids > 0).long(),
                        decoder_input_ids=arrays["decoder_input_tokens"][rows], labels=labels)
            out.loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            float(out.loss.detach())

        times[width] = _timed(one, spec.real_steps)[1]
        print(f"  peft width {width}: {times[width]:.2f} s/step", flush=True)
    xs = sorted(times)
    step_time = lambda w: float(np.interp(w, xs, [times[x] for x in xs]))
    train = {}
    for mode in ("peft_fixed", "peft_dynamic", "peft_grouped"):
        total = sum(step_time(w) for w in widths[mode])
        train[mode] = {"epoch_s": total, "examples_per_s": len(widths[mode]) * b / total,
                       "distinct_shapes": len(set(widths[mode])), "slot_use": layout["slot_use"][mode]}
    return {"examples": data.num_examples, "batch": b, "measured_s_per_step": {str(k): v for k, v in times.items()},
            "train": train}
