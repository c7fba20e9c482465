"""The runner: skip finished runs, resume interrupted ones, record failures, stop cleanly, print commands."""
import dataclasses
import json
import os
import threading
import time

import pytest

from experiments import runner, stats, sweeps
from experiments import spec as S

FAKE = "tests.experiments.fake_trainer"


def _spec(name, mode="ok", steps=3, panel="p"):
    return S.RunSpec(name=name, gin_files=("gin/runs/prompt_finetune.gin",),
                     overrides=(("TRAIN_STEPS", steps), ("FAKE_MODE", mode)),
                     labels=(("sweep", "t"), ("panel", panel), ("size", "s")), train_steps=steps, module=FAKE)


def _attempts(results, name):
    with open(os.path.join(S.run_dir(results, name), runner.ATTEMPTS_FILE)) as f:
        return [json.loads(line) for line in f]


def test_spec_json_names_the_run_as_a_fresh_clone_would_whatever_the_checkout_path(tmp_path, monkeypatch):
    for checkout in ("a", "b"):  # two checkouts of one repository at different paths
        root = tmp_path / checkout
        monkeypatch.setattr(runner, "REPO_ROOT", str(root))
        runner.write_spec(str(root / "experiments" / "results" / "mini"), _spec("a"), [], "/opt/venv/bin/python3")
        text = (root / "experiments" / "results" / "mini" / "runs" / "a" / runner.SPEC_FILE).read_text()
        command = json.loads(text)["command"]
        assert command.startswith("python -m ") and str(tmp_path) not in text
        assert command.endswith('"--gin.MODEL_DIR=\'experiments/results/mini/runs/a/model\'"')
    assert (tmp_path / "a" / "experiments/results/mini/runs/a/spec.json").read_text() == text
    runner.write_spec(str(tmp_path / "elsewhere"), _spec("a"), [], "python")  # outside the repository: absolute
    assert str(tmp_path / "elsewhere" / "runs" / "a" / "model") in (tmp_path / "elsewhere/runs/a/spec.json").read_text()


