"""The recall backend (experiments/recall.py), the model-tuning search and the test-split tables."""
import collections
import dataclasses
import json
import os

import numpy as np
import pytest

from experiments import ablations, backends, model_search, recall, recall_tables, runner, scale, stats, sweeps
from experiments import spec as S
from tests.conftest import REPO
from tests.experiments.fake_runs import finish_search_run as _finish, write_record_run

RECALL = recall.RECALL


def test_grid_sizes_and_every_gin_file_exists():
    abl = S.dedupe(ablations.specs(RECALL))
    # 5 rungs x 3 tasks x seed 0 (the budget trim) x (4 lengths + 2 inits + span corruption, its control,
    # untrained + 2 LM budgets + the centre)
    assert recall.ABLATION_SEEDS == (0,) and len(abl) == 5 * 3 * 1 * 12
    search = S.dedupe(model_search.specs(RECALL, results_dir="/nonexistent"))
    assert len(search) == 5 * 3 * 3 * 2  # the initial rates x dropouts, seed 0
    for s in abl + search:
        for f in s.gin_files:
            assert (REPO / f).exists(), f"{s.name}: {f}"
    assert backends.get_backend("recall") is RECALL


def test_centre_point_follows_the_protocol():
    specs = {s.name: s for s in ablations.specs(RECALL)}
    for task, mode in (("boolq", "rank"), ("record", "generate")):
        s = specs[f"pt-s-{task}-p100-class_labels-lm100-s0"]
        o = dict(s.overrides)
        assert o["PROMPT_LENGTH"] == 100 and o["INITIAL_CHECKPOINT_PATH"] == recall.LADDER + "/s/lm"
        assert o["class_labels.labels"] == list(recall.LABEL_WORDS[task])
        assert o["TEST_SPLITS"] == ("test", "test_closed_book") and o["EVAL_MODE"] == mode
        assert o["train_and_evaluate.patience"] == recall.PATIENCE and o["TRAIN_STEPS"] == recall.PT_STEP_CAP
        assert o["TASK_FEATURE_LENGTHS"] == {"inputs": 96, "targets": 8} and o["DROPOUT_RATE"] == 0.0
        assert s.gin_files[0] == "gin/runs/prompt_finetune.gin"  # the paper's Adafactor for prompts
    assert dict(specs["pt-s-boolq-p100-class_labels-lm100-s0"].overrides)["train_and_evaluate.verbalizers"] == {
        "recall_world_boolq": ["False", "True"]}
    # Fig 3(a) around the centre; (d) maps the LM budgets (percent) onto the ladder's exports.
    assert {dict(s.overrides)["PROMPT_LENGTH"] for s in ablations.specs(RECALL)
            if s.label_dict["panel"] == "a_prompt_length"} == {1, 5, 20, 100, 150}
    paths = {n: RECALL.checkpoint("m", dataclasses.replace(RECALL.centre, lm_steps=n)) for n in RECALL.lm_budgets}
    root = recall.LADDER + "/m/"
    assert paths == {0: root + "sc", 10: root + "lm_10", 50: root + "lm_50", 100: root + "lm"}
    assert not any("sentinel" in s.name for s in specs.values())
    objective = {s.label_dict["setting"]: dict(s.overrides)["INITIAL_CHECKPOINT_PATH"] for s in ablations.specs(RECALL)
                 if s.label_dict["panel"] == "c_objective" and s.label_dict["size"] == "xs"}
    assert objective == {"span_corruption": recall.LADDER + "/xs/sc", "span_corruption_control": recall.LADDER +
                         "/xs/sc_control", "lm_adapt": recall.LADDER + "/xs/lm", "untrained": recall.LADDER + "/xs/untrained"}


def test_model_tuning_points_set_rate_and_dropout_after_the_method_file():
    s = next(x for x in model_search.specs(RECALL, "/nonexistent") if x.name == "mt-xs-rte-lm100-lr0.003-d0.1-s0")
    o = list(s.overrides)
    assert s.gin_files[0] == "gin/runs/model_finetune.gin"
    assert ("learning_rate_schedule.base_learning_rate", 0.003) in o
    # DROPOUT_RATE appears twice (the backend's 0, then the setting's): the later binding wins in gin.
    assert [v for k, v in o if k == "DROPOUT_RATE"][-1] == 0.1
    assert dict(o)["BATCH_SIZE"] == 32 and dict(o)["TRAIN_STEPS"] == recall.MT_STEP_CAP


