"""The benchmark command end to end: the quick (CI) mode, and the PEFT skip when its packages are absent."""
import json
import subprocess
import sys

import pytest

from benchmarks import peft_bench, run
from tests.conftest import REPO


def test_peft_is_skipped_with_a_message_when_absent(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(peft_bench, "missing", lambda: ["peft"])
    out = tmp_path / "r.json"
    assert run.main(["--quick", "--tasks", "peak,peft", "--json", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert results["peft"] == {"skipped": "PEFT comparison skipped: peft not installed (pip install -e '.[parity]' torch)"}
    assert results["peak"]["peak_flops"] > 0
    assert "PEFT comparison skipped: peft not installed" in capsys.readouterr().out


def test_unknown_task_is_refused(capsys):
    assert run.main(["--quick", "--tasks", "peak,lora"]) == 2
    assert "unknown tasks ['lora']" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_mode_end_to_end(tmp_path):
    out, md = tmp_path / "r.json", tmp_path / "RESULTS.md"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--json", str(out), "--markdown", str(md)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    payload = json.loads(out.read_text())
    results = payload["results"]
    for task in ("peak", "prompt", "model", "model_pt", "eval"):
        assert "error" not in results[task], results[task]
    if peft_bench.missing():
        assert "skipped" in results["peft"]
    else:
        assert results["peft"]["finite"] and results["peft"]["examples_per_s"] > 0
    for mode in ("prompt", "model", "model_pt"):
        r = results[mode]
        assert r["finite"] and r["median_step_s"] > 0
        assert r["flops_hlo_dots"] == r["flops_analytic"]["total"]
        assert r["hlo"]["host_transfers"] == 0 and r["hlo"]["weight_constants"] == 0
    assert results["prompt"]["hlo"]["weight_gradient_matmuls"] == 0
    assert results["model_pt"]["hlo"]["weight_gradient_matmuls"] > 0
    assert results["prompt"]["trainable_params"] == 5 * 32  # P x H only
    assert "ours/PEFT prompt-tuning examples/s:" in proc.stdout
    assert "ours/PEFT prompt-tuning examples/s:" in md.read_text()
