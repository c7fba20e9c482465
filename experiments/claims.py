"""The paper's claims C1-C6 as tests on the mini reproduction's test split: one paired comparison each,
a rule fixed before the numbers, and the verdict it gives.

    python -m experiments.claims [--backend recall] [--results-dir DIR] [--out DIR]   # -> DIR/claims.{md,csv}

Every sub-claim compares two sets of runs on the same test examples. Per task, each run's per-example
score on the task's primary metric (recall.PRIMARY_METRICS: accuracy; exact match for ReCoRD) is
averaged over the runs' seeds; the tasks' examples are then concatenated (every test split has 600
examples, so the mean is the mini SuperGLUE score), and where a claim pools rungs, the rungs' too.
The difference A - B gets a 95% paired cluster bootstrap (stats.paired_bootstrap, 10,000 resamples):
a cluster is a task's person and fact (recall.clusters), the same across rungs and methods, so
examples that share what must be recalled are resampled together. The interval is conditional on the
trained runs: seed-to-seed variation is in the tables' s.d., not in it (Fig 3 has one seed a point).

Rules (KIND):
  greater     "A beats B": reproduced if the interval lies above 0, not reproduced if it lies below
              0, inconclusive if it contains 0.
  matches     "A matches B" (the gap closes; an equivalence test at +-MARGIN points): reproduced if
              the interval lies within +-MARGIN, not reproduced if it lies wholly beyond it (the gap
              is larger than MARGIN), inconclusive otherwise (too wide to tell). A small gap measured
              precisely ([+0.4, +1.6]) matches; a significant difference is not by itself a mismatch.

The claims (paper: section 3 and Fig 1, Fig 3 (a)-(d), Table 3, Tables 1-2):
  C1 Fig 1      a: the model-tuning minus prompt-tuning gap is smaller at the largest rung than at the
                smallest; b: at the largest rung prompt tuning matches model tuning; c: prompt tuning
                beats prompt design (zero-shot) and d: few-shot prompt design, at the largest rung.
  C2 Fig 3(a)   a: at the largest rung, 100 prompt tokens match 20 (gains beyond 20 are marginal);
                b: at the smallest rung, 100 tokens beat 1.
  C3 Fig 3(b)   a: at the smallest rung class-label init beats random uniform; b: at the largest
                rung they match; c: class label beats sampled vocabulary at the smallest rung.
  C4 Fig 3(c-d) a: LM adaptation beats span corruption, pooled over rungs; b: it beats span
                corruption continued for as many steps (the sc_control: the objective, not more
                training); c: the full LM-adaptation budget beats 10% of it, pooled over rungs.
  C5 Table 3    a: the 5-prompt ensemble beats the best single prompt (chosen on validation);
                b: it beats the average prompt.
  C6 Tables 1-2 prompt tuning loses less than model tuning under each shift (test_paraphrase,
                test_long_passage), pooled over rungs: A = prompt tuning's shifted - in-domain
                score, B = model tuning's. A - B is therefore minus shift.md's "drop - MT" (there a
                negative number favours prompt tuning, here a positive one).

A sub-claim whose runs are not all finished is listed as "pending" with what is missing.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from typing import Callable, Optional, Sequence

import numpy as np

from experiments import ensemble, recall, recall_tables, stats, sweeps, tables
from experiments import spec as S
from experiments.backends import Backend

MARGIN = 5.0  # points: "matches" needs the whole interval within +-MARGIN
GREATER, MATCHES = "greater", "matches"
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, PENDING = "reproduced", "not reproduced", "inconclusive", "pending"
COLUMNS = ("claim", "paper", "statement", "a", "b", "kind", "difference", "low", "high", "p", "clusters", "examples",
           "verdict", "note")


@dataclasses.dataclass(frozen=True)
class Scores:
    """Per-example scores [N] (runs' mean) and their cluster keys [N], concatenated over tasks and rungs."""
    values: np.ndarray
    keys: list


def verdict(kind: str, b: stats.Bootstrap, margin: float = MARGIN) -> str:
    """The rule of `kind` (module docstring) applied to an interval."""
    if kind == GREATER:
        return REPRODUCED if b.low > 0 else NOT_REPRODUCED if b.high < 0 else INCONCLUSIVE
    if kind == MATCHES:
        if -margin <= b.low and b.high <= margin:
            return REPRODUCED
        return NOT_REPRODUCED if b.low > margin or b.high < -margin else INCONCLUSIVE
    raise ValueError(f"unknown kind {kind!r}")


class Runs:
    """Finished runs of the backend's sweeps by their labels, and their per-example test scores."""

    def __init__(self, backend: Backend, results_dir: str, rows_dir=None):
        self.backend, self.results_dir, self.rows_dir = backend, results_dir, rows_dir
        self.specs, self.unspecified = [], []
        for name in ("scale", "ablations"):
            try:
                self.specs += sweeps.get_specs(name, backend, results_dir)
            except S.SpecError as e:
                self.unspecified.append(f"{name} not specified yet: {e}")

    def names(self, task: str, size: str, **labels) -> list[str]:
        """Every run of `task` on `size` whose labels equal `labels` (all seeds), finished or not."""
        out = []
        for s in self.specs:
            lab = s.label_dict
            if lab["task"] == task and lab["size"] == size and all(str(lab[k]) == str(v) for k, v in labels.items()):
                out.append(s.name)
        return sorted(set(out))

    def scores(self, points: Sequence[tuple[str, dict]], split: str = "test",
               path: Callable = recall_tables.predictions_path) -> Scores:
        """Concatenated over points (size, labels) and the backend's tasks. Raises FileNotFoundError naming
        the first unfinished run."""
        values, keys = [], []
        for size, labels in points:
            for task in self.backend.tasks:
                names = self.names(task, size, **labels)
                if not names:
                    raise FileNotFoundError("; ".join(self.unspecified) or f"no run of {size}/{task} with {labels}")
                task_name = recall.TASK_TEMPLATE.format(task=task)
                per_run = []
                for n in names:
                    p = path(self.results_dir, n, split, task_name)
                    if not os.path.exists(p):
                        raise FileNotFoundError(f"{n} has no {split} predictions")
                    per_run.append(stats.read_predictions(p))
                # every run's rows are the split's, in order (seeds are averaged per example); shifted splits
                # keep the test split's rows and answers
                cluster = [recall.aligned_clusters(task, "test", r, self.rows_dir) for r in per_run][0]
                metric = recall.PRIMARY_METRICS[task]
                values.append(np.mean([stats.example_scores(r, [metric])[metric] for r in per_run], axis=0))
                keys += [(task,) + tuple(k) for k in cluster]
        return Scores(np.concatenate(values), keys)


def _claims(backend: Backend) -> list[dict]:
    """The sub-claims: each {'claim', 'paper', 'statement', 'kind', 'a', 'b'}, a and b lists of (size, labels)
    (or a callable for C5 / C6)."""
    small, large = backend.sizes[0], backend.sizes[-1]
    mt, pt = {"method": S.MODEL_TUNING, "panel": "methods"}, {"method": S.PROMPT_TUNING, "panel": "methods"}
    centre = str(backend.centre.prompt_length)
    length = lambda n: {"panel": "a_prompt_length", "setting": str(n)}
    init = lambda i: {"panel": "b_init", "setting": i}
    objective = lambda o: {"panel": "c_objective", "setting": o}
    budget = lambda n: {"panel": "d_lm_steps", "setting": str(n)}
    every = lambda labels: [(size, labels) for size in backend.sizes]
    c = lambda claim, paper, statement, kind, a, b: dict(claim=claim, paper=paper, statement=statement, kind=kind,
                                                         a=a, b=b)
    return [
        c("C1a", "Fig 1", f"the model - prompt tuning gap is smaller on {large} than on {small}", GREATER,
          ("gap", small), ("gap", large)),
        c("C1b", "Fig 1", f"prompt tuning matches model tuning on {large}", MATCHES, [(large, pt)], [(large, mt)]),
        c("C1c", "Fig 1", f"prompt tuning beats prompt design on {large}", GREATER, [(large, pt)],
          [(large, {"method": S.PROMPT_DESIGN, "panel": "methods"})]),
        c("C1d", "Fig 1", f"prompt tuning beats few-shot prompt design on {large}", GREATER, [(large, pt)],
          [(large, {"method": S.FEW_SHOT, "panel": "methods"})]),
        c("C2a", "Fig 3(a)", f"on {large}, {centre} prompt tokens match 20", MATCHES, [(large, length(centre))],
          [(large, length(20))]),
        c("C2b", "Fig 3(a)", f"on {small}, {centre} prompt tokens beat 1", GREATER, [(small, length(centre))],
          [(small, length(1))]),
        c("C3a", "Fig 3(b)", f"on {small}, class-label init beats random uniform", GREATER,
          [(small, init("class_labels"))], [(small, init("random_uniform"))]),
        c("C3b", "Fig 3(b)", f"on {large}, class-label init matches random uniform", MATCHES,
          [(large, init("class_labels"))], [(large, init("random_uniform"))]),
        c("C3c", "Fig 3(b)", f"on {small}, class-label init beats sampled vocabulary", GREATER,
          [(small, init("class_labels"))], [(small, init("sampled_vocab"))]),
        c("C4a", "Fig 3(c)", "LM adaptation beats span corruption (all rungs)", GREATER,
          every(objective(S.LM_ADAPT)), every(objective(S.SPAN_CORRUPTION))),
        c("C4b", "Fig 3(c)", "LM adaptation beats span corruption continued as long (all rungs)", GREATER,
          every(objective(S.LM_ADAPT)), every(objective(S.SPAN_CORRUPTION_CONTROL))),
        c("C4c", "Fig 3(d)", f"the full LM-adaptation budget beats {backend.lm_budgets[1]}% of it (all rungs)",
          GREATER, every(budget(backend.lm_budgets[-1])), every(budget(backend.lm_budgets[1]))),
        c("C5a", "Table 3", "the ensemble beats the best prompt (chosen on validation)", GREATER, "ensemble", "best"),
        c("C5b", "Table 3", "the ensemble beats the average prompt", GREATER, "ensemble", "average"),
    ] + [c(f"C6{'ab'[i]}", "Tables 1-2", f"prompt tuning loses less than model tuning on {split} (all rungs)",
           GREATER, ("shift", split, pt), ("shift", split, mt)) for i, split in enumerate(recall.SHIFTED_SPLITS)]


def _side(runs: Runs, side, backend: Backend, results_dir: str, rows_dir) -> Scores:
    if isinstance(side, list):
        return runs.scores(side)
    kind = side[0] if isinstance(side, tuple) else side
    if kind == "gap":  # model tuning minus prompt tuning on one rung, per example
        size = side[1]
        m = runs.scores([(size, {"method": S.MODEL_TUNING, "panel": "methods"})])
        p = runs.scores([(size, {"method": S.PROMPT_TUNING, "panel": "methods"})])
        return Scores(m.values - p.values, m.keys)
    if kind == "shift":  # shifted minus in-domain score, pooled over rungs
        from experiments import shift

        _, split, labels = side
        points = [(size, labels) for size in backend.sizes]
        shifted = runs.scores(points, split=split, path=shift.predictions_path)
        return Scores(shifted.values - runs.scores(points).values, shifted.keys)
    # Table 3: the ensemble, the validation-chosen prompt or the prompts' mean (ensemble.table3_scores)
    values, keys = [], []
    for task in backend.tasks:
        metric = recall.PRIMARY_METRICS[task]
        got = ensemble.table3_scores(results_dir, task, [metric], rows_dir)
        if got is None:
            raise FileNotFoundError("no ensemble predictions (python -m experiments.ensemble --test-protocol)")
        prompts = got[metric]["prompts"]
        values.append({"ensemble": got[metric]["ensemble"], "best": prompts[got["best_prompt"]]}.get(kind, prompts.mean(0)))
        keys += [(task,) + tuple(c) for c in got["keys"]]
    return Scores(np.concatenate(values), keys)


def evaluate(backend: Backend, results_dir: str, *, rows_dir=None, resamples: int = 10_000) -> list[dict]:
    """One row (COLUMNS) per sub-claim; 'pending' with the reason while its runs are unfinished."""
    runs = Runs(backend, results_dir, rows_dir)
    out = []
    for c in _claims(backend):
        row = {k: c[k] for k in ("claim", "paper", "statement", "kind")}
        row.update(a=_describe(c["a"]), b=_describe(c["b"]))
        try:
            a = _side(runs, c["a"], backend, results_dir, rows_dir)
            b = _side(runs, c["b"], backend, results_dir, rows_dir)
        except FileNotFoundError as e:
            out.append({**row, "verdict": PENDING, "note": str(e)})
            continue
        if a.keys != b.keys:
            raise ValueError(f"{c['claim']}: A and B are not the same examples")
        boot = stats.paired_bootstrap(a.values, b.values, a.keys, resamples=resamples)
        out.append({**row, "difference": boot.difference, "low": boot.low, "high": boot.high, "p": boot.p_text(),
                    "clusters": boot.clusters, "examples": boot.examples, "verdict": verdict(c["kind"], boot),
                    "note": ""})
    return out


def _describe(side) -> str:
    if isinstance(side, list):
        sizes = sorted({s for s, _ in side}, key=str)
        labels = side[0][1]
        return f"{'/'.join(sizes)}: " + ", ".join(f"{k}={v}" for k, v in labels.items() if k != "panel")
    if isinstance(side, tuple):
        return " ".join(str(x if not isinstance(x, dict) else x["method"]) for x in side)
    return side


def write(rows: Sequence[dict], out_dir: str) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    path_csv, path_md = os.path.join(out_dir, "claims.csv"), os.path.join(out_dir, "claims.md")
    tables.write_csv(path_csv, [stats.rounded(r) for r in rows], COLUMNS)
    cell = lambda v: f"{v:+.1f}" if isinstance(v, float) else str(v)
    lines = [f"Claims on the test split: A - B in points (mini score: primary metric averaged over tasks), 95% "
             f"paired cluster-bootstrap interval, two-sided p; rules in experiments/claims.py (matches: the "
             f"interval within +-{MARGIN:g}).", "",
             "| claim | paper | statement | A - B | 95% interval | p | verdict |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["verdict"] == PENDING:
            lines.append(f"| {r['claim']} | {r['paper']} | {r['statement']} | | | | pending: {r['note']} |")
        else:
            lines.append(f"| {r['claim']} | {r['paper']} | {r['statement']} | {cell(r['difference'])} | "
                         f"[{cell(r['low'])}, {cell(r['high'])}] | {r['p']} | {r['verdict']} |")
    with open(path_md, "w") as f:
        f.write("\n".join(lines) + "\n")
    return [path_csv, path_md]


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = sweeps.cli_parser("python -m experiments.claims", __doc__, backend="recall", sweep=False)
    ap.add_argument("--out", default=None, help="default: the results directory")
    cli = sweeps.resolve_cli(ap, argv)
    if cli is None:
        return 2
    rows = evaluate(cli.backend, cli.results_dir)
    for path in write(rows, cli.args.out or cli.results_dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