def test_size_config_is_each_rungs_gin_file_and_matches_built_checkpoints():
    from prompt_tuning.checkpoints import native

    assert RECALL.params("s") == 240_384  # gin/models/recall_s.gin's header
    with pytest.raises(S.SpecError, match="no model gin file"):
        recall.size_config("xxl")
    found = [(r, k) for r in RECALL.sizes for k in RECALL.checkpoints
             if os.path.exists(os.path.join(REPO, RECALL.checkpoint(r, _setting_for_key(k)), "config.json"))]
    if not found:
        pytest.skip(f"the recall ladder is not built under {recall.LADDER} (experiments/recall_world/build_ladder.py)")
    for rung, key in found:
        assert native.load_config(os.path.join(REPO, RECALL.checkpoint(rung, _setting_for_key(key)))) == \
            recall.size_config(rung), (rung, key)


def _setting_for_key(key):
    objective = {"sc_control": S.SPAN_CORRUPTION_CONTROL, "untrained": S.UNTRAINED}.get(key)
    if objective:
        return dataclasses.replace(RECALL.centre, objective=objective)
    return dataclasses.replace(RECALL.centre, lm_steps=0 if key == "sc" else int(key[2:]))


def test_prompt_design_token_counts_use_the_recall_vocabulary():
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(REPO / "assets" / "recall_world" / "spm.model"))
    for task, (text, length) in RECALL.prompt_design.items():
        assert len(sp.encode(text)) == length, task


# ---------------------------------------------------------------------------- the model-tuning search
GRID = recall.MODEL_SEARCH


def test_extend_adds_a_rate_past_a_winning_edge_and_stops_inside_or_after_max_extensions():
    rates = GRID.rates
    inside = {(r, d): (90 if r == 3e-3 else 80) + d for r in rates for d in GRID.dropouts}
    assert model_search.extend(rates, GRID, inside) == (rates, (3e-3, 0.1), False)
    top = {(r, d): 1000 * r for r in rates for d in GRID.dropouts}  # the largest rate wins
    new, best, extended = model_search.extend(rates, GRID, top)
    assert extended and best[0] == 1e-2 and new[-1] == pytest.approx(1e-2 * 10 ** 0.5)
    low = {(r, d): -r for r in rates for d in GRID.dropouts}
    new, _, extended = model_search.extend(rates, GRID, low)
    assert extended and new[0] == pytest.approx(1e-3 / 10 ** 0.5)
    # Two extensions past the top edge used: the edge stays (reported as at_edge by `search`).
    wide = rates + (1e-2 * 10 ** 0.5, 1e-1)
    assert model_search.extend(wide, GRID, {(r, d): r for r in wide for d in GRID.dropouts})[2] is False
    # Ties: the lower validation loss, then the lower rate, then the lower dropout.
    flat = {(r, d): 50.0 for r in rates for d in GRID.dropouts}
    assert model_search.extend(rates, GRID, flat)[1] == (1e-3, 0.0)
    loss = {(r, d): 0.5 for r in rates for d in GRID.dropouts} | {(3e-3, 0.1): 0.2}
    assert model_search.extend(rates, GRID, flat, loss) == (rates, (3e-3, 0.1), False)


def test_validation_loss_is_the_best_checkpoints_loss_and_inf_without_one(tmp_path):
    rd = str(tmp_path)
    _finish(rd, "a", 100.0)
    assert model_search.validation_loss(rd, "a") == float("inf")
    with open(os.path.join(S.run_dir(rd, "a"), "model", "best", "best.json"), "w") as f:
        json.dump({"step": 50, "value": 100.0, "metrics": {"recall_world_boolq/accuracy": 100.0,
                                                           "recall_world_boolq/loss": 0.25}}, f)
    assert model_search.validation_loss(rd, "a") == 0.25
    assert model_search.validation_score(rd, "a") == 100.0  # the loss is not part of the score


