"""Builds the mini world's model ladder: every size pretrained with span corruption, then LM-adapted.

    python experiments/mini_world/build_ladder.py                       # all sizes
    python experiments/mini_world/build_ladder.py --sizes xs,s --sc_steps 20 --lm_steps 20   # smoke

Per size, under <out_dir>/model_<size>/: untrained/ (the random init),
sc/ (span corruption only = LM adaptation step 0), lm_<k>/ at 10% and 50% of
the adaptation steps, lm/ (100%), and pretrain.json (parameters, steps,
documents seen, wall time). Resumable at size granularity: a size whose
pretrain.json exists is skipped. Progress bars per size.

TEMPORARY: the loops are probe.py's compact ones; when the project trainer
can pretrain (span corruption / prefix-LM tasks `mini_world_span_corruption`
and `mini_world_prefix_lm` are registered by
prompt_tuning.data.mini_world.registry) this script should call it instead.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from experiments.mini_world import probe  # noqa: E402

LADDER = ("xs", "s", "m", "l")
# Peak AdamW learning rate per rung, 3e-3 x 64 / d_model above 's' (Adam's stable step shrinks with
# width): at 3e-3 the 'm' rung ended worse than 's' (LM loss 0.918 vs 0.854; RESULTS.md, trial 4).
LEARNING_RATES = {"xs": 3e-3, "s": 3e-3, "m": 1.5e-3, "l": 1e-3}


def pretraining_tokens(out_dir: str, sc_steps: int, lm_steps: int, batch: int, seed: int = 0) -> dict:
    """Non-padding tokens (inputs + targets) every rung trains on: the batches depend on the seed only.

    Replays probe.pretrain's data stream without a model (about a minute for the default budget).
    """
    world, vocab_path, _ = probe.build_assets(out_dir, seed)
    tok = probe.Tok(vocab_path)
    rng, stream = np.random.default_rng(seed), probe.Stream(world, tok, start=probe.STREAM_START)
    counts = {"span_corruption": 0, "lm_adaptation": 0}
    for i in range(sc_steps + lm_steps):
        kind = "span_corruption" if i < sc_steps else "lm_adaptation"
        x, y = (probe.sc_batch if i < sc_steps else probe.lm_batch)(rng, stream, tok, batch)
        counts[kind] += int((x > 0).sum() + (y > 0).sum())
    return counts


def build(out_dir: str, sizes=LADDER, sc_steps: int = 1500, lm_steps: int = 1500, batch: int = 32,
          lr: float | None = None, seed: int = 0, quiet: bool = False) -> dict:
    summary = {}
    for size in sizes:
        done = os.path.join(out_dir, f"model_{size}", "pretrain.json")
        if not os.path.exists(done):
            args = argparse.Namespace(out_dir=out_dir, size=size, sc_steps=sc_steps, lm_steps=lm_steps,
                                      batch=batch, lr=lr or LEARNING_RATES[size], seed=seed, quiet=quiet)
            probe.pretrain(args)
        with open(done) as f:
            summary[size] = json.load(f)
    if summary and "tokens" not in next(iter(summary.values())):
        info = next(iter(summary.values()))
        tokens = pretraining_tokens(out_dir, info["sc_steps"], info["lm_steps"], info["batch"], seed)
        summary = {k: {**v, "tokens": tokens} for k, v in summary.items()}
    with open(os.path.join(out_dir, "ladder.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out_dir", default="runs/mini_world/ladder")
    ap.add_argument("--sizes", default=",".join(LADDER))
    ap.add_argument("--sc_steps", type=int, default=1500)
    ap.add_argument("--lm_steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    summary = build(args.out_dir, args.sizes.split(","), args.sc_steps, args.lm_steps, args.batch, seed=args.seed)
    for size, info in summary.items():
        print(f"{size}: {info['params']:,} params, {info['wall_s']} s, final loss {info['final_loss']:.3f}, "
              f"tokens {info['tokens']}")


if __name__ == "__main__":
    main()
