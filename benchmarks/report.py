"""Turning worker results into ratios, goals, a text table and RESULTS.md.

`summarize` derives every ratio from figures of the same run; a figure whose
worker failed or was skipped is None and shows as '-'.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

MiB = 1024 ** 2
STEP_ROWS = (
    ("prompt", "prompt tuning (ours)"),
    ("prompt_remat", "prompt tuning (ours), blocks rematerialised"),
    ("model", "model tuning, T tokens"),
    ("model_pt", "model tuning, P+T tokens"),
    ("peft", "prompt tuning (HF PEFT)"),
)


def _get(d: Optional[Mapping], *path, default=None):
    for key in path:
        if not isinstance(d, Mapping) or key not in d or d[key] is None:
            return default
        d = d[key]
    return d


def _ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def _rss_growth(r: Optional[Mapping]) -> Optional[float]:
    """Peak RSS while stepping above the RSS once the libraries were imported (MiB)."""
    peak, start = _get(r, "rss_mb", "peak_steps"), _get(r, "rss_mb", "start")
    return peak - start if peak is not None and start is not None else None


def summarize(results: Mapping[str, Any]) -> dict:
    """The headline ratios and the issue's goals, each {'value', 'target', 'met'}."""
    pt, mt, mt_pt, peft = (results.get(k) for k in ("prompt", "model", "model_pt", "peft"))
    remat = results.get("prompt_remat")
    ev, peak = results.get("eval"), _get(results, "peak", "peak_flops")
    s = {
        "ours_over_peft_examples_per_s": _ratio(_get(pt, "examples_per_s"), _get(peft, "examples_per_s")),
        "pt_over_mt_time": _ratio(_get(pt, "median_step_s"), _get(mt, "median_step_s")),
        "pt_over_mt_pt_time": _ratio(_get(pt, "median_step_s"), _get(mt_pt, "median_step_s")),
        "pt_over_mt_pt_time_ideal": _ratio(_get(pt, "flops_analytic", "total"),
                                           _get(mt_pt, "flops_analytic", "total")),
        "pt_over_mt_time_ideal": _ratio(_get(pt, "flops_analytic", "total"), _get(mt, "flops_analytic", "total")),
        "pt_over_mt_xla_memory": _ratio(_get(pt, "xla_memory", "total"), _get(mt, "xla_memory", "total")),
        "pt_over_mt_pt_xla_memory": _ratio(_get(pt, "xla_memory", "total"), _get(mt_pt, "xla_memory", "total")),
        "pt_remat_over_mt_pt_xla_memory": _ratio(_get(remat, "xla_memory", "total"),
                                                 _get(mt_pt, "xla_memory", "total")),
        "pt_remat_over_pt_time": _ratio(_get(remat, "median_step_s"), _get(pt, "median_step_s")),
        "pt_over_mt_peak_rss": _ratio(_get(pt, "rss_mb", "peak_steps"), _get(mt, "rss_mb", "peak_steps")),
        "pt_over_mt_rss_growth": _ratio(_rss_growth(pt), _rss_growth(mt)),
        "pt_fraction_of_peak": _ratio(_get(pt, "achieved_flops"), peak),
        "mt_fraction_of_peak": _ratio(_get(mt, "achieved_flops"), peak),
        "peft_fraction_of_peak": _ratio(_get(peft, "achieved_flops"), peak),
        "rank_mixed_over_single": _get(ev, "rank_mixed_over_single"),
        "rank_once_over_repeat": _get(ev, "rank_once_over_repeat"),
        **_real_summary(results),
        "decode_mixed_over_single": _get(ev, "decode_mixed_over_single"),
        "pt_weight_gradient_matmuls": _get(pt, "hlo", "weight_gradient_matmuls"),
        "mt_weight_gradient_matmuls": _get(mt_pt, "hlo", "weight_gradient_matmuls"),
    }
    goals = [
        ("ours/PEFT prompt-tuning examples/s", s["ours_over_peft_examples_per_s"], ">=", 2.0),
        ("PT/MT step time (same P+T shapes)", s["pt_over_mt_pt_time"], "<=", 0.70),
        ("PT with remat / MT peak memory (XLA, same P+T shapes)", s["pt_remat_over_mt_pt_xla_memory"], "<=", 0.6),
        ("PT achieved FLOP/s / matmul peak", s["pt_fraction_of_peak"], ">=", 0.6),
        ("5-prompt / 1-prompt rank throughput", s["rank_mixed_over_single"], ">=", 0.9),
        ("rank encode-once / repeat-per-label throughput", s["rank_once_over_repeat"], ">=", 1.6),
        ("real RTE lengths: ours best / PEFT best train ex/s", s["real_ours_best_over_peft_best"], ">=", 2.0),
        ("real RTE lengths: ours best / ours fixed train ex/s", s["real_ours_best_over_ours_fixed"], ">=", 2.5),
        ("real RTE lengths: rank eval, once+buckets / before", s["real_rank_best_over_before"], ">=", 1.6),
        ("5-prompt / 1-prompt decode throughput", s["decode_mixed_over_single"], ">=", 0.9),
        ("weight-gradient matmuls in the PT step", s["pt_weight_gradient_matmuls"], "==", 0),
    ]
    s["goals"] = [
        {"goal": name, "value": value, "target": f"{op} {target}",
         "met": None if value is None else {">=": value >= target, "<=": value <= target, "==": value == target}[op]}
        for name, value, op, target in goals
    ]
    return s


