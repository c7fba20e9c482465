"""The benchmark command: `python -m benchmarks.run [--quick] [--json out.json] [--markdown RESULTS.md]`.

Runs each measurement in its own process (benchmarks.worker), in this order:
the float32 matmul peak, the prompt-tuning step, the model-tuning steps (T
and P+T input tokens), eval throughput, and the Hugging Face PEFT step (skipped
with a message when torch / transformers / peft are not installed). Prints a
table, the ratios and the issue's goals; --json writes everything measured,
--markdown writes a RESULTS.md-style report. See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shlex
import subprocess
import sys
import tempfile
import time

from benchmarks import machine, report
from benchmarks.spec import FULL, QUICK, Spec
from benchmarks.worker import TASKS

REPO = pathlib.Path(__file__).resolve().parents[1]


def run_worker(task: str, spec: Spec, timeout: float) -> dict:
    """One task in a fresh Python process; {'error': ...} if it fails."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        cmd = [sys.executable, "-m", "benchmarks.worker", task, spec.to_json(), out]
        try:
            proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        if proc.returncode != 0 or not os.path.exists(out):
            tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-15:])
            return {"error": f"worker exited with {proc.returncode}: {tail}"}
        with open(out) as f:
            return json.load(f)


def make_spec(args) -> Spec:
    spec = QUICK if args.quick else FULL
    overrides = {k: getattr(args, k) for k in ("size", "batch", "steps", "warmup", "peft_steps", "dtype",
                                               "frozen_dtype", "matmul_size", "remat", "real_layers", "real_steps",
                                               "real_eval_examples")
                 if getattr(args, k, None) is not None}
    return spec.replace(**overrides)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="toy shapes for CI (under a minute)")
    p.add_argument("--json", metavar="PATH", help="write every figure as JSON")
    p.add_argument("--markdown", metavar="PATH", help="write a RESULTS.md-style report")
    p.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated subset of {','.join(TASKS)}")
    p.add_argument("--no-peft", action="store_true", help="skip the Hugging Face PEFT comparison")
    p.add_argument("--size", help="T5 1.1 size (prompt_tuning.models.t5.CONFIGS)")
    p.add_argument("--batch", type=int)
    p.add_argument("--steps", type=int, help="timed train steps per mode")
    p.add_argument("--warmup", type=int)
    p.add_argument("--peft-steps", dest="peft_steps", type=int)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), help="activation dtype (bfloat16 on accelerators)")
    p.add_argument("--frozen-dtype", dest="frozen_dtype", choices=("float32", "bfloat16"),
                   help="storage dtype of the frozen parameters")
    p.add_argument("--matmul-size", dest="matmul_size", type=int)
    p.add_argument("--real-layers", dest="real_layers", type=int,
                   help="encoder/decoder layers of the real-length runs (a smaller stack for a busy CPU)")
    p.add_argument("--real-steps", dest="real_steps", type=int, help="timed steps per shape in the real-length runs")
    p.add_argument("--real-eval-examples", dest="real_eval_examples", type=int,
                   help="eval examples of the real-length run (0: skip its evaluation part)")
    p.add_argument("--remat", choices=("none", "full", "dots"),
                   help="rematerialise encoder/decoder blocks in every train step (T5Config.remat)")
    p.add_argument("--update", metavar="JSON", help="start from a previous --json file of the same settings and "
                   "re-measure only --tasks (e.g. ones a busy machine disturbed); the rest is kept")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per worker")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    spec = make_spec(args)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        print(f"unknown tasks {unknown}; known: {','.join(TASKS)}", file=sys.stderr)
        return 2
    info = machine.describe()
    info["load_before"] = machine.load_average()
    command = "python -m benchmarks.run " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    results: dict[str, dict] = {}
    if args.update:
        previous = json.loads(pathlib.Path(args.update).read_text())
        # Fields added since take their defaults; real_* settings only matter to the real-length tasks.
        same = lambda d: {k: v for k, v in d.items() if not (k.startswith("real_") and {"real", "real_peft"} >= set(tasks))}
        if same(json.loads(Spec(**previous["spec"]).to_json())) != same(json.loads(spec.to_json())):
            print(f"--update: {args.update} was measured with other settings; rerun everything", file=sys.stderr)
            return 2
        results.update(previous["results"])
        info["load_before"] = previous["machine"].get("load_before")
        command = previous["command"] + f"; then {command}"
    t_start = time.time()
    for task in tasks:
        if task == "peft" and args.no_peft:
            results[task] = {"skipped": "--no-peft"}
        elif task == "peft" and (missing := __import__("benchmarks.peft_bench", fromlist=["missing"]).missing()):
            results[task] = {"skipped": f"PEFT comparison skipped: {', '.join(missing)} not installed "
                                        f"(pip install -e '.[parity]' torch)"}
        elif task in ("real", "real_peft") and (why := __import__("benchmarks.real_bench", fromlist=["x"]).missing_data()):
            results[task] = {"skipped": why}
        elif task == "real_peft" and (args.no_peft or __import__("benchmarks.peft_bench", fromlist=["x"]).missing()):
            results[task] = {"skipped": "--no-peft" if args.no_peft else "PEFT comparison skipped: torch / transformers / peft not installed"}
        else:
            t0, load0 = time.time(), machine.load_average()
            results[task] = run_worker(task, spec, args.timeout)
            results[task]["load_before"], results[task]["load_after"] = load0, machine.load_average()
            results[task]["measured_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
            status = "error" if "error" in results[task] else "done"
            print(f"[{task}] {status} in {time.time() - t0:.0f} s (load {machine.load_average()})", flush=True)
        if "skipped" in results[task]:
            print(f"[{task}] {results[task]['skipped']}", flush=True)
        elif "error" in results[task]:
            print(f"[{task}] {results[task]['error']}", file=sys.stderr, flush=True)
    info["load_after"] = machine.load_average()
    summary = report.summarize(results)
    payload = {"command": command, "spec": json.loads(spec.to_json()), "machine": info, "results": results,
               "summary": summary, "wall_s": time.time() - t_start,
               "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(payload, indent=1) + "\n")
    print()
    print(report.text_report(spec, info, results, summary))
    if args.markdown:
        pathlib.Path(args.markdown).write_text(report.markdown_report(payload, spec))
    failed = [t for t, r in results.items() if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
