"""Compile-only memory of the train steps: `python -m benchmarks.memory [--quick] [--remat none,full,dots]`.

Builds each step exactly as the timing benchmark does (`train_bench.build`: the trainer's jit, the state
donated, `steps.compiler_options` applied) and prints XLA's `compiled.memory_analysis()` for the
prompt-tuning step (`prompt`) and model tuning at the same P+T shapes (`model_pt`), under each
rematerialisation policy, with PT / MT ratios. Nothing runs, so the figures are deterministic and do
not depend on the machine's load (a compile of T5 1.1 Small takes ~1-3 min on a shared 2-core CPU).
Each (mode, remat) compiles in its own process, as the timing benchmark's workers do.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from benchmarks.spec import FULL, QUICK, Spec

MODES = ("prompt", "model_pt")


def measure(spec: Spec, mode: str) -> dict:
    """{'argument', 'output', 'alias', 'temp', 'total'} MiB of the compiled step (this process)."""
    import jax

    from benchmarks import train_bench
    from prompt_tuning.training import partitioning

    step, state, frozen, _, _, data, mesh = train_bench.build(spec, mode)
    batch = partitioning.global_batch(data.batch(0), mesh)
    stats = train_bench._memory(step.lower(state, frozen, batch, jax.random.PRNGKey(0)).compile())
    return {k: round(v / 2 ** 20, 1) for k, v in stats.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="toy shapes (benchmarks.spec.QUICK)")
    p.add_argument("--remat", default="none,full,dots", help="comma-separated T5Config.remat policies")
    p.add_argument("--one", nargs=2, metavar=("MODE", "REMAT"), help=argparse.SUPPRESS)  # the child process
    args = p.parse_args(argv)
    spec = QUICK if args.quick else FULL
    if args.one:
        print(json.dumps(measure(spec.replace(remat=args.one[1]), args.one[0])))
        return 0
    results = {}
    for remat in args.remat.split(","):
        for mode in MODES:
            cmd = [sys.executable, "-m", "benchmarks.memory", "--one", mode, remat]
            cmd += ["--quick"] if args.quick else []
            proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
            if proc.returncode:
                print(f"{mode} remat={remat}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                return 1
            results[mode, remat] = json.loads(proc.stdout.strip().splitlines()[-1])
            r = results[mode, remat]
            print(f"{mode:9s} remat={remat:5s} XLA memory {r['total']:8.1f} MiB (arguments {r['argument']:.1f}, "
                  f"temporaries {r['temp']:.1f})", flush=True)
    mt = results.get(("model_pt", "none"))
    if mt:
        for remat in args.remat.split(","):
            pt = results[("prompt", remat)]
            same = results[("model_pt", remat)]["total"]
            print(f"PT remat={remat} / MT (P+T tokens, no remat): {pt['total'] / mt['total']:.3f}x; "
                  f"/ MT remat={remat}: {pt['total'] / same:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
