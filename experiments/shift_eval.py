"""One checkpoint scored on several splits in one process (experiments/shift.py's worker).

    python -m experiments.shift_eval --splits test_paraphrase,test_long_passage --out-root DIR -- FLAGS

FLAGS are `python -m prompt_tuning.eval`'s (gin files including gin/runs/eval.gin, --gin.X=Y with
CHECKPOINT_PATH); each split is scored by the package's evaluation, `inference.evaluate_checkpoint`
(what prompt_tuning.eval runs), with its outputs (metrics.jsonl, predictions_<task>.jsonl) in
DIR/<split>/. One process for all splits shares the start-up: on the shared 2-core machine an xxs
evaluation took 22 s for 32 examples and 22 s for 600 (start-up: imports, gin, task registration).
Exit status: prompt_tuning.eval's (0, or 2 with a one-line error).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from prompt_tuning.training import cli, inference

PROG = "python -m experiments.shift_eval"


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        print(f"error: usage: {PROG} --splits A,B --out-root DIR -- <prompt_tuning.eval flags>", file=sys.stderr)
        return 2
    cut = argv.index("--")
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__)
    ap.add_argument("--splits", required=True, help="comma-separated split names")
    ap.add_argument("--out-root", required=True)
    args = ap.parse_args(argv[:cut])

    def run(flags: dict) -> int:
        del flags
        for split in args.splits.split(","):
            inference.evaluate_checkpoint(split=split, output_dir=os.path.join(args.out_root, split))
        return 0

    return cli.main(run, argv[cut + 1:], PROG)


if __name__ == "__main__":
    sys.exit(main())
