"""The collector: the trainer's metrics format, checkpoint selection, one tidy row per point and metric."""
import csv
import json
import os

import pytest

from experiments import collect, runner, tables
from prompt_tuning.training import metrics_writer
from experiments import spec as S

# The trainer's metrics.jsonl (prompt_tuning/training/metrics_writer.py): train and eval records,
# a resumed run repeating step 20 (the last record wins) and a line cut by a kill.
METRICS_JSONL = """\
{"step": 0, "kind": "eval", "rte/accuracy": 50.0, "rte/loss": 2.0}
{"step": 10, "kind": "train", "loss": 1.5, "steps_per_sec": 3.0}
{"step": 10, "kind": "eval", "rte/accuracy": 70.0, "rte/loss": 1.0}
{"step": 20, "kind": "eval", "rte/accuracy": 60.0, "rte/loss": 0.9}
{"step": 20, "kind": "eval", "rte/accuracy": 65.0, "rte/loss": 0.9}
{"step": 20, "kind": "train", "loss": 1.2, "steps_per_sec": 3.0}
{"step": 30, "kind": "ev
"""


def test_the_trainers_metrics_reader_keeps_the_last_record_per_step_and_skips_cut_lines():
    records = metrics_writer.parse_jsonl(METRICS_JSONL.splitlines())
    assert [(r["step"], r["kind"]) for r in records] == [(0, "eval"), (10, "eval"), (10, "train"),
                                                         (20, "eval"), (20, "train")]
    assert records[3]["rte/accuracy"] == 65.0
    assert collect.metric_values(records[3]) == {"rte/accuracy": 65.0}


def _write_run(results, name, metrics_text, best=None, done=None):
    md = S.model_dir(results, name)
    os.makedirs(md, exist_ok=True)
    with open(os.path.join(md, "metrics.jsonl"), "w") as f:
        f.write(metrics_text)
    if best is not None:
        os.makedirs(os.path.join(md, "best"))
        with open(os.path.join(md, "best", "best.json"), "w") as f:
            json.dump(best, f)
    if done is not None:
        with open(os.path.join(S.run_dir(results, name), runner.DONE_FILE), "w") as f:
            json.dump(done, f)


def _spec(name, panel, setting, train_steps=20):
    labels = (("sweep", "ablations"), ("panel", panel), ("method", "prompt_tuning"), ("size", "small"),
              ("task", "rte"), ("setting", setting), ("seed", 0))
    return S.RunSpec(name, (), (), labels, train_steps)


def test_collect_selects_the_early_stopping_checkpoint_and_writes_tidy_rows(tmp_path):
    results = str(tmp_path)
    # Run 'a': no best.json -> the best eval record (step 10, 70.0), not the last one.
    _write_run(results, "a", METRICS_JSONL, done={"wall_time_s": 12.5})
    # Run 'b': the trainer's best.json decides; a two-metric task gets a 'score' = their mean.
    _write_run(results, "b", '{"step": 5, "kind": "eval", "cb/accuracy": 1.0, "cb/f1": 2.0}\n',
               best={"step": 5, "value": 1.5, "metrics": {"cb/accuracy": 80.0, "cb/f1": 60.0, "cb/loss": 0.3}})
    # Run 'c': started, no evaluation yet; 'd': never run.
    _write_run(results, "c", '{"step": 10, "kind": "train", "loss": 1.0}\n')
    specs = [_spec("a", "a_prompt_length", "100"), _spec("a", "b_init", "class_labels"),
             _spec("b", "a_prompt_length", "5", train_steps=100), _spec("c", "x", "1"), _spec("d", "x", "1")]
    rows, counts = collect.collect(specs, results, params_of=lambda size: 1234)
    assert counts == {"with_results": 3, "no_eval_yet": 1, "missing": 1}
    a = [r for r in rows if r["run"] == "a"]
    assert {r["panel"] for r in a} == {"a_prompt_length", "b_init"}  # a shared run, once per panel
    acc = next(r for r in a if r["metric"] == "accuracy")
    assert (acc["value"], acc["best_step"], acc["steps"], acc["complete"], acc["wall_time_s"]) == (70.0, 10, 20, True, 12.5)
    assert acc["params"] == 1234 and acc["setting"] == "100"
    b = {r["metric"]: r for r in rows if r["run"] == "b"}
    assert set(b) == {"accuracy", "f1", "score"} and b["score"]["value"] == 70.0
    assert b["score"]["complete"] is False and b["score"]["best_step"] == 5

    path = tmp_path / "out.csv"
    tables.write_csv(str(path), rows, collect.COLUMNS)
    with open(path) as f:
        read = list(csv.DictReader(f))
    assert tuple(read[0]) == collect.COLUMNS and len(read) == len(rows)


def test_task_rows_keep_leaf_names_for_mixtures():
    out = dict(collect.task_rows({"rte/accuracy": 60.0, "cb/accuracy": 80.0, "cb/f1": 40.0}))
    assert out["cb/f1"] == 40.0 and out["score"] == pytest.approx((60.0 + 60.0) / 2)


def test_collect_command_line_on_an_empty_results_dir(tmp_path, capsys):
    out = tmp_path / "t.csv"
    assert collect.main(["--sweep", "scale", "--backend", "real", "--results-dir", str(tmp_path),
                         "--out", str(out)]) == 0
    assert "280 not run" in capsys.readouterr().out and out.exists()
