"""Run a sweep here (one run after another, or a pool of workers), or print its command lines.

    python -m experiments.runner --sweep ablations --backend real [--workers N] [--only REGEX]
                                 [--results-dir DIR] [--print-commands [--all]] [--list]

Each distinct run (see spec.py: equal names are the same computation) lives in

    DIR/runs/<name>/spec.json     the command, gin files, overrides and every sweep point using it
    DIR/runs/<name>/model/        the trainer's MODEL_DIR (config.gin, metrics.jsonl, prompts/, best/, ...);
                                  once finished, its test_predictions/ rows lose their 'inputs' (the
                                  committed form: prediction and target in the split's order)
    DIR/runs/<name>/log.txt       the trainer's stdout and stderr, all attempts appended
    DIR/runs/<name>/attempts.jsonl  one line per attempt: start time, exit status, wall time
    DIR/runs/<name>/DONE          written only when the trainer exited 0 *and* reached TRAIN_STEPS or
                                  stopped early (train_and_evaluate.patience: an early_stop record)
    DIR/runs/<name>/FAILED        the last failure (exit status, log tail); removed on retry

Finished runs (DONE) are skipped. An interrupted run (Ctrl-C, SIGTERM, a
crash, a kill) has no DONE and is resumed by running the same command again:
the trainer resumes its MODEL_DIR from the latest checkpoint. On SIGINT or
SIGTERM the runner stops starting runs and forwards SIGTERM to the running
trainers, which save a checkpoint and exit; it then exits with status 130.

--print-commands writes one shell line per run not yet DONE (--all: every
run) for a cluster scheduler; MODEL_DIR is the same path, so `collect` reads
cluster results the same way.

A run from a native checkpoint (INITIAL_CHECKPOINT_PATH, e.g. a rung of the recall ladder) records the
checkpoint's sha256 (checkpoints.native.fingerprint) in attempts.jsonl and DONE. Runs from two builds of
one checkpoint never mix: a sweep whose finished runs record another build than the one now at their
path stops before running anything (exit status 2), and an interrupted run is not resumed from another
build (it fails with the reason). Nor is one resumed under another configuration: a run interrupted
before a change to its command (even a moved INITIAL_CHECKPOINT_PATH with the same bytes) fails with the
trainer's one-line reason (MODEL_DIR written by a different configuration); delete its directory to
restart it from step 0.

Default DIR: experiments/results/<backend.results_name> (the recall backend: results/mini).
Exit status: 0 if every selected run is DONE; 130 if interrupted (SIGINT / SIGTERM); 1 if some failed; 2 on a
usage error or on finished runs from another build.
"""
from __future__ import annotations

import concurrent.futures
import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Optional, Sequence

from experiments import spec as S
from experiments import stats, sweeps
from prompt_tuning.checkpoints import native
from prompt_tuning.training import metrics_writer

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC_FILE, LOG_FILE, ATTEMPTS_FILE, DONE_FILE, FAILED_FILE = (
    "spec.json", "log.txt", "attempts.jsonl", "DONE", "FAILED")
PREDICTIONS_DIR = "test_predictions"  # the trainer's TEST_SPLITS predictions, under MODEL_DIR
FINGERPRINT_KEY = "initial_checkpoint_sha256"  # in attempts.jsonl lines and DONE


def finished_steps(model_dir: str) -> Optional[int]:
    """The largest step the trainer logged in MODEL_DIR/metrics.jsonl (None: nothing logged)."""
    records = metrics_writer.read(model_dir)
    return max((int(r["step"]) for r in records), default=None)


def is_done(results_dir: str, name: str) -> bool:
    return os.path.exists(os.path.join(S.run_dir(results_dir, name), DONE_FILE))


def status(results_dir: str, s: S.RunSpec) -> str:
    """'done', 'failed', 'partial' (started, not finished) or 'pending'."""
    rd = S.run_dir(results_dir, s.name)
    if os.path.exists(os.path.join(rd, DONE_FILE)):
        return "done"
    if os.path.exists(os.path.join(rd, FAILED_FILE)):
        return "failed"
    return "partial" if os.path.exists(os.path.join(rd, S.MODEL_DIR_NAME)) else "pending"


def initial_checkpoint(s: S.RunSpec) -> Optional[str]:
    """The run's INITIAL_CHECKPOINT_PATH override (relative paths are from the repository root), or None."""
    return next((str(v) for k, v in s.overrides if k == "INITIAL_CHECKPOINT_PATH"), None)


