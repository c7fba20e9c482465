"""Statistics for the results tables: per-example scores, mean +- s.d. over seeds, a paired cluster bootstrap.

Per-example predictions are what the trainer writes for TEST_SPLITS
(MODEL_DIR/test_predictions/<split>_<task>.jsonl, one row per example in the split's order:
{'prediction', 'target'[, 'inputs']}). From them:

    example_scores(rows, metrics)     {metric: [N] scores in 0-100}: 'accuracy' (string equality, the
                                      classification tasks), 'em' and 'f1' (SQuAD-normalised exact
                                      match and token F1, prompt_tuning.data.metrics: ReCoRD-shaped tasks)
    mean_sd(values)                   mean and sample standard deviation (ddof 1; nan for one value)
    paired_bootstrap(a, b, clusters)  the difference mean(a) - mean(b) over the same examples with a
                                      percentile confidence interval and a two-sided p-value, resampling
                                      *clusters* of examples (not examples): examples that share a
                                      cluster (in the recall world: the same person and fact) are not
                                      independent, and an example-level bootstrap would be too narrow

`a` and `b` may be [N] (one run each) or [S, N] (S seeds: the per-example mean over seeds is
compared, so seed noise is averaged before the test; the s.d. over seeds is reported separately
by mean_sd on the seeds' scores). Units are those of the scores (0-100 here).

Method (Efron & Tibshirani 1993, ch. 13; the cluster version: Field & Welsh 2007): draw C clusters
with replacement from the C clusters, B times; each draw's difference is
sum(cluster differences) / sum(cluster sizes) over the drawn clusters; the interval is the
alpha/2 and 1 - alpha/2 percentiles of the B draws; p = min(1, 2 min(P*(d <= 0), P*(d >= 0)))
with P* the share of draws (an interval that excludes 0 has p < alpha, up to ties at 0).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Hashable, Mapping, Optional, Sequence

import numpy as np

from prompt_tuning.data import metrics as data_metrics

ACCURACY, EXACT_MATCH, F1 = "accuracy", "em", "f1"


class StatsError(ValueError):
    """Inputs that cannot be compared (one-line message)."""


def read_predictions(path: str) -> list[dict]:
    """The rows of a test_predictions/*.jsonl file, in order."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def drop_inputs(path: str) -> None:
    """Rewrites a predictions file without its rows' 'inputs' (atomically; a no-op when none has them).

    What run directories commit: 'prediction' and 'target' per example, in the split's order (the split's
    own file gives the inputs), ~40 bytes a row instead of ~200.
    """
    rows = read_predictions(path)
    if not any("inputs" in r for r in rows):
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(json.dumps({k: v for k, v in r.items() if k != "inputs"}) + "\n" for r in rows)
    os.replace(tmp, path)


def rounded(row: Mapping, digits: int = 10) -> dict:
    """The row with its floats at `digits` significant digits: what the tables' CSV files hold, so that a
    committed table does not change with the last bits of a bootstrap's sums (their order, hence the
    rounding, is the BLAS build's and the CPU's)."""
    return {k: float(f"{v:.{digits}g}") if isinstance(v, float) else v for k, v in row.items()}


def example_scores(rows: Sequence[Mapping[str, str]], metrics: Sequence[str]) -> dict[str, np.ndarray]:
    """{metric: float array [N]} of per-example scores in 0-100, in the rows' order.

    'accuracy': 100 if prediction == target (the classification tasks' exact label string);
    'em' / 'f1': SQuAD exact match / token F1 after SQuAD normalisation (as the ReCoRD metric).
    Their means equal the trainer's corpus metrics for single-answer examples. Raises StatsError
    for an unknown metric or a row without 'target'.
    """
    fns = {ACCURACY: lambda p, t: float(p == t), EXACT_MATCH: data_metrics.exact_match_score,
           F1: data_metrics.token_f1_score}
    out = {}
    for m in metrics:
        if m not in fns:
            raise StatsError(f"unknown per-example metric {m!r}; known: {sorted(fns)}")
        try:
            out[m] = np.array([100.0 * fns[m](str(r["prediction"]), str(r["target"])) for r in rows], float)
        except KeyError as e:
            raise StatsError(f"prediction rows need 'prediction' and 'target'; missing {e}") from None
    return out


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample s.d. with ddof 1); s.d. is nan for a single value, both nan for none."""
    v = np.asarray(list(values), float)
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan


def format_mean_sd(values: Sequence[float], digits: int = 1) -> str:
    """'71.3 +- 2.4 (n=3)'; a single value has no s.d.: '71.3 (n=1)'."""
    m, sd = mean_sd(values)
    n = len(list(values))
    if math.isnan(m):
        return "n/a"
    return f"{m:.{digits}f} (n=1)" if n == 1 else f"{m:.{digits}f} +- {sd:.{digits}f} (n={n})"


@dataclasses.dataclass(frozen=True)
class Bootstrap:
    """A paired difference mean(a) - mean(b), its percentile interval and two-sided p-value."""

    difference: float
    low: float
    high: float
    p_value: float
    level: float          # e.g. 0.95
    clusters: int
    examples: int
    resamples: int

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def format(self, digits: int = 1) -> str:
        return (f"{self.difference:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}] "
                f"({self.level:.0%} CI, {self.p_text()}, {self.clusters} clusters)")

    def p_text(self) -> str:
        """'p=0.012', or 'p<0.0001' when no resample crossed zero (the bootstrap cannot resolve less)."""
        return f"p<{1 / self.resamples:.2g}" if self.p_value == 0 else f"p={self.p_value:.3g}"


def _per_example(x, name: str) -> np.ndarray:
    x = np.asarray(x, float)
    if x.ndim == 2:
        x = x.mean(axis=0)  # [S, N] seeds -> the per-example mean over seeds
    if x.ndim != 1:
        raise StatsError(f"{name} must be [N] or [seeds, N], got shape {x.shape}")
    return x


def paired_bootstrap(a, b, clusters: Optional[Sequence[Hashable]] = None, *, resamples: int = 10_000,
                     level: float = 0.95, seed: int = 0) -> Bootstrap:
    """Cluster bootstrap of mean(a) - mean(b) over the same N examples (see the module docstring).

    a, b: [N] or [S, N] per-example scores (the same examples in the same order; S may differ).
    clusters: [N] hashable cluster keys (None: every example its own cluster). Deterministic for a
    given seed. Raises StatsError for mismatched lengths, no examples, or a level outside (0, 1).
    """
    a, b = _per_example(a, "a"), _per_example(b, "b")
    if a.shape != b.shape:
        raise StatsError(f"paired scores need the same examples: {a.shape[0]} vs {b.shape[0]}")
    n = a.shape[0]
    if n == 0:
        raise StatsError("no examples to compare")
    if not 0 < level < 1:
        raise StatsError(f"level must be in (0, 1), got {level}")
    keys = list(range(n)) if clusters is None else list(clusters)
    if len(keys) != n:
        raise StatsError(f"{len(keys)} cluster keys for {n} examples")
    index: dict = {}
    ids = np.array([index.setdefault(k, len(index)) for k in keys])
    c = len(index)
    sums = np.bincount(ids, weights=a - b, minlength=c)
    sizes = np.bincount(ids, minlength=c).astype(float)
    rng = np.random.default_rng(seed)
    draws = np.empty(resamples)
    chunk = max(1, 2_000_000 // c)  # bounded memory: chunk x C counts at a time
    for start in range(0, resamples, chunk):
        m = min(chunk, resamples - start)
        counts = rng.multinomial(c, np.full(c, 1.0 / c), size=m).astype(float)
        draws[start:start + m] = (counts @ sums) / (counts @ sizes)
    alpha = 1 - level
    low, high = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    p = min(1.0, 2 * min(float(np.mean(draws <= 0)), float(np.mean(draws >= 0))))
    return Bootstrap(difference=float((a - b).mean()), low=float(low), high=float(high), p_value=p, level=level,
                     clusters=c, examples=n, resamples=resamples)
