"""Figures from results tables (on the committed synthetic fixture) and the Fig 4 parameter counts."""
import filecmp
import os

import numpy as np
import pytest

from experiments import parameters, plots
from prompt_tuning.models import t5
from tests.conftest import REPO
from tests.experiments import synthetic_results

SYNTHETIC = REPO / "experiments" / "results" / "synthetic"
PARAMS_CSV = REPO / "experiments" / "results" / "parameters" / "parameters.csv"


def test_committed_synthetic_tables_are_what_the_generator_writes(tmp_path):
    for path in synthetic_results.write(str(tmp_path)):
        assert filecmp.cmp(path, SYNTHETIC / os.path.basename(path), shallow=False), path


def test_seed_stats_average_tasks_then_seeds():
    rows = plots.read_csv(str(SYNTHETIC / "ablations.csv"))
    stats = plots.seed_stats(rows)
    point = next(s for s in stats if (s["panel"], s["setting"], s["size"]) == ("b_init", "random_uniform", "large"))
    per_seed = []
    for seed in (0.0, 1.0, 2.0):
        scores = [r["value"] for r in rows if r["panel"] == "b_init" and r["setting"] == "random_uniform"
                  and r["size"] == "large" and r["seed"] == seed and r["metric"] == "score"]
        assert len(scores) == 2  # cb and rte
        per_seed.append(np.mean(scores))
    assert point["seeds"] == 3
    assert point["mean"] == pytest.approx(np.mean(per_seed))
    assert point["std"] == pytest.approx(np.std(per_seed, ddof=1))
    assert point["params"] == 783_150_080


def _check_written(paths):
    assert [os.path.splitext(p)[1] for p in paths] == [".png", ".pdf"]
    with open(paths[0], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(paths[1], "rb") as f:
        assert f.read(5) == b"%PDF-"


def test_fig1_and_fig3_from_a_results_table(tmp_path):
    fig, paths = plots.plot_scale(plots.read_csv(str(SYNTHETIC / "scale.csv")), str(tmp_path / "scale"))
    _check_written(paths)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["Model Tuning", "Prompt Tuning", "Prompt Design"]
    fig, paths = plots.plot_ablations(plots.read_csv(str(SYNTHETIC / "ablations.csv")), str(tmp_path / "abl"))
    _check_written(paths)
    titles = [a.get_title() for a in fig.axes]
    assert titles == list(plots.PANEL_TITLES.values())
    legends = [[t.get_text() for t in a.get_legend().get_texts()] for a in fig.axes]
    assert legends[0] == ["1", "5", "20", "100", "150"]
    assert legends[1] == ["Random Uniform", "Sampled Vocab", "Class Label"]
    assert legends[3] == ["0", "10K", "50K", "100K"]
    with pytest.raises(ValueError):
        plots.plot_ablations(plots.read_csv(str(SYNTHETIC / "scale.csv")))


def test_parameter_counts_follow_the_definitions():
    xxl = t5.get_config("xxl")
    rows = {(r["method"], r["prompt_length"]): r for r in parameters.method_rows("t5_1_1", "xxl", xxl)}
    assert rows[("prompt_tuning", 100)]["task_params"] == 409_600  # paper, Table 4
    assert rows[("prompt_tuning", 100)]["percent"] == pytest.approx(0.0037, abs=5e-5)
    assert rows[("model_tuning", "")]["percent"] == 100.0
    small = t5.get_config("small")  # d = 6 x 64 = 384 != H = 512
    assert parameters.prefix_inference(small, 10) == 2 * 10 * 384 * (8 + 2 * 8)
    enc = 10 * 512 + (512 * 512 + 512) + (512 * 2 * 384 * 8 + 2 * 384 * 8)
    assert parameters.prefix_training(small, 10) == 3 * enc  # three groups of 8 layers here
    assert parameters.warp(small, 10) == 10 * 512 + 2 * 512 + 2
    for size in parameters.REAL_SIZES:  # ordering the figure shows at every size and length
        cfg = t5.get_config(size)
        for p in parameters.PROMPT_LENGTHS:
            assert (parameters.prompt_tuning(cfg, p) < parameters.warp(cfg, p) < parameters.prefix_inference(cfg, p)
                    < parameters.prefix_training(cfg, p) < t5.num_parameters(cfg))


def test_committed_fig4_table_is_current_and_plots_with_a_ladder(tmp_path):
    assert parameters.main(["--out", str(tmp_path), "--ladder", "tiny,test", "--ladder-name", "ladder",
                            "--backend", "recall"]) == 0
    rows = plots.read_csv(str(tmp_path / "parameters.csv"))
    real = [r for r in rows if r["model_set"] == "t5_1_1"]
    committed = plots.read_csv(str(PARAMS_CSV))
    assert real == committed
    # results/mini's Fig 4 (python -m experiments.parameters --backend recall): the same real rows and the ladder's.
    mini = plots.read_csv(str(PARAMS_CSV.parents[1] / "mini" / "parameters.csv"))
    assert mini == [r for r in rows if r["model_set"] in ("t5_1_1", "recall")]
    assert {r["size"] for r in mini if r["model_set"] == "recall"} == {"xxs", "xs", "s", "m", "l"}
    assert {r["size"] for r in rows if r["model_set"] == "ladder"} == {"tiny", "test"}
    assert (tmp_path / "parameters.png").exists() and (tmp_path / "parameters.pdf").exists()


def test_stats_table_gives_the_plotted_means_per_setting_and_size(tmp_path):
    rows = plots.read_csv(str(SYNTHETIC / "ablations.csv"))
    stats = plots.seed_stats(rows)
    assert plots.main(["table", str(SYNTHETIC / "ablations.csv"), "--out", str(tmp_path / "t")]) == 0
    lines = (tmp_path / "t.md").read_text().splitlines()
    sizes = [n for _, n in sorted({(s["params"], s["size"]) for s in stats})]
    assert len(lines) == 2 + len({(s["panel"], s["setting"]) for s in stats})
    for s in stats:
        line = next(l for l in lines if l.startswith(f"| {s['panel']} | {s['setting']} |"))
        cell = line.split(" | ")[2 + sizes.index(s["size"])].strip(" |")
        assert cell.startswith(f"{s['mean']:.1f} ± {s['std']:.1f} ({s['min']:.1f}-{s['max']:.1f})"), (line, s)
    lengths = [l.split(" | ")[1] for l in lines if l.startswith("| a_prompt_length")]
    assert lengths == sorted(lengths, key=float)  # numeric order, not text order


def test_lm_steps_legend_is_exact():
    assert [plots._setting_label("d_lm_steps", v) for v in ("0", "150", "1500", "100000.0")] == \
        ["0", "150", "1500", "100K"]


def test_fig4_counts_come_from_the_module_trees_and_are_checked_against_the_closed_forms(monkeypatch):
    small = t5.get_config("small")  # A = 8 + 2 * 8 = 24 attentions, H = 512, d = 384
    assert parameters.counted(small, "lora") == parameters.lora(small) == 2 * 24 * 8 * (512 + 384)
    assert parameters.counted(small, "prefix_tuning_inference", 10) == parameters.prefix_inference(small, 10)
    monkeypatch.setattr(parameters, "ia3", lambda config: 0)  # a wrong closed form is caught
    with pytest.raises(AssertionError, match="ia3 .* in the module tree, closed form 0"):
        parameters.counted(small, "ia3")
