"""Rebuilds the shipped default of the main command: assets/mini_world/{spm.model, default/}.

    python experiments/mini_world/build_default.py      # about 8 minutes on 2 CPU cores

The default model is the mini ladder's 's' size: this builds (or reuses) that
one rung with build_ladder.py's settings (seed-0 world, corpus and vocabulary;
span corruption then LM adaptation) and copies the vocabulary and the final
LM-adapted checkpoint into assets/. Deterministic on CPU up to floating-point
summation order.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from experiments.mini_world import build_ladder  # noqa: E402
from prompt_tuning.data.mini_world import default  # noqa: E402

DEFAULT_SIZE = "s"


README = """# assets/mini_world: the main command's embedded default

Built by project code from seed 0, nothing downloaded. Reproduce (overwrites these files):

    python experiments/mini_world/build_default.py

| file | what |
|---|---|
| `spm.model` | SentencePiece (BPE) vocabulary trained on the mini world's corpus; pad 0, EOS 1, unk 2, no BOS; seqio adds 100 extra ids |
| `default/params.safetensors`, `default/config.json` | the default frozen model (native format: T5X names), size `{size}`, {params:,} parameters, {mb:.1f} MB |
| `default/pretrain.json` | how it was trained |

Pretraining: {sc_steps} steps of span corruption then {lm_steps} steps of prefix-LM adaptation, batch {batch},
{documents:,} corpus documents, {wall_s} s wall time on the 2-core build machine
(the ladder's 's' rung: `experiments/mini_world/build_ladder.py`). Loaded by `prompt_tuning.data.mini_world.default.ensure_default_assets()`.
"""


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--ladder_dir", default="runs/mini_world/ladder", help="reuses a finished 's' rung there")
    ap.add_argument("--assets_dir", default=str(default.ASSETS_DIR))
    args = ap.parse_args(argv)
    info = build_ladder.build(args.ladder_dir, sizes=(DEFAULT_SIZE,))[DEFAULT_SIZE]
    run = os.path.join(args.ladder_dir, f"model_{DEFAULT_SIZE}")
    os.makedirs(args.assets_dir, exist_ok=True)
    shutil.copyfile(os.path.join(args.ladder_dir, "spm.model"), os.path.join(args.assets_dir, "spm.model"))
    dst = os.path.join(args.assets_dir, "default")
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(os.path.join(run, "lm"), dst)
    with open(os.path.join(dst, "pretrain.json"), "w") as f:
        json.dump({**info, "command": "python experiments/mini_world/build_default.py"}, f, indent=1)
    with open(os.path.join(args.assets_dir, "README.md"), "w") as f:
        f.write(README.format(**info, mb=sum(os.path.getsize(os.path.join(dst, n)) for n in os.listdir(dst)) / 2**20))
    print(f"wrote {args.assets_dir}: {json.dumps(info)}")


if __name__ == "__main__":
    main()
