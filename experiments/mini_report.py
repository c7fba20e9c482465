"""The mini reproduction's tables and figures, regenerated from the run directories by one command.

    python -m experiments.mini_report [--backend recall] [--results-dir DIR] [--out-dir DIR]

Reads the finished runs of every sweep (experiments/sweeps.py ORDER) in DIR (default
experiments/results/<backend>) and writes, to --out-dir (default DIR):

  grid.md                   per sweep: distinct runs, finished (DONE), not finished, capped at the step
                            cap; a sweep that cannot be specified yet (Fig 1 before the model-tuning
                            search has finished) says so; the measured cost per run by method and size,
                            and the pending runs' projected wall hours (cost_rows); the finished runs'
                            convergence: early stop or cap, best and last step, loss still falling
                            (convergence_rows); the ladder build each run started from (ladder_rows)
  model_search.{csv,md}     the model-tuning search: validation score per size x task x rate x dropout,
                            the chosen setting and whether it sits at an edge of the searched range
  <sweep>_test.{csv,md}     test-split scores of scale, ablations and prompt_lr at the best validation
                            checkpoint (recall_tables.rows), mean +- s.d. over seeds
  baselines.md              what a score has to beat: majority, the training split's lookup table and
                            ReCoRD's random candidate per task (and their mean over tasks), and prompt
                            tuning on the untrained model per size (Fig 3(c)'s untrained runs)
  fig1_scale.{png,pdf,md}   Fig 1 on test scores, the no-model baselines as dashed lines; .md: the
                            plotted mini scores per method and rung (mean ± s.d. over seeds)
  fig3_ablations.{png,pdf,md}  Fig 3 (a)-(d) on test scores, and its numbers
  table3_test.{csv,md}      Table 3 on test (ensemble.table3_rows) from the predictions
                            `python -m experiments.ensemble --backend recall --test-protocol` wrote
  claims.{csv,md}           the verdict per claim C1-C6 with its paired bootstrap (experiments/claims.py)
  shift.{csv,md}            C6 (recall backend): in-domain vs shifted test scores of Fig 1's runs and the
                            difference of drops, from the predictions `python -m experiments.shift` wrote

A figure's score for a task is its PRIMARY metric on the test split (accuracy; exact match for
ReCoRD-shaped tasks: exact match and F1 are never averaged), averaged over the backend's tasks (the
mini SuperGLUE score) for every (point, seed) that has all of its tasks; points are the mean over
seeds with one sample s.d. (plots.py). A figure is skipped with a message while no point is complete.
Exit status 0 (also with unfinished runs: grid.md counts them), 2 on a usage error.
"""
from __future__ import annotations

import collections
import os
import sys
from typing import Optional, Sequence

import numpy as np

from experiments import (claims, collect, ensemble, model_search, plots, recall, recall_tables, runner, stats,
                         sweeps, tables)
from experiments import spec as S
from experiments.backends import Backend

PRIMARY = recall.PRIMARY_METRICS
TEST_SWEEPS = ("scale", "ablations", "prompt_lr")
FIGURES = {"scale": ("fig1_scale", plots.plot_scale), "ablations": ("fig3_ablations", plots.plot_ablations)}


def grid_status(backend: Backend, results_dir: str) -> list[dict]:
    """Per sweep of sweeps.ORDER: {'sweep', 'runs', 'done', 'pending', 'capped', 'note'}."""
    out = []
    for name in sweeps.ORDER:
        if name == "model_search" and backend.model_search is None:
            continue
        try:
            specs = S.dedupe(sweeps.get_specs(name, backend, results_dir))
        except S.SpecError as e:
            out.append({"sweep": name, "runs": None, "done": 0, "pending": None, "capped": 0, "note": str(e)})
            continue
        done = [s for s in specs if runner.is_done(results_dir, s.name)]
        table, _ = recall_tables.rows(done, results_dir)
        capped = len({r["run"] for r in table if r["capped"]})
        out.append({"sweep": name, "runs": len(specs), "done": len(done), "pending": len(specs) - len(done),
                    "capped": capped, "note": ""})
    return out


