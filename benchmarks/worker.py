"""One measurement in its own process: `python -m benchmarks.worker TASK SPEC_JSON OUT_JSON`.

A fresh process per task keeps each peak-memory figure to that task alone
(compiled programs, allocator pools and torch's heap do not carry over).

Tasks: peak (float32 matmul peak), prompt / model / model_pt (train steps,
see train_bench), prompt_remat (the prompt step with every block rematerialised: T5Config.remat
'full' unless the spec already sets a policy), eval (eval throughput), peft (Hugging Face PEFT step), real / real_peft
(real RTE input lengths: ours fixed vs bucketed, PEFT fixed / dynamic / grouped; real_bench).
"""
from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

TASKS = ("peak", "prompt", "prompt_remat", "model", "model_pt", "eval", "peft", "real", "real_peft")


def run_task(task: str, spec) -> dict:
    from benchmarks import machine

    if task == "peak":
        return machine.matmul_peak(spec.matmul_size)
    if task in ("prompt", "model", "model_pt"):
        from benchmarks import train_bench

        return train_bench.run(spec, task)
    if task == "prompt_remat":
        from benchmarks import train_bench

        return train_bench.run(spec.replace(remat="full" if spec.remat == "none" else spec.remat), "prompt")
    if task == "eval":
        from benchmarks import eval_bench

        return eval_bench.run(spec)
    if task == "peft":
        from benchmarks import peft_bench

        return peft_bench.run(spec)
    if task == "real":
        from benchmarks import real_bench

        return real_bench.run_ours(spec)
    if task == "real_peft":
        from benchmarks import real_bench

        return real_bench.run_peft(spec)
    raise ValueError(f"unknown task {task!r}; known: {TASKS}")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    from benchmarks.spec import Spec

    task, spec_json, out_path = argv
    t0 = time.perf_counter()
    result = run_task(task, Spec.from_json(spec_json))
    result["wall_s"] = time.perf_counter() - t0
    with open(out_path, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