_FINGERPRINTS: dict = {}


def checkpoint_fingerprint(path: Optional[str]) -> Optional[str]:
    """native.fingerprint of the checkpoint at path (relative to the repository root); None when path is
    None or holds no native checkpoint (not built yet, or another format). Cached per file version."""
    if not path:
        return None
    full = path if os.path.isabs(path) else os.path.join(REPO_ROOT, path)
    if not native.is_native_checkpoint(full):
        return None
    st = os.stat(os.path.join(full, native.PARAMS_FILE))
    key = (full, st.st_ino, st.st_size, st.st_mtime_ns)  # save() replaces the file: a new inode per build
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = native.fingerprint(full)
    return _FINGERPRINTS[key]


def read_attempts(run_directory: str) -> list[dict]:
    """The run's attempts.jsonl records (unreadable lines skipped)."""
    path = os.path.join(run_directory, ATTEMPTS_FILE)
    out = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
    return out


def read_done(results_dir: str, name: str) -> Optional[dict]:
    """The run's DONE record: None when it has not finished, {} for an empty (hand-made) DONE; raises
    ValueError for one that is not JSON."""
    path = os.path.join(S.run_dir(results_dir, name), DONE_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        text = f.read()
    return json.loads(text) if text.strip() else {}


def other_builds(specs: Sequence[S.RunSpec], results_dir: str) -> list[str]:
    """Finished runs whose DONE records another build of their initial checkpoint than the one at its path
    now (runs that record none, or whose checkpoint is not built, are not compared)."""
    out = []
    for s in S.dedupe(specs):
        try:
            done = read_done(results_dir, s.name)
        except ValueError:  # a DONE that is not the runner's JSON (made by hand) records nothing
            done = {}
        if done is None:
            continue
        recorded = done.get(FINGERPRINT_KEY)
        now = checkpoint_fingerprint(initial_checkpoint(s)) if recorded else None
        if recorded and now and recorded != now:
            out.append(s.name)
    return out


def _write_json(path: str, obj) -> None:
    tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, default=str)
    os.replace(tmp, path)


def portable_path(path: str) -> str:
    """`path` relative to the repository root when it lies inside it (the trainers run there), else absolute."""
    full = os.path.abspath(path)
    inside = os.path.commonpath([full, REPO_ROOT]) == REPO_ROOT
    return os.path.relpath(full, REPO_ROOT) if inside else full


def write_spec(results_dir: str, s: S.RunSpec, uses: Sequence[dict], python: str) -> None:
    """Writes runs/<name>/spec.json. Its `command` is the run's shell line as a fresh clone would type it:
    `python` and, for a results directory inside the repository, MODEL_DIR relative to the repository root,
    so the committed file does not change with the checkout's path or the interpreter's (`python` is the
    interpreter the runner used, which the line does not record)."""
    del python  # machine-specific; see the docstring
    rd = S.run_dir(results_dir, s.name)
    os.makedirs(rd, exist_ok=True)
    _write_json(os.path.join(rd, SPEC_FILE), {
        "name": s.name, "module": s.module, "gin_files": list(s.gin_files),
        "overrides": {k: S.gin_literal(v) for k, v in s.overrides}, "train_steps": s.train_steps,
        "uses": list(uses), "command": s.command(portable_path(S.model_dir(results_dir, s.name)), "python"),
    })


