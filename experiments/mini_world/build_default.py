"""Rebuilds the shipped default of the main command: assets/mini_world/{spm.model, default/}.

    python experiments/mini_world/build_default.py

Builds the seed-0 world's corpus and vocabulary, pretrains the default size
with span corruption then LM adaptation (probe.py's loops; same settings as
the committed model, see assets/mini_world/README.md), and copies the
vocabulary and the final LM-adapted checkpoint into assets/. Deterministic on
CPU up to floating-point summation order.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from experiments.mini_world import probe  # noqa: E402
from prompt_tuning.data.mini_world import default  # noqa: E402

DEFAULT_ARGS = dict(size="s", sc_steps=1500, lm_steps=1500, batch=32, lr=3e-3, seed=0)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--work_dir", default="runs/mini_world/default")
    ap.add_argument("--assets_dir", default=str(default.ASSETS_DIR))
    for k, v in DEFAULT_ARGS.items():
        ap.add_argument(f"--{k}", type=type(v), default=v)
    args = ap.parse_args(argv)
    args.out_dir = args.work_dir
    probe.pretrain(args)
    run = os.path.join(args.work_dir, f"model_{args.size}")
    os.makedirs(args.assets_dir, exist_ok=True)
    shutil.copyfile(os.path.join(args.work_dir, "spm.model"), os.path.join(args.assets_dir, "spm.model"))
    dst = os.path.join(args.assets_dir, "default")
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(os.path.join(run, "lm"), dst)
    with open(os.path.join(run, "pretrain.json")) as f:
        info = json.load(f)
    with open(os.path.join(dst, "pretrain.json"), "w") as f:
        json.dump({**info, "command": "python experiments/mini_world/build_default.py"}, f, indent=1)
    print(f"wrote {args.assets_dir}: {json.dumps(info)}")


if __name__ == "__main__":
    main()
