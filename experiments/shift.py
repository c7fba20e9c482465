"""Claim C6 (paper Tables 1-2): is prompt tuning more robust than model tuning under domain shift?

    python -m experiments.shift [--results-dir DIR] [--out-dir DIR] [--only REGEX] [--print-commands] [--workers N]

Trained in-domain, scored zero-shot on shifted copies of each recall task's test split
(prompt_tuning/data/recall_world/shifts.py; same people, same gold answers, row for row, one field changed):

  test_paraphrase    the question / hypothesis / query reworded ("is X left-handed" -> "does X write with
                     the left hand", "X is a vegetarian." -> "X does not eat meat.", "X works as a
                     @placeholder." -> "The job of X is @placeholder.", ...): does what a method learnt
                     transfer from the task's one wording to another (the paper's QQP <-> MRPC transfer in
                     spirit)? Caveat: similar wordings occur in the pretraining corpus, so this shifts away
                     from the task format, not out of the model's language.
  test_long_passage  three true sentences about *other* test people appended to the passage (BoolQ / RTE:
                     one of them states the asked trait of another person): does a method rely on a short
                     passage about the asked person only (the paper's MRQA transfer across passage
                     sources in spirit)? Caveat: the distractor trait sentence can be copied by a model that
                     reads instead of recalling; that is part of what is tested. No input is truncated
                     (at most 84 of 96 tokens).

Which runs: every finished run of Fig 1 (sweep `scale` of the recall backend: model tuning at its chosen
setting, prompt tuning at the centre point, prompt design and few-shot prompt design). Each is scored with
its best validation parameters (`checkpoint_source`), by the package's own evaluation (what
`python -m prompt_tuning.eval` runs: the run's gin files and overrides, gin/runs/eval.gin, CHECKPOINT_PATH),
one process per run for all its splits. Git keeps no checkpoint, so on another machine than the one that
trained a run the parameters come from what is committed:

  best      MODEL_DIR/best/<step>/, the trainer's checkpoint (only where the run was trained);
  prompt    a prompt-only run (prompt tuning, prompt design, few-shot): its frozen initial checkpoint (the
            committed ladder) with MODEL_DIR/prompts/best.npy (gin/prompts/from_file.gin), which are the best
            checkpoint's parameters: the frozen weights stay bit-identical (tests/training);
  retrain   model tuning: the run's own command again, into a temporary MODEL_DIR (as long as the run
            took; a rerun gives the committed metrics exactly, experiments/results/mini/README.md).

A rebuilt source is checked before its shifted predictions are kept: its in-domain test predictions must
equal the committed test_predictions/ row for row, else the run fails with a one-line error (another
ladder build, another code version) and nothing is written. Checked on this machine for prompt tuning
on m (ReCoRD, generated answers; BoolQ, ranked): all 600 test and 600 closed-book rows equal. (experiments/shift_eval.py; 35 s for both splits of an xxs run,
load ~6, of which ~20 s start-up: one process per split took 22 s each). Its per-example predictions go to
MODEL_DIR/shift_predictions/<split>_<task>.jsonl (the format of test_predictions/) and its metrics to
MODEL_DIR/shift_predictions/<split>_metrics.jsonl. A prediction file that exists is not recomputed
(resumable; a second invocation evaluates nothing).

The table (<out>/shift.csv and shift.md): per rung x task x method x metric (accuracy; ReCoRD: em and f1
separately) x shifted split: the in-domain test score and the shifted score (both the mean over seeds
of the per-example scores), the drop (in-domain - shifted), and for every method but model tuning the
difference of drops, method - model tuning, with a 95% paired cluster bootstrap interval and p-value
(stats.paired_bootstrap over seed-averaged per-example drops; clusters: the person+fact keys of the test
split, recall.clusters). A negative difference means the method lost less under the shift than model
tuning (C6 says: prompt tuning's is negative).
Exit status: 0 (points not finished are counted), 1 if an evaluation failed, 2 on a usage error.
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Optional, Sequence

import numpy as np

from experiments import recall, runner, scale, stats, tables
from experiments import spec as S

SPLITS = recall.SHIFTED_SPLITS
EVAL_MODULE = "experiments.shift_eval"  # prompt_tuning.eval's evaluation, all splits in one process
EVAL_GIN = "gin/runs/eval.gin"
FROM_FILE_GIN = "gin/prompts/from_file.gin"
BEST, PROMPT, RETRAIN = "best", "prompt", "retrain"  # checkpoint_source's answers
PROMPT_ONLY = (S.PROMPT_TUNING, S.PROMPT_DESIGN, S.FEW_SHOT)  # Fig 1's methods that train only the prompt
CHECK_SPLIT = "test"  # a rebuilt source must reproduce the run's committed predictions on it
PREDICTIONS_DIR = "shift_predictions"
METRICS = recall.METRICS
COLUMNS = ("size", "task", "method", "metric", "split", "seeds", "in_domain", "shifted", "drop",
           "drop_minus_model", "ci_low", "ci_high", "p_value", "clusters", "examples")


def fig1_specs(backend=recall.RECALL, results_dir: Optional[str] = None) -> tuple[list[S.RunSpec], str]:
    """(Fig 1's specs, a note): without a finished model-tuning search, the other methods' specs only."""
    try:
        return scale.specs(backend, results_dir), ""
    except S.SpecError as e:
        other = dataclasses.replace(backend, model_tuning_choice=None)
        specs = [s for s in scale.specs(other, results_dir) if s.label_dict["method"] != S.MODEL_TUNING]
        return specs, f"model tuning left out: {e}"


def predictions_path(results_dir: str, name: str, split: str, task_name: str) -> str:
    return os.path.join(S.model_dir(results_dir, name), PREDICTIONS_DIR, f"{split}_{task_name}.jsonl")


def best_prompt_path(model_dir: str) -> str:
    return os.path.join(model_dir, "prompts", "best.npy")


def checkpoint_source(spec: S.RunSpec, model_dir: str) -> str:
    """Where a finished run's best validation parameters come from: BEST, PROMPT or RETRAIN (module docstring)."""
    best = os.path.join(model_dir, "best")
    if os.path.isdir(best) and any(os.path.isdir(os.path.join(best, d)) for d in os.listdir(best)):
        return BEST
    if spec.label_dict.get("method") in PROMPT_ONLY and os.path.exists(best_prompt_path(model_dir)):
        return PROMPT
    return RETRAIN


def eval_args(spec: S.RunSpec, model_dir: str, splits: Sequence[str], out_root: str,
              module: str = EVAL_MODULE, source: str = "best") -> list[str]:
    """The arguments after `python` that score `spec`'s best parameters on `splits` into out_root/<split>/:
    from model_dir/best (source BEST, or a retrained MODEL_DIR), or, source PROMPT, from the run's initial
    checkpoint and model_dir/prompts/best.npy."""
    overrides = dict(spec.overrides)
    gin_files = spec.gin_files + (EVAL_GIN,)
    if source == PROMPT:
        gin_files = spec.gin_files + (FROM_FILE_GIN, EVAL_GIN)
        extra = [("PROMPT_FILE", best_prompt_path(model_dir))]  # CHECKPOINT_PATH None: the prompt as loaded
    else:
        extra = [("CHECKPOINT_PATH", os.path.join(model_dir, "best"))]
    if "train_and_evaluate.verbalizers" in overrides:
        extra.append(("evaluate_checkpoint.verbalizers", overrides["train_and_evaluate.verbalizers"]))
    args = ["-m", module, "--splits", ",".join(splits), "--out-root", out_root, "--"]
    args += [f"--gin_file={f}" for f in gin_files]
    return args + [f"--gin.{k}={S.gin_literal(v)}" for k, v in list(spec.overrides) + extra]


def _pairs(path: str) -> list[tuple]:
    return [(r.get("prediction"), r.get("target")) for r in stats.read_predictions(path)]


def _check_rebuilt(name: str, source: str, rebuilt: str, committed: str) -> None:
    """RuntimeError unless the rebuilt parameters' test predictions equal the committed ones row for row."""
    new, old = _pairs(rebuilt), _pairs(committed)
    if new != old:
        differ = sum(a != b for a, b in zip(new, old)) + abs(len(new) - len(old))
        raise RuntimeError(f"{name}: the parameters rebuilt from {source!r} do not reproduce the committed test "
                           f"predictions ({differ} of {len(old)} rows differ): another ladder build or code version?")


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env=runner.worker_env(os.environ, 1))  # the runs' numerics: one XLA CPU thread
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        raise RuntimeError(f"{what} failed (status {proc.returncode}): " + " | ".join(tail))


