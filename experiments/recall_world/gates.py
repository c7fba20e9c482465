"""The gates the recall world must pass before any sweep (issue "Mini world v2"), measured and printed.

    python -m experiments.recall_world.gates run      # the prompt-tuning runs the gates need (resumable)
    python -m experiments.recall_world.gates report   # the table; also written to GATES.md here

Gates, on every task's **test** split (people disjoint from the training split's):
  (a) the lookup-table baseline is at most majority + 5 points;
  (b) recall control: splits are entity-disjoint, and the zero-shot recall probe
      (recall_probe.py) of the frozen LM-adapted checkpoints rises with size;
  (c) prompt tuning on the largest rung beats majority by >= 15 points on >= 3 tasks,
      >= 2 of them classification-shaped, while the same prompt tuning on the
      untrained frozen model stays within 3 points of majority;
  (d) the largest rung beats the smallest under prompt tuning on every task, beyond noise:
      the test examples are grouped into units (a person and the trait or relation asked
      about; examples of one unit share one stored fact, so they are not independent), and
      the 95% interval of a paired cluster bootstrap over units (experiments/stats.py) of
      the accuracy difference must lie above 0.

Prompt tuning here is the main command's recipe (gin/runs/prompt_finetune.gin: Adafactor
0.3, class-label init; sampled-vocabulary init for ReCoRD, whose paper task words are not in
this world's vocabulary), PROMPT_LENGTH 20, RUN_STEPS steps, validation every 100 steps,
the test split scored once at the best validation checkpoint (TEST_SPLITS), rank
classification over the verbalizers for the classification tasks (so an untrained
model's constant answer scores the majority class rather than 0).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

from experiments import stats
from prompt_tuning.data.recall_world import baselines, registry, tasks as recall_tasks, world as world_lib
from prompt_tuning.training import metrics_writer

LADDER = "assets/recall_world/ladder"
RUNS = "runs/recall_world/gates"
HERE = os.path.dirname(os.path.abspath(__file__))
RUN_STEPS = 1000
PROMPT_LENGTH = 20
# Inputs: ReCoRD's passages need up to ~70 tokens; BoolQ's and RTE's fit in ~40 (64 is 28% cheaper a step).
LENGTHS = {"boolq": "{'inputs': 64, 'targets': 8}", "rte": "{'inputs': 64, 'targets': 8}",
           "record": "{'inputs': 96, 'targets': 8}"}


PAPER_LEARNING_RATE = 0.3


def _run_dir(task: str, rung: str, checkpoint: str, learning_rate: float = PAPER_LEARNING_RATE,
             prompt_length: int = PROMPT_LENGTH) -> str:
    lr = "" if learning_rate == PAPER_LEARNING_RATE else f"-lr{learning_rate}"
    p = "" if prompt_length == PROMPT_LENGTH else f"-p{prompt_length}"
    return os.path.join(RUNS, f"{task}-{rung}-{checkpoint}{lr}{p}")


def prompt_tune(task: str, rung: str, checkpoint: str, ladder: str = LADDER, steps: int = RUN_STEPS,
                log=None, learning_rate: float = PAPER_LEARNING_RATE, prompt_length: int = PROMPT_LENGTH) -> str:
    """Runs (or resumes) one prompt-tuning run with `python -m prompt_tuning.train`; returns its MODEL_DIR."""
    model_dir = _run_dir(task, rung, checkpoint, learning_rate, prompt_length)
    init = "sampled_vocab" if task == "record" else "class_labels"
    mode = "generate" if task == "record" else "rank"
    cmd = [sys.executable, "-m", "prompt_tuning.train", "--gin_file=gin/runs/prompt_finetune.gin",
           f"--gin_file=gin/models/recall_{rung}.gin", f"--gin_file=gin/prompts/{init}.gin",
           "--gin_file=gin/recall_world.gin", f"--gin.MIXTURE_OR_TASK_NAME='{registry.task_name(task)}'",
           f"--gin.TASK_FEATURE_LENGTHS={LENGTHS[task]}", f"--gin.INITIAL_CHECKPOINT_PATH='{ladder}/{rung}/{checkpoint}'",
           f"--gin.PROMPT_LENGTH={prompt_length}", f"--gin.TRAIN_STEPS={steps}", "--gin.DROPOUT_RATE=0.0",
           f"--gin.EVAL_MODE='{mode}'", "--gin.TEST_SPLITS=('test', 'test_closed_book')",
           "--gin.train_and_evaluate.eval_period=100", f"--gin.train_and_evaluate.checkpoint_period={steps}",
           f"--gin.learning_rate_schedule.base_learning_rate={learning_rate}", f"--gin.MODEL_DIR='{model_dir}'"]
    if not metrics_writer.read(model_dir, "test") if os.path.isdir(model_dir) else True:
        print("$ " + " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
    return model_dir


def _accuracy(metrics: dict, split: str, task: str) -> float:
    name = registry.task_name(task)
    key = f"{split}/{name}/em" if task == "record" else f"{split}/{name}/accuracy"
    return metrics[key]


def test_scores(task: str, rung: str, checkpoint: str) -> dict:
    rows = metrics_writer.read(_run_dir(task, rung, checkpoint), "test")
    m = rows[-1]
    return {"test": _accuracy(m, "test", task), "closed_book": _accuracy(m, recall_tasks.CLOSED_BOOK_SPLIT, task)}


def _correct(task: str, rung: str, checkpoint: str) -> list[bool]:
    """Per test example, whether the run's prediction was right (test_predictions, in test-file order)."""
    path = os.path.join(_run_dir(task, rung, checkpoint), "test_predictions", f"test_{registry.task_name(task)}.jsonl")
    with open(path) as f:
        return [r["prediction"] == r["target"] for r in map(json.loads, f)]


