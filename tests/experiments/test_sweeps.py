"""Sweep grids: the paper's points, shared centre runs, command lines the trainer accepts."""
import ast
import collections
import dataclasses
import os
import shlex

import pytest

from experiments import ablations, backends, ensemble, scale, sweeps
from experiments import spec as S
from tests.conftest import REPO, shared_path

REAL = backends.REAL


def _by_panel(specs):
    out = collections.defaultdict(list)
    for s in specs:
        out[s.label_dict["panel"]].append(s)
    return out


def test_real_ablation_grid_is_the_papers():
    specs = ablations.specs(REAL)
    panels = _by_panel(specs)
    n = len(REAL.sizes) * len(REAL.tasks) * len(REAL.seeds)
    assert {p: len(v) // n for p, v in panels.items()} == {
        "a_prompt_length": 5, "b_init": 3, "c_objective": 3, "d_lm_steps": 4}
    values = lambda p: sorted({s.label_dict["setting"] for s in panels[p]})
    assert values("a_prompt_length") == sorted(["1", "5", "20", "100", "150"])
    assert values("b_init") == sorted(["random_uniform", "sampled_vocab", "class_labels"])
    assert values("d_lm_steps") == sorted(["0", "10000", "50000", "100000"])
    # Distinct computations: 5 lengths + 2 inits + 2 objectives + 2 new LM budgets.
    assert len(S.dedupe(specs)) == n * 11
    assert sorted(REAL.seeds) == [0, 1, 2]


def test_panels_share_the_centre_and_span_corruption_runs():
    panels = _by_panel(ablations.specs(REAL))
    names = {p: {s.name for s in v} for p, v in panels.items()}
    centre = S.run_name("base", "rte", REAL.centre, 1)
    assert centre == "pt-base-rte-p100-class_labels-lm100k-s1"
    assert all(centre in v for v in names.values())
    sc = S.run_name("base", "rte", dataclasses.replace(REAL.centre, lm_steps=0), 1)
    assert sc in names["c_objective"] and sc in names["d_lm_steps"]
    scale_pt = {s.name for s in scale.specs(REAL) if s.label_dict["method"] == S.PROMPT_TUNING}
    assert scale_pt <= set().union(*names.values())


def _spec(specs, name):
    return next(s for s in specs if s.name == name)


def test_real_specs_use_the_paper_checkpoints_hyperparameters_and_the_trainers_gin_files():
    specs = S.dedupe(ablations.specs(REAL) + scale.specs(REAL) + ensemble.specs(REAL))
    for s in specs:
        for f in s.gin_files:
            assert (REPO / f).exists(), f"{s.name} references a gin file that does not exist: {f}"
    centre = dict(_spec(specs, "pt-xl-cb-p100-class_labels-lm100k-s0").overrides)
    assert centre["INITIAL_CHECKPOINT_PATH"] == backends.T5X_ROOT + "/t5_1_1_lm100k_xl/checkpoint_1100000"
    assert (centre["TRAIN_STEPS"], centre["BATCH_SIZE"], centre["PROMPT_LENGTH"]) == (30000, 32, 100)
    assert "class_labels.labels" not in centre  # the data package's verbalizers apply
    sc = dict(_spec(specs, "pt-small-cb-p100-class_labels-scsent-s2").overrides)
    assert sc["INITIAL_CHECKPOINT_PATH"].endswith("/t5_1_1_small/checkpoint_1000000")
    assert sc["MIXTURE_OR_TASK_NAME"].endswith("_sentinel")
    # Prompt shorter than the label list: the first P labels; ReCoRD uses the paper's task words.
    assert dict(_spec(specs, "pt-small-cb-p1-class_labels-lm100k-s0").overrides)["class_labels.labels"] == ["entailment"]
    record = dict(_spec(specs, "pt-small-record-p100-class_labels-lm100k-s0").overrides)
    assert record["class_labels.labels"] == ["commonsense", "reasoning", "reading", "comprehension"]
    rand = _spec(specs, "pt-large-wic-p100-random_uniform-lm100k-s0")
    assert "gin/prompts/random_uniform.gin" in rand.gin_files
    mt = dict(_spec(specs, "mt-xxl-boolq-lm100k-s1").overrides)
    assert "PROMPT_LENGTH" not in mt and mt["BATCH_SIZE"] == 128
    assert _spec(specs, "mt-xxl-boolq-lm100k-s1").gin_files[0] == "gin/runs/model_finetune.gin"


def test_scale_sweep_has_three_methods_and_one_seed_for_prompt_design():
    specs = scale.specs(REAL)
    count = collections.Counter(s.label_dict["method"] for s in specs)
    n = len(REAL.sizes) * len(REAL.tasks)
    assert count == {S.MODEL_TUNING: 3 * n, S.PROMPT_TUNING: 3 * n, S.PROMPT_DESIGN: n}
    pd = dict(_spec(specs, "pd-base-rte-lm100k-s0").overrides)
    assert pd["TRAIN_STEPS"] == 0 and pd["PROMPT_LENGTH"] == REAL.prompt_design["rte"][1]
    assert "gin/prompts/from_string.gin" in _spec(specs, "pd-base-rte-lm100k-s0").gin_files