REAL_TRAIN = (("ours_fixed", "ours, fixed padding"), ("ours_bucketed", "ours, length buckets"),
              ("ours_packed", "ours, packed rows, a prompt per segment"),
              ("peft_fixed", "HF PEFT, fixed padding"), ("peft_dynamic", "HF PEFT, dynamic padding"),
              ("peft_grouped", "HF PEFT, dynamic + group_by_length"))
REAL_EVAL = (("rank_repeat_fixed", "rank (2 labels), input repeated per label, fixed (before)"),
             ("rank_once_fixed", "rank (2 labels), encoded once, fixed"),
             ("rank_once_bucketed", "rank (2 labels), encoded once, length buckets"),
             ("greedy_fixed", "greedy decode, fixed"), ("greedy_bucketed", "greedy decode, length buckets"))


def _real_train(results: Mapping[str, Any]) -> dict:
    out = {}
    for task in ("real", "real_peft"):
        out.update(_get(results, task, "train") or {})
    return out


def _real_summary(results: Mapping[str, Any]) -> dict:
    train, ev = _real_train(results), _get(results, "real", "eval") or {}
    rate = lambda d, k: _get(d, k, "examples_per_s")
    best = lambda d, keys: max((rate(d, k) for k in keys if rate(d, k) is not None), default=None)
    ours, peft = best(train, ("ours_fixed", "ours_bucketed", "ours_packed")), best(train, ("peft_fixed", "peft_dynamic", "peft_grouped"))
    return {
        "real_ours_best_over_peft_best": _ratio(ours, peft),
        "real_ours_best_over_ours_fixed": _ratio(ours, rate(train, "ours_fixed")),
        "real_ours_bucketed_over_peft_grouped": _ratio(rate(train, "ours_bucketed"), rate(train, "peft_grouped")),
        "real_ours_packed_over_bucketed": _ratio(rate(train, "ours_packed"), rate(train, "ours_bucketed")),
        "real_ours_packed_over_fixed": _ratio(rate(train, "ours_packed"), rate(train, "ours_fixed")),
        "real_rank_best_over_before": _ratio(best(ev, ("rank_once_fixed", "rank_once_bucketed")),
                                             rate(ev, "rank_repeat_fixed")),
        "real_rank_once_over_repeat_fixed": _ratio(rate(ev, "rank_once_fixed"), rate(ev, "rank_repeat_fixed")),
    }


def real_rows(results: Mapping[str, Any]) -> list[list[str]]:
    train, ev = _real_train(results), _get(results, "real", "eval") or {}
    if not train and not ev:
        why = _get(results, "real", "skipped") or _get(results, "real", "error") or "not run"
        return [["real-length", f"({str(why).splitlines()[0][:70]})", "", ""]]
    rows = []
    for key, label in REAL_TRAIN:
        r = train.get(key)
        if r:
            rows.append([f"train: {label}", _fmt(r["examples_per_s"], ".2f"), _fmt(r.get("slot_use"), ".2f"),
                         str(r.get("compiled_shapes", r.get("distinct_shapes", "-")))])
    for key, label in REAL_EVAL:
        r = ev.get(key)
        if r:
            rows.append([f"eval: {label}", _fmt(r["examples_per_s"], ".2f"), "", str(r.get("compiled_shapes", "-"))])
    return rows


