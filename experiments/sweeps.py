"""The sweeps by name, for the runner and the collector.

    scale       paper Fig 1   experiments/scale.py
    ablations   paper Fig 3   experiments/ablations.py (panels a-d)
    ensemble    paper Table 3 experiments/ensemble.py (the prompts to ensemble)

Fig 4 (parameters) needs no runs: `python -m experiments.parameters`.
"""
from __future__ import annotations

import importlib

from experiments import spec as S
from experiments.backends import Backend

SWEEPS = {"scale": "experiments.scale", "ablations": "experiments.ablations", "ensemble": "experiments.ensemble"}


def get_specs(sweep: str, backend: Backend) -> list[S.RunSpec]:
    """Every (sweep, panel, point) spec; names repeat where panels share a run."""
    if sweep not in SWEEPS:
        raise S.SpecError(f"unknown sweep {sweep!r}; known: {sorted(SWEEPS)} (Fig 4: python -m experiments.parameters)")
    return importlib.import_module(SWEEPS[sweep]).specs(backend)