def cost_rows(backend: Backend, results_dir: str, workers: int = 2) -> list[dict]:
    """What the grid costs, measured: per (method, size) over every sweep of ORDER that can be specified, the
    finished runs' mean wall time (DONE's wall_time_s: all attempts, `workers` trainers sharing the CPU) and
    steps, the runs pending, and their projected wall hours (pending x mean wall / workers; None while no run
    of the class has finished)."""
    classes: dict = collections.OrderedDict()
    for s in _grid_specs(backend, results_dir):
        c = classes.setdefault((s.label_dict["method"], s.label_dict["size"]), {"walls": [], "steps": [], "pending": 0})
        d = runner.read_done(results_dir, s.name)  # {} for a hand-made, empty DONE
        if d is not None:
            c["walls"].append(float(d.get("wall_time_s", 0.0)))
            c["steps"].append(int(d.get("steps", 0)))
        else:
            c["pending"] += 1
    out = []
    for (method, size), c in classes.items():
        wall = sum(c["walls"]) / len(c["walls"]) if c["walls"] else None
        out.append({"method": method, "size": size, "done": len(c["walls"]), "mean_wall_s": wall,
                    "mean_steps": sum(c["steps"]) / len(c["steps"]) if c["steps"] else None,
                    "pending": c["pending"],
                    "pending_wall_h": wall * c["pending"] / workers / 3600 if wall is not None else None})
    return out


def _grid_specs(backend: Backend, results_dir: str) -> list[S.RunSpec]:
    """Every distinct run of the sweeps of ORDER that can be specified yet."""
    specs = []
    for name in sweeps.ORDER:
        try:
            specs += sweeps.get_specs(name, backend, results_dir)
        except S.SpecError:
            continue
    return S.dedupe(specs)


def ladder_rows(backend: Backend, results_dir: str) -> list[dict]:
    """The builds the finished runs started from: per initial checkpoint and sha256 (DONE's
    runner.FINGERPRINT_KEY; 'not recorded' for runs older than the record), the number of runs. Two rows for
    one checkpoint mean runs made on two builds of it, which the runner refuses to mix."""
    counts: collections.Counter = collections.Counter()
    for s in _grid_specs(backend, results_dir):
        path, done = runner.initial_checkpoint(s), runner.read_done(results_dir, s.name)
        if path is None or done is None:
            continue
        recorded = done.get(runner.FINGERPRINT_KEY)
        counts[(path, recorded or "not recorded")] += 1
    return [{"checkpoint": path, "sha256": sha, "runs": n} for (path, sha), n in sorted(counts.items())]


def convergence_rows(backend: Backend, results_dir: str) -> list[dict]:
    """Did the finished runs converge? Per (method, size) over the finished runs that trained (steps > 0):
    how many stopped early (patience) and how many ran to the step cap, the median step of the best
    validation checkpoint and of the last evaluation, and how many had their lowest validation loss at
    their last evaluation (the loss still falling when the score had stopped improving: the issue found
    this in 97 of 110 runs of the first world's fixed-step sweep)."""
    from prompt_tuning.training import metrics_writer

    classes: dict = collections.OrderedDict()
    for s in _grid_specs(backend, results_dir):
        if not runner.is_done(results_dir, s.name):
            continue
        records = metrics_writer.read(S.model_dir(results_dir, s.name))
        evals = [r for r in records if r.get("kind") == "eval"]
        losses = [(r["step"], v) for r in evals for k, v in r.items() if k.endswith("/loss")]
        if not losses or max(step for step, _ in losses) == 0:
            continue  # prompt design and few-shot: evaluated, never trained
        best = collect.select_checkpoint(S.model_dir(results_dir, s.name), records)
        last = max(step for step, _ in losses)
        c = classes.setdefault((s.label_dict["method"], s.label_dict["size"]),
                               {"best": [], "last": [], "early": 0, "falling": 0})
        c["best"].append(best[0] if best else 0)
        c["last"].append(last)
        c["early"] += any(r.get("kind") == metrics_writer.EARLY_STOP for r in records)
        c["falling"] += min(losses, key=lambda sv: (sv[1], sv[0]))[0] == last
    return [{"method": m, "size": z, "runs": len(c["last"]), "stopped_early": c["early"],
             "capped": len(c["last"]) - c["early"], "median_best_step": float(np.median(c["best"])),
             "median_last_step": float(np.median(c["last"])), "loss_lowest_at_last_eval": c["falling"]}
            for (m, z), c in classes.items()]


