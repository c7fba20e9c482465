"""Preemption: SIGTERM saves and exits 0; SIGKILL at an arbitrary step, then resume, equals an uninterrupted run.

One training command (tests/training/synthetic.gin, 1,500 steps, a checkpoint every 100) is
run four ways: uninterrupted (in-process), and as a subprocess that receives SIGTERM, is
resumed and killed with SIGKILL at whatever step it has reached, and is resumed to the end.
The final prompts must be bit-identical.
"""
import os
import re
import signal
import subprocess
import sys
import time

import gin
import numpy as np
import pytest

from prompt_tuning import train as train_main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = 1500
FLAGS = ["--gin_file=tests/training/synthetic.gin", f"--gin.TRAIN_STEPS={STEPS}",
         "--gin.train_and_evaluate.checkpoint_period=100", "--gin.train_and_evaluate.log_period=100",
         "--gin.EVAL_SPLIT=None"]


def _env(cache_dir):
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(cache_dir),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    env.pop("XLA_FLAGS", None)
    return env


def _start(model_dir, cache_dir, log):
    return subprocess.Popen(
        [sys.executable, "-m", "prompt_tuning.train", *FLAGS, f"--gin.MODEL_DIR='{model_dir}'"],
        cwd=REPO, env=_env(cache_dir), stdout=log, stderr=subprocess.STDOUT,
    )


def _steps(model_dir):
    ckpt = os.path.join(model_dir, "checkpoints")
    return sorted(int(d) for d in os.listdir(ckpt) if d.isdigit()) if os.path.isdir(ckpt) else []


def _wait_for_checkpoint(proc, model_dir, after: int, timeout=300):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if any(s > after for s in _steps(model_dir)):
            return
        if proc.poll() is not None:
            raise AssertionError(f"training exited ({proc.returncode}) before a checkpoint after step {after}")
        time.sleep(0.02)
    raise AssertionError("no checkpoint in time")


@pytest.mark.slow
def test_sigterm_saves_and_sigkill_resume_equals_uninterrupted(tmp_path, compilation_cache_dir):
    cache = compilation_cache_dir  # the subprocesses reuse the in-process run's executables
    a, b = tmp_path / "uninterrupted", tmp_path / "interrupted"
    gin.clear_config()
    assert train_main.main([*FLAGS, f"--gin.MODEL_DIR='{a}'"]) == 0
    gin.clear_config()
    want = np.load(a / "prompts" / f"step_{STEPS}.npy")

    # 1. SIGTERM once training is under way: a checkpoint at the current step, exit 0.
    log = open(tmp_path / "log1.txt", "w+")
    proc = _start(b, cache, log)
    _wait_for_checkpoint(proc, b, after=0)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=300) == 0
    log.seek(0)
    text = log.read()
    found = re.search(r"received SIGTERM at step (\d+): checkpoint saved", text)
    assert found, text[-2000:]
    stopped = int(found.group(1))
    assert 0 < stopped < STEPS, "the run must have been interrupted"
    assert _steps(b)[-1] == stopped
    assert os.path.exists(b / "prompts" / f"step_{stopped}.npy")

    # 2. Resume, then SIGKILL at whatever step it has reached after one more checkpoint.
    proc = _start(b, cache, open(tmp_path / "log2.txt", "w"))
    _wait_for_checkpoint(proc, b, after=stopped)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert _steps(b)[-1] < STEPS, "the kill must come before the end"

    # 3. Resume to the end: the same prompt, bit for bit.
    log = open(tmp_path / "log3.txt", "w+")
    proc = _start(b, cache, log)
    assert proc.wait(timeout=600) == 0, open(tmp_path / "log3.txt").read()[-2000:]
    log.seek(0)
    assert "(resuming)" in log.read()
    np.testing.assert_array_equal(np.load(b / "prompts" / f"step_{STEPS}.npy"), want)
