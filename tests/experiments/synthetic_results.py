"""SYNTHETIC results tables (made-up numbers) in the collector's exact format, for plot tests and notebooks.

    python -m tests.experiments.synthetic_results   # rewrites experiments/results/synthetic/*.csv

The numbers follow the paper's qualitative trends (prompt tuning closes the
gap with scale, etc.) plus seed noise; they are NOT results of any run. The
rows come from the real backend's sweep specs (two tasks, CB and RTE), so
every column is what `experiments.collect` writes.
"""
import dataclasses
import os

import numpy as np

from experiments import ablations, backends, collect, scale, tables
from experiments import spec as S

OUT_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                       "experiments", "results", "synthetic")
BACKEND = dataclasses.replace(backends.REAL, tasks=("cb", "rte"))
PARAMS = {"small": 76_961_152, "base": 247_577_856, "large": 783_150_080, "xl": 2_849_757_184,
          "xxl": 11_135_332_352}
METRICS = {"cb": ("accuracy", "f1_multiclass"), "rte": ("accuracy",)}


def _score(labels: dict, seed_rng: np.random.Generator) -> float:
    x = (np.log10(PARAMS[labels["size"]]) - 7.9) / (11.05 - 7.9)  # 0 at Small, 1 at XXL
    method = labels["method"]
    if method == S.MODEL_TUNING:
        base = 80 + 10 * x
    elif method == S.PROMPT_DESIGN:
        base = 35 + 15 * x
    else:
        base = 60 + 30 * x
        gap = 1 - x  # every ablation effect shrinks with scale
        p = labels["prompt_length"]
        base -= gap * {1: 20, 5: 10, 20: 3, 100: 0, 150: 1}.get(p, 0)
        base -= gap * {"random_uniform": 12, "sampled_vocab": 4}.get(labels["init"], 0)
        if labels["objective"] == S.SPAN_CORRUPTION:
            base -= 30 * gap + (15 if labels["size"] != "small" else 0)
        elif labels["objective"] == S.SPAN_CORRUPTION_SENTINEL:
            base -= 20 * gap + 8
        else:
            base -= gap * 10 * (1 - labels["lm_steps"] / 100_000)
    return float(np.clip(base + seed_rng.normal(0, 1.5 * (1.2 - x)), 0, 100))


def rows(sweep_module) -> list[dict]:
    out = []
    for s in sweep_module.specs(BACKEND):
        labels = s.label_dict
        rng = np.random.default_rng([ord(c) for c in s.name])  # stable across processes (unlike hash())
        metrics = {f"super_glue_{labels['task']}_v102/{m}": _score(labels, rng) for m in METRICS[labels["task"]]}
        for metric, value in collect.task_rows(metrics):
            row = {c: labels.get(c, "") for c in collect.COLUMNS}
            row.update(params=PARAMS[labels["size"]], metric=metric, value=round(value, 3),
                       best_step=0 if labels["method"] == S.PROMPT_DESIGN else 30000,
                       steps=s.train_steps, complete=True, wall_time_s=0.0, run=s.name)
            out.append(row)
    return out


def write(out_dir: str = OUT_DIR) -> list[str]:
    paths = []
    for name, module in (("scale", scale), ("ablations", ablations)):
        path = os.path.join(out_dir, f"{name}.csv")
        tables.write_csv(path, rows(module), collect.COLUMNS)
        paths.append(path)
    return paths


if __name__ == "__main__":
    print("\n".join(write()))
