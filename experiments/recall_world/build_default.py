"""Builds the main command's shipped default from the recall ladder, and measures its untrained baseline.

    python -m experiments.recall_world.build_ladder --rungs RUNG      # the rung first (resumable)
    python -m experiments.recall_world.build_default [--rung RUNG]

Copies <ladder>/<rung>/lm (span corruption + LM adaptation) to assets/recall_world/default,
with the rung's ladder.json, then runs the main command's recipe on the rung's *untrained*
checkpoint (`python -m prompt_tuning.train --gin_file=gin/prompt_len_20.gin
--gin.INITIAL_CHECKPOINT_PATH=<ladder>/<rung>/untrained`) and records its test score in
assets/recall_world/baselines.json, which the main command prints beside its own.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

from prompt_tuning.checkpoints import native
from prompt_tuning.data.recall_world import default, registry
from prompt_tuning.training import metrics_writer

DEFAULT_RUNG = "s"
DEFAULT_TASK = "boolq"  # gin/default_world.gin's task


def untrained_baseline(ladder: str, rung: str, run_dir: str) -> dict:
    """{task name: {'test': score}} of the main command's recipe on the rung's untrained checkpoint."""
    cmd = [sys.executable, "-m", "prompt_tuning.train", "--gin_file=gin/prompt_len_20.gin",
           f"--gin.INITIAL_CHECKPOINT_PATH='{os.path.join(ladder, rung, 'untrained')}'", f"--gin.MODEL_DIR='{run_dir}'"]
    if not (os.path.isdir(run_dir) and metrics_writer.read(run_dir, "test")):
        subprocess.run(cmd, check=True)
    metrics = metrics_writer.read(run_dir, "test")[-1]
    name = registry.task_name(DEFAULT_TASK)
    key = f"test/{name}/em" if DEFAULT_TASK == "record" else f"test/{name}/accuracy"
    return {name: {"test": metrics[key], "command": " ".join(["python"] + cmd[1:])}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ladder", default="assets/recall_world/ladder")
    ap.add_argument("--rung", default=DEFAULT_RUNG)
    args = ap.parse_args(argv)
    src, dst = os.path.join(args.ladder, args.rung, "lm"), os.path.join(default.ASSETS_DIR, "default")
    native.save(dst, native.load(src), native.load_config(src))
    shutil.copy(os.path.join(args.ladder, args.rung, "ladder.json"), os.path.join(dst, "pretrain.json"))
    found = untrained_baseline(args.ladder, args.rung, os.path.join("runs", "recall_world", "default_untrained"))
    with open(os.path.join(default.ASSETS_DIR, "baselines.json"), "w") as f:
        json.dump(found, f, indent=1)
    print(json.dumps(found, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