REAL_HEADER = ["real RTE lengths", "ex/s", "slot use", "shapes"]


def _real_line(results: Mapping[str, Any]) -> str:
    r, p = results.get("real") or {}, results.get("real_peft") or {}
    if "train" not in r:
        return ""
    return (f"RTE train set ({r['examples']} examples, mean {r['mean_input_len']:.0f} / p95 {r['p95_input_len']:.0f} "
            f"input tokens, padded to {max(int(k) for k in r['shape_times'])}), batch {r['batch']}, buckets "
            f"{r['buckets']}; one epoch = {r['steps_per_epoch']} steps, each distinct shape timed "
            f"(PEFT at {len(p.get('measured_s_per_step', {}))} lengths, interpolated)"
            + (f"; packed rows of {r['train']['ours_packed']['pack_width']} slots, "
               f"{r['train']['ours_packed']['mean_rows']:.1f} rows a step on average"
               if "ours_packed" in r["train"] else "")
            + (f"; eval on {r['eval_examples']} RTE-validation-sized inputs, batch {r['eval_batch']}"
               if r.get("eval_examples") else "; evaluation not run")
            + ". slot use: share of encoder slots (prompt + tokens) holding a prompt vector or a real token.")


def _fmt(x, spec: str = ".3g", scale: float = 1.0) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, float)):
        return format(x * scale if scale != 1.0 else x, spec)
    return str(x)


def step_rows(results: Mapping[str, Any]) -> list[list[str]]:
    peak = _get(results, "peak", "peak_flops")
    rows = []
    for key, label in STEP_ROWS:
        r = results.get(key)
        if not isinstance(r, Mapping) or "median_step_s" not in r:
            why = _get(r, "skipped") or _get(r, "error") or "not run"
            rows.append([label, f"({str(why).splitlines()[0][:60]})"] + [""] * (len(STEP_HEADER) - 2))
            continue
        xla_mem = _get(r, "xla_memory", "total")
        peak_rss = _get(r, "rss_mb", "peak_steps", default=_get(r, "rss_mb", "peak"))
        rows.append([
            label,
            _fmt(r["median_step_s"], ".3f"),
            _fmt(r["examples_per_s"], ".2f"),
            _fmt(_get(r, "flops_analytic", "total"), ".4g", 1e-9),
            _fmt(_get(r, "flops_hlo_dots"), ".4g", 1e-9),
            _fmt(_get(r, "flops_xla"), ".4g", 1e-9),
            _fmt(r.get("achieved_flops"), ".1f", 1e-9),
            _fmt(_ratio(r.get("achieved_flops"), peak), ".0%"),
            _fmt(xla_mem, ".0f", 1 / MiB),
            _fmt(peak_rss, ".0f"),
            _fmt(_rss_growth(r), ".0f"),
            _fmt(r.get("host_s_median"), ".1f", 1e3),
        ])
    return rows


STEP_HEADER = ["train step", "s/step", "ex/s", "matmul GFLOP", "HLO dot GFLOP", "XLA GFLOP", "GFLOP/s", "% peak",
               "XLA mem MiB", "peak RSS MiB", "RSS growth MiB", "host ms"]


def eval_rows(results: Mapping[str, Any]) -> list[list[str]]:
    ev = results.get("eval")
    if not isinstance(ev, Mapping) or "rank_single" not in ev:
        why = _get(ev, "error") or "not run"
        return [["eval", f"({str(why).splitlines()[0][:60]})", "", "", ""]]
    rows = []
    for task, label in (("rank", f"rank classification ({ev['labels']} labels)"),
                        ("decode", f"greedy decode ({ev['decode_len']} tokens)")):
        single, mixed = ev[f"{task}_single"], ev[f"{task}_mixed"]
        rows.append([label, _fmt(single["examples_per_s"], ".1f"), _fmt(mixed["examples_per_s"], ".1f"),
                     _fmt(ev[f"{task}_mixed_over_single"], ".2f"), str(ev["eval_batch"])])
    if "rank_repeat" in ev:
        rows.append([f"rank, input repeated per label (before)", _fmt(ev["rank_repeat"]["examples_per_s"], ".1f"),
                     "", "", str(ev["eval_batch"])])
    return rows