class Runner:
    """Executes specs as subprocesses; thread-safe; forwards a stop request to its children."""

    def __init__(self, results_dir: str, python: str, env: Optional[dict] = None, quiet: bool = False):
        self.results_dir = os.path.abspath(results_dir)
        self.python = python
        self.env = env
        self.quiet = quiet
        self._procs: set = set()
        self._lock = threading.Lock()
        self.stopping = threading.Event()

    def say(self, msg: str) -> None:
        if not self.quiet:
            print(msg, flush=True)

    def stop(self) -> None:
        self.stopping.set()
        with self._lock:
            for p in list(self._procs):
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)

    def run(self, s: S.RunSpec) -> str:
        """'skipped', 'done', 'interrupted' or 'failed'."""
        rd = S.run_dir(self.results_dir, s.name)
        if is_done(self.results_dir, s.name):
            return "skipped"
        if self.stopping.is_set():
            return "interrupted"
        os.makedirs(rd, exist_ok=True)
        failed = os.path.join(rd, FAILED_FILE)
        if os.path.exists(failed):
            os.remove(failed)
        model_dir = S.model_dir(self.results_dir, s.name)
        fingerprint = checkpoint_fingerprint(initial_checkpoint(s))
        earlier = {a.get(FINGERPRINT_KEY) for a in read_attempts(rd)} - {None}
        if fingerprint and earlier - {fingerprint}:
            reason = (f"error: {s.name} was started from another build of {initial_checkpoint(s)} (sha256 "
                      f"{sorted(earlier)[0][:12]}..., now {fingerprint[:12]}...); resuming would mix two models: "
                      f"delete {rd} to rerun it from this build")
            _write_json(failed, {"rc": None, "log_tail": reason})
            self.say(f"FAILED      {s.name} ({reason})")
            return "failed"
        start = time.time()
        with open(os.path.join(rd, LOG_FILE), "a") as log:
            log.write(f"\n===== {datetime.datetime.now().isoformat(timespec='seconds')} "
                      f"{s.command(model_dir, self.python)}\n")
            log.flush()
            with self._lock:
                if self.stopping.is_set():
                    return "interrupted"
                proc = subprocess.Popen([self.python] + s.args(model_dir), cwd=REPO_ROOT, env=self.env,
                                        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)  # Ctrl-C reaches the runner only
                self._procs.add(proc)
            rc = proc.wait()
            with self._lock:
                self._procs.discard(proc)
        wall = time.time() - start
        with open(os.path.join(rd, ATTEMPTS_FILE), "a") as f:
            f.write(json.dumps({"started": datetime.datetime.fromtimestamp(start).isoformat(timespec="seconds"),
                                "rc": rc, "wall_time_s": round(wall, 3), FINGERPRINT_KEY: fingerprint}) + "\n")
        steps = finished_steps(model_dir)
        # Finished: the step cap reached, or stopped early by the trainer's patience (an early_stop record).
        if rc == 0 and steps is not None and (steps >= s.train_steps or metrics_writer.early_stopped(model_dir)):
            compact_predictions(model_dir)
            _write_json(os.path.join(rd, DONE_FILE), {"rc": rc, "steps": steps, "wall_time_s": total_wall_time(rd),
                                                      "finished": datetime.datetime.now().isoformat(timespec="seconds"),
                                                      FINGERPRINT_KEY: fingerprint})
            self.say(f"done        {s.name} ({wall:.0f}s)")
            return "done"
        if rc == 0 or self.stopping.is_set():  # preempted: the trainer saved a checkpoint and returned
            self.say(f"interrupted {s.name} at step {steps} (rerun to resume)")
            return "interrupted"
        _write_json(failed, {"rc": rc, "log_tail": log_tail(os.path.join(rd, LOG_FILE))})
        self.say(f"FAILED      {s.name} (exit {rc}; see {os.path.join(rd, LOG_FILE)})")
        return "failed"


def compact_predictions(model_dir: str) -> None:
    """The committed form of a finished run's per-example predictions: test_predictions/*.jsonl without
    their 'inputs' (stats.drop_inputs)."""
    pred_dir = os.path.join(model_dir, PREDICTIONS_DIR)
    for name in sorted(os.listdir(pred_dir)) if os.path.isdir(pred_dir) else ():
        if name.endswith(".jsonl"):
            stats.drop_inputs(os.path.join(pred_dir, name))


def total_wall_time(run_directory: str) -> float:
    """Summed wall time of every attempt of a run."""
    total = 0.0
    for a in read_attempts(run_directory):
        try:
            total += float(a["wall_time_s"])
        except (ValueError, KeyError, TypeError):
            continue
    return round(total, 3)


def log_tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def uses_by_name(specs: Sequence[S.RunSpec]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for s in specs:
        out.setdefault(s.name, []).append(s.label_dict)
    return out


# XLA's CPU backend with one intra-op thread. Measured on this project's 2-core CPU (recall ladder l,
# P = 100, batch 32, 80 steps, identical losses): default threads 1.75 steps/s, one thread 1.83, two
# one-thread trainers at once 1.30 + 1.27 = 2.57 steps/s, 1.47x the default's throughput.
ONE_CPU_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def worker_env(environ, workers: int) -> dict:
    """The trainers' environment: XLA's CPU work on one thread (unless XLA_FLAGS already sets
    intra_op_parallelism_threads), so N workers share N cores instead of each spreading over all of them,
    and a run's numbers do not depend on how many ran beside it (a rerun with --workers 1 repeats a
    --workers 2 sweep's metrics exactly; with XLA's default threads the losses differ in the 7th digit);
    with several workers, each takes accelerator memory as it needs it. Compiled steps are kept in JAX's
    persistent compilation cache (JAX_COMPILATION_CACHE_DIR, else $XDG_CACHE_HOME/prompt_tuning/jax, else
    ~/.cache/prompt_tuning/jax), so runs of the same shapes skip recompiling: an xxs model-tuning run took
    56.3 s cold and 45.8 s warm at load ~4.8, with identical metrics and predictions."""
    env = dict(environ)
    env.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
        env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "prompt_tuning", "jax"))
    if workers > 1:
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if "intra_op_parallelism_threads" not in env.get("XLA_FLAGS", ""):
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + ONE_CPU_THREAD).strip()
    return env


