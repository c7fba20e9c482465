"""The model-tuning baseline at its best: a learning-rate x dropout search on validation, per size and task.

    python -m experiments.runner  --sweep model_search --backend recall --workers 1   # runs, extends, runs
    python -m experiments.collect --sweep model_search --backend recall               # the search table

For every (size, task) of the backend, model tuning runs at each learning rate x dropout of the
backend's `model_search` grid (`SearchGrid`) with seed `grid.seed`; each run stops early on its
validation score (the trainer's patience), so the number of steps is searched too: the run's best
validation checkpoint is the chosen step count. The chosen setting is the one with the highest
validation score at its best checkpoint (ties: the lower validation loss there, then the lower rate,
then the lower dropout: on an easy task several settings reach 100% and the loss still separates them).

Range extension: when the best rate is the smallest or largest searched, the next rate past that
edge (x or / `grid.factor`) is added, at most `grid.max_extensions` times per edge; the runner
re-reads the sweep after each pass and runs what was added, so one command ends with a best rate
inside the searched range, or at an edge that could not be extended further (`SearchResult.at_edge`,
reported in the table: the verdict must then say so).

The machinery is not model tuning's own: `search`, `choose`, `specs` and `table` take a `base`
setting (the method and its hyperparameters; default: model tuning at the backend's centre) and a
`grid`, so experiments/methods_compare.py searches each parameter-efficient method's rate with it
(dropouts (None,): the method's gin default; `SearchGrid.default_rate`: the rate its gin file sets,
written as no override so that run shares its name with the sweeps that use the file's default).

Fig 1's model-tuning points (experiments/scale.py) use `choose`: the chosen setting with the
backend's seeds (its seed `grid.seed` run is the search's own run, shared by name). Before the
search of a (size, task) has finished, asking for the choice is a one-line SpecError.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional

import numpy as np

from experiments import spec as S
from experiments.backends import Backend

NAME = "model_search"
PANEL = "model_search"


@dataclasses.dataclass(frozen=True)
class SearchGrid:
    rates: tuple[float, ...]          # the initial learning rates, ascending (>= 3)
    dropouts: tuple[Optional[float], ...]   # e.g. (0.0, 0.1); (None,): the gin files' dropout, not searched
    factor: float = 10 ** 0.5         # one extension step: half a decade
    max_extensions: int = 2           # per edge
    seed: int = 0
    default_rate: Optional[float] = None    # the gin file's own rate: runs at it carry no rate override


@dataclasses.dataclass(frozen=True)
class SearchResult:
    rates: tuple[float, ...]                      # every rate searched so far, ascending
    scores: dict                                  # (rate, dropout) -> validation score (finished runs)
    best: Optional[tuple[float, float]]           # (rate, dropout) chosen; None while incomplete
    complete: bool                                # every (rate, dropout) of `rates` finished, no extension due
    at_edge: bool                                 # the best rate is an edge of `rates` (extensions used up)


def model_tuning_base(backend: Backend) -> S.Setting:
    """Model tuning at the backend's centre pretraining: the default `base` of a search."""
    c = backend.centre
    return S.Setting(method=S.MODEL_TUNING, objective=c.objective, lm_steps=c.lm_steps)


def _setting(backend: Backend, rate: float, dropout: Optional[float], base: Optional[S.Setting] = None,
             grid: Optional[SearchGrid] = None) -> S.Setting:
    base = base or model_tuning_base(backend)
    default = grid.default_rate if grid is not None else None
    rate = None if default is not None and np.isclose(rate, default) else float(rate)
    return dataclasses.replace(base, learning_rate=rate, dropout=None if dropout is None else float(dropout))


def _grid(backend: Backend, grid: Optional[SearchGrid] = None) -> SearchGrid:
    if grid is not None:
        return grid
    if backend.model_search is None:
        raise S.SpecError(f"backend {backend.name!r} has no model-tuning search")
    return backend.model_search


def _results_dir(backend: Backend, results_dir: Optional[str]) -> str:
    return results_dir or os.path.join("experiments", "results", backend.name)


def validation_score(results_dir: str, name: str) -> Optional[float]:
    """The early-stopping value (mean of the validation metrics at the best checkpoint) of a finished
    run (runner's DONE marker), else None."""
    from experiments import collect, runner

    if not runner.is_done(results_dir, name):
        return None
    chosen = collect.select_checkpoint(S.model_dir(results_dir, name))
    return None if chosen is None else float(np.mean(list(chosen[1].values())))


def validation_loss(results_dir: str, name: str) -> float:
    """Mean validation loss at a run's best checkpoint (its best.json), +inf when it recorded none: the
    tie-break between settings with equal validation scores (e.g. several at 100%)."""
    from experiments import collect

    try:
        with open(os.path.join(S.model_dir(results_dir, name), collect.BEST_FILE)) as f:
            metrics = json.load(f).get("metrics", {})
    except (OSError, ValueError):
        return float("inf")
    losses = [float(v) for k, v in metrics.items() if k.endswith("/loss")]
    return float(np.mean(losses)) if losses else float("inf")


