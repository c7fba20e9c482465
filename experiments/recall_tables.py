"""Test-split tables from run directories (the recall backend's reporting; any backend whose runs set TEST_SPLITS).

    python -m experiments.recall_tables --sweep scale [--backend recall] [--results-dir DIR] [--out-dir DIR]

Writes, for the sweep's points:
  <out>/<sweep>_test.csv   one row per (sweep point, split, metric): the sweep's labels, the split
                           (test, test_closed_book), the metric (accuracy; em and f1 separately),
                           its value at the best validation checkpoint (the trainer's 'test' record),
                           best_step, steps, early_stopped, capped (ran to the step cap), run
  <out>/<sweep>_test.md    mean +- s.d. over seeds per (panel, setting, size, task, split, metric),
                           with n, and the number of points missing or capped

`compare` is the paired test behind a verdict: two lists of runs (seeds) on the same task and
split, their per-example scores from test_predictions/, the person+fact clusters of the recall
world, and stats.paired_bootstrap.
Exit status: 0 (also with missing points: they are counted in the output), 2 on a usage error.
"""
from __future__ import annotations

import collections
import os
import sys
from typing import TYPE_CHECKING, Optional, Sequence

from experiments import stats, sweeps, tables
from experiments import spec as S
from prompt_tuning.training import metrics_writer

if TYPE_CHECKING:  # for annotations only: the functions import recall where they use it
    from experiments import recall

LABELS = ("sweep", "panel", "method", "size", "task", "setting", "seed", "prompt_length", "init", "objective",
          "lm_steps")
COLUMNS = LABELS + ("params", "split", "metric", "value", "best_step", "steps", "early_stopped", "capped", "run")
GROUP = ("panel", "method", "setting", "size", "task", "split", "metric")


def test_metrics(model_dir: str) -> Optional[tuple[int, dict[str, float]]]:
    """(best step, {'<split>/<task>/<metric>': value}) of the run's TEST_SPLITS record, or None."""
    records = metrics_writer.read(model_dir, "test")
    if not records:
        return None
    rec = records[-1]
    return int(rec["step"]), {k: float(v) for k, v in rec.items() if k not in ("step", "kind")}


def rows(specs: Sequence[S.RunSpec], results_dir: str, params_of=None) -> tuple[list[dict], int]:
    """(rows, points without a test record)."""
    out, missing = [], 0
    for s in specs:
        md = S.model_dir(results_dir, s.name)
        got = test_metrics(md) if os.path.isdir(md) else None
        if got is None:
            missing += 1
            continue
        best_step, values = got
        steps = max((int(r["step"]) for r in metrics_writer.read(md, "train")), default=0)
        stopped = metrics_writer.early_stopped(md)
        labels = s.label_dict
        for key in sorted(values):
            split, _, rest = key.partition("/")
            metric = rest.split("/")[-1]
            row = {c: labels.get(c, "") for c in LABELS}
            row.update(params=params_of(labels["size"]) if params_of else "", split=split, metric=metric,
                       value=values[key], best_step=best_step, steps=steps, early_stopped=stopped,
                       capped=(not stopped and steps >= s.train_steps > 0), run=s.name)
            out.append(row)
    return out, missing


def summary(table: Sequence[dict], keys: Sequence[str] = GROUP, carry: Sequence[str] = ()) -> list[dict]:
    """Mean +- s.d. over seeds per `keys` group, in first-seen order; `carry`: columns copied from the
    group's first row (e.g. a value every row of the group shares)."""
    groups: dict = collections.OrderedDict()
    for r in table:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for key, rs in groups.items():
        mean, sd = stats.mean_sd([float(r["value"]) for r in rs])
        out.append({**dict(zip(keys, key)), **{c: rs[0][c] for c in carry}, "mean": mean, "sd": sd, "n": len(rs),
                    "seeds": sorted(int(r["seed"]) for r in rs), "capped": sum(bool(r["capped"]) for r in rs),
                    "text": stats.format_mean_sd([float(r["value"]) for r in rs])})
    return out


def write(table: Sequence[dict], path_csv: str, path_md: str, missing: int) -> None:
    tables.write_csv(path_csv, table, COLUMNS)
    lines = [f"Test-split scores at the best validation checkpoint: mean +- s.d. over seeds (n). "
             f"{missing} point(s) missing; capped = runs that reached the step cap.", "",
             "| " + " | ".join(GROUP) + " | score | capped |", "|" + "---|" * (len(GROUP) + 2)]
    for g in summary(table):
        lines.append("| " + " | ".join(str(g[k]) for k in GROUP) + f" | {g['text']} | {g['capped']} |")
    with open(path_md, "w") as f:
        f.write("\n".join(lines) + "\n")


def predictions_path(results_dir: str, name: str, split: str, task_name: str) -> str:
    return os.path.join(S.model_dir(results_dir, name), "test_predictions", f"{split}_{task_name}.jsonl")


def compare(results_dir: str, names_a: Sequence[str], names_b: Sequence[str], task: str, split: str, metric: str,
            *, task_name: Optional[str] = None, rows_dir: recall.RowsDir = None, resamples: int = 10_000,
            seed: int = 0) -> stats.Bootstrap:
    """Paired cluster bootstrap of runs A (seeds) vs runs B (seeds) on one recall task, split and metric."""
    from experiments import recall

    task_name = task_name or recall.TASK_TEMPLATE.format(task=task)
    per_run = {}
    for name in list(names_a) + list(names_b):
        per_run[name] = stats.read_predictions(predictions_path(results_dir, name, split, task_name))
    keys = recall.aligned_clusters(task, split, per_run[names_a[0]], rows_dir)
    for name, rs in per_run.items():
        recall.aligned_clusters(task, split, rs, rows_dir)  # every run scored the same examples in order
    score = lambda name: stats.example_scores(per_run[name], [metric])[metric]
    return stats.paired_bootstrap([score(n) for n in names_a], [score(n) for n in names_b], keys,
                                  resamples=resamples, seed=seed)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = sweeps.cli_parser("python -m experiments.recall_tables", __doc__, backend="recall")
    ap.add_argument("--out-dir", default=None, help="default: the results directory")
    cli = sweeps.resolve_cli(ap, argv)
    if cli is None:
        return 2
    args, backend, results_dir, specs = cli
    table, missing = rows(specs, results_dir, backend.params)
    out = args.out_dir or results_dir
    write(table, os.path.join(out, f"{args.sweep}_test.csv"), os.path.join(out, f"{args.sweep}_test.md"), missing)
    print(f"{os.path.join(out, args.sweep + '_test.csv')}: {len(table)} rows from {len(specs) - missing} sweep points "
          f"({missing} without a test record)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
