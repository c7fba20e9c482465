"""Smoke-size recall ladder through the package's trainer: world, corpus, vocabulary, two rungs, exports.

Every phase is a `python -m prompt_tuning.train` subprocess (gin/runs/pretrain.gin), as in the full build.
The bound (issue "Mini world v2": world, vocabulary and a two-rung ladder in under 2 minutes on this 2-core
machine) covers exactly that: the world with its corpus and vocabulary, then span corruption and LM
adaptation on both rungs (4 trainer runs). Wall time depends on whoever else shares the cores, so the test
asserts on CPU time (this process + every trainer subprocess), which a serial pipeline turns into about the
same wall time on an idle 2-core machine, and prints wall time and load average beside it. The checks after
the build (resume trains only the missing control, a fresh clone trains nothing, a rebuild gives the same
bytes) are outside the measured CPU time.
Measured here with the control run inside the bound (5 trainer runs, nice -n 15, beside other jobs): CPU
103 s, wall 295 s at load average 15-16; CPU 94 s, wall 172 s at load 11-12; CPU 93 s, wall 78 s idle.
CI's machine took 126 CPU s for those 5 runs (wall 106 s, load 1.1) and, one stop later, 132 against a
bound of 127 there: the bound then measured one trainer run more than the issue names, and CI failed on it.

CPU seconds differ between machines, so the bound is scaled by a fixed reference workload
(`_reference_cpu_s`: hashing and a Python loop, no project code, so a slower project cannot hide in the
scale): 0.62 s on the machine that set the bound.
"""
import hashlib
import json
import os
import resource
import time

import numpy as np
import pytest

from prompt_tuning.checkpoints import native
from prompt_tuning.data.recall_world import registry
from experiments.recall_world import build_ladder

CPU_BUDGET_S = 120  # the 2 minutes, as CPU seconds on the machine the issue named
REFERENCE_CPU_S = 0.62  # `_reference_cpu_s()` there (three runs: 0.61, 0.62, 0.65)


def _cpu_s() -> float:
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + kids.ru_utime + kids.ru_stime


def _reference_cpu_s() -> float:
    """CPU seconds of a fixed workload (600 MiB of SHA-256 and 3M Python multiply-adds); best of three."""
    times = []
    for _ in range(3):
        start, digest, block = time.process_time(), hashlib.sha256(), b"x" * (1 << 20)
        for _ in range(600):
            digest.update(block)
        total = 0
        for i in range(3_000_000):
            total += i * i
        times.append(time.process_time() - start)
    return min(times)


def _emb(path):
    return native.load(path)["token_embedder"]["embedding"]


