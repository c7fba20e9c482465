"""experiments/shift.py on fake finished Fig 1 runs: predictions written, the C6 table, resumability, failures."""
import csv
import dataclasses
import json
import os
import pathlib
import shutil

import pytest

from experiments import recall, runner, scale, shift
from experiments import spec as S
from prompt_tuning.data.recall_world import tasks, world as world_lib

FAKE_EVAL, FAKE_TRAIN = "tests.experiments.fake_eval", "tests.experiments.fake_train"


def _tiny():
    choice = S.Setting(method=S.MODEL_TUNING, lm_steps=100, learning_rate=1e-2, dropout=0.0)
    return dataclasses.replace(recall.RECALL, name="recall_shift_tiny", sizes=("s",), tasks=("boolq",),
                               seeds=(0, 1), scale_seeds=(0, 1), model_tuning_choice=lambda *a: choice)


def _finish(rd, spec, rows):
    md = S.model_dir(rd, spec.name)
    os.makedirs(os.path.join(md, "best", "1"))  # as on the machine that trained it (git keeps no checkpoint)
    os.makedirs(os.path.join(md, "test_predictions"))
    with open(os.path.join(md, "test_predictions", "test_recall_world_boolq.jsonl"), "w") as f:
        for r in rows:  # in-domain: every answer right
            f.write(json.dumps({"prediction": str(r["label"]), "target": str(r["label"])}) + "\n")
    open(os.path.join(S.run_dir(rd, spec.name), runner.DONE_FILE), "w").close()


@pytest.fixture
def setup(tmp_path, monkeypatch):
    rows_dir = tasks.write_tasks(str(tmp_path / "tasks"), world_lib.build_world(0, world_lib.DEFAULT_NUM_PEOPLE),
                                 tasks=["boolq"])["boolq"]
    with open(os.path.join(rows_dir, "test.jsonl")) as f:
        test = [json.loads(line) for line in f]
    backend, rd = _tiny(), str(tmp_path / "results")
    specs = scale.specs(backend, rd)
    pending = next(s for s in specs if s.name == "fs-s-boolq-k4-lm100-s1")
    for s in specs:
        if s is not pending:
            _finish(rd, s, test)
    log = tmp_path / "eval_log.jsonl"
    monkeypatch.setenv("FAKE_EVAL_ROWS", rows_dir)
    monkeypatch.setenv("FAKE_EVAL_LOG", str(log))
    for var in ("FAKE_EVAL_FAIL", "FAKE_EVAL_WRONG_TEST", "FAKE_TRAIN_WRONG"):
        monkeypatch.delenv(var, raising=False)
    run = lambda: shift.main(["--results-dir", rd, "--out-dir", str(tmp_path / "out"), "--resamples", "300"],
                             backend=backend, module=FAKE_EVAL, rows_dir=rows_dir, train_module=FAKE_TRAIN)
    return {"backend": backend, "rows_dir": rows_dir, "rd": rd, "specs": specs, "pending": pending, "log": log, "run": run, "out": tmp_path / "out",
            "test": test}


def _lines(path):
    return path.read_text().splitlines() if path.exists() else []