def evaluate_run(spec: S.RunSpec, results_dir: str, *, module: str = EVAL_MODULE, python: str = sys.executable,
                 print_only: bool = False, train_module: Optional[str] = None) -> list[str]:
    """Scores one finished run on every shifted split it has no predictions for (one process); returns them.

    The parameters come from `checkpoint_source`; a rebuilt source must first reproduce the committed test
    predictions. Raises RuntimeError (one line, with the log's tail) when the evaluation or the rebuild fails
    or does not reproduce them; nothing partial is left.
    """
    md = S.model_dir(results_dir, spec.name)
    task_name = dict(spec.overrides)["MIXTURE_OR_TASK_NAME"]
    todo = [split for split in SPLITS if not os.path.exists(predictions_path(results_dir, spec.name, split, task_name))]
    if not todo:
        return []
    source = checkpoint_source(spec, md)
    if train_module:  # tests: a stand-in trainer for RETRAIN
        spec = dataclasses.replace(spec, module=train_module)
    committed_test = os.path.join(md, runner.PREDICTIONS_DIR, f"{CHECK_SPLIT}_{task_name}.jsonl")
    if print_only:
        if source == RETRAIN:
            print(" ".join([python] + spec.args("<tmp>/model")))
        check = [CHECK_SPLIT] if source == PROMPT else []
        print(" ".join([python] + eval_args(spec, "<tmp>/model" if source == RETRAIN else md, check + todo, "<tmp>",
                                            module, source)))
        return []
    tmp = tempfile.mkdtemp(prefix="shift-", dir=os.path.dirname(md))
    try:
        params_dir, splits = md, list(todo)
        if source == RETRAIN:
            params_dir = os.path.join(tmp, S.MODEL_DIR_NAME)
            _run([python] + spec.args(params_dir), f"{spec.name}: retraining for its best checkpoint")
            _check_rebuilt(spec.name, source, os.path.join(params_dir, runner.PREDICTIONS_DIR,
                                                           f"{CHECK_SPLIT}_{task_name}.jsonl"), committed_test)
        elif source == PROMPT:
            splits = [CHECK_SPLIT] + splits
        out_root = os.path.join(tmp, "eval")
        _run([python] + eval_args(spec, params_dir, splits, out_root, module, source),
             f"{spec.name} on {', '.join(todo)}: evaluation")
        produced = {split: os.path.join(out_root, split, f"predictions_{task_name}.jsonl") for split in splits}
        missing = [split for split, p in produced.items() if not os.path.exists(p)]
        if missing:
            raise RuntimeError(f"{spec.name} on {', '.join(todo)}: evaluation wrote no predictions for "
                               f"{', '.join(missing)}")
        if source == PROMPT:
            _check_rebuilt(spec.name, source, produced[CHECK_SPLIT], committed_test)
        for split in todo:
            final = predictions_path(results_dir, spec.name, split, task_name)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            metrics = os.path.join(out_root, split, "metrics.jsonl")
            if os.path.exists(metrics):
                os.replace(metrics, os.path.join(os.path.dirname(final), f"{split}_metrics.jsonl"))
            stats.drop_inputs(produced[split])  # the committed form (runner.compact_predictions)
            os.replace(produced[split], final)  # last: its existence marks the split done
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return todo


