"""The compile-only memory command measures the trainer's step (toy shapes): remat lowers the prompt-tuning
step's compiled temporaries, and the output names every (mode, policy)."""
from benchmarks import memory
from benchmarks.spec import QUICK


def test_measure_reports_the_compiled_steps_memory():
    none = memory.measure(QUICK, "prompt")
    assert set(none) == {"argument", "output", "alias", "temp", "total"} and none["total"] > none["argument"] > 0


def test_command_prints_each_mode_and_the_ratios(capsys):
    assert memory.main(["--quick", "--remat", "none"]) == 0
    out = capsys.readouterr().out
    assert "prompt    remat=none" in out and "model_pt  remat=none" in out and "PT remat=none / MT" in out