EVAL_HEADER = ["eval", "1 prompt ex/s", "mixed ex/s", "mixed/1", "batch"]


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    line = lambda row: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def headline(summary: Mapping[str, Any]) -> list[str]:
    """The lines every report ends with (RESULTS.md's required `ours/PEFT ...: N.NNx` among them)."""
    f = lambda key, spec=".2f": _fmt(summary.get(key), spec)
    return [
        f"ours/PEFT prompt-tuning examples/s: {f('ours_over_peft_examples_per_s')}x",
        f"PT/MT step time: {f('pt_over_mt_pt_time')}x at the same P+T shapes (analytic ideal "
        f"{f('pt_over_mt_pt_time_ideal')}x); {f('pt_over_mt_time')}x against model tuning on T tokens "
        f"(analytic ideal {f('pt_over_mt_time_ideal')}x)",
        f"PT/MT peak memory (XLA compiled): {f('pt_over_mt_pt_xla_memory')}x at the same P+T shapes, "
        f"{f('pt_over_mt_xla_memory')}x against T tokens; peak RSS while stepping {f('pt_over_mt_peak_rss')}x, "
        f"RSS growth {f('pt_over_mt_rss_growth')}x (T tokens); with every block rematerialised "
        f"{f('pt_remat_over_mt_pt_xla_memory')}x at the same P+T shapes, at {f('pt_remat_over_pt_time')}x the step time",
        f"achieved FLOP/s / measured matmul peak: prompt tuning {f('pt_fraction_of_peak', '.0%')}, "
        f"model tuning {f('mt_fraction_of_peak', '.0%')}, PEFT {f('peft_fraction_of_peak', '.0%')}",
        f"5-prompt mixed / single-prompt eval throughput: rank {f('rank_mixed_over_single')}x, "
        f"decode {f('decode_mixed_over_single')}x",
        f"rank classification, each input encoded once / repeated per label: {f('rank_once_over_repeat')}x",
        f"real RTE lengths, train examples/s: ours best / PEFT best {f('real_ours_best_over_peft_best')}x, "
        f"ours best / ours fixed padding {f('real_ours_best_over_ours_fixed')}x, ours bucketed / PEFT dynamic + "
        f"grouping {f('real_ours_bucketed_over_peft_grouped')}x, ours packed / ours bucketed "
        f"{f('real_ours_packed_over_bucketed')}x, ours packed / ours fixed {f('real_ours_packed_over_fixed')}x; rank eval (2 labels) best / before "
        f"{f('real_rank_best_over_before')}x (encode-once alone {f('real_rank_once_over_repeat_fixed')}x)",
        f"weight-gradient matmuls in the compiled step: prompt tuning {f('pt_weight_gradient_matmuls', 'd')}, "
        f"model tuning {f('mt_weight_gradient_matmuls', 'd')} (the check finds them when they are there)",
    ]


def goal_rows(summary: Mapping[str, Any]) -> list[list[str]]:
    return [[g["goal"], _fmt(g["value"], ".3g"), g["target"], _fmt(g["met"])] for g in summary["goals"]]


def text_report(spec, machine: Mapping, results: Mapping, summary: Mapping) -> str:
    peak = results.get("peak") or {}
    lines = [
        f"machine: {machine.get('cpu')} ({machine.get('cpus_usable')} usable CPUs), backend "
        f"{machine.get('backend')} {machine.get('devices')}, load average before/after "
        f"{machine.get('load_before')} / {machine.get('load_after')}",
        f"shapes: {_shape_line(spec)}",
        f"float32 matmul peak ({peak.get('n', '-')}^3): {_fmt(peak.get('peak_flops'), '.1f', 1e-9)} GFLOP/s"
        + (f"; torch's: {_fmt(_get(results, 'peft', 'torch_matmul_peak_flops'), '.1f', 1e-9)} GFLOP/s"
           if _get(results, "peft", "torch_matmul_peak_flops") else ""),
        "",
        text_table(STEP_HEADER, step_rows(results)),
        "",
        text_table(EVAL_HEADER, eval_rows(results)),
        "",
        text_table(REAL_HEADER, real_rows(results)),
        _real_line(results),
        "",
        *headline(summary),
        "",
        text_table(["goal", "value", "target", "met"], goal_rows(summary)),
    ]
    return "\n".join(lines)


