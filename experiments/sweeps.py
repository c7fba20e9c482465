"""The sweeps by name, for the runner and the collector.

    scale       paper Fig 1   experiments/scale.py
    ablations   paper Fig 3   experiments/ablations.py (panels a-d)
    ensemble    paper Table 3 experiments/ensemble.py (the prompts to ensemble)
    model_search  the model-tuning baseline's learning-rate x dropout search on validation
                experiments/model_search.py (extends its range past a winning edge)
    prompt_lr   prompt tuning's learning-rate check at the centre point  experiments/prompt_lr.py
    methods     the parameter-efficient family (issue #15): each method's rate search, then seeds, every rung
                and task (recall backend)  experiments/methods_compare.py
    all         the paper's sweeps in dependency order, the largest last (model_search, scale, prompt_lr,
                ensemble, ablations: Fig 1 needs the search's choice; Table 3 and C6 need only Fig 1's runs);
                not methods (~25-30 CPU-hours on recall: scheduled on its own)

Fig 4 (parameters) needs no runs: `python -m experiments.parameters`.

The command lines that act on a sweep (runner, collect, recall_tables, ensemble)
share their prologue: `cli_parser` gives --sweep, --backend, --results-dir and
`resolve_cli` turns them into a backend, a results directory and the specs.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys
from typing import NamedTuple, Optional, Sequence

from experiments import spec as S
from experiments.backends import Backend, get_backend

SWEEPS = {"scale": "experiments.scale", "ablations": "experiments.ablations", "ensemble": "experiments.ensemble",
          "model_search": "experiments.model_search", "prompt_lr": "experiments.prompt_lr",
          "methods": "experiments.methods_compare"}
# `--sweep all`: every sweep in dependency order (Fig 1's model tuning needs the search's choice).
ALL = "all"
ORDER = ("model_search", "scale", "prompt_lr", "ensemble", "ablations")


def get_specs(sweep: str, backend: Backend, results_dir: Optional[str] = None) -> list[S.RunSpec]:
    """Every (sweep, panel, point) spec; names repeat where panels share a run.

    Sweeps whose points depend on finished runs (the model-tuning search extends its range; Fig 1's
    model tuning uses the search's choice) read them from `results_dir`. `all` is the sweeps of ORDER up
    to the first that cannot be specified yet (its SpecError: e.g. Fig 1 before the model-tuning search
    is finished), so a runner working through it finishes the search first; the runner's re-reading
    then adds the rest.
    """
    if sweep == ALL:
        out: list[S.RunSpec] = []
        for name in ORDER:
            if name == "model_search" and backend.model_search is None:
                continue
            try:
                out += get_specs(name, backend, results_dir)
            except S.SpecError:
                if not out:
                    raise
                break
        return out
    if sweep not in SWEEPS:
        raise S.SpecError(f"unknown sweep {sweep!r}; known: {sorted(SWEEPS)} (Fig 4: python -m experiments.parameters)")
    fn = importlib.import_module(SWEEPS[sweep]).specs
    if "results_dir" in inspect.signature(fn).parameters:
        return fn(backend, results_dir=results_dir)
    return fn(backend)


def default_results_dir(backend: Backend) -> str:
    """experiments/results/<backend.results_name or backend.name>: where a backend's runs go unless
    --results-dir says otherwise."""
    return os.path.join("experiments", "results", backend.results_name or backend.name)


def cli_parser(prog: str, doc: Optional[str], *, backend: str = "real", sweep: bool = True,
               only: bool = False) -> argparse.ArgumentParser:
    """The shared options: --sweep (when `sweep`), --backend (default `backend`), --results-dir, and --only
    (when `only`: a regular expression the run names must match). The caller adds its own."""
    ap = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if sweep:
        ap.add_argument("--sweep", required=True, choices=sorted(SWEEPS) + [ALL],
                        help=f"one sweep, or {ALL!r}: " + ", ".join(ORDER) + " in this order, each as soon as it "
                             "can be specified")
    ap.add_argument("--backend", default=backend)
    ap.add_argument("--results-dir", default=None, help="default: experiments/results/<backend>")
    if only:
        ap.add_argument("--only", default=None, help="run only specs whose name matches this regular expression")
    return ap


class Cli(NamedTuple):
    """A resolved command line: its arguments, backend, results directory and the sweep's specs ([] without
    --sweep), filtered by --only where the parser has it."""

    args: argparse.Namespace
    backend: Backend
    results_dir: str
    specs: list[S.RunSpec]

    def reread_specs(self) -> list[S.RunSpec]:
        """The sweep's specs read again: a sweep that extends itself from finished runs (model_search) may
        have more now."""
        return _sweep_specs(self.args, self.backend, self.results_dir)


def _sweep_specs(args: argparse.Namespace, backend: Backend, results_dir: str) -> list[S.RunSpec]:
    if not hasattr(args, "sweep"):
        return []
    return S.filter_specs(get_specs(args.sweep, backend, results_dir), getattr(args, "only", None))


def resolve_cli(ap: argparse.ArgumentParser, argv: Optional[Sequence[str]]) -> Optional[Cli]:
    """Parses `argv` with `ap` (from cli_parser) and resolves backend, results directory and specs.

    An unknown backend or a sweep that cannot be specified is a one-line 'error: ...' on stderr and None
    (the caller exits 2); argparse's own errors exit 2 as usual.
    """
    args = ap.parse_args(argv)
    try:
        backend = get_backend(args.backend)
        results_dir = args.results_dir or default_results_dir(backend)
        return Cli(args, backend, results_dir, _sweep_specs(args, backend, results_dir))
    except S.SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return None
