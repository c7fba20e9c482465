"""Fig 1's zero-step points (prompt design, few-shot) through the runner and the real trainer, then
experiments.shift with the real evaluation: shifted predictions in the run directories and the C6 table.

Needs the ladder's xxs rung ($PT_RECALL_LADDER or assets/recall_world/ladder, committed)."""
import csv
import json
import os

import pytest

from experiments import recall, runner, shift, stats
from experiments import spec as S
from tests.experiments.recall_tiny import tiny_backend

POINTS = "^(pd-xxs-boolq-lm100|fs-xxs-boolq-k4-lm100)-s0$"


@pytest.mark.slow
def test_zero_step_points_are_scored_on_the_shifted_splits(tmp_path, monkeypatch):
    choice = S.Setting(method=S.MODEL_TUNING, lm_steps=100, learning_rate=1e-2, dropout=0.0)
    tiny = tiny_backend(monkeypatch, scale_seeds=(0,), model_tuning_choice=lambda *a: choice)
    rd = str(tmp_path / "results")
    assert runner.main(["--sweep", "scale", "--backend", "recall_tiny", "--results-dir", rd, "--only", POINTS]) == 0
    assert shift.main(["--results-dir", rd, "--resamples", "200"], backend=tiny) == 0
    names = ["pd-xxs-boolq-lm100-s0", "fs-xxs-boolq-k4-lm100-s0"]
    for name in names:
        for split in shift.SPLITS:
            rows = stats.read_predictions(shift.predictions_path(rd, name, split, "recall_world_boolq"))
            assert len(rows) == 600
            recall.aligned_clusters("boolq", "test", rows)  # same gold answers, row for row
            with open(os.path.join(S.model_dir(rd, name), shift.PREDICTIONS_DIR, f"{split}_metrics.jsonl")) as f:
                metric = json.loads(f.readline())["recall_world_boolq/accuracy"]
            assert stats.example_scores(rows, ["accuracy"])["accuracy"].mean() == pytest.approx(metric)
    with open(os.path.join(rd, "shift.csv")) as f:
        table = list(csv.DictReader(f))
    assert {(r["method"], r["split"]) for r in table} == {(m, s) for m in (S.PROMPT_DESIGN, S.FEW_SHOT)
                                                          for s in shift.SPLITS}