# ---------------------------------------------------------------------------- the table
def _seed_means(paths: Sequence[str], task: str, rows_dir: recall.RowsDir):
    """({metric: [N] mean over runs of per-example scores}, cluster keys), each file read once; ValueError
    if a file is not the split."""
    per_run, keys = [], None
    for p in paths:
        rows = stats.read_predictions(p)
        # shifted rows keep the test rows' answers and order: the test split's clusters apply
        keys = recall.aligned_clusters(task, "test", rows, rows_dir)
        per_run.append(stats.example_scores(rows, list(METRICS[task])))
    return {m: np.mean([r[m] for r in per_run], axis=0) for m in METRICS[task]}, keys


def table(specs: Sequence[S.RunSpec], results_dir: str, *, rows_dir=None, resamples: int = 10_000) -> list[dict]:
    """The C6 rows (COLUMNS) of the runs with in-domain and shifted predictions (rows_dir: the task files'
    directory per task, for tests; default: recall.task_dir)."""
    groups: dict = collections.OrderedDict()
    for s in specs:
        lab = s.label_dict
        groups.setdefault((lab["size"], lab["task"], lab["method"]), []).append(s)
    scored: dict = {}  # (size, task, method, split) -> (seeds, test scores, shifted scores, keys) or None

    def scores(size, task, method, split):
        """Each group's predictions are read once per split (model tuning's serve every other method)."""
        key = (size, task, method, split)
        if key not in scored:
            runs = groups.get((size, task, method), [])
            task_name = dict(runs[0].overrides)["MIXTURE_OR_TASK_NAME"] if runs else ""
            pairs = [(os.path.join(S.model_dir(results_dir, r.name), "test_predictions", f"test_{task_name}.jsonl"),
                      predictions_path(results_dir, r.name, split, task_name)) for r in runs]
            pairs = [(t, sh) for t, sh in pairs if os.path.exists(t) and os.path.exists(sh)]
            if pairs:
                test, keys = _seed_means([t for t, _ in pairs], task, rows_dir)
                shifted, _ = _seed_means([sh for _, sh in pairs], task, rows_dir)
                scored[key] = (len(pairs), test, shifted, keys)
            else:
                scored[key] = None
        return scored[key]

    out = []
    for size, task, method in groups:
        for split in SPLITS:
            got = scores(size, task, method, split)
            if got is None:
                continue
            seeds, test, shifted, keys = got
            model = scores(size, task, S.MODEL_TUNING, split) if method != S.MODEL_TUNING else None
            for metric in METRICS[task]:
                row = {"size": size, "task": task, "method": method, "metric": metric, "split": split,
                       "seeds": seeds, "in_domain": float(test[metric].mean()),
                       "shifted": float(shifted[metric].mean()), "drop": float((test[metric] - shifted[metric]).mean())}
                if model is not None:
                    _, mt_test, mt_shift, _ = model
                    b = stats.paired_bootstrap(test[metric] - shifted[metric], mt_test[metric] - mt_shift[metric], keys,
                                               resamples=resamples)
                    row.update(drop_minus_model=b.difference, ci_low=b.low, ci_high=b.high, p_value=b.p_value,
                               clusters=b.clusters, examples=b.examples)
                out.append(row)
    return out


