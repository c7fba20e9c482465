"""Runner -> the real trainer -> collector -> prompt ensemble, on a tiny task with a random frozen model."""
import json
import os

import pytest

from experiments import backends, collect, ensemble, runner
from experiments import spec as S
from prompt_tuning.models import t5

TINY = backends.Backend(
    name="tiny", sizes=("test",), tasks=("yesno",), seeds=(0,), lm_budgets=(0, 100),
    size_gin="gin/models/t5_1_1_test.gin", checkpoints={"sc": None, "lm100": None},
    task_template="pt_exp_{task}", sentinel_task_template="pt_exp_{task}",
    feature_lengths={"*": {"inputs": 16, "targets": 4}}, verbalizers={"yesno": ("yes", "no")},
    label_words={"yesno": ("yes", "no")}, prompt_design={},
    size_config=lambda size: t5.get_config("test", vocab_size=320),
    train_steps={S.PROMPT_TUNING: 2, S.MODEL_TUNING: 2, S.PROMPT_DESIGN: 0},
    batch_size={S.PROMPT_TUNING: 8, S.MODEL_TUNING: 8, S.PROMPT_DESIGN: 8},
    task_gin=("tests/experiments/tiny.gin",), task_setup=("tests.experiments.tiny_task",),
    # Rank classification: a random model scores ~50%, so comparing accuracies below means something.
    extra_overrides=(("t5_config.vocab_size", 320), ("train_and_evaluate.random_init_frozen_model", True),
                     ("EVAL_MODE", "rank"), ("train_and_evaluate.verbalizers", {"pt_exp_yesno": ["yes", "no"]})),
    ensemble_size="test", ensemble_prompts=1,  # one trainer run keeps this test short
)


@pytest.mark.slow
def test_runner_trainer_collector_and_ensemble(tmp_path):
    """One real trainer run (~30-60 s on a busy 2-core CPU: TF/JAX start-up and compilation)."""
    results = str(tmp_path)
    specs = ensemble.specs(TINY)  # the centre point (length 100, class-label init), seed 0
    out = runner.run_all(specs, results, workers=1, quiet=True)
    logs = {s.name: runner.log_tail(os.path.join(S.run_dir(results, s.name), runner.LOG_FILE)) for s in specs}
    assert out == {s.name: "done" for s in specs}, logs
    assert runner.run_all(specs, results, quiet=True) == {s.name: "skipped" for s in specs}

    rows, counts = collect.collect(specs, results, params_of=TINY.params)
    assert counts == {"with_results": 1, "no_eval_yet": 0, "missing": 0}
    assert {r["metric"] for r in rows} == {"accuracy", "score"}
    assert all(r["complete"] and r["steps"] == 2 and r["params"] > 0 for r in rows)

    # Table 3 on the trained prompt (an ensemble of one: average = best = ensemble), evaluated
    # through the prompt bank on the run's frozen model, must reproduce the trainer's own
    # measurement of its best prompt. (Multi-prompt batches: tests/test_ensembling.py.)
    rows = ensemble.run(TINY, results, str(tmp_path / "table"), mode="rank", examples_per_batch=4)
    with open(os.path.join(S.model_dir(results, specs[0].name), "best", "best.json")) as f:
        best = json.load(f)
    assert [(r["task"], r["metric"]) for r in rows] == [("yesno", "accuracy"), ("yesno", "score"), ("overall", "score")]
    want = best["metrics"]["pt_exp_yesno/accuracy"]
    assert 0 < want < 100
    assert rows[0]["average"] == rows[0]["best"] == rows[0]["ensemble"] == pytest.approx(want)
    assert (tmp_path / "table" / "ensemble.md").read_text().startswith("| task | metric |")
    assert (tmp_path / "table" / "ensemble.csv").exists()
