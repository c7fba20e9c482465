"""Table 3 on test (experiments/ensemble.py: write_predictions' files -> table3_rows): the best prompt is
chosen on validation, not on the split it is scored on, and the differences carry paired cluster intervals."""
import dataclasses
import json
import os

import pytest

from experiments import ensemble, recall

BACKEND = dataclasses.replace(recall.RECALL, tasks=("boolq", "record"))


def _write(results_dir, task, split, golds, prompts, voted):
    d = os.path.join(results_dir, ensemble.PREDICTIONS_DIR)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"{task}_{split}.jsonl"), "w") as f:
        for i, gold in enumerate(golds):
            f.write(json.dumps({"prompts": [p[i] for p in prompts], "ensemble": voted[i], "target": gold}) + "\n")


def test_best_is_chosen_on_validation_and_scored_on_test(tmp_path, task_files):
    rd = str(tmp_path)
    wrong = {"boolq": lambda g: "False" if g == "True" else "True", "record": lambda g: "nobody"}
    for task in BACKEND.tasks:
        for split in ("validation", "test"):
            _, golds = recall.clusters(task, split, os.path.join(task_files, task))
            # Prompt 1 is right 90% of the time on validation but only 60% on test; prompt 0 the reverse;
            # prompt 2 is right 70% on both. The vote is always right.
            rates = {"validation": (0.6, 0.9, 0.7), "test": (0.9, 0.6, 0.7)}[split]
            prompts = [[g if (i * 7919) % len(golds) < r * len(golds) else wrong[task](g) for i, g in enumerate(golds)]
                       for r in rates]
            _write(rd, task, split, golds, prompts, list(golds))
    rows = ensemble.table3_rows(BACKEND, rd, rows_dir=lambda task: os.path.join(task_files, task), resamples=2000)
    # claims' C5 is the same per-example scores on the primary metric, the tasks' examples pooled
    from experiments import claims

    primary = [r for r in rows if r["metric"] == recall.PRIMARY_METRICS[r["task"]]]
    sides = {k: claims._side(None, k, BACKEND, rd, lambda task: os.path.join(task_files, task))
             for k in ("ensemble", "best", "average")}
    assert sides["ensemble"].keys == sides["best"].keys == sides["average"].keys
    for side, column in (("best", "ensemble_minus_best"), ("average", "ensemble_minus_average")):
        pooled = (sides["ensemble"].values - sides[side].values).mean()
        assert pooled == pytest.approx(sum(r[column] for r in primary) / len(primary))
    assert [(r["task"], r["metric"]) for r in rows] == [("boolq", "accuracy"), ("record", "em"), ("record", "f1")]
    for r in rows:
        assert r["best_prompt"] == 1  # validation's best, though prompt 0 is the best on test
        assert r["best"] == pytest.approx(60) and r["average"] == pytest.approx((90 + 60 + 70) / 3)
        assert r["ensemble"] == 100.0
        assert r["ensemble_minus_best"] == pytest.approx(100 - r["best"])
        assert r["ensemble_minus_average"] == pytest.approx(100 - r["average"])
        low = float(r["ensemble_minus_best_ci"].strip("[]").split(",")[0])
        assert 0 < low < r["ensemble_minus_best"] and r["ensemble_minus_best_p"] == "p<0.0005"
        assert r["clusters"] < r["examples"] == 600


def test_no_table_until_every_task_has_its_predictions(tmp_path):
    assert ensemble.table3_rows(BACKEND, str(tmp_path)) == []


def test_a_tie_on_validation_goes_to_the_first_prompt_whatever_test_says(tmp_path, task_files):
    rd, backend = str(tmp_path), dataclasses.replace(recall.RECALL, tasks=("boolq",))
    flip = lambda g: "False" if g == "True" else "True"
    for split in ("validation", "test"):
        _, golds = recall.clusters("boolq", split, os.path.join(task_files, "boolq"))
        # validation: prompts 0 and 1 right on the same count of examples (different ones); test: prompt 1 better
        rates = {"validation": ((0, 2), (1, 2)), "test": ((0, 4), (0, 1))}[split]
        prompts = [[g if i % m == r else flip(g) for i, g in enumerate(golds)] for r, m in rates]
        _write(rd, "boolq", split, golds, prompts, list(golds))
    got = ensemble.table3_scores(rd, "boolq", ["accuracy"], os.path.join(task_files, "boolq"))
    assert got["best_prompt"] == 0 and got["accuracy"]["prompts"][0].mean() == 25.0
