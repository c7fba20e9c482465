"""The mini backend points at the real ladder, gin files, vocabulary and tasks."""
import csv
import dataclasses
import json
import os

import pytest

from experiments import ablations, backends, scale
from experiments import spec as S
from prompt_tuning.models import t5
from tests.conftest import REPO

MINI = backends.MINI
LADDER = REPO / backends.MINI_LADDER


def test_size_config_is_the_gin_files_and_the_shipped_models_shape():
    from prompt_tuning.checkpoints import native

    from experiments.mini_world import probe  # the ladder builder's shapes

    assert set(backends.MINI_LADDER_SIZES) == set(probe.SIZES) and set(MINI.sizes) <= set(probe.SIZES)
    for size in backends.MINI_LADDER_SIZES:
        assert MINI.size_config(size) == t5.T5Config(vocab_size=2048, **probe.SIZES[size]), size
    assert MINI.params("s") == 459_648
    # The shipped default model is an 's' rung built the same way (committed, so this always runs).
    assert native.load_config(str(REPO / "assets" / "mini_world" / "default")) == MINI.size_config("s")
    with pytest.raises(S.SpecError, match="no mini size"):
        MINI.size_config("xxl")


def test_size_config_equals_every_built_ladder_checkpoint():
    from prompt_tuning.checkpoints import native

    for size in MINI.sizes:  # the builder's own parameter count
        info = LADDER / f"model_{size}" / "pretrain.json"
        if info.exists():
            assert json.loads(info.read_text())["params"] == MINI.params(size), size
    found = [(size, key) for size in MINI.sizes for key in MINI.checkpoints
             if os.path.exists(os.path.join(REPO, MINI.checkpoints[key].format(size=size), "config.json"))]
    if not found:
        pytest.skip(f"the mini ladder is not built ({LADDER}; python experiments/mini_world/build_ladder.py)")
    for size, key in found:
        assert native.load_config(os.path.join(REPO, MINI.checkpoints[key].format(size=size))) == \
            MINI.size_config(size), (size, key)


def test_lm_budgets_map_to_the_ladders_checkpoint_directories():
    paths = {n: MINI.checkpoint("m", dataclasses.replace(MINI.centre, lm_steps=n)) for n in MINI.lm_budgets}
    root = backends.MINI_LADDER + "/model_m/"
    assert paths == {0: root + "sc", 150: root + "lm_150", 750: root + "lm_750", 1500: root + "lm"}
    sentinel = dataclasses.replace(MINI.centre, objective=S.SPAN_CORRUPTION_SENTINEL)
    assert MINI.checkpoint("xs", sentinel) == backends.MINI_LADDER + "/model_xs/sc"
    assert MINI.task_name("record", sentinel) == "mini_world_record_sentinel"


def test_task_names_and_prompt_design_agree_with_the_data_package():
    import sentencepiece as spm

    from prompt_tuning.data.mini_world import registry

    assert MINI.tasks == ("record",) and set(MINI.tasks) <= set(backends.MINI_TASKS)
    for task in backends.MINI_TASKS:
        assert MINI.task_name(task, MINI.centre) == registry.task_name(task)
    sp = spm.SentencePieceProcessor(model_file=str(REPO / "assets" / "mini_world" / "spm.model"))
    assert set(MINI.prompt_design) == set(backends.MINI_TASKS)
    for task, (text, length) in MINI.prompt_design.items():
        assert len(sp.encode(text)) == length, task


def test_record_runs_generate_with_task_words_and_existing_gin_files():
    specs = S.dedupe(ablations.specs(MINI) + scale.specs(MINI))
    # Fig 1 + Fig 3 on record, sizes xs s m, 3 seeds: 3 x 3 x 11 = 99 ablation runs + 12 new scale runs
    # (model tuning x 3 seeds, prompt design x 1, per size).
    assert len(specs) == 111
    for s in specs:
        for f in s.gin_files:
            assert (REPO / f).exists(), f"{s.name}: {f}"
        o = dict(s.overrides)
        assert o["EVAL_MODE"] == "generate" and o["TASK_FEATURE_LENGTHS"] == {"inputs": 96, "targets": 8}
        assert o["DROPOUT_RATE"] == 0.0  # as the main command (gin/default_world.gin)
    centre = dict(next(s for s in specs if s.name == "pt-s-record-p20-class_labels-lm1500-s0").overrides)
    assert centre["PROMPT_LENGTH"] == 20
    assert centre["class_labels.labels"] == ["commonsense", "reasoning", "reading", "comprehension"]
    assert centre["INITIAL_CHECKPOINT_PATH"] == backends.MINI_LADDER + "/model_s/lm"
    assert (centre["TRAIN_STEPS"], centre["BATCH_SIZE"]) == (MINI.train_steps[S.PROMPT_TUNING], 32)


def test_task_gin_registers_every_mini_task(tmp_path, monkeypatch):
    import gin
    import seqio

    from prompt_tuning.training import cli

    monkeypatch.setenv("MINI_WORLD_CACHE", str(tmp_path))
    try:
        gin.parse_config_files_and_bindings([str(REPO / f) for f in MINI.task_gin], [])
        assert gin.query_parameter("get_vocabulary.path") == "assets/mini_world/spm.model"
        monkeypatch.chdir(REPO)
        cli.startup()
    finally:
        gin.clear_config()
    for task in backends.MINI_TASKS:
        for sentinel in (False, True):
            seqio.get_mixture_or_task(MINI.task_name(task, dataclasses.replace(
                MINI.centre, objective=S.SPAN_CORRUPTION_SENTINEL if sentinel else S.LM_ADAPT)))


@pytest.mark.parametrize("sweep", ["scale", "ablations"])
def test_committed_mini_results_hold_every_point_of_the_grid(sweep, tmp_path):
    """experiments/results/mini/<sweep>.csv: every (panel, setting, size, seed) the sweep defines, complete,
    and exactly what the collector makes of the committed run directories."""
    from experiments import collect, sweeps

    results = REPO / "experiments" / "results" / "mini"
    with open(results / f"{sweep}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    specs = sweeps.get_specs(sweep, MINI)
    want = {(s.label_dict["panel"], str(s.label_dict["setting"]), s.label_dict["size"], str(s.label_dict["seed"]))
            for s in specs}
    got = {(r["panel"], r["setting"], r["size"], r["seed"]) for r in rows if r["metric"] == "score"}
    assert got == want and len(want) == len(specs)
    assert all(r["complete"] == "True" for r in rows)
    assert collect.main(["--sweep", sweep, "--backend", "mini", "--results-dir", str(results),
                         "--out", str(tmp_path / "t.csv")]) == 0
    assert (tmp_path / "t.csv").read_text() == (results / f"{sweep}.csv").read_text()
    for ext in ("png", "pdf"):
        assert (results / f"{sweep}.{ext}").exists()
