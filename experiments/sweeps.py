"""The sweeps by name, for the runner and the collector.

    scale       paper Fig 1   experiments/scale.py
    ablations   paper Fig 3   experiments/ablations.py (panels a-d)
    ensemble    paper Table 3 experiments/ensemble.py (the prompts to ensemble)
    model_search  the model-tuning baseline's learning-rate x dropout search on validation
                experiments/model_search.py (extends its range past a winning edge)
    prompt_lr   prompt tuning's learning-rate check at the centre point  experiments/prompt_lr.py

Fig 4 (parameters) needs no runs: `python -m experiments.parameters`.
"""
from __future__ import annotations

import importlib
import inspect
from typing import Optional

from experiments import spec as S
from experiments.backends import Backend

SWEEPS = {"scale": "experiments.scale", "ablations": "experiments.ablations", "ensemble": "experiments.ensemble",
          "model_search": "experiments.model_search", "prompt_lr": "experiments.prompt_lr"}


def get_specs(sweep: str, backend: Backend, results_dir: Optional[str] = None) -> list[S.RunSpec]:
    """Every (sweep, panel, point) spec; names repeat where panels share a run.

    Sweeps whose points depend on finished runs (the model-tuning search extends its range; Fig 1's
    model tuning uses the search's choice) read them from `results_dir`.
    """
    if sweep not in SWEEPS:
        raise S.SpecError(f"unknown sweep {sweep!r}; known: {sorted(SWEEPS)} (Fig 4: python -m experiments.parameters)")
    fn = importlib.import_module(SWEEPS[sweep]).specs
    if "results_dir" in inspect.signature(fn).parameters:
        return fn(backend, results_dir=results_dir)
    return fn(backend)