def unit_bootstrap(task_dir: str, task: str, big: list[bool], small: list[bool]) -> stats.Bootstrap:
    """Paired cluster bootstrap (experiments/stats.py) of the accuracy difference big - small, in points.

    The clusters are baselines.question_key of the test rows (a person and the trait or relation
    asked about): every example of a unit asks about the same stored fact, so units, not examples,
    are the independent draws. Raises ValueError when the prediction files and the test split differ
    in length.
    """
    rows = baselines.split_rows(task_dir, "test")
    if not len(rows) == len(big) == len(small):
        raise ValueError(f"{task}: {len(rows)} test rows but {len(big)} and {len(small)} predictions")
    return stats.paired_bootstrap(100 * np.asarray(big, float), 100 * np.asarray(small, float),
                                  clusters=[baselines.question_key(task, r) for r in rows])


def plan(rungs: list[str]) -> list[tuple[str, str, str]]:
    """(task, rung, checkpoint) of every run the gates read: the smallest and the largest rung's
    LM-adapted model and the largest rung's untrained one (the sweep of every rung is issue #12's)."""
    ends = [rungs[0], rungs[-1]] if len(rungs) > 1 else rungs
    out = [(t, r, "lm") for t in sorted(recall_tasks.TASKS) for r in ends]
    return out + [(t, rungs[-1], "untrained") for t in sorted(recall_tasks.TASKS)]


def _ladder_rungs(ladder: str) -> list[str]:
    from experiments.recall_world import build_ladder

    return [r for r in build_ladder.RUNGS if os.path.isdir(os.path.join(ladder, r, "lm"))]