def baseline_rows(backend: Backend, task_dir=None) -> list[dict]:
    """The no-model baselines of every task on the test split (recall_world/baselines.py: majority, the
    training split's lookup table, ReCoRD's random candidate), with a 'mini' row per baseline averaged
    over the tasks (the mini SuperGLUE score's counterpart). task_dir: task -> its files' directory
    (default recall.task_dir, registering the world's tasks first if their files are absent)."""
    from prompt_tuning.data.recall_world import baselines

    if task_dir is None:
        task_dir = recall.task_dir
        if not all(os.path.isdir(task_dir(t)) for t in backend.tasks):
            recall.register_tasks()
    out = []
    for task in backend.tasks:
        for name, value in baselines.baselines(task_dir(task), task, "test").items():
            out.append({"task": task, "baseline": name, "value": value})
    for name in ("majority", "lookup"):
        values = [r["value"] for r in out if r["baseline"] == name]
        out.append({"task": "mini", "baseline": name, "value": sum(values) / len(values)})
    return out


def untrained_rows(table: Sequence[dict]) -> list[dict]:
    """Prompt tuning on the untrained model (Fig 3(c)'s floor), test split, primary metric: mean +- s.d. per
    size and task (recall_tables.summary)."""
    picked = [r for r in table if r["objective"] == S.UNTRAINED and r["split"] == "test"
              and r["metric"] == PRIMARY.get(r["task"], r["metric"])]
    picked = list({(r["run"], r["metric"]): r for r in picked}.values())  # one row per run (panels share runs)
    return recall_tables.summary(picked, keys=("size", "task", "metric"))


def figure_rows(table: Sequence[dict], tasks: Sequence[str]) -> list[dict]:
    """recall_tables rows -> plots.py rows: one 'score' row per (point, seed, task) on the test split with the
    task's PRIMARY metric, kept only where the (point, seed) has every task."""
    picked = [r for r in table if r["split"] == "test" and r["metric"] == PRIMARY.get(r["task"], r["metric"])]
    by_point: dict = {}
    for r in picked:
        by_point.setdefault((r["panel"], r["method"], str(r["setting"]), r["size"], r["seed"]), []).append(r)
    out = []
    for rs in by_point.values():
        if sorted(r["task"] for r in rs) == sorted(tasks):
            out += [dict(r, metric="score", value=float(r["value"]), seed=float(r["seed"]),
                         params=float(r["params"])) for r in rs]
    return out