def test_search_runs_grow_until_the_best_is_inside_and_fig1_uses_the_choice(tmp_path):
    backend = dataclasses.replace(RECALL, sizes=("s",), tasks=("boolq",))
    rd = str(tmp_path)
    with pytest.raises(S.SpecError, match="no chosen setting yet: 6 search run"):
        scale.specs(backend, results_dir=rd)
    curve = lambda r, d: 90 - 10 * abs(np.log10(r) - np.log10(1e-2 * 10 ** 0.5)) - d  # peak past the grid
    for s in model_search.specs(backend, rd):
        o = dict(s.overrides)
        _finish(rd, s.name, curve(o["learning_rate_schedule.base_learning_rate"], o["DROPOUT_RATE"]))
    specs = model_search.specs(backend, rd)
    assert len(specs) == 8  # one rate added past the top edge, x 2 dropouts
    res = model_search.search(backend, "s", "boolq", rd)
    assert res.best is None and not res.complete
    for s in specs:
        o = dict(s.overrides)
        if not runner.is_done(rd, s.name):
            _finish(rd, s.name, curve(o["learning_rate_schedule.base_learning_rate"], o["DROPOUT_RATE"]))
    specs = model_search.specs(backend, rd)
    assert len(specs) == 10  # the new rate won again: one more
    for s in specs:
        o = dict(s.overrides)
        if not runner.is_done(rd, s.name):
            _finish(rd, s.name, curve(o["learning_rate_schedule.base_learning_rate"], o["DROPOUT_RATE"]))
    res = model_search.search(backend, "s", "boolq", rd)
    assert res.complete and res.best == (pytest.approx(1e-2 * 10 ** 0.5), 0.0) and not res.at_edge
    mt = [s for s in scale.specs(backend, results_dir=rd) if s.label_dict["method"] == S.MODEL_TUNING]
    assert [s.label_dict["seed"] for s in mt] == [0, 1, 2, 3, 4]
    assert all(dict(s.overrides)["learning_rate_schedule.base_learning_rate"] == pytest.approx(1e-2 * 10 ** 0.5)
               for s in mt)
    assert mt[0].name in {s.name for s in specs}  # seed 0 is the search's own run
    table = model_search.table(backend, rd)
    assert sum(r["chosen"] for r in table) == 1 and len(table) == 10
    # the sweep registry passes the results directory through
    assert len(sweeps.get_specs("model_search", backend, rd)) == 10


# ---------------------------------------------------------------------------- clusters and tables
@pytest.mark.parametrize("task", recall.TASKS)
def test_clusters_are_the_person_and_fact_of_each_row(task, task_files):
    from prompt_tuning.data import sources
    from prompt_tuning.data.recall_world import world as world_lib

    keys, golds = recall.clusters(task, "test", os.path.join(task_files, task))
    rows = list(sources.read_jsonl(os.path.join(task_files, task, "test.jsonl")))
    assert len(keys) == len(rows) == len(golds) == 600
    facts = world_lib.RELATIONS if task == "record" else world_lib.TRAITS
    for (person, fact), row in zip(keys, rows):
        text = {"boolq": row.get("question"), "rte": row.get("hypothesis")}.get(task) or row["qas"][0]["query"]
        assert person in text.split()[:2] and fact in facts
    # Test people x facts: far fewer clusters than examples.
    assert len(set(keys)) <= len(facts) * len({p for p, _ in keys}) < 100


