"""experiments/claims.py on hand-made runs whose answers are known: each rule gives the verdict it states."""
import dataclasses
import json
import os

import numpy as np
import pytest

from experiments import claims, recall, stats, sweeps
from experiments import spec as S
from tests.experiments.fake_runs import write_record_run

MT = S.Setting(method=S.MODEL_TUNING, lm_steps=100, learning_rate=1e-3, dropout=0.0)
BACKEND = dataclasses.replace(recall.RECALL, sizes=("xxs", "l"), tasks=("record",), model_search=None,
                              model_tuning_choice=lambda size, task, results_dir=None: MT)


def _right(labels) -> float:
    """The share of test examples a run answers right (the same examples first for every run)."""
    size, method, panel, setting = labels["size"], labels["method"], labels["panel"], labels["setting"]
    if method == S.MODEL_TUNING:
        return {"xxs": 0.8, "l": 0.9}[size]
    if method == S.PROMPT_DESIGN:
        return 0.0
    if panel == "a_prompt_length" and setting == "1":
        return 0.6  # xxs: 1 token beats 100 (40)
    if panel == "b_init" and setting == "random_uniform":
        return {"xxs": 0.4, "l": 0.5}[size]
    return {"xxs": 0.4, "l": 0.9}[size]  # prompt tuning's centre and every other ablation


def test_verdicts_follow_the_rules_and_unfinished_claims_are_pending(tmp_path, task_files):
    rd = str(tmp_path)
    rows_dir = lambda task: os.path.join(task_files, task)
    _, golds = recall.clusters("record", "test", rows_dir("record"))
    order = [(i * 7919) % len(golds) for i in range(len(golds))]  # a fixed permutation of the examples
    for name in ("scale", "ablations"):
        for s in S.dedupe(sweeps.get_specs(name, BACKEND, rd)):
            if s.label_dict["method"] == S.FEW_SHOT or os.path.exists(S.model_dir(rd, s.name)):
                continue  # few-shot never runs here: its claim stays pending
            r = _right(s.label_dict)
            write_record_run(S.model_dir(rd, s.name), golds,
                             [g if order[i] < r * len(golds) else "nobody" for i, g in enumerate(golds)])
    rows = {r["claim"]: r for r in claims.evaluate(BACKEND, rd, rows_dir=rows_dir, resamples=2000)}
    # C1a: gap 40 on xxs, 0 on l. C1b: identical answers on l, interval [0, 0]. C1c: 90 vs 0.
    assert rows["C1a"]["verdict"] == "reproduced" and rows["C1a"]["difference"] == pytest.approx(40)
    assert rows["C1b"]["verdict"] == "reproduced" and rows["C1b"]["low"] == rows["C1b"]["high"] == 0
    assert rows["C1c"]["verdict"] == "reproduced"
    assert rows["C1d"]["verdict"] == "pending" and "no test predictions" in rows["C1d"]["note"]
    assert rows["C2a"]["verdict"] == "reproduced"  # 90 and 90
    assert rows["C2b"]["verdict"] == "not reproduced" and rows["C2b"]["difference"] == pytest.approx(-20)
    assert rows["C3a"]["verdict"] == "inconclusive"  # 40 and 40: the interval is [0, 0], not above 0
    assert rows["C3b"]["verdict"] == "not reproduced"  # 90 vs 50 on l: far from matching
    assert rows["C5a"]["verdict"] == rows["C6a"]["verdict"] == "pending"
    assert "has no test_paraphrase predictions" in rows["C6a"]["note"]
    # Table 3's files: the vote is always right; prompt 1 is validation's best (90%) but right on 60% of test.
    os.makedirs(os.path.join(rd, "ensemble"))
    for split, rates in (("validation", (0.6, 0.9, 0.7)), ("test", (0.9, 0.6, 0.7))):
        _, split_golds = recall.clusters("record", split, rows_dir("record"))
        with open(os.path.join(rd, "ensemble", f"record_{split}.jsonl"), "w") as f:
            for i, g in enumerate(split_golds):
                answers = [g if (i * 7919) % len(split_golds) < r * len(split_golds) else "nobody" for r in rates]
                f.write(json.dumps({"prompts": answers, "ensemble": g, "target": g}) + "\n")
    rows = {r["claim"]: r for r in claims.evaluate(BACKEND, rd, rows_dir=rows_dir, resamples=2000)}
    assert rows["C5a"]["verdict"] == rows["C5b"]["verdict"] == "reproduced"
    assert rows["C5a"]["difference"] == pytest.approx(40) and rows["C5b"]["difference"] == pytest.approx(100 - 220 / 3)
    paths = claims.write(list(rows.values()), str(tmp_path / "out"))
    text = open(paths[1]).read()
    assert "| C1a | Fig 1 |" in text and "| +40.0 |" in text and "pending: " in text