def report(ladder: str = LADDER, out: str | None = os.path.join(HERE, "GATES.md")) -> tuple[str, dict]:
    """(markdown table, {gate: passed}) from the ladder and the gate runs."""
    from experiments.recall_world import recall_probe

    info = registry.prepare_recall_world(vocab_path=recall_probe.VOCAB)  # the shipped vocabulary, not a new one
    rungs = _ladder_rungs(ladder)
    lines, verdict = ["# Recall world gates", "", f"Ladder: `{ladder}` rungs {', '.join(rungs)}; "
                      f"prompt tuning P={PROMPT_LENGTH}, {RUN_STEPS} steps; test split (people disjoint from train).",
                      ""], {}
    # (a) baselines
    base = {t: baselines.baselines(os.path.join(info["task_dir"], t), t, "test") for t in sorted(recall_tasks.TASKS)}
    verdict["a"] = all(b["lookup"] <= b["majority"] + 5 for b in base.values())
    # The ladder itself: parameters, chosen rate, steps, held-out losses (strictly falling with size is required)
    ladders = {}
    for r in rungs:
        with open(os.path.join(ladder, r, "ladder.json")) as f:
            ladders[r] = json.load(f)
    lines += ["## The ladder (`build_ladder.py`; held-out losses on documents the training corpus never reaches)", "",
              "| rung | parameters | peak rate (swept) | SC + LM steps | SC loss after SC | prefix-LM loss after LM | "
              "SC loss of the SC control |", "|---|---|---|---|---|---|---|"]
    for r in rungs:
        d, h = ladders[r], ladders[r].get("heldout_loss", {})
        swept = ", ".join(sorted(d.get("lr_sweep", {}).get("heldout_loss", {}), key=float)) or "not swept"
        cell = lambda k: f"{h[k]:.3f}" if k in h else "not built"
        full = d.get("lr_full_budget", {}).get("heldout_loss", {})  # a sweep's edge re-run at the whole SC budget
        if full:
            swept += "; whole SC budget: " + ", ".join(f"{k} -> {v:.3f}" for k, v in sorted(full.items()))
        lines.append(f"| {r} | {d.get('params', 0):,} | {d.get('learning_rate')} ({swept}) | {d.get('sc_steps')} + "
                     f"{d.get('lm_steps')} | {cell('sc')} | {cell('lm')} | {cell('sc_control')} |")
    lm_losses = [ladders[r].get("heldout_loss", {}).get("lm", float("inf")) for r in rungs]
    falling = all(a > b for a, b in zip(lm_losses, lm_losses[1:]))
    span = ladders[rungs[-1]].get("params", 0) / max(1, ladders[rungs[0]].get("params", 1))
    lines += ["", f"Prefix-LM loss strictly falling with size: {'yes' if falling else 'no'}; "
              f"span {span:.0f}x in parameters.", ""]
    # (b) entity-disjoint + recall probe rising with size
    world = world_lib.build_world()
    disjoint = not ({p.name for p in world.split_people["train"]} & {p.name for p in world.split_people["test"]})
    probe = {r: recall_probe.recall(os.path.join(ladder, r, "lm")) for r in rungs}
    best = {kind: [max(probe[r][f"span/{kind}"], probe[r][f"prefix/{kind}"]) for r in rungs]
            for kind in ("relations", "traits")}
    verdict["b"] = disjoint and len(rungs) >= 2 and all(v[-1] > v[0] for v in best.values())
    lines += ["## (b) zero-shot recall of test people's facts (LM-adapted checkpoints, % correct)", "",
              "Relations: city, job, pet (12-16 values; chance and prior below). Traits: four bits (chance and "
              "prior 50).", "",
              "| rung | relations, span format | relations, prefix format | traits, span | traits, prefix | "
              "chance (relations) | prior (relations) |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r} | {probe[r]['span/relations']:.1f} | {probe[r]['prefix/relations']:.1f} | "
              f"{probe[r]['span/traits']:.1f} | {probe[r]['prefix/traits']:.1f} | {probe[r]['chance/relations']:.1f} | "
              f"{probe[r]['prior/relations']:.1f} |" for r in rungs]
    # Where the recall comes from: LM adaptation's checkpoints and the span-corruption control
    stages = ("sc", "lm_10", "lm_50", "lm", "sc_control")
    lines += ["", "### Recall by pretraining stage (prefix format; relations / traits, %)", "",
              "| rung | " + " | ".join(stages) + " |", "|---" * (len(stages) + 1) + "|"]
    for r in rungs:
        cells = []
        for stage in stages:
            path = os.path.join(ladder, r, stage)
            if not os.path.isdir(path):
                cells.append("-")
                continue
            p = probe[r] if stage == "lm" else recall_probe.recall(path)
            cells.append(f"{p['prefix/relations']:.1f} / {p['prefix/traits']:.1f}")
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    # (c), (d): prompt tuning
    ends = [rungs[0], rungs[-1]]
    lines += ["", "## Test-split scores (accuracy; ReCoRD exact match)", "",
              "| task | majority | lookup | random candidate | untrained frozen | " +
              " | ".join(f"{r} (closed book)" for r in ends) + " |", "|---" * 7 + "|"]
    big_wins, cls_wins, untrained_ok, d_ok, d_lines = 0, 0, True, True, []
    for t in sorted(recall_tasks.TASKS):
        b = base[t]
        scores = {r: test_scores(t, r, "lm") for r in ends}
        untrained = test_scores(t, rungs[-1], "untrained")["test"]
        cells = [f"{scores[r]['test']:.1f} ({scores[r]['closed_book']:.1f})" for r in ends]
        rc = f"{b['random_candidate']:.1f}" if "random_candidate" in b else "-"
        lines.append(f"| {t} | {b['majority']:.1f} | {b['lookup']:.1f} | {rc} | {untrained:.1f} | " + " | ".join(cells) + " |")
        if scores[rungs[-1]]["test"] >= b["majority"] + 15:
            big_wins += 1
            cls_wins += t in recall_tasks.CLASSIFICATION_TASKS
        untrained_ok &= abs(untrained - b["majority"]) <= 3
        boot = unit_bootstrap(os.path.join(info["task_dir"], t), t, _correct(t, rungs[-1], "lm"),
                              _correct(t, rungs[0], "lm"))
        d_ok &= boot.low > 0
        d_lines.append(f"| {t} | {boot.format()} | {boot.examples} | {'yes' if boot.low > 0 else 'no'} |")
    lines += ["", f"## (d) {rungs[-1]} minus {rungs[0]}, per unit (person and trait or relation asked about)", "",
              "| task | difference, points [95% CI] (p, units) | examples | CI above 0 |", "|---|---|---|---|"]
    lines += d_lines
    verdict["c"] = big_wins >= 3 and cls_wins >= 2 and untrained_ok
    verdict["d"] = d_ok
    lines += ["", "## Gates", ""] + [f"- ({g}) {'PASS' if ok else 'FAIL'}" for g, ok in verdict.items()]
    text = "\n".join(lines) + "\n"
    if out:
        with open(out, "w") as f:
            f.write(text)
    return text, verdict


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("run", "report"))
    ap.add_argument("--ladder", default=LADDER)
    args = ap.parse_args(argv)
    if args.command == "run":
        os.makedirs(RUNS, exist_ok=True)
        with open(os.path.join(RUNS, "runs.log"), "a") as log:
            for task, rung, checkpoint in plan(_ladder_rungs(args.ladder)):
                prompt_tune(task, rung, checkpoint, args.ladder, log=log)
    text, verdict = report(args.ladder)
    print(text)
    return 0 if all(verdict.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