def test_runs_skips_done_and_resumes_interrupted_runs(tmp_path):
    results = str(tmp_path)
    specs = [_spec("a"), _spec("b", "preempt_once"), _spec("a", panel="q"), _spec("c", "fail")]
    out = runner.run_all(specs, results, workers=2, quiet=True)
    assert out == {"a": "done", "b": "interrupted", "c": "failed"}
    assert runner.is_done(results, "a") and not runner.is_done(results, "b")
    failed = json.loads((tmp_path / "runs" / "c" / runner.FAILED_FILE).read_text())
    assert failed["rc"] == 2 and "something is wrong" in failed["log_tail"]
    spec_json = json.loads((tmp_path / "runs" / "a" / runner.SPEC_FILE).read_text())
    assert [u["panel"] for u in spec_json["uses"]] == ["p", "q"]  # one run, two sweep points
    assert "--gin.MODEL_DIR=" in spec_json["command"]
    assert {runner.status(results, s) for s in specs} == {"done", "partial", "failed"}

    # Second invocation: 'a' is not started again, 'b' resumes from its logged step 1.
    out = runner.run_all(specs[:2], results, workers=1, quiet=True)
    assert out == {"a": "skipped", "b": "done"}
    assert len(_attempts(results, "a")) == 1 and len(_attempts(results, "b")) == 2
    steps = [json.loads(x)["step"] for x in (tmp_path / "runs" / "b" / "model" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    done = json.loads((tmp_path / "runs" / "b" / runner.DONE_FILE).read_text())
    assert done["steps"] == 3 and done["wall_time_s"] == runner.total_wall_time(str(tmp_path / "runs" / "b"))
    # A finished run keeps its per-example predictions in the committed form: no inputs, the rest unchanged.
    rows = stats.read_predictions(str(tmp_path / "runs" / "b" / "model" / "test_predictions" / "test_fake.jsonl"))
    assert rows == [{"prediction": "yes", "target": t} for t in ("no", "yes", "yes")]


def test_stop_forwards_sigterm_and_leaves_the_run_resumable(tmp_path):
    r = runner.Runner(str(tmp_path), S.python_executable(), quiet=True)
    s = _spec("w", "wait_for_term", steps=2)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("out", r.run(s)))
    t.start()
    log = tmp_path / "runs" / "w" / runner.LOG_FILE
    deadline = time.time() + 20
    while time.time() < deadline and "resuming" not in (log.read_text() if log.exists() else ""):
        time.sleep(0.05)
    r.stop()
    t.join(20)
    assert result["out"] == "interrupted"
    assert not runner.is_done(str(tmp_path), "w")
    assert r.run(s) == "interrupted"  # a stopped runner starts nothing new


def test_print_commands_lists_pending_runs_only(tmp_path, capsys):
    results = str(tmp_path)
    assert runner.main(["--sweep", "ablations", "--backend", "real", "--results-dir", results,
                        "--print-commands", "--only", "^pt-small-rte-p5-"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("python -m prompt_tuning.train ") for line in lines)
    assert all(f"--gin.MODEL_DIR='{results}/runs/pt-small-rte-p5-" in line for line in lines)
    done_dir = tmp_path / "runs" / "pt-small-rte-p5-class_labels-lm100k-s0"
    done_dir.mkdir(parents=True)
    (done_dir / runner.DONE_FILE).write_text("{}")
    runner.main(["--sweep", "ablations", "--backend", "real", "--results-dir", results, "--print-commands",
                 "--only", "^pt-small-rte-p5-"])
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    assert runner.main(["--sweep", "ablations", "--backend", "nope"]) == 2


def test_a_run_that_stopped_early_is_done(tmp_path):
    out = runner.run_all([_spec("e", "early_stop", steps=50)], str(tmp_path), quiet=True)
    assert out == {"e": "done"} and runner.is_done(str(tmp_path), "e")
    assert runner.run_all([_spec("e", "early_stop", steps=50)], str(tmp_path), quiet=True) == {"e": "skipped"}


def test_one_command_runs_the_model_search_until_the_best_rate_is_inside(tmp_path, monkeypatch):
    """The runner re-reads an extending sweep: 3 rates, then 10^-1.5 past the top edge wins, then 10^-1
    is added and loses; the search is complete with its best inside the searched range."""
    from experiments import backends, model_search, recall

    backend = dataclasses.replace(recall.RECALL, name="search_test", sizes=("s",), tasks=("boolq",))
    monkeypatch.setitem(backends.BACKENDS, "search_test", backend)
    real = sweeps.get_specs
    monkeypatch.setattr(sweeps, "get_specs", lambda *a, **k: [dataclasses.replace(s, module=FAKE)
                                                              for s in real(*a, **k)])
    rd = str(tmp_path)
    assert runner.main(["--sweep", "model_search", "--backend", "search_test", "--results-dir", rd]) == 0
    res = model_search.search(backend, "s", "boolq", rd)
    assert [round(r, 4) for r in res.rates] == [0.001, 0.003, 0.01, 0.0316, 0.1]
    assert res.complete and not res.at_edge and res.best[0] == pytest.approx(10 ** -1.5) and res.best[1] == 0.0
    assert len(os.listdir(os.path.join(rd, "runs"))) == 10


def test_every_trainer_gets_one_cpu_thread_and_several_workers_grow_memory_on_demand():
    env = runner.worker_env({"A": "1", "XDG_CACHE_HOME": "/c"}, 1)
    assert env == {"A": "1", "XDG_CACHE_HOME": "/c", "XLA_FLAGS": runner.ONE_CPU_THREAD,
                   "JAX_COMPILATION_CACHE_DIR": "/c/prompt_tuning/jax"}  # compiled steps are reused across runs
    assert runner.worker_env({"JAX_COMPILATION_CACHE_DIR": "/mine"}, 1)["JAX_COMPILATION_CACHE_DIR"] == "/mine"
    env = runner.worker_env({"XLA_FLAGS": "--xla_dump_to=/tmp/x"}, 2)
    assert env["XLA_FLAGS"] == "--xla_dump_to=/tmp/x " + runner.ONE_CPU_THREAD
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    mine = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=2"
    assert runner.worker_env({"XLA_FLAGS": mine}, 2)["XLA_FLAGS"] == mine


def _build(path, value):
    """A stand-in native checkpoint (the fake trainer reads nothing): one array, another value per build."""
    from safetensors import numpy as st_numpy
    import numpy as np
    from prompt_tuning.checkpoints import native
    os.makedirs(path, exist_ok=True)
    st_numpy.save_file({"x": np.full(3, value, np.float32)}, os.path.join(path, native.PARAMS_FILE) + ".tmp")
    os.replace(os.path.join(path, native.PARAMS_FILE) + ".tmp", os.path.join(path, native.PARAMS_FILE))
    return native.fingerprint(path)


def test_runs_from_another_build_of_their_checkpoint_never_mix(tmp_path):
    results, ckpt = str(tmp_path / "results"), str(tmp_path / "ladder" / "lm")
    first = _build(ckpt, 1.0)

    def spec(name, mode="ok"):
        s = _spec(name, mode)
        return dataclasses.replace(s, overrides=s.overrides + (("INITIAL_CHECKPOINT_PATH", ckpt),))

    assert runner.run_all([spec("a"), spec("b", "preempt_once")], results, quiet=True) == {
        "a": "done", "b": "interrupted"}
    done = json.loads((tmp_path / "results" / "runs" / "a" / runner.DONE_FILE).read_text())
    assert done[runner.FINGERPRINT_KEY] == first
    assert [x[runner.FINGERPRINT_KEY] for x in _attempts(results, "b")] == [first]
    # The same build again (rewritten with equal bytes): 'a' is skipped, 'b' resumes.
    assert _build(ckpt, 1.0) == first
    assert runner.other_builds([spec("a")], results) == []

    second = _build(ckpt, 2.0)  # the checkpoint rebuilt with other numbers under the same path
    assert second != first
    assert runner.other_builds([spec("a"), spec("b")], results) == ["a"]
    with pytest.raises(ValueError, match="another build"):
        runner.run_all([spec("a"), spec("c")], results, quiet=True)
    assert not (tmp_path / "results" / "runs" / "c").exists()  # nothing ran
    # The interrupted run is not resumed from the new build; a fresh directory starts from it.
    assert runner.run_all([spec("b")], results, quiet=True) == {"b": "failed"}
    failed = json.loads((tmp_path / "results" / "runs" / "b" / runner.FAILED_FILE).read_text())
    assert "another build" in failed["log_tail"] and len(_attempts(results, "b")) == 1
    assert runner.run_all([spec("d")], results, quiet=True) == {"d": "done"}
    assert json.loads((tmp_path / "results" / "runs" / "d" / runner.DONE_FILE).read_text())[
        runner.FINGERPRINT_KEY] == second


def test_the_runner_command_refuses_to_mix_builds(tmp_path, monkeypatch, capsys):
    results, ckpt = str(tmp_path / "results"), str(tmp_path / "lm")
    _build(ckpt, 1.0)
    s = _spec("a")
    s = dataclasses.replace(s, overrides=s.overrides + (("INITIAL_CHECKPOINT_PATH", ckpt),))
    monkeypatch.setattr(sweeps, "get_specs", lambda *a, **k: [s])
    assert runner.main(["--sweep", "scale", "--backend", "recall", "--results-dir", results]) == 0
    _build(ckpt, 2.0)
    assert runner.main(["--sweep", "scale", "--backend", "recall", "--results-dir", results]) == 2
    assert "another build" in capsys.readouterr().err