def run_all(specs: Sequence[S.RunSpec], results_dir: str, *, workers: int = 1, python: Optional[str] = None,
            quiet: bool = False, install_signals: bool = True) -> dict[str, str]:
    """Runs every distinct spec not yet DONE; returns {name: outcome}.

    Raises ValueError, before running anything, when finished runs record another build of their initial
    checkpoint than the one at its path now (other_builds).
    """
    stale = other_builds(specs, results_dir)
    if stale:
        raise ValueError(f"{len(stale)} finished run(s) in {results_dir} (e.g. {stale[0]}) started from another "
                         f"build of their initial checkpoint than the one at its path now; running more here would "
                         f"mix models: use another --results-dir, or restore the build their DONE records "
                         f"({FINGERPRINT_KEY})")
    python = python or S.python_executable()
    uses = uses_by_name(specs)
    distinct = S.dedupe(specs)
    env = worker_env(os.environ, workers)
    runner = Runner(results_dir, python, env, quiet)
    for s in distinct:
        write_spec(runner.results_dir, s, uses[s.name], python)
    previous = {}
    if install_signals and threading.current_thread() is threading.main_thread():
        def handler(signum, frame):
            runner.say(f"received {signal.Signals(signum).name}: stopping the running trainers (they checkpoint)")
            runner.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            outcomes = dict(zip([s.name for s in distinct], pool.map(runner.run, distinct)))
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)
    return outcomes


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = sweeps.cli_parser("python -m experiments.runner", __doc__, only=True)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--print-commands", action="store_true", help="print one shell line per run; run nothing")
    ap.add_argument("--all", action="store_true", help="with --print-commands: include finished runs")
    ap.add_argument("--list", action="store_true", help="print each run's name and status; run nothing")
    ap.add_argument("--python", default=None, help="interpreter for the runs (default: this one; 'python' when printing)")
    cli = sweeps.resolve_cli(ap, argv)
    if cli is None:
        return 2
    args, backend, results_dir, specs = cli
    distinct = S.dedupe(specs)
    if args.print_commands:
        for s in distinct:
            if args.all or not is_done(results_dir, s.name):
                print(s.command(S.model_dir(results_dir, s.name), args.python or "python"))
        return 0
    if args.list:
        counts: dict[str, int] = {}
        for s in distinct:
            st = status(results_dir, s)
            counts[st] = counts.get(st, 0) + 1
            print(f"{st:8s} {s.name}")
        est = len(distinct) * backend.minutes_per_run
        print(f"{len(distinct)} distinct runs ({len(specs)} sweep points): "
              + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
              + (f"; ~{est / 60:.1f} h at ~{backend.minutes_per_run:g} min/run on one worker" if est else ""))
        return 0
    try:
        outcomes = run_all(specs, results_dir, workers=args.workers, python=args.python)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # A sweep whose points depend on finished runs (the model-tuning search extends its range) is read
    # again after each pass; new points are run until none appear (or a run did not finish).
    while all(o in ("done", "skipped") for o in outcomes.values()):
        more = [s for s in cli.reread_specs() if s.name not in outcomes]
        if not more:
            break
        print(f"{len(S.dedupe(more))} more run(s) now in the sweep (its range was extended)")
        try:
            outcomes.update(run_all(more, results_dir, workers=args.workers, python=args.python))
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    bad = {n: o for n, o in outcomes.items() if o not in ("done", "skipped")}
    print(f"{len(outcomes)} runs: " + ", ".join(
        f"{sum(1 for o in outcomes.values() if o == k)} {k}" for k in ("done", "skipped", "interrupted", "failed")))
    if any(o == "interrupted" for o in outcomes.values()):
        return 130
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
