"""The parameter-efficient family's comparison sweep (experiments/methods_compare.py), the spec layer's gin methods."""
import csv
import dataclasses
import os

import numpy as np
import pytest

from experiments import ablations, backends, methods_compare as M, model_search, prompt_lr, recall, recall_tables
from experiments import runner, scale, sweeps
from experiments import spec as S
from tests.conftest import REPO
from tests.experiments.fake_runs import finish_search_run as _finish, write_record_run

RECALL = recall.RECALL
FAKE = "tests.experiments.fake_trainer"
NO_MT = dataclasses.replace(RECALL, model_tuning_choice=None)  # Fig 1 without model tuning's search


# ---------------------------------------------------------------------------- the spec layer's gin methods
def test_spec_layer_knows_every_gin_method_file_and_its_macros():
    assert set(S.GIN_METHODS) == {p.stem for p in (REPO / "gin/methods").glob("*.gin")} - {"method_run"}
    assert {"LORA_RANK", "LORA_ALPHA", "METHOD_LEARNING_RATE"} <= S.gin_method_macros("lora")
    with pytest.raises(S.SpecError, match="defines no macro 'LORA_RANKK'"):
        S.Setting(method="lora", method_params=(("LORA_RANKK", 4),))
    with pytest.raises(S.SpecError, match="takes no method_params"):
        S.Setting(method=S.PROMPT_TUNING, method_params=(("LORA_RANK", 4),))


def test_gin_method_spec_runs_its_gin_file_with_its_macros_and_the_protocol():
    a = S.Setting(method="prefix", method_params=(("PREFIX_MLP_HIDDEN", 128), ("PREFIX_LENGTH", 20)), lm_steps=100)
    b = dataclasses.replace(a, method_params=tuple(reversed(a.method_params)))
    sa, sb = (RECALL.spec(sweep="x", panel="p", size="xxs", task="boolq", setting=s, seed=1, value="v") for s in (a, b))
    assert sa.name == sb.name == "prefix-xxs-boolq-lm100-prefix_length20-prefix_mlp_hidden128-s1"
    assert sa.gin_files[:2] == ("gin/methods/prefix.gin", "gin/models/recall_xxs.gin")
    o = dict(sa.overrides)
    assert o["PREFIX_LENGTH"] == 20 and o["PREFIX_MLP_HIDDEN"] == 128 and o["TRAIN_STEPS"] == recall.PT_STEP_CAP
    assert o["BATCH_SIZE"] == recall.BATCH and o["TEST_SPLITS"] == recall.SPLITS and o["train_and_evaluate.patience"]
    assert "PROMPT_LENGTH" not in o and "learning_rate_schedule.base_learning_rate" not in o
    direct = dataclasses.replace(a, method_params=(("PREFIX_LENGTH", 20), ("PREFIX_MLP_HIDDEN", None)))
    assert "--gin.PREFIX_MLP_HIDDEN=None" in RECALL.spec(sweep="x", panel="p", size="xxs", task="boolq",
                                                         setting=direct, seed=1, value="v").args("/m")


# ---------------------------------------------------------------------------- the sweep
def test_search_grid_names_unique_and_every_gin_file_exists():
    specs = sweeps.get_specs("methods", RECALL, "/nonexistent")
    assert len(specs) == len(S.dedupe(specs)) == 9 * 3 * 3  # variants x tasks x rates, seed 0 on rung s
    assert {s.label_dict["size"] for s in specs} == {M.search_rung(RECALL)} == {"s"}
    assert {s.label_dict["seed"] for s in specs} == {0}
    for s in specs:
        assert all((REPO / f).exists() for f in s.gin_files), s.name
    assert len({s.name for s in specs}) == len(specs)
    assert M.compare_specs(RECALL, "/nonexistent") == []  # no seeds before a search has chosen


def _rate(spec, variant):
    return dict(spec.overrides).get("learning_rate_schedule.base_learning_rate", variant.grid.default_rate)


def _finish_searches(backend, rd, score):
    """Finishes every search run with score(variant, rate), re-reading the sweep until nothing is added."""
    vs = M.variants(backend)
    while True:
        todo = [s for s in M.search_specs(backend, rd) if not runner.is_done(rd, s.name)]
        if not todo:
            return
        for s in todo:
            v = vs[s.label_dict["panel"].split(":", 1)[1]]
            _finish(rd, s.name, score(v, _rate(s, v)), s.label_dict["task"])