def write_report(backend: Backend, results_dir: str, out_dir: str, task_dir=None) -> list[str]:
    """Writes every table and figure it can; returns the paths written (task_dir: see baseline_rows)."""
    os.makedirs(out_dir, exist_ok=True)
    written = []
    base = baseline_rows(backend, task_dir)
    mini_base = {f"{r['baseline']} (no model)": r["value"] for r in base if r["task"] == "mini"}
    status = grid_status(backend, results_dir)
    path = os.path.join(out_dir, "grid.md")
    with open(path, "w") as f:
        f.write("Runs per sweep (distinct computations; a run shared by two sweeps counts in both).\n\n")
        f.write(tables.markdown(status, ("sweep", "runs", "done", "pending", "capped", "note")))
        costs = cost_rows(backend, results_dir)
        f.write("\nCost per run, measured (two trainers sharing the 2-core CPU, one XLA thread each), and the "
                "projected wall hours of the pending runs (classes with no finished run: blank):\n\n")
        f.write(tables.markdown(costs, ("method", "size", "done", "mean_wall_s", "mean_steps", "pending", "pending_wall_h")))
        known = [c["pending_wall_h"] for c in costs if c["pending_wall_h"] is not None]
        f.write(f"\nProjected: {sum(known):.1f} wall hours for the pending runs of measured classes; "
                f"{sum(c['pending'] for c in costs if c['pending_wall_h'] is None)} runs of unmeasured classes.\n")
        f.write("\nConvergence of the finished runs that trained: stopped early (patience) or at the step cap, the "
                "median step of the best validation checkpoint and of the last evaluation, and the runs whose "
                "validation loss was lowest at their last evaluation (still falling when the score had stopped "
                "improving):\n\n")
        f.write(tables.markdown(convergence_rows(backend, results_dir),
                                ("method", "size", "runs", "stopped_early", "capped", "median_best_step",
                                 "median_last_step", "loss_lowest_at_last_eval")))
        f.write("\nThe ladder the finished runs started from: each initial checkpoint's sha256 as the runs "
                "recorded it (`python -m experiments.recall_world.build_ladder` writes the same into each rung's "
                "ladder.json; one build per checkpoint, or the runs mix models):\n\n")
        f.write(tables.markdown(ladder_rows(backend, results_dir), ("checkpoint", "sha256", "runs")))
    written.append(path)
    if backend.model_search is not None:
        rows = model_search.table(backend, results_dir)
        tables.write_csv(os.path.join(out_dir, "model_search.csv"), rows)
        with open(os.path.join(out_dir, "model_search.md"), "w") as f:
            f.write("Model tuning's search on validation (seed 0): score at each run's best checkpoint.\n\n")
            f.write(tables.markdown(rows, ("size", "task", "learning_rate", "dropout", "validation", "chosen",
                                     "search_complete", "at_edge")))
        written += [os.path.join(out_dir, "model_search.csv"), os.path.join(out_dir, "model_search.md")]
    untrained: list[dict] = []
    for name in TEST_SWEEPS:
        try:
            specs = sweeps.get_specs(name, backend, results_dir)
        except S.SpecError as e:
            print(f"{name}: not yet ({e})")
            continue
        table, missing = recall_tables.rows(specs, results_dir, backend.params)
        stem = os.path.join(out_dir, f"{name}_test")
        recall_tables.write(table, stem + ".csv", stem + ".md", missing)
        written += [stem + ".csv", stem + ".md"]
        if name == "ablations":
            untrained = untrained_rows(table)
        if name in FIGURES:
            fig_name, fn = FIGURES[name]
            rows = figure_rows(table, backend.tasks)
            if not rows:
                print(f"{fig_name}: no point has all of its tasks yet")
                continue
            extra = {"baselines": mini_base} if name == "scale" else {}
            _, paths = fn(rows, os.path.join(out_dir, fig_name), **extra)
            with open(os.path.join(out_dir, fig_name + ".md"), "w") as f:
                f.write(f"The numbers behind {fig_name}.png: the mini score (each task's primary test metric, "
                        f"averaged over the tasks) per point and rung, mean ± s.d. over seeds (min-max).\n\n")
                f.write(plots.stats_table(rows))
            written += paths + [os.path.join(out_dir, fig_name + ".md")]
    table3 = ensemble.table3_rows(backend, results_dir, rows_dir=task_dir)
    if table3:
        stem = os.path.join(out_dir, "table3_test")
        tables.write_csv(stem + ".csv", [stats.rounded(r) for r in table3])
        with open(stem + ".md", "w") as f:
            f.write(f"Table 3 on the {ensemble.REPORT_SPLIT} split: {backend.ensemble_prompts} prompts on the frozen "
                    f"{backend.ensemble_size or backend.sizes[-1]} model; best = the prompt with the best "
                    f"{ensemble.SELECT_SPLIT} score; ensemble = majority vote; differences with 95% paired cluster "
                    "bootstrap intervals (person and fact) and two-sided p.\n\n")
            f.write(tables.markdown(table3, ensemble.TABLE3_COLUMNS))
        written += [stem + ".csv", stem + ".md"]
    else:
        print("table3: no ensemble predictions yet (python -m experiments.ensemble --backend recall --test-protocol)")
    written += claims.write(claims.evaluate(backend, results_dir, rows_dir=task_dir), out_dir)
    path = os.path.join(out_dir, "baselines.md")
    with open(path, "w") as f:
        f.write("What a score has to beat, on the test split. No model (recall_world/baselines.py): the training "
                "split's majority answer, its lookup table (the answer it gives the same person and fact), "
                "ReCoRD's random passage entity; 'mini' averages majority and lookup over the tasks.\n\n")
        f.write(tables.markdown(base, ("task", "baseline", "value")))
        f.write("\nPrompt tuning on the untrained model (Fig 3(c)'s floor: what a prompt gets from the "
                "architecture alone), mean +- s.d. over seeds (n):\n\n")
        f.write(tables.markdown(untrained, ("size", "task", "metric", "text")) if untrained else "(not run yet)\n")
    written.append(path)
    if backend.task_template == recall.TASK_TEMPLATE:  # C6 needs the recall world's shifted splits
        from experiments import shift

        specs, note = shift.fig1_specs(backend, results_dir)
        rows = shift.table([s for s in specs if runner.is_done(results_dir, s.name)], results_dir, rows_dir=task_dir)
        if rows:
            written += list(shift.write(rows, out_dir, note))
        else:
            print("shift: no shifted predictions yet (python -m experiments.shift)")
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = sweeps.cli_parser("python -m experiments.mini_report", __doc__, backend="recall", sweep=False)
    ap.add_argument("--out-dir", default=None, help="default: the results directory")
    cli = sweeps.resolve_cli(ap, argv)
    if cli is None:
        return 2
    for path in write_report(cli.backend, cli.results_dir, cli.args.out_dir or cli.results_dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