def write(rows: Sequence[dict], out_dir: str, note: str = "") -> tuple[str, str]:
    os.makedirs(out_dir, exist_ok=True)
    path_csv, path_md = os.path.join(out_dir, "shift.csv"), os.path.join(out_dir, "shift.md")
    tables.write_csv(path_csv, [stats.rounded(r) for r in rows], COLUMNS)
    fmt = lambda v: "" if v is None or v == "" else f"{v:.1f}"
    lines = ["Claim C6: test scores in-domain and on shifted test splits (experiments/shift.py), mean over "
             "seeds of per-example scores; drop = in-domain - shifted; drop - MT: the method's drop minus "
             "model tuning's, 95% paired cluster bootstrap interval (negative: the method is more robust)."
             + (f" Note: {note}" if note else ""), "",
             "| size | task | method | metric | split | seeds | in-domain | shifted | drop | drop - MT [95% CI] | p |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ci = (f"{r['drop_minus_model']:+.1f} [{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]"
              if r.get("drop_minus_model") is not None else "")
        p = f"{r['p_value']:.3g}" if r.get("p_value") is not None else ""
        lines.append(f"| {r['size']} | {r['task']} | {r['method']} | {r['metric']} | {r['split']} | {r['seeds']} | "
                     f"{fmt(r['in_domain'])} | {fmt(r['shifted'])} | {fmt(r['drop'])} | {ci} | {p} |")
    with open(path_md, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path_csv, path_md


def main(argv: Optional[Sequence[str]] = None, *, backend=recall.RECALL, module: str = EVAL_MODULE,
         rows_dir=None, train_module: Optional[str] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.shift", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results-dir", default=None, help="default: experiments/results/mini")
    ap.add_argument("--out-dir", default=None, help="the table's directory (default: the results directory)")
    ap.add_argument("--only", default=None, help="evaluate only runs whose name matches this regular expression")
    ap.add_argument("--print-commands", action="store_true", help="print the evaluations to run, run none")
    ap.add_argument("--table-only", action="store_true", help="write the table from the predictions there are")
    ap.add_argument("--resamples", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=1, help="evaluations at once (one process each, one XLA thread)")
    args = ap.parse_args(argv)
    from experiments import sweeps

    results_dir = args.results_dir or sweeps.default_results_dir(backend)
    specs, note = fig1_specs(backend, results_dir)
    if note:
        print(f"note: {note}", file=sys.stderr)
    finished = [s for s in specs if runner.is_done(results_dir, s.name)]
    selected = S.filter_specs(finished, args.only)
    failed = evaluated = 0
    if not args.table_only:
        one = lambda s: evaluate_run(s, results_dir, module=module, print_only=args.print_commands,
                                     train_module=train_module)
        workers = 1 if args.print_commands else args.workers
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:  # each evaluation: its own process
            futures = {pool.submit(one, s): s for s in selected}
            for future in concurrent.futures.as_completed(futures):
                try:
                    done = future.result()
                except RuntimeError as e:
                    print(f"error: {e}", file=sys.stderr)
                    failed += 1
                    continue
                evaluated += len(done)
                if done:
                    print(f"{futures[future].name}: {', '.join(done)}", flush=True)
    if args.print_commands:
        return 0
    rows = table(finished, results_dir, rows_dir=rows_dir, resamples=args.resamples)
    path_csv, _ = write(rows, args.out_dir or results_dir, note)
    print(f"{path_csv}: {len(rows)} rows; {evaluated} evaluation(s) run now for {len(selected)} selected run(s), "
          f"{len(finished)} of {len(specs)} Fig 1 runs finished, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