def test_prompt_design_lengths_are_the_texts_token_counts():
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(shared_path("t5", "spiece.model")))
    for task, (text, length) in REAL.prompt_design.items():
        assert len(sp.encode(text)) == length, task


def test_ensemble_sweep_is_five_seeds_at_the_largest_size():
    specs = ensemble.specs(REAL)
    assert len(specs) == 5 * len(REAL.tasks)
    assert {s.label_dict["size"] for s in specs} == {"xxl"}
    assert sorted({s.label_dict["seed"] for s in specs}) == [0, 1, 2, 3, 4]


def test_commands_round_trip_through_the_shell_and_gin_literals_parse():
    specs = S.dedupe(ablations.specs(REAL) + scale.specs(REAL))
    for s in specs[:: max(1, len(specs) // 60)]:
        line = s.command("res/runs/x y/model")
        assert shlex.split(line) == ["python"] + s.args("res/runs/x y/model")
        for arg in s.args("m")[2:]:
            if arg.startswith("--gin."):
                value = arg.split("=", 1)[1]
                ast.literal_eval(value)  # every value is a plain literal
    assert S.gin_literal(S.GinRef("@prompts.class_labels")) == "@prompts.class_labels"
    assert S.gin_literal({"inputs": 512}) == "{'inputs': 512}"
    with pytest.raises(S.SpecError):
        S.gin_literal(object())


def test_dedupe_refuses_two_different_runs_with_one_name_and_filters_by_regex():
    a = S.RunSpec("r", ("x.gin",), (("A", 1),), (), 1)
    b = S.RunSpec("r", ("x.gin",), (("A", 2),), (), 1)
    assert S.dedupe([a, a]) == [a]
    with pytest.raises(S.SpecError, match="both named"):
        S.dedupe([a, b])
    specs = scale.specs(REAL)
    only = S.filter_specs(specs, r"^mt-small-")
    assert only and all(s.name.startswith("mt-small-") for s in only)
    with pytest.raises(S.SpecError, match="unknown sweep"):
        sweeps.get_specs("fig9", REAL)


def test_every_backend_builds_every_sweep_from_gin_files_that_exist(tmp_path):
    for backend in [backends.get_backend(n) for n in sorted(set(backends.BACKENDS) | set(backends.LAZY_BACKENDS))]:
        for name in sweeps.SWEEPS:
            if name == "model_search" and backend.model_search is None:
                with pytest.raises(S.SpecError, match="no model-tuning search"):
                    sweeps.get_specs(name, backend, str(tmp_path))
                continue
            if name == "scale" and backend.model_tuning_choice is not None:
                # Fig 1's model tuning waits for the search's choice (tests/experiments/test_recall_backend.py).
                with pytest.raises(S.SpecError, match="no chosen setting yet"):
                    sweeps.get_specs(name, backend, str(tmp_path))
                continue
            specs = sweeps.get_specs(name, backend, str(tmp_path))
            assert specs and all(s.name.split("-")[1] in backend.sizes for s in specs)
            assert all((REPO / f).exists() for s in specs for f in s.gin_files), name


def test_all_runs_the_sweeps_in_order_and_stops_before_one_that_waits_for_finished_runs(tmp_path):
    recall = backends.get_backend("recall")
    names = lambda specs: [s.name for s in specs]
    # Fig 1 waits for the model-tuning search: `all` is the search alone until it has finished.
    assert names(sweeps.get_specs("all", recall, str(tmp_path))) == names(
        sweeps.get_specs("model_search", recall, str(tmp_path)))
    # Without a search nothing waits: every sweep, in ORDER.
    expected = [n for name in sweeps.ORDER[1:] for n in names(sweeps.get_specs(name, REAL, str(tmp_path)))]
    assert names(sweeps.get_specs("all", REAL, str(tmp_path))) == expected


def test_real_backend_agrees_with_the_data_package():
    from prompt_tuning import data

    for task in REAL.tasks:
        assert REAL.task_name(task, REAL.centre) == data.superglue_task_name(task)
        sentinel = dataclasses.replace(REAL.centre, objective=S.SPAN_CORRUPTION_SENTINEL)
        assert REAL.task_name(task, sentinel) == data.superglue_task_name(task, sentinel="_sentinel")


def test_the_shared_command_line_resolves_backend_results_dir_and_filtered_specs(capsys):
    ap = sweeps.cli_parser("prog", None, only=True)
    cli = sweeps.resolve_cli(ap, ["--sweep", "ablations", "--only=-p150-"])
    assert cli.backend is REAL and cli.results_dir == os.path.join("experiments", "results", "real")
    assert cli.specs and all("-p150-" in s.name for s in cli.specs)
    assert len(cli.specs) < len(ablations.specs(REAL)) and cli.reread_specs() == cli.specs
    no_sweep = sweeps.resolve_cli(sweeps.cli_parser("prog", None, sweep=False), ["--results-dir", "/r"])
    assert no_sweep.results_dir == "/r" and no_sweep.specs == []
    assert sweeps.resolve_cli(sweeps.cli_parser("prog", None), ["--sweep", "scale", "--backend", "nope"]) is None
    err = capsys.readouterr().err
    assert err.startswith("error: unknown backend 'nope'") and err.count("\n") == 1