def extend(rates: tuple[float, ...], grid: SearchGrid, scores: dict,
           losses: Optional[dict] = None) -> tuple[tuple[float, ...], Optional[tuple], bool]:
    """One step of the search on known scores: (rates, best, extended).

    `scores` maps (rate, dropout) to a validation score for every pair of `rates` x grid.dropouts;
    `losses` (optional, same keys) to the validation loss at that run's best checkpoint.
    The best pair is the highest score (ties: lower loss, then lower rate, then lower dropout). If its rate is an edge
    and fewer than grid.max_extensions rates were added past that edge, the next rate is added
    (extended=True). Pure: tested on constructed scores.
    """
    pairs = [(r, d) for r in rates for d in grid.dropouts]
    losses = losses or {}
    best = max(pairs, key=lambda p: (scores[p], -losses.get(p, 0.0), -p[0], -(p[1] or 0.0)))
    lo, hi = min(grid.rates), max(grid.rates)
    below = sum(1 for r in rates if r < lo)
    above = sum(1 for r in rates if r > hi)
    if best[0] == min(rates) and below < grid.max_extensions:
        return tuple(sorted(rates + (min(rates) / grid.factor,))), best, True
    if best[0] == max(rates) and above < grid.max_extensions:
        return tuple(sorted(rates + (max(rates) * grid.factor,))), best, True
    return rates, best, False


def search(backend: Backend, size: str, task: str, results_dir: Optional[str] = None, *,
           base: Optional[S.Setting] = None, grid: Optional[SearchGrid] = None) -> SearchResult:
    """Where the search of (size, task) stands, from the finished runs in `results_dir`: `base` (default:
    model tuning) at each rate x dropout of `grid` (default: the backend's model_search)."""
    grid = _grid(backend, grid)
    rd = _results_dir(backend, results_dir)
    rates = tuple(sorted(float(r) for r in grid.rates))
    scores: dict = {}
    losses: dict = {}
    while True:
        for r in rates:
            for d in grid.dropouts:
                if (r, d) not in scores:
                    name = S.run_name(size, task, _setting(backend, r, d, base, grid).normalized(), grid.seed)
                    v = validation_score(rd, name)
                    if v is not None:
                        scores[(r, d)], losses[(r, d)] = v, validation_loss(rd, name)
        if any((r, d) not in scores for r in rates for d in grid.dropouts):
            return SearchResult(rates, scores, None, False, False)
        rates, best, extended = extend(rates, grid, scores, losses)
        if not extended:
            return SearchResult(rates, scores, best, True, best[0] in (min(rates), max(rates)))


def _value(r: float, d: Optional[float]) -> str:
    return f"lr={r:g}" + ("" if d is None else f",d={d:g}")


def specs(backend: Backend, results_dir: Optional[str] = None, *, base: Optional[S.Setting] = None,
          grid: Optional[SearchGrid] = None, sizes: Optional[tuple[str, ...]] = None, sweep: str = NAME,
          panel: str = PANEL) -> list[S.RunSpec]:
    """The search's runs as far as the finished ones say (each pass of the runner may add rates), on
    `sizes` (default: the backend's)."""
    grid = _grid(backend, grid)
    out = []
    for size in sizes or backend.sizes:
        for task in backend.tasks:
            for r in search(backend, size, task, results_dir, base=base, grid=grid).rates:
                for d in grid.dropouts:
                    out.append(backend.spec(sweep=sweep, panel=panel, size=size, task=task,
                                            setting=_setting(backend, r, d, base, grid), seed=grid.seed,
                                            value=_value(r, d)))
    return out


def choose(backend: Backend, size: str, task: str, results_dir: Optional[str] = None, *,
           base: Optional[S.Setting] = None, grid: Optional[SearchGrid] = None, sweep: str = NAME) -> S.Setting:
    """`base`'s setting for (size, task) (default: model tuning's): the search's best. SpecError while it
    is unfinished (`sweep` names the sweep to run in the message)."""
    result = search(backend, size, task, results_dir, base=base, grid=grid)
    if result.best is None:
        missing = sum(1 for r in result.rates for d in _grid(backend, grid).dropouts if (r, d) not in result.scores)
        what = (base or model_tuning_base(backend)).method
        raise S.SpecError(f"{what.replace('_', ' ')} on {size}/{task} has no chosen setting yet: {missing} search "
                          f"run(s) not finished in {_results_dir(backend, results_dir)} (python -m "
                          f"experiments.runner --sweep {sweep} --backend {backend.name})")
    return _setting(backend, *result.best, base, grid)


def table(backend: Backend, results_dir: Optional[str] = None, *, base: Optional[S.Setting] = None,
          grid: Optional[SearchGrid] = None, sizes: Optional[tuple[str, ...]] = None) -> list[dict]:
    """One row per (size, task, rate, dropout) searched: validation score, chosen, at_edge."""
    rows = []
    for size in sizes or backend.sizes:
        for task in backend.tasks:
            res = search(backend, size, task, results_dir, base=base, grid=grid)
            for r in res.rates:
                for d in _grid(backend, grid).dropouts:
                    rows.append({"size": size, "task": task, "learning_rate": r, "dropout": d,
                                 "validation": res.scores.get((r, d)), "chosen": res.best == (r, d),
                                 "search_complete": res.complete, "at_edge": res.at_edge})
    return rows