def _shape_line(spec) -> str:
    d = dataclasses.asdict(spec)
    return (f"T5 1.1 {d['size']}{' (' + str(d['num_layers']) + ' layers)' if d['num_layers'] else ''}, "
            f"random weights, batch {d['batch']}, {d['input_len']} input tokens, {d['target_len']} target tokens, "
            f"prompt {d['prompt_len']}, dropout {d['dropout_rate']}, {d['dtype']} activations, "
            f"{d['frozen_dtype']} frozen params; {d['warmup']} warm-up + {d['steps']} timed steps "
            f"(PEFT {d['peft_warmup']} + {d['peft_steps']})")


def markdown_report(payload: Mapping[str, Any], spec) -> str:
    """RESULTS.md: the machine, the command, the tables, the ratios and the goals of one run."""
    m, results, summary = payload["machine"], payload["results"], payload["summary"]
    peak = results.get("peak") or {}
    versions = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items() if v)
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `{payload['command']}` on {payload['date']} ({payload['wall_s']:.0f} s).",
        "",
        "## Machine",
        "",
        f"- CPU: {m.get('cpu')}, {m.get('cpus_usable')} usable of {m.get('cpu_count')} CPUs "
        f"({', '.join(m.get('cpu_flags') or [])}); memory {m.get('memory_gb')} GB",
        f"- JAX backend: {m.get('backend')} {m.get('devices')}; XLA_FLAGS={m.get('xla_flags') or '(unset)'}",
        f"- {m.get('platform')}, Python {m.get('python')}; {versions}",
        f"- load average (1, 5, 15 min) before: {m.get('load_before')}, after: {m.get('load_after')}",
        f"- measured float32 matmul peak (JAX, {peak.get('n', '-')}^3, best of 5): "
        f"{_fmt(peak.get('peak_flops'), '.1f', 1e-9)} GFLOP/s (median {_fmt(peak.get('median_flops'), '.1f', 1e-9)})"
        + (f"; torch: {_fmt(_get(results, 'peft', 'torch_matmul_peak_flops'), '.1f', 1e-9)} GFLOP/s"
           if _get(results, "peft", "torch_matmul_peak_flops") else ""),
        "",
        "## Shapes",
        "",
        _shape_line(spec),
        "",
        "## Train steps",
        "",
        markdown_table(STEP_HEADER, step_rows(results)),
        "",
        "matmul GFLOP: analytic 2mnk count (benchmarks/flops.py); HLO dot GFLOP: the same count read off "
        "the compiled program's dot instructions; XLA GFLOP: `compiled.cost_analysis()` (elementwise work "
        "included); % peak: achieved analytic FLOP/s over the measured matmul peak; "
        "XLA mem: arguments + outputs - donated aliases + temporaries of `compiled.memory_analysis()`; "
        "peak RSS: high-water mark while stepping (compilation excluded); RSS growth: that peak minus the "
        "RSS after imports; host ms: input pipeline (batch + transfer) per step.",
        "",
        "## Eval throughput",
        "",
        markdown_table(EVAL_HEADER, eval_rows(results)),
        "",
        "## Real input lengths (RTE train set)",
        "",
        markdown_table(REAL_HEADER, real_rows(results)),
        "",
        _real_line(results) + (f" Layers: {spec.real_layers} encoder + {spec.real_layers} decoder (a smaller "
                               f"stack than the size's, for the CPU budget)." if getattr(spec, "real_layers", None)
                               else ""),
        "",
        "## Ratios",
        "",
        *[f"- {line}" for line in headline(summary)],
        "",
        "## Goals",
        "",
        markdown_table(["goal", "value", "target", "met"], goal_rows(summary)),
        "",
    ]
    loads = [f"| {k} | {v.get('measured_at', '-')} | {v.get('load_before', '-')} | {v.get('load_after', '-')} |"
             for k, v in results.items() if isinstance(v, Mapping) and "load_before" in v]
    if loads:
        lines += ["## Load average (1, 5, 15 min) around each measurement", "",
                  "| task | measured at | before | after |", "|---|---|---|---|", *loads, ""]
    skipped = [f"- {k}: {v.get('skipped') or v.get('error')}" for k, v in results.items()
               if isinstance(v, Mapping) and ("skipped" in v or "error" in v)]
    if skipped:
        lines += ["## Not measured", "", *skipped, ""]
    return "\n".join(lines)