def test_writes_predictions_and_the_c6_table_then_does_nothing_the_second_time(setup):
    specs, rd = setup["specs"], setup["rd"]
    assert {s.label_dict["method"] for s in specs} == {S.MODEL_TUNING, S.PROMPT_TUNING, S.PROMPT_DESIGN, S.FEW_SHOT}
    assert setup["run"]() == 0
    finished = [s for s in specs if s is not setup["pending"]]
    assert len(_lines(setup["log"])) == 2 * len(finished) == 12
    for s in finished:
        for split in shift.SPLITS:
            path = shift.predictions_path(rd, s.name, split, "recall_world_boolq")
            assert len(_lines(pathlib.Path(path))) == 600
    assert not os.path.exists(os.path.join(S.model_dir(rd, setup["pending"].name), shift.PREDICTIONS_DIR))
    with open(setup["out"] / "shift.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4 * 2  # 4 methods x 2 shifted splits (accuracy)
    by = {(r["method"], r["split"]): r for r in table}
    mt, pt = by[S.MODEL_TUNING, "test_paraphrase"], by[S.PROMPT_TUNING, "test_long_passage"]
    assert float(mt["in_domain"]) == 100 and float(mt["shifted"]) == 25 and float(mt["drop"]) == 75
    assert mt["drop_minus_model"] == "" and mt["seeds"] == "2"
    assert float(pt["drop"]) == 25 and float(pt["drop_minus_model"]) == pytest.approx(-50)
    assert float(pt["ci_high"]) < 0 and int(pt["clusters"]) < 600 and int(pt["examples"]) == 600
    assert by[S.FEW_SHOT, "test_paraphrase"]["seeds"] == "1"  # seed 1 is not finished
    assert "drop - MT" in (setup["out"] / "shift.md").read_text()
    before = (setup["out"] / "shift.csv").read_text()
    assert setup["run"]() == 0  # resumable: everything there, nothing evaluated again
    assert len(_lines(setup["log"])) == 12
    assert (setup["out"] / "shift.csv").read_text() == before
    lost = shift.predictions_path(rd, finished[0].name, "test_long_passage", "recall_world_boolq")
    os.remove(lost)  # one split of one run missing: only that one is evaluated again
    assert setup["run"]() == 0
    assert [json.loads(x)["split"] for x in _lines(setup["log"])[12:]] == ["test_long_passage"]
    assert os.path.exists(lost) and (setup["out"] / "shift.csv").read_text() == before


def test_a_failed_evaluation_leaves_nothing_and_exits_1(setup, monkeypatch):
    monkeypatch.setenv("FAKE_EVAL_FAIL", "1")
    assert setup["run"]() == 1
    md = S.model_dir(setup["rd"], setup["specs"][0].name)
    assert not os.path.exists(os.path.join(md, shift.PREDICTIONS_DIR))
    assert sorted(os.listdir(os.path.dirname(md))) == ["DONE", "model"]  # no temporary directory left
    monkeypatch.delenv("FAKE_EVAL_FAIL")
    assert setup["run"]() == 0  # the next invocation does the work
    assert os.path.exists(shift.predictions_path(setup["rd"], setup["specs"][0].name, "test_paraphrase",
                                                 "recall_world_boolq"))


def test_eval_command_is_the_packages_evaluation_at_the_best_checkpoint(setup):
    s = next(x for x in setup["specs"] if x.label_dict["method"] == S.PROMPT_TUNING)
    args = shift.eval_args(s, "/r/m", ["test_paraphrase", "test_long_passage"], "/o")
    assert args[:7] == ["-m", "experiments.shift_eval", "--splits", "test_paraphrase,test_long_passage",
                        "--out-root", "/o", "--"] and "--gin_file=gin/runs/eval.gin" in args
    assert args.index("--gin_file=gin/runs/eval.gin") > args.index("--gin_file=gin/recall_world.gin")
    assert "--gin.CHECKPOINT_PATH='/r/m/best'" in args
    assert "--gin.evaluate_checkpoint.verbalizers={'recall_world_boolq': ['False', 'True']}" in args


def _without_checkpoint(setup, method):
    """The finished runs of `method` as a fresh clone has them: no best/ checkpoint (prompt runs: best.npy)."""
    out = []
    for s in setup["specs"]:
        if s is setup["pending"] or s.label_dict["method"] != method:
            continue
        md = S.model_dir(setup["rd"], s.name)
        shutil.rmtree(os.path.join(md, "best"))
        if method != S.MODEL_TUNING:
            os.makedirs(os.path.join(md, "prompts"))
            open(shift.best_prompt_path(md), "wb").close()
        out.append(s)
    return out


def test_a_prompt_run_without_its_checkpoint_is_scored_from_its_prompt_once_it_reproduces_its_test(setup,
                                                                                                   monkeypatch):
    runs = _without_checkpoint(setup, S.PROMPT_TUNING)
    md = S.model_dir(setup["rd"], runs[0].name)
    assert shift.checkpoint_source(runs[0], md) == shift.PROMPT
    args = shift.eval_args(runs[0], md, ["test_paraphrase"], "/o", source=shift.PROMPT)
    assert args.index("--gin_file=gin/prompts/from_file.gin") < args.index("--gin_file=gin/runs/eval.gin")
    assert f"--gin.PROMPT_FILE='{md}/prompts/best.npy'" in args and not any(a.startswith("--gin.CHECKPOINT_PATH") for a in args)
    monkeypatch.setenv("FAKE_EVAL_WRONG_TEST", "1")  # the rebuilt parameters disagree with the committed test
    assert setup["run"]() == 1
    for s in runs:
        assert not os.path.exists(os.path.join(S.model_dir(setup["rd"], s.name), shift.PREDICTIONS_DIR))
        assert sorted(os.listdir(S.run_dir(setup["rd"], s.name))) == ["DONE", "model"]
    monkeypatch.delenv("FAKE_EVAL_WRONG_TEST")
    before = len(_lines(setup["log"]))
    assert setup["run"]() == 0
    logged = [json.loads(x) for x in _lines(setup["log"])[before:]]
    for s in runs:  # the in-domain check first, then both shifted splits, from the prompt file
        mine = [r["split"] for r in logged if r["checkpoint"] == shift.best_prompt_path(S.model_dir(setup["rd"], s.name))]
        assert mine == ["test"] + list(shift.SPLITS)
        for split in shift.SPLITS:
            assert len(_lines(pathlib.Path(shift.predictions_path(setup["rd"], s.name, split, "recall_world_boolq")))) == 600


def test_model_tuning_without_its_checkpoint_is_retrained_and_must_reproduce_its_test(setup, monkeypatch):
    runs = _without_checkpoint(setup, S.MODEL_TUNING)
    assert [shift.checkpoint_source(s, S.model_dir(setup["rd"], s.name)) for s in runs] == [shift.RETRAIN] * 2
    monkeypatch.setenv("FAKE_TRAIN_WRONG", "1")  # a retrain that does not give the committed predictions
    assert setup["run"]() == 1
    for s in runs:
        assert sorted(os.listdir(S.run_dir(setup["rd"], s.name))) == ["DONE", "model"]  # the retrain is gone too
        assert not os.path.exists(os.path.join(S.model_dir(setup["rd"], s.name), shift.PREDICTIONS_DIR))
    monkeypatch.delenv("FAKE_TRAIN_WRONG")
    before = len(_lines(setup["log"]))
    assert setup["run"]() == 0
    logged = [json.loads(x) for x in _lines(setup["log"])[before:]]
    trained = [r["train"] for r in logged if "train" in r]
    assert len(trained) == 2 and all(os.path.basename(t) == "model" and "/shift-" in t for t in trained)
    for t in trained:  # the shifted splits scored from the retrained best checkpoint
        assert [r["split"] for r in logged if r.get("checkpoint") == os.path.join(t, "best")] == list(shift.SPLITS)
    for s in runs:
        assert sorted(os.listdir(S.run_dir(setup["rd"], s.name))) == ["DONE", "model"]


def test_shift_eval_without_its_separator_is_a_usage_error(capsys):
    from experiments import shift_eval

    assert shift_eval.main(["--splits", "test_paraphrase"]) == 2
    assert "usage" in capsys.readouterr().err


def test_mini_report_writes_the_c6_table_from_the_predictions(setup, tmp_path, monkeypatch):
    from experiments import mini_report

    assert setup["run"]() == 0
    monkeypatch.setattr(recall, "task_dir", lambda task: setup["rows_dir"])
    out = str(tmp_path / "report")
    written = mini_report.write_report(setup["backend"], setup["rd"], out)
    assert os.path.join(out, "shift.csv") in written
    keep = ("size", "task", "method", "metric", "split", "seeds", "in_domain", "shifted", "drop", "drop_minus_model")
    read = lambda path: [{k: r[k] for k in keep} for r in csv.DictReader(open(path))]
    assert read(os.path.join(out, "shift.csv")) == read(setup["out"] / "shift.csv")  # intervals: other resamples


def test_several_workers_evaluate_every_run_once_and_write_the_same_table(setup):
    assert setup["run"]() == 0
    before = (setup["out"] / "shift.csv").read_text()
    for s in setup["specs"]:
        shutil.rmtree(os.path.join(S.model_dir(setup["rd"], s.name), shift.PREDICTIONS_DIR), ignore_errors=True)
    assert shift.main(["--results-dir", setup["rd"], "--out-dir", str(setup["out"]), "--resamples", "300",
                       "--workers", "3"], backend=setup["backend"], module=FAKE_EVAL, rows_dir=setup["rows_dir"]) == 0
    again = [json.loads(x) for x in _lines(setup["log"])[12:]]
    assert len(again) == 12 and len({(r["checkpoint"], r["split"]) for r in again}) == 12
    assert (setup["out"] / "shift.csv").read_text() == before