def test_prompt_tuning_points_share_names_with_fig1_fig3a_and_the_rate_check(tmp_path):
    rd = str(tmp_path)
    # Every search prefers its gin file's rate (prefix_direct, which has none: its middle rate).
    _finish_searches(NO_MT, rd, lambda v, r: 90 - abs(np.log10(r) - np.log10(v.grid.default_rate or v.grid.rates[1])))
    specs = sweeps.get_specs("methods", NO_MT, rd)
    assert len(S.dedupe(specs)) == 81 + 9 * 5 * 3 * 3 - 9 * 3  # seed 0 on s is the search's own run
    compare = [s for s in specs if s.label_dict["panel"] == M.COMPARE_PANEL]
    names = lambda variant: {s.name for s in compare if s.label_dict["setting"] == variant}
    fig1 = {s.name for s in scale.specs(NO_MT) if s.label_dict["method"] == S.PROMPT_TUNING}
    fig3a = {s.name for s in ablations.specs(NO_MT) if s.label_dict["panel"] == "a_prompt_length"
             and s.label_dict["setting"] == "20"}
    assert names("prompt_tuning") <= fig1 and len(names("prompt_tuning")) == 5 * 3 * 3
    assert fig3a and {n for n in names("prompt_tuning_p20") if n.endswith("-s0")} == fig3a  # Fig 3: seed 0 only
    rate_check = {s.name for s in prompt_lr.specs(NO_MT) if s.label_dict["setting"] == "1.0"}
    searched = {s.name for s in specs if s.label_dict["panel"] == f"{M.SEARCH_PANEL}:prompt_tuning"}
    assert rate_check & searched == {s for s in rate_check if "-s-" in s}  # rung s's 1.0 runs are shared
    # The other methods share nothing with the prompt-tuning sweeps; each seed runs at its search's choice.
    lora = [s for s in compare if s.label_dict["setting"] == "lora_r4"]
    assert len(lora) == 45 and all("learning_rate_schedule.base_learning_rate" not in dict(s.overrides) for s in lora)
    pd = [s for s in compare if s.label_dict["setting"] == "prefix_direct"]
    assert {dict(s.overrides)["learning_rate_schedule.base_learning_rate"] for s in pd} == {1e-2}


def test_model_tuning_points_are_fig1s_once_its_search_has_chosen(tmp_path):
    backend = dataclasses.replace(RECALL, sizes=("s",), tasks=("boolq",))
    rd = str(tmp_path)
    assert not [s for s in M.compare_specs(backend, rd) if s.label_dict["setting"] == M.MODEL_TUNING]
    for s in model_search.specs(backend, rd):
        o = dict(s.overrides)
        _finish(rd, s.name, 90 - abs(np.log10(o["learning_rate_schedule.base_learning_rate"]) + 2.5), "boolq")
    mt = {s.name for s in M.compare_specs(backend, rd) if s.label_dict["setting"] == M.MODEL_TUNING}
    fig1 = {s.name for s in scale.specs(backend, rd) if s.label_dict["method"] == S.MODEL_TUNING
            and s.label_dict["seed"] in backend.seeds}
    assert mt == fig1 and len(mt) == 3


def test_one_runner_command_searches_each_rate_then_runs_the_seeds(tmp_path, monkeypatch):
    """The fake trainer's validation score peaks at rate 10^-1.5: LoRA's grid (3e-4 .. 3e-3) is extended twice past
    its top edge and stops there (at_edge), then seeds 1 and 2 run at the chosen rate."""
    backend = dataclasses.replace(RECALL, name="methods_test", sizes=("s",), tasks=("boolq",),
                                  model_tuning_choice=None)
    monkeypatch.setitem(backends.BACKENDS, "methods_test", backend)
    lora = M.Variant("lora_r4", S.Setting(method="lora", method_params=(("LORA_RANK", 4),), lm_steps=100),
                     model_search.SearchGrid(rates=(3e-4, 1e-3, 3e-3), dropouts=(None,)))
    monkeypatch.setattr(M, "_variants", lambda b: (lora,))
    real = sweeps.get_specs
    monkeypatch.setattr(sweeps, "get_specs", lambda *a, **k: [dataclasses.replace(s, module=FAKE, train_steps=3)
                                                              for s in real(*a, **k)])
    monkeypatch.setitem(backend.train_steps, "*", 3)
    rd = str(tmp_path)
    assert runner.main(["--sweep", "methods", "--backend", "methods_test", "--results-dir", rd]) == 0
    res = model_search.search(backend, "s", "boolq", rd, base=lora.setting, grid=lora.grid)
    assert [round(r, 4) for r in res.rates] == [0.0003, 0.001, 0.003, 0.0095, 0.03]
    assert res.complete and res.at_edge and res.best[0] == pytest.approx(0.03)
    seeds = [s for s in M.compare_specs(backend, rd)]
    assert [s.label_dict["seed"] for s in seeds] == [0, 1, 2] and all(runner.is_done(rd, s.name) for s in seeds)
    assert len(os.listdir(os.path.join(rd, "runs"))) == 5 + 2
    assert "| lora_r4 | boolq | 0.03 |" in M.search_table(backend, rd)