@pytest.mark.slow
def test_two_rung_ladder_through_the_trainer(tmp_path, monkeypatch):
    t0, cpu0, load0 = time.time(), _cpu_s(), os.getloadavg()[0]
    monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path / "cache"))
    # A rung's phases share the model's init and (sc, sc_control) the train and eval steps: the trainer
    # subprocesses reuse one another's XLA executables through a persistent cache private to this test.
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax_cache"))
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    world = registry.prepare_recall_world(corpus_documents=3000, validation_documents=200, vocab_size=600,
                                          out_dir=str(tmp_path / "world"))  # world, corpus and a vocabulary
    bindings = [f"prepare_recall_world.out_dir='{world['dir']}'",
                f"prepare_recall_world.vocab_path='{world['vocab_path']}'",
                f"get_vocabulary.path='{world['vocab_path']}'"]
    rungs = build_ladder.RUNGS[:2]  # the two smallest
    out = str(tmp_path / "ladder")
    common = ["--steps", "4", "--rates", "0.02"] + [a for b in bindings for a in ("--gin_binding", b)]
    args = ["--out_dir", out, "--work_dir", str(tmp_path / "work")] + common

    # Both rungs: span corruption, then LM adaptation from its export.
    build_ladder.main(["--rungs", ",".join(rungs), "--phases", "sc,lm"] + args)
    wall, cpu = time.time() - t0, _cpu_s() - cpu0  # the bound: world, vocabulary, two rungs
    info = {r: json.load(open(os.path.join(out, r, "ladder.json"))) for r in rungs}
    assert info[rungs[0]]["params"] < info[rungs[1]]["params"]
    for rung in rungs:
        assert set(info[rung]["wall_s"]) == set(info[rung]["heldout_loss"]) == {"sc", "lm"}
        for ckpt in ("untrained", "sc", "lm_10", "lm_50", "lm"):
            assert native.is_native_checkpoint(os.path.join(out, rung, ckpt)), (rung, ckpt)
        assert not os.path.exists(os.path.join(out, rung, "sc_control"))
        assert not np.allclose(_emb(os.path.join(out, rung, "lm")), _emb(os.path.join(out, rung, "untrained")))
        assert not np.allclose(_emb(os.path.join(out, rung, "lm")), _emb(os.path.join(out, rung, "sc")))
        assert info[rung]["sha256"] == {c: native.fingerprint(os.path.join(out, rung, c))
                                        for c in ("untrained", "sc", "lm_10", "lm_50", "lm")}

    # Resumable at phase granularity: all phases asked for, only the missing control is trained.
    stamp = os.path.getmtime(os.path.join(out, rungs[0], "lm", "params.safetensors"))
    build_ladder.main(["--rungs", rungs[0]] + args)
    assert os.path.getmtime(os.path.join(out, rungs[0], "lm", "params.safetensors")) == stamp
    again = json.load(open(os.path.join(out, rungs[0], "ladder.json")))
    assert set(again["heldout_loss"]) == {"sc", "lm", "sc_control"}
    assert {k: again["wall_s"][k] for k in ("sc", "lm")} == info[rungs[0]]["wall_s"]
    control = os.path.join(out, rungs[0], "sc_control")
    assert sorted(os.listdir(os.path.join(out, rungs[0]))) == sorted(
        ["ladder.json", "untrained", "sc", "lm_10", "lm_50", "lm", "sc_control"])  # the trainers' work is elsewhere
    assert not np.allclose(_emb(os.path.join(out, rungs[0], "sc")), _emb(control))

    # A fresh clone has the exports (committed) and no trainer work: a rerun trains nothing (not even the
    # learning-rate sweep the default rates would ask for) and keeps the record.
    fresh_work = tmp_path / "fresh_work"
    build_ladder.main(["--rungs", rungs[0], "--out_dir", out, "--work_dir", str(fresh_work), "--steps", "4",
                       "--rates", "0.02,0.04"] + common[4:])
    assert json.load(open(os.path.join(out, rungs[0], "ladder.json"))) == again
    assert os.listdir(fresh_work / rungs[0]) == []

    # A rebuild gives the same bytes (one XLA thread per trainer): the sha256 that runs record names one ladder.
    again_out = str(tmp_path / "ladder_again")
    build_ladder.main(["--rungs", rungs[0], "--phases", "sc", "--out_dir", again_out,
                       "--work_dir", str(tmp_path / "work_again")] + common)
    rebuilt = json.load(open(os.path.join(again_out, rungs[0], "ladder.json")))["sha256"]
    assert rebuilt == {c: again["sha256"][c] for c in ("untrained", "sc")}
    speed = max(1.0, _reference_cpu_s() / REFERENCE_CPU_S)  # this machine's slowness; never tighter than 120 s
    print(f"smoke ladder: wall {wall:.0f} s, CPU {cpu:.0f} s (this process + trainers), "
          f"load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end; "
          f"reference workload x{speed:.2f} of the bound's machine")
    assert cpu < CPU_BUDGET_S * speed, (f"{cpu:.0f} CPU s against {CPU_BUDGET_S * speed:.0f}: the smoke ladder "
                                        f"no longer fits the issue's 2 minutes")


def test_phase_selection_refuses_unknown_phases_and_lm_without_sc(tmp_path):
    with pytest.raises(ValueError, match="unknown phase"):
        build_ladder.build_rung(str(tmp_path), build_ladder.RUNGS[0], rates=(0.02,), phases=("sc", "lm_adapt"))
    with pytest.raises(ValueError, match="add sc to the phases"):
        build_ladder.build_rung(str(tmp_path), build_ladder.RUNGS[0], rates=(0.02,), phases=("lm",))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        build_ladder.build_rung(str(tmp_path), build_ladder.RUNGS[0], rates=(0.02,), steps=0)