def test_matches_needs_the_whole_interval_inside_the_margin():
    b = lambda low, high: stats.Bootstrap(0.0, low, high, 1.0, 0.95, 10, 100, 100)
    assert claims.verdict(claims.MATCHES, b(-4, 4.5)) == "reproduced"
    assert claims.verdict(claims.MATCHES, b(-6, 4)) == "inconclusive"
    # an equivalence test: a small gap measured precisely matches, even though the interval excludes 0 ...
    assert claims.verdict(claims.MATCHES, b(0.5, 3)) == "reproduced"
    assert claims.verdict(claims.MATCHES, b(-1.6, -0.4)) == "reproduced"
    # ... a gap that may be within the margin is inconclusive; one wholly beyond it is not reproduced
    assert claims.verdict(claims.MATCHES, b(3, 8)) == "inconclusive"
    assert claims.verdict(claims.MATCHES, b(5.5, 9)) == "not reproduced"
    assert claims.verdict(claims.MATCHES, b(-9, -5.5)) == "not reproduced"
    assert claims.verdict(claims.GREATER, b(0.5, 3)) == "reproduced"
    assert claims.verdict(claims.GREATER, b(-3, -0.5)) == "not reproduced"
    assert claims.verdict(claims.GREATER, b(-3, 3)) == "inconclusive"


def test_a_seed_whose_rows_are_not_the_splits_order_is_an_error(tmp_path, task_files, monkeypatch):
    """Seeds are averaged per example: every run's rows must be the split's, in order (not only the first's)."""
    rows_dir = lambda task: os.path.join(task_files, task)
    _, golds = recall.clusters("record", "test", rows_dir("record"))
    right = list(golds)
    shuffled = golds[1:] + golds[:1]  # the same answers, one row off: averaging would pair other examples
    for name, order in (("s0", golds), ("s1", shuffled)):
        write_record_run(str(tmp_path / name), order, right if name == "s0" else shuffled)
    runs = claims.Runs(BACKEND, str(tmp_path), rows_dir)
    monkeypatch.setattr(runs, "names", lambda task, size, **labels: ["s0", "s1"])
    path = lambda results_dir, name, split, task_name: os.path.join(results_dir, name, "test_predictions",
                                                                     f"{split}_{task_name}.jsonl")
    with pytest.raises(ValueError, match="not the task file's answers in order"):
        runs.scores([("l", {"method": S.PROMPT_TUNING})], path=path)


def test_the_csv_does_not_change_with_the_last_bits_of_a_bootstrap(tmp_path):
    """Sums in another order (another BLAS build or CPU) move a bootstrap's bounds by an ulp: not the table."""
    row = lambda low: dict(claim="C1a", paper="Fig 1", statement="s", a="a", b="b", kind=claims.GREATER,
                           difference=2.0 / 3.0, low=low, high=1.0, p="p=0.01", clusters=80, examples=1800,
                           verdict=claims.REPRODUCED, note="")
    low = 0.1 + 0.2  # 0.30000000000000004
    texts = [open(claims.write([row(v)], str(tmp_path / str(i)))[0]).read()
             for i, v in enumerate((low, float(np.nextafter(low, 1.0))))]
    assert texts[0] == texts[1] and ",0.3," in texts[0]