# ---------------------------------------------------------------------------- counts, tables, pairs, figure
def test_trainable_parameters_come_from_the_gin_built_module_tree():
    c = recall.size_config("xxs")
    a = c.num_encoder_layers + 2 * c.num_decoder_layers
    d = c.num_heads * c.head_dim
    lora = M.variants(RECALL)["lora_r4"].setting
    assert M.trainable(RECALL, "xxs", lora) == 2 * a * 4 * (c.emb_dim + d)  # counts.py's closed form, r = 4
    direct = M.variants(RECALL)["prefix_direct"].setting
    assert M.trainable(RECALL, "xxs", direct) == 2 * 20 * d * a
    mlp = M.variants(RECALL)["prefix_mlp"].setting
    assert M.trainable(RECALL, "xxs", mlp) > M.trainable(RECALL, "xxs", direct)  # the MLP trains more than it exports
    assert M.trainable(RECALL, "xxs", RECALL.centre) == 100 * c.emb_dim
    assert M.trainable(RECALL, "xxs", model_search.model_tuning_base(RECALL)) == RECALL.params("xxs")


def test_table_pairs_and_figure_are_what_the_collector_makes_of_the_runs(tmp_path, task_files, monkeypatch):
    backend = dataclasses.replace(NO_MT, sizes=("xxs",), tasks=("record",))
    rd, out = str(tmp_path / "results"), str(tmp_path / "out")
    _finish_searches(backend, rd, lambda v, r: 90 - abs(np.log10(r) - np.log10(v.grid.default_rate or v.grid.rates[1])))
    # One rung (xxs, also the search rung here): its seeds are the compare points.
    points = M.compare_points(backend, rd)
    assert len(points) == 9 * 3 and {s.label_dict["size"] for s, _ in points} == {"xxs"}
    _, golds = recall.clusters("record", "test", os.path.join(task_files, "record"))
    rng = np.random.default_rng(0)
    p_right = {"prefix_mlp": 0.8, "prefix_direct": 0.5}
    for s, _ in points:
        md = S.model_dir(rd, s.name)
        preds = [g if rng.random() < p_right.get(s.label_dict["setting"], 0.6) else "nobody" for g in golds]
        write_record_run(md, golds, preds, early_stop=False)
    rows, missing = M.table(backend, rd)
    expected, _ = recall_tables.rows([s for s, _ in points], rd, backend.params)
    assert missing == 0 and [{k: r[k] for k in expected[0]} for r in rows] == expected
    assert all(r["trainable"] == M.trainable(backend, "xxs", st)
               for (s, st) in points for r in rows if r["run"] == s.name)
    summ = {(g["variant"], g["metric"]): g for g in M.summary(rows)}
    lora_em = [r["value"] for r in rows if r["variant"] == "lora_r4" and r["metric"] == "em"]
    assert summ[("lora_r4", "em")]["mean"] == pytest.approx(np.mean(lora_em)) and summ[("lora_r4", "em")]["n"] == 3
    paths = M.write_tables(rows, out, missing)
    with open(paths[0]) as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    lora_count = M.trainable(backend, "xxs", M.variants(backend)["lora_r4"].setting)
    assert f"| lora_r4 | xxs | record | test | em | {lora_count:,} |" in open(paths[1]).read()
    monkeypatch.setattr(recall, "task_dir", lambda task: os.path.join(task_files, task))
    found = M.pairs(backend, M.specs(backend, rd), rd, resamples=2000)
    assert [(p["reparameterised"], p["direct"]) for p in found] == list(M.PAIRS)
    prefix = found[0]["bootstrap"]
    assert prefix.excludes_zero() and prefix.low < 30 < prefix.high  # true difference 0.8 - 0.5 = 30 points
    M.write_pairs(found, os.path.join(out, "pairs.md"))
    assert "prefix_mlp | prefix_direct | xxs | record | em | 3 vs 3 |" in open(os.path.join(out, "pairs.md")).read()
    assert [os.path.exists(p) for p in M.plot(rows, os.path.join(out, "methods"))] == [True, True]


def test_command_line_writes_the_outputs_and_names_the_searches_still_pending(tmp_path):
    out = tmp_path / "out"
    assert M.main(["--results-dir", str(tmp_path / "none"), "--out-dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["methods_pairs.md", "methods_search.md", "methods_test.csv",
                                                     "methods_test.md"]  # no figure without results
    assert "27 (variant, task) pair(s) whose rate search has not chosen yet: prompt_tuning/boolq" in \
        (out / "methods_test.md").read_text()
    assert (out / "methods_search.md").read_text().count("| False | False | False |") == 81
    assert M.main(["--backend", "nope"]) == 2
