"""One tidy results table (CSV) from run directories.

    python -m experiments.collect --sweep ablations --backend real [--results-dir DIR] [--out FILE.csv]

One row per (sweep point, metric): the sweep's labels (sweep, panel, method,
size, task, setting, seed, prompt_length, init, objective, lm_steps), the
model's total parameters, the metric and its value at the selected
checkpoint, and bookkeeping (best_step, steps, complete, wall_time_s, run).
A run shared by several panels appears once per panel. Each task also gets a
`score` row: the mean of its metrics (SuperGLUE's per-task score), which the
plots use. Runs with no evaluation yet are left out (and counted).

Checkpoint selection follows the paper (early stopping on the dev metric):
the trainer's MODEL_DIR/best/best.json when present, else the evaluation
record with the highest mean metric, else nothing.

The trainer's format, read by the trainer's own reader (metrics_writer.read):

    MODEL_DIR/metrics.jsonl   one JSON object a line: {"step": int, "kind": "train"|"eval",
                              "<task>/<metric>": float, ..., "<task>/loss": float}
                              (a resumed run may repeat steps: the last record wins;
                              a line cut by a kill is skipped)
    MODEL_DIR/best/best.json  {"step", "value", "metrics": {"<task>/<metric>": float}}
"""
from __future__ import annotations

import functools
import json
import os
import sys
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from experiments import runner, sweeps, tables
from experiments import spec as S
from prompt_tuning.training import metrics_writer

BEST_FILE = os.path.join("best", "best.json")
COLUMNS = ("sweep", "panel", "method", "size", "params", "task", "setting", "seed", "prompt_length", "init",
           "objective", "lm_steps", "metric", "value", "best_step", "steps", "complete", "wall_time_s", "run")
LOSS_SUFFIX = "/loss"


def metric_values(record: Mapping[str, Any]) -> dict[str, float]:
    """'<task>/<metric>' -> value, without step/kind and the losses."""
    out = {}
    for k, v in record.items():
        if k in ("step", "kind") or k.endswith(LOSS_SUFFIX) or "/" not in k:
            continue
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            continue
    return out


def select_checkpoint(model_dir: str, records: Optional[Sequence[dict]] = None) -> Optional[tuple[int, dict[str, float]]]:
    """(step, metrics) of the early-stopping checkpoint, or None if the run has no evaluation."""
    best_path = os.path.join(model_dir, BEST_FILE)
    if os.path.exists(best_path):
        try:
            with open(best_path) as f:
                best = json.load(f)
            values = metric_values(best.get("metrics", {}))
            if values:
                return int(best["step"]), values
        except (OSError, ValueError, KeyError):
            pass
    records = metrics_writer.read(model_dir) if records is None else records
    evals = [(int(r["step"]), metric_values(r)) for r in records if r.get("kind") == "eval"]
    evals = [(s, m) for s, m in evals if m and all(np.isfinite(list(m.values())))]
    if not evals:
        return None
    # Highest mean metric; the earliest step on ties (as the trainer keeps the first best).
    return max(evals, key=lambda sm: (float(np.mean(list(sm[1].values()))), -sm[0]))


def task_rows(metrics: Mapping[str, float]) -> list[tuple[str, float]]:
    """(metric, value) pairs with each leaf task's prefix dropped, then the 'score' (mean of all).

    With a mixture (several leaf tasks) the metric keeps the leaf task's name.
    """
    leaves = sorted({k.split("/", 1)[0] for k in metrics})
    out = []
    for k in sorted(metrics):
        leaf, name = k.split("/", 1)
        out.append((name if len(leaves) == 1 else k, float(metrics[k])))
    per_leaf = [np.mean([v for k, v in metrics.items() if k.split("/", 1)[0] == leaf]) for leaf in leaves]
    out.append(("score", float(np.mean(per_leaf))))
    return out


def _done_info(run_directory: str) -> dict:
    path = os.path.join(run_directory, "DONE")
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def collect(specs: Sequence[S.RunSpec], results_dir: str, params_of=None) -> tuple[list[dict], dict[str, int]]:
    """(rows, counts): counts of runs with results, without evaluation yet, and missing."""
    params_of = functools.lru_cache(maxsize=None)(params_of) if params_of else (lambda size: "")
    rows, counts = [], {"with_results": 0, "no_eval_yet": 0, "missing": 0}
    cache: dict[str, Any] = {}
    for s in specs:
        if s.name not in cache:
            md = S.model_dir(results_dir, s.name)
            rd = S.run_dir(results_dir, s.name)
            if not os.path.isdir(md):
                cache[s.name] = "missing"
            else:
                records = metrics_writer.read(md)
                chosen = select_checkpoint(md, records)
                steps = max((int(r["step"]) for r in records), default=None)
                done = _done_info(rd)
                wall = done.get("wall_time_s", runner.total_wall_time(rd))
                cache[s.name] = None if chosen is None else {
                    "best_step": chosen[0], "metrics": chosen[1], "steps": steps,
                    "complete": bool(done) or (steps is not None and steps >= s.train_steps)
                    or metrics_writer.early_stopped(md), "wall_time_s": wall,
                }
        result = cache[s.name]
        if result == "missing":
            counts["missing"] += 1
            continue
        if result is None:
            counts["no_eval_yet"] += 1
            continue
        counts["with_results"] += 1
        labels = s.label_dict
        for metric, value in task_rows(result["metrics"]):
            row = {c: labels.get(c, "") for c in COLUMNS}
            row.update(params=params_of(labels["size"]), metric=metric, value=value, best_step=result["best_step"],
                       steps=result["steps"], complete=result["complete"], wall_time_s=result["wall_time_s"],
                       run=s.name)
            rows.append(row)
    return rows, counts


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = sweeps.cli_parser("python -m experiments.collect", __doc__)
    ap.add_argument("--out", default=None, help="CSV path (default: <results-dir>/<sweep>.csv)")
    cli = sweeps.resolve_cli(ap, argv)
    if cli is None:
        return 2
    args, backend, results_dir, specs = cli
    rows, counts = collect(specs, results_dir, backend.params)
    out = args.out or os.path.join(results_dir, f"{args.sweep}.csv")
    tables.write_csv(out, rows, COLUMNS)
    print(f"{out}: {len(rows)} rows from {counts['with_results']} sweep points "
          f"({counts['no_eval_yet']} without evaluation yet, {counts['missing']} not run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
