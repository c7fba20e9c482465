"""One recall-backend point through the runner and the real trainer, then the tables; the one-command rerun.

Scaled down (the xxs rung, 5 prompt tokens, a 4-step cap, patience 1 at every step) so that it
checks the chain, not the numbers: gin files and overrides the trainer accepts, early stopping
marked DONE by the runner, test-split scores at the best checkpoint with per-example predictions,
their person+fact clusters, the tables, and a rerun of the point with `--only` into a fresh
directory giving the same test metrics exactly. Needs the ladder's xxs rung ($PT_RECALL_LADDER or
assets/recall_world/ladder, committed) and the recall world's files (written by the trainer if absent).
"""

import pytest

from experiments import ablations, recall, recall_tables, runner
from experiments import spec as S
from prompt_tuning.training import metrics_writer
from tests.experiments.recall_tiny import tiny_backend

POINT = "^pt-xxs-boolq-p5-class_labels-lm100-s0$"


@pytest.mark.slow
def test_one_point_runs_stops_early_is_tabled_and_reruns_to_the_same_metrics(tmp_path, monkeypatch):
    tiny = tiny_backend(
        monkeypatch, centre_prompt_length=5, train_steps={S.PROMPT_TUNING: 4, S.MODEL_TUNING: 4, S.PROMPT_DESIGN: 0},
        extra_overrides=recall.RECALL.extra_overrides + (
            ("train_and_evaluate.eval_period", 1), ("train_and_evaluate.checkpoint_period", 1),
            ("train_and_evaluate.patience", 1)))
    first, second = str(tmp_path / "a"), str(tmp_path / "b")
    for rd in (first, second):
        assert runner.main(["--sweep", "ablations", "--backend", "recall_tiny", "--results-dir", rd,
                            "--only", POINT]) == 0
    name = POINT.strip("^$")
    md = S.model_dir(first, name)
    assert runner.is_done(first, name)
    # Finished either way the protocol allows: stopped early (patience 1) or at the 4-step cap.
    stop = metrics_writer.read(md, metrics_writer.EARLY_STOP)
    assert (stop and stop[0]["step"] < 4) or max(r["step"] for r in metrics_writer.read(md, "train")) == 4
    tests = [recall_tables.test_metrics(S.model_dir(rd, name)) for rd in (first, second)]
    assert tests[0] is not None and tests[0] == tests[1]  # the rerun gives the same metrics exactly
    assert set(tests[0][1]) == {"test/recall_world_boolq/accuracy", "test_closed_book/recall_world_boolq/accuracy"}
    spec = S.filter_specs(ablations.specs(tiny), POINT)[0]
    table, missing = recall_tables.rows([spec], first)
    assert missing == 0 and {r["split"] for r in table} == {"test", "test_closed_book"}
    cmp = recall_tables.compare(first, [name], [name], "boolq", "test", "accuracy",
                                resamples=200)
    assert cmp.examples == 600 and cmp.clusters < 100 and cmp.difference == 0


@pytest.mark.slow
def test_table3_prompts_served_together_score_what_each_run_scored_alone(tmp_path, monkeypatch):
    """Two prompts trained by the runner, then evaluated in mixed batches on the one frozen model: each
    prompt's test predictions there equal its own run's (the trainer's best checkpoint, served alone)."""
    from experiments import ensemble, stats

    tiny = tiny_backend(
        monkeypatch, centre_prompt_length=5, ensemble_size="xxs", ensemble_prompts=2,
        train_steps={S.PROMPT_TUNING: 4, S.MODEL_TUNING: 4, S.PROMPT_DESIGN: 0},
        extra_overrides=recall.RECALL.extra_overrides + (
            ("train_and_evaluate.eval_period", 2), ("train_and_evaluate.checkpoint_period", 2)))
    rd = str(tmp_path)
    assert runner.main(["--sweep", "ensemble", "--backend", "recall_tiny", "--results-dir", rd]) == 0
    assert ensemble.main(["--backend", "recall_tiny", "--results-dir", rd, "--test-protocol"]) == 0
    served = stats.read_predictions(f"{rd}/{ensemble.PREDICTIONS_DIR}/boolq_test.jsonl")
    for k, spec in enumerate(ensemble.specs(tiny)):
        alone = stats.read_predictions(recall_tables.predictions_path(rd, spec.name, "test", "recall_world_boolq"))
        assert [r["prompts"][k] for r in served] == [r["prediction"] for r in alone]
        assert [r["target"] for r in served] == [r["target"] for r in alone]
    rows = ensemble.table3_rows(tiny, rd, resamples=200)
    assert [r["metric"] for r in rows] == ["accuracy"] and rows[0]["examples"] == 600