def test_tables_and_paired_comparison_from_run_directories(tmp_path, task_files):
    backend = dataclasses.replace(RECALL, sizes=("s",), tasks=("record",), ablation_seeds=(0, 1, 2))
    rd = str(tmp_path / "results")
    specs = [s for s in ablations.specs(backend) if s.label_dict["panel"] == "a_prompt_length"
             and s.label_dict["setting"] in ("20", "100")]
    _, golds = recall.clusters("record", "test", os.path.join(task_files, "record"))
    rng = np.random.default_rng(0)
    for s in specs:
        md = S.model_dir(rd, s.name)
        p_right = 0.8 if s.label_dict["setting"] == "100" else 0.5
        write_record_run(md, golds, [g if rng.random() < p_right else "nobody" for g in golds])
    table, missing = recall_tables.rows(specs, rd)
    assert missing == 0 and len(table) == 2 * 3 * 2  # 2 settings x 3 seeds x (em, f1)
    assert {r["metric"] for r in table} == {"em", "f1"} and all(r["split"] == "test" for r in table)
    assert all(r["early_stopped"] and not r["capped"] for r in table)
    summ = {(g["setting"], g["metric"]): g for g in recall_tables.summary(table)}
    ems = [r["value"] for r in table if r["setting"] == "100" and r["metric"] == "em"]
    assert summ[("100", "em")]["mean"] == pytest.approx(np.mean(ems)) and summ[("100", "em")]["n"] == 3
    recall_tables.write(table, str(tmp_path / "t.csv"), str(tmp_path / "t.md"), missing)
    assert "+-" in (tmp_path / "t.md").read_text()
    names = lambda v: [s.name for s in specs if s.label_dict["setting"] == v]
    cmp = recall_tables.compare(rd, names("100"), names("20"), "record", "test", "em",
                                rows_dir=os.path.join(task_files, "record"), resamples=2000)
    assert cmp.clusters < 100 and cmp.excludes_zero() and cmp.low < 30 < cmp.high  # true difference 30
    same = recall_tables.compare(rd, names("20"), names("20"), "record", "test", "em",
                                 rows_dir=os.path.join(task_files, "record"), resamples=500)
    assert same.difference == 0 and same.low <= 0 <= same.high
    # Predictions that are not the split's examples in order are refused.
    bad = stats.read_predictions(recall_tables.predictions_path(rd, names("20")[0], "test", "recall_world_record"))
    with pytest.raises(ValueError, match="not the task file's answers"):
        recall.aligned_clusters("record", "test", bad[::-1], os.path.join(task_files, "record"))


def test_prompt_lr_check_shares_the_centre_run_at_the_papers_rate():
    from experiments import prompt_lr

    specs = prompt_lr.specs(RECALL)
    centre = {s.name for s in ablations.specs(RECALL) if s.label_dict["panel"] == "a_prompt_length"
              and s.label_dict["setting"] == "100" and s.label_dict["seed"] == 0}
    at = lambda r: {s.name for s in specs if s.label_dict["setting"] == str(r)}
    assert at(0.3) == centre and len(at(1.0)) == 15
    assert all(dict(s.overrides)["learning_rate_schedule.base_learning_rate"] == 1.0
               for s in specs if s.label_dict["setting"] == "1.0")


def test_fig1_adds_few_shot_prompt_design_with_three_seeds_on_recall_only():
    choice = S.Setting(method=S.MODEL_TUNING, lm_steps=100, learning_rate=1e-2, dropout=0.0)
    backend = dataclasses.replace(RECALL, model_tuning_choice=lambda *a: choice)
    specs = scale.specs(backend)
    count = collections.Counter(s.label_dict["method"] for s in specs)
    n = len(RECALL.sizes) * len(RECALL.tasks)
    assert count == {S.MODEL_TUNING: 5 * n, S.PROMPT_TUNING: 5 * n, S.PROMPT_DESIGN: n, S.FEW_SHOT: 3 * n}
    assert len(specs) == 210 and len({s.name for s in specs}) == 210
    fs = {s.name: s for s in specs if s.label_dict["method"] == S.FEW_SHOT}
    assert sorted(n for n in fs if n.startswith("fs-m-rte-")) == [f"fs-m-rte-k4-lm100-s{i}" for i in range(3)]
    texts = set()
    for seed in range(3):
        s = fs[f"fs-m-rte-k4-lm100-s{seed}"]
        o = dict(s.overrides)
        assert o["TRAIN_STEPS"] == 0 and "gin/prompts/from_string.gin" in s.gin_files
        assert o["PROMPT_TEXT"].startswith(RECALL.prompt_design["rte"][0])
        assert o["PROMPT_TEXT"].count("hypothesis:") == RECALL.shots == 4
        texts.add(o["PROMPT_TEXT"])
    assert len(texts) == 3  # the seed picks the demonstrations
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(REPO / recall.VOCAB))
    for s in fs.values():
        o = dict(s.overrides)
        assert o["PROMPT_LENGTH"] == len(sp.encode(o["PROMPT_TEXT"]))
        assert 120 <= o["PROMPT_LENGTH"] <= 280  # 4 demonstrations: 126-272 tokens in front of 96 input tokens
    assert S.FEW_SHOT not in scale.methods(backends.REAL)  # `real` has no training split at hand
    with pytest.raises(S.SpecError, match="cannot run few-shot"):
        backends.REAL.spec(sweep="scale", panel="methods", size="small", task="rte",
                           setting=S.Setting(method=S.FEW_SHOT, shots=4), seed=0, value="few_shot")
