"""Builds the recall world's model ladder with the package's trainer (`python -m prompt_tuning.train`).

    python -m experiments.recall_world.build_ladder                        # every rung (resumable), exports
                                         # to assets/recall_world/ladder, trainers in runs/recall_world/pretraining
    python -m experiments.recall_world.build_ladder --rungs xs,s --scale 0.02   # a small trial
    python -m experiments.recall_world.build_ladder --rungs xxs,xs --rates 0.02 --steps 4 --phases sc,lm
                                                                           # smoke size (tests/experiments/)

Per rung (shapes in gin/models/recall_<rung>.gin), all by `prompt_tuning.train` with
gin/runs/pretrain.gin and gin/recall_world.gin, every phase on its own schedule
(linear warmup, half-cosine decay to 0.1x ending at the phase's last step):

  lr_<rate>     span corruption for LR_FRACTION of the rung's budget at each rate of
                LEARNING_RATES, extended by 2x past an edge that wins (MAX_EXTENSIONS);
                the rate with the lowest held-out corpus loss is the rung's (never
                chosen on a downstream task)
  sc            span corruption from scratch at the chosen rate, SC_STEPS[rung] steps
  lm            LM adaptation (prefix LM) from sc's final checkpoint, LM_STEPS[rung] steps;
                checkpoints kept at 10%, 50% and 100% of the budget
  sc_control    span corruption continued from sc's final checkpoint for the same
                LM_STEPS on the same schedule: the control that makes "more LM
                adaptation" differ from "more training" only in the objective

Exports (native checkpoints: params.safetensors + config.json, loadable as
INITIAL_CHECKPOINT_PATH) under <out_dir>/<rung>/: untrained, sc (= lm_0), lm_10,
lm_50, lm, sc_control; and <out_dir>/<rung>/ladder.json (parameters, rate, steps,
held-out losses, wall times, each export's sha256: native.fingerprint).
The trainers' MODEL_DIRs (full checkpoints, logs) go to <work_dir>/<rung>/<phase>.

The default out_dir, assets/recall_world/ladder, is committed (48 MB): nothing outside git outlives a
session here, and a first build, kept only on its machine, could not be rebuilt to the same bytes
(experiments/results/mini/README.md). A rung whose sc is built keeps its recorded learning rate (no sweep).

Every trainer runs XLA's CPU work on one thread (the runner's worker_env), so a build does not depend on
the machine's core count: two builds of xxs with the same code gave byte-identical exports (with XLA's
default threads too, but their numbers differ from the one-thread build's). A build by other code or
another JAX version is another ladder: runs record the sha256 of the export they start from, and the
runner will not mix builds (experiments/runner.py). A phase that the rung's ladder.json records (its
wall time) is skipped, and an interrupted phase resumes from its MODEL_DIR (the trainer resumes), so
rerunning the command after any interruption finishes the ladder. `--phases` runs a subset (sc first: lm and
sc_control continue from its export); a later invocation with more phases adds the missing ones.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import jax
import numpy as np

from experiments import runner
from prompt_tuning.checkpoints import native, save_restore
from prompt_tuning.training import metrics_writer

# xxs (31K) to l (1.22M): 39x. An 'xl' of 3.3M cost ~2.7 s a step on the shared 2-core machine (2 h for its
# phases), beyond this session's budget; it is the next rung where an accelerator or a quiet machine is at hand.
RUNGS = ("xxs", "xs", "s", "m", "l")
# Pretraining grows with size (steps at batch 32; x ~2,000 corpus tokens per step).
SC_STEPS = {"xxs": 400, "xs": 500, "s": 600, "m": 800, "l": 1000}
LM_STEPS = {"xxs": 400, "xs": 500, "s": 600, "m": 800, "l": 1000}
LEARNING_RATES = (0.02, 0.04, 0.08)
LR_FRACTION = 0.25
MAX_EXTENSIONS = 2  # a sweep whose best rate is at an edge is extended by 2x past that edge, at most twice
SC_LENGTHS = "{'inputs': 64, 'targets': 16}"
LM_LENGTHS = "{'inputs': 64, 'targets': 64}"
PHASES = ("sc", "lm", "sc_control")  # after the learning-rate sweep, in this order
EXPORTS = ("untrained", "sc", "lm_10", "lm_50", "lm", "sc_control")


# Extra --gin.X=Y bindings for every run (the smoke test points the world at a small corpus and vocabulary).
WORLD_BINDINGS: list[str] = []


def _train(model_dir: str, rung: str, task: str, steps: int, rate: float, lengths: str, period: int,
           initial: str | None = None, log=None) -> None:
    cmd = [sys.executable, "-m", "prompt_tuning.train", "--gin_file=gin/runs/pretrain.gin",
           f"--gin_file=gin/models/recall_{rung}.gin", "--gin_file=gin/recall_world.gin",
           f"--gin.MIXTURE_OR_TASK_NAME='{task}'", f"--gin.TASK_FEATURE_LENGTHS={lengths}",
           f"--gin.TRAIN_STEPS={steps}", f"--gin.PEAK_LEARNING_RATE={rate}", f"--gin.EVAL_PERIOD={period}",
           f"--gin.WARMUP_STEPS={max(1, min(100, steps // 10))}", f"--gin.MODEL_DIR='{model_dir}'"]
    cmd += WORLD_BINDINGS
    if initial:
        cmd.append(f"--gin.INITIAL_CHECKPOINT_PATH='{initial}'")
    print("$ " + " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, env=runner.worker_env(os.environ, 1))


def _export(model_dir: str, step: int, out: str, config_dir: str) -> None:
    params, got = save_restore.read_params(os.path.join(model_dir, save_restore.LATEST_DIR, str(step)))
    assert got == step, (got, step)
    native.save(out, params, native.load_config(config_dir))


def _losses(model_dir: str) -> dict[int, float]:
    return {r["step"]: v for r in metrics_writer.read(model_dir, "eval") for k, v in r.items() if k.endswith("/loss")}


def build_rung(out_dir: str, rung: str, scale: float = 1.0, rates=LEARNING_RATES, log=None,
               steps: int | None = None, phases=PHASES, work_dir: str | None = None) -> dict:
    """Runs (or resumes) the given phases of one rung; returns its ladder.json record.

    work_dir: where the trainers' MODEL_DIRs go (<work_dir>/<rung>/<phase>; default <out_dir>/<rung>/runs).

    steps: every phase runs exactly this many steps (smoke tests; overrides SC_STEPS, LM_STEPS and scale).
    phases: a subset of PHASES. Raises ValueError for steps < 1, an unknown phase, or lm / sc_control
    without sc (done now or by an earlier invocation).
    """
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        raise ValueError(f"unknown phase(s) {unknown}; known: {list(PHASES)}")
    root = os.path.join(out_dir, rung)
    runs = os.path.join(work_dir, rung) if work_dir else os.path.join(root, "runs")
    if steps is not None:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        sc_steps = lm_steps = int(steps)
    else:
        sc_steps, lm_steps = max(10, int(SC_STEPS[rung] * scale)), max(10, int(LM_STEPS[rung] * scale))
    info_path = os.path.join(root, "ladder.json")
    info = json.load(open(info_path)) if os.path.exists(info_path) else {"rung": rung, "wall_s": {}}

    def save():
        with open(info_path + ".tmp", "w") as f:
            json.dump(info, f, indent=1)
        os.replace(info_path + ".tmp", info_path)
    os.makedirs(runs, exist_ok=True)
    if "sc" not in phases and "sc" not in info["wall_s"] and set(phases) & {"lm", "sc_control"}:
        raise ValueError(f"rung {rung}: lm and sc_control continue from sc; add sc to the phases")

    def phase(name, fn):
        if name in info["wall_s"] or (name in PHASES and name not in phases):
            return
        t0 = time.time()
        fn()
        info["wall_s"][name] = round(time.time() - t0, 1)
        save()

    # 1. the rung's learning rate, on held-out span-corruption loss (no sweep for a single rate)
    lr_steps = max(10, int(sc_steps * LR_FRACTION))
    if "sc" in info["wall_s"]:  # built: its rate is recorded (the sweep's runs may be gone with its work_dir)
        rate = float(info["learning_rate"])
    elif len(rates) > 1:
        # Rates swept by an earlier, interrupted invocation (extensions included) count too.
        done = {float(k[len("lr_"):]) for k in info["wall_s"] if k.startswith("lr_")}
        rates, sweep = sorted(set(rates) | done), {}
        for _ in range(1 + MAX_EXTENSIONS):
            for rate in rates:
                d = os.path.join(runs, f"lr_{rate}")
                phase(f"lr_{rate}", lambda d=d, rate=rate: _train(d, rung, "recall_world_span_corruption", lr_steps,
                                                                    rate, SC_LENGTHS, lr_steps, log=log))
                sweep[str(rate)] = _losses(d)[lr_steps]
            best = min(rates, key=lambda r: sweep[str(r)])
            if best not in (rates[0], rates[-1]) or "sc" in info["wall_s"]:
                break  # an interior optimum (or the rung was already built on this sweep)
            rates = sorted(rates + [best * 2 if best == rates[-1] else best / 2])
        rate = float(min(sweep, key=sweep.get))
        info.update(lr_sweep={"steps": lr_steps, "heldout_loss": sweep})
    else:
        rate = float(rates[0])
    info["learning_rate"] = rate

    # 2. span corruption from scratch; exports untrained and sc
    sc = os.path.join(runs, "sc")

    def run_sc():
        _train(sc, rung, "recall_world_span_corruption", sc_steps, rate, SC_LENGTHS, max(1, sc_steps // 4), log=log)
        native.save(os.path.join(root, "untrained"), native.load(os.path.join(sc, "frozen_model")),
                    native.load_config(os.path.join(sc, "frozen_model")))
        _export(sc, sc_steps, os.path.join(root, "sc"), os.path.join(sc, "frozen_model"))

    phase("sc", run_sc)
    config_dir = os.path.join(root, "sc")

    # 3. LM adaptation from the annealed sc checkpoint; 4. the span-corruption control
    lm = os.path.join(runs, "lm")

    def run_lm():
        _train(lm, rung, "recall_world_prefix_lm", lm_steps, rate, LM_LENGTHS, max(1, lm_steps // 10),
               initial=os.path.join(root, "sc"), log=log)
        for pct in (10, 50, 100):
            step = max(1, lm_steps * pct // 100) // max(1, lm_steps // 10) * max(1, lm_steps // 10)
            _export(lm, step, os.path.join(root, "lm" if pct == 100 else f"lm_{pct}"), config_dir)

    phase("lm", run_lm)
    control = os.path.join(runs, "sc_control")

    def run_control():
        _train(control, rung, "recall_world_span_corruption", lm_steps, rate, SC_LENGTHS, lm_steps,
               initial=os.path.join(root, "sc"), log=log)
        _export(control, lm_steps, os.path.join(root, "sc_control"), config_dir)

    phase("sc_control", run_control)
    if "sc" not in info["wall_s"]:  # only the learning-rate sweep was asked for
        save()
        return info
    logged = {name: _losses(d).get(n) for name, d, n in (("sc", sc, sc_steps), ("lm", lm, lm_steps),
                                                          ("sc_control", control, lm_steps)) if name in info["wall_s"]}
    info.update(sc_steps=sc_steps, lm_steps=lm_steps,
                params=int(sum(np.size(x) for x in jax.tree.leaves(native.load(config_dir)))),
                heldout_loss={**info.get("heldout_loss", {}),  # recorded, unless the phase's metrics are here
                              **{name: loss for name, loss in logged.items() if loss is not None}},
                sha256={name: native.fingerprint(os.path.join(root, name)) for name in EXPORTS
                        if native.is_native_checkpoint(os.path.join(root, name))})
    save()
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out_dir", default="assets/recall_world/ladder", help="exports and ladder.json per rung")
    ap.add_argument("--work_dir", default="runs/recall_world/pretraining",
                    help="the trainers' MODEL_DIRs per rung and phase, and build.log (not committed)")
    ap.add_argument("--rungs", default=",".join(RUNGS))
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies every phase's steps (smoke tests)")
    ap.add_argument("--rates", default=",".join(map(str, LEARNING_RATES)),
                    help="comma-separated peak learning rates; with one, no sweep is run")
    ap.add_argument("--steps", type=int, default=None,
                    help="every phase runs exactly this many steps (smoke tests; overrides --scale)")
    ap.add_argument("--phases", default=",".join(PHASES),
                    help="comma-separated subset of " + ",".join(PHASES) + " (sc is needed before the others)")
    ap.add_argument("--gin_binding", action="append", default=[],
                    help="extra X=Y gin binding for every run, e.g. prepare_recall_world.corpus_documents=2000")
    args = ap.parse_args(argv)
    WORLD_BINDINGS[:] = [f"--gin.{b}" for b in args.gin_binding]
    os.makedirs(args.work_dir, exist_ok=True)
    with open(os.path.join(args.work_dir, "build.log"), "a") as log:
        for rung in args.rungs.split(","):
            info = build_rung(args.out_dir, rung, args.scale, tuple(float(r) for r in args.rates.split(",")), log,
                              steps=args.steps, phases=tuple(p for p in args.phases.split(",") if p),
                              work_dir=args.work_dir)
            print(json.dumps(info), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
