"""experiments/mini_report.py on constructed run directories: grid counts, tables equal to the collector's,
figures only from points whose tasks are all there."""
import csv
import dataclasses
import json
import os

from experiments import mini_report, model_search, recall, recall_tables, runner, sweeps
from experiments import spec as S

BACKEND = dataclasses.replace(recall.RECALL, sizes=("xxs", "s"), tasks=("boolq", "record"))


def _finish(results_dir, spec, value, steps=300, early_stop=True):
    """A run as the runner and trainer leave it: DONE, best.json, metrics.jsonl with train / test records."""
    rd = S.run_dir(results_dir, spec.name)
    md = S.model_dir(results_dir, spec.name)
    os.makedirs(os.path.join(md, "best"), exist_ok=True)
    task = spec.label_dict["task"]
    metrics = ["em", "f1"] if task == "record" else ["accuracy"]
    leaf = recall.TASK_TEMPLATE.format(task=task)
    with open(os.path.join(rd, "DONE"), "w") as f:
        json.dump({"rc": 0}, f)
    with open(os.path.join(md, "best", "best.json"), "w") as f:
        json.dump({"step": 50, "value": value, "metrics": {f"{leaf}/{m}": value for m in metrics}}, f)
    records = [{"step": steps, "kind": "train", "loss": 0.1},
               {"step": 50, "kind": "test", **{f"{sp}/{leaf}/{m}": value - (sp != "test") * 10 + (m == "f1") * 5
                                               for sp in ("test", "test_closed_book") for m in metrics}}]
    if early_stop:
        records.append({"step": steps, "kind": "early_stop", "best_step": 50, "patience": 5})
    with open(os.path.join(md, "metrics.jsonl"), "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records))


def test_report_counts_the_grid_and_its_tables_are_the_collectors(tmp_path, task_files):
    rd, out = str(tmp_path / "results"), str(tmp_path / "report")
    task_dir = lambda task: os.path.join(task_files, task)
    # Before any run: the search is pending and Fig 1 waits for it.
    mini_report.write_report(BACKEND, rd, out, task_dir)
    status = {r["sweep"]: r for r in mini_report.grid_status(BACKEND, rd)}
    assert status["model_search"]["done"] == 0 and status["model_search"]["runs"] == 2 * 2 * 3 * 2
    assert status["scale"]["runs"] is None and "no chosen setting yet" in status["scale"]["note"]
    # The search finishes with an interior best (3e-3) everywhere; Fig 1 can then be specified.
    for s in model_search.specs(BACKEND, rd):
        o = dict(s.overrides)
        _finish(rd, s, 60.0 + (o["learning_rate_schedule.base_learning_rate"] == 3e-3))
    scale_specs = sweeps.get_specs("scale", BACKEND, rd)
    for s in S.dedupe(scale_specs):
        if not runner.is_done(rd, s.name):
            _finish(rd, s, 70.0 if s.label_dict["task"] == "boolq" else 40.0,
                    early_stop=s.label_dict["method"] != "prompt_tuning")  # prompt tuning "ran to its cap"
    written = mini_report.write_report(BACKEND, rd, out, task_dir)
    status = {r["sweep"]: r for r in mini_report.grid_status(BACKEND, rd)}
    assert status["model_search"]["pending"] == 0
    costs = {(c["method"], c["size"]): c for c in mini_report.cost_rows(BACKEND, rd)}
    assert costs[("model_tuning", "s")]["done"] == 2 * 3 * 2 + 2 * 4 and costs[("model_tuning", "s")]["pending"] == 0
    pt = costs[("prompt_tuning", "s")]
    assert pt["done"] == 2 * 5 and pt["pending"] > 0 and pt["pending_wall_h"] == 0.0  # _finish's DONE has no wall time
    assert status["scale"]["pending"] == 0 and status["scale"]["done"] == status["scale"]["runs"]
    assert status["ablations"]["done"] < status["ablations"]["runs"]  # its centre runs are Fig 1's
    # The committed table is exactly what the collector makes of the runs.
    table, missing = recall_tables.rows(scale_specs, rd, BACKEND.params)
    recall_tables.write(table, str(tmp_path / "a.csv"), str(tmp_path / "a.md"), missing)
    assert open(os.path.join(out, "scale_test.csv")).read() == open(tmp_path / "a.csv").read()
    assert open(os.path.join(out, "scale_test.md")).read() == open(tmp_path / "a.md").read()
    assert os.path.join(out, "fig1_scale.png") in written
    # The figure's numbers as a table: one line per method, a column per rung (mini score over both tasks).
    fig1 = open(os.path.join(out, "fig1_scale.md")).read()
    assert "| methods | prompt_tuning | 55.0 ± 0.0 (55.0-55.0) |" in fig1
    rows = mini_report.figure_rows(table, BACKEND.tasks)
    # One score per (point, seed, task): accuracy for BoolQ, exact match (not F1) for ReCoRD, test split only.
    # (Fig 1's model tuning at seed 0 is the search's own run, 61.)
    assert {(r["task"], r["metric"], r["value"]) for r in rows if r["method"] != "model_tuning"} == {
        ("boolq", "score", 70.0), ("record", "score", 40.0)}
    assert len(rows) == 2 * len({(r["method"], r["size"], r["seed"]) for r in rows})
    # The baselines beside the scores: the no-model ones from the task files; the untrained model's once run.
    base = {(r["task"], r["baseline"]): r["value"] for r in mini_report.baseline_rows(BACKEND, task_dir)}
    assert base[("boolq", "lookup")] == base[("boolq", "majority")] == 50.0  # entity-disjoint splits
    assert base[("record", "majority")] == 0.0 and 30 < base[("record", "random_candidate")] < 40
    assert base[("mini", "majority")] == 25.0
    text = open(os.path.join(out, "baselines.md")).read()
    assert "| boolq | lookup | 50 |" in text and "(not run yet)" in text
    untrained = [s for s in S.dedupe(sweeps.get_specs("ablations", BACKEND, rd)) if s.label_dict["objective"] == "untrained"]
    for s in untrained:
        _finish(rd, s, 10.0 if s.label_dict["task"] == "boolq" else 1.0)
    mini_report.write_report(BACKEND, rd, out, task_dir)
    text = open(os.path.join(out, "baselines.md")).read()
    assert "| xxs | boolq | accuracy | 10.0 (n=1) |" in text and "| s | record | em | 1.0 (n=1) |" in text


def test_figure_rows_leave_out_a_point_missing_a_task():
    base = {"panel": "methods", "method": "prompt_tuning", "setting": "100", "size": "s", "seed": 0,
            "params": 10, "split": "test"}
    table = [dict(base, task="boolq", metric="accuracy", value=80.0),
             dict(base, task="record", metric="em", value=20.0), dict(base, task="record", metric="f1", value=30.0),
             dict(base, seed=1, task="boolq", metric="accuracy", value=90.0)]
    rows = mini_report.figure_rows(table, ("boolq", "record"))
    assert sorted((r["seed"], r["task"], r["value"]) for r in rows) == [(0.0, "boolq", 80.0), (0.0, "record", 20.0)]


def test_the_shift_table_reads_the_task_files_the_report_is_given(tmp_path, task_files, monkeypatch):
    """write_report(task_dir=...) scores C6 against those task files too, not the default world cache."""
    from experiments import shift
    from tests.experiments.fake_runs import write_record_run

    monkeypatch.setattr(recall, "task_dir", lambda task: str(tmp_path / "no-cache" / task))
    mt = S.Setting(method=S.MODEL_TUNING, lm_steps=100, learning_rate=1e-3, dropout=0.0)
    backend = dataclasses.replace(recall.RECALL, sizes=("xxs",), tasks=("record",), model_search=None,
                                  model_tuning_choice=lambda size, task, results_dir=None: mt)
    rd, out = str(tmp_path / "results"), str(tmp_path / "report")
    task_dir = lambda task: os.path.join(task_files, task)
    _, golds = recall.clusters("record", "test", task_dir("record"))
    specs, _ = shift.fig1_specs(backend, rd)
    for s in S.dedupe(specs):
        if s.label_dict["method"] not in (S.MODEL_TUNING, S.PROMPT_TUNING):
            continue
        md = S.model_dir(rd, s.name)
        write_record_run(md, golds, golds)
        name = recall.TASK_TEMPLATE.format(task="record")
        for split in shift.SPLITS:
            os.makedirs(os.path.dirname(shift.predictions_path(rd, s.name, split, name)), exist_ok=True)
            with open(shift.predictions_path(rd, s.name, split, name), "w") as f:
                wrong = s.label_dict["method"] == S.PROMPT_TUNING and split == "test_paraphrase"
                f.writelines(json.dumps({"target": g, "prediction": "nobody" if wrong and i % 2 else g}) + "\n"
                             for i, g in enumerate(golds))  # prompt tuning loses 50 points to the paraphrase
        with open(os.path.join(S.run_dir(rd, s.name), runner.DONE_FILE), "w") as f:
            json.dump({"rc": 0}, f)
    written = mini_report.write_report(backend, rd, out, task_dir)
    assert os.path.join(out, "shift.csv") in written
    # The two C6 tables' sign conventions: shift's "drop - MT" (+50: prompt tuning lost more) is minus claims'
    # A - B (A, B: each method's shifted - in-domain score), whose "greater" rule then says not reproduced.
    with open(os.path.join(out, "shift.csv")) as f:
        pt = [r for r in csv.DictReader(f) if r["method"] == S.PROMPT_TUNING and r["split"] == "test_paraphrase"
              and r["metric"] == "em"]
    assert len(pt) == 1 and float(pt[0]["drop"]) == 50.0 and float(pt[0]["drop_minus_model"]) == 50.0
    with open(os.path.join(out, "claims.csv")) as f:
        c6 = {r["claim"]: r for r in csv.DictReader(f)}
    assert float(c6["C6a"]["difference"]) == -50.0 and c6["C6a"]["verdict"] == "not reproduced"
    assert float(c6["C6b"]["difference"]) == 0.0 and c6["C6b"]["verdict"] == "inconclusive"


def test_convergence_counts_early_stops_caps_and_losses_still_falling(tmp_path):
    rd = str(tmp_path / "results")
    specs = model_search.specs(BACKEND, rd)
    xxs = [s for s in specs if s.label_dict["size"] == "xxs"][:3]
    # run 0: best at 50, stopped early at 300, loss lowest at 100; run 1: loss still falling at its last
    # evaluation (300); run 2: ran to its cap (no early_stop record), loss falling too.
    for i, s in enumerate(xxs):
        _finish(rd, s, 60.0, early_stop=i < 2)
        leaf = recall.TASK_TEMPLATE.format(task=s.label_dict["task"])
        metric = "em" if s.label_dict["task"] == "record" else "accuracy"
        losses = {0: 3.0, 50: 2.0, 100: 1.0 if i == 0 else 1.5, 300: 1.2}
        evals = [{"step": st, "kind": "eval", f"{leaf}/{metric}": 60.0 if st == 50 else 50.0, f"{leaf}/loss": v}
                 for st, v in losses.items()]
        with open(os.path.join(S.model_dir(rd, s.name), "metrics.jsonl"), "a") as f:
            f.write("".join(json.dumps(r) + "\n" for r in evals))
    rows = {(r["method"], r["size"]): r for r in mini_report.convergence_rows(BACKEND, rd)}
    assert set(rows) == {("model_tuning", "xxs")}  # unfinished runs count nowhere
    assert rows[("model_tuning", "xxs")] == {
        "method": "model_tuning", "size": "xxs", "runs": 3, "stopped_early": 2, "capped": 1,
        "median_best_step": 50.0, "median_last_step": 300.0, "loss_lowest_at_last_eval": 2}
