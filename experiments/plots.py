"""The paper's figures from the tidy results table (collect.py) or the parameter table (parameters.py).

    python -m experiments.plots scale      RESULTS.csv --out DIR/scale        # Fig 1
    python -m experiments.plots ablations  RESULTS.csv --out DIR/ablations    # Fig 3 (a)-(d)
    python -m experiments.plots parameters PARAMS.csv  --out DIR/parameters   # Fig 4
    python -m experiments.plots table      RESULTS.csv --out DIR/scale        # the numbers: DIR/scale.md

The figures write <out>.png and <out>.pdf, the table <out>.md. Scores: for every (panel, setting, size,
seed) the task scores (the collector's `score` rows: mean of a task's
metrics) are averaged over tasks (the SuperGLUE score when the tasks are
SuperGLUE); points are the mean over seeds and error bars one standard
deviation (sample s.d., ddof 1) over seeds, as in the paper's Fig 1 caption.
Model size (x) is the model's total parameter count, log scale.

Matplotlib's object API only (no pyplot state), so it runs headless and in notebooks.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

NUMERIC = {"params", "seed", "prompt_length", "lm_steps", "value", "best_step", "steps", "wall_time_s",
           "model_params", "task_params", "percent"}
METHOD_LABELS = {"model_tuning": "Model Tuning", "prompt_tuning": "Prompt Tuning", "prompt_design": "Prompt Design",
                 "few_shot": "Prompt Design (few-shot)"}
METHOD_STYLE = {"model_tuning": ("tab:orange", "s"), "prompt_tuning": ("tab:green", "o"),
                "prompt_design": ("tab:blue", "^"), "few_shot": ("tab:purple", "v")}
PANEL_TITLES = {"a_prompt_length": "(a) Prompt length", "b_init": "(b) Prompt initialization",
                "c_objective": "(c) Pre-training method", "d_lm_steps": "(d) LM adaptation steps"}
SETTING_LABELS = {"random_uniform": "Random Uniform", "sampled_vocab": "Sampled Vocab", "class_labels": "Class Label",
                  "span_corruption": "Span Corruption", "span_corruption_sentinel": "Span Corruption + Sentinel",
                  "lm_adapt": "LM Adaptation"}
SETTING_ORDER = {"b_init": ["random_uniform", "sampled_vocab", "class_labels"],
                 "c_objective": ["span_corruption", "span_corruption_sentinel", "lm_adapt"]}


def read_csv(path: str) -> list[dict[str, Any]]:
    """Rows with numeric columns as floats ('' stays '')."""
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            for k in NUMERIC & set(r):
                if r[k] not in ("", None):
                    r[k] = float(r[k])
            rows.append(r)
    return rows


def seed_stats(rows: Iterable[Mapping[str, Any]], metric: str = "score") -> list[dict[str, Any]]:
    """Mean over tasks per (sweep, panel, method, setting, size, seed), then mean / s.d. / min / max over seeds."""
    per_seed: dict[tuple, list[float]] = {}
    params: dict[str, float] = {}
    for r in rows:
        if r["metric"] != metric:
            continue
        key = (r["panel"], r["method"], str(r["setting"]), r["size"], r["seed"])
        per_seed.setdefault(key, []).append(float(r["value"]))
        params[r["size"]] = r["params"]
    per_point: dict[tuple, list[float]] = {}
    for (panel, method, setting, size, seed), values in per_seed.items():
        per_point.setdefault((panel, method, setting, size), []).append(float(np.mean(values)))
    out = []
    for (panel, method, setting, size), v in per_point.items():
        v = np.asarray(v)
        out.append({"panel": panel, "method": method, "setting": setting, "size": size, "params": params[size],
                    "mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                    "min": float(v.min()), "max": float(v.max()), "seeds": int(len(v))})
    return sorted(out, key=lambda s: (s["panel"], s["method"], s["setting"], s["params"]))


def _save(fig: Figure, out_stem: str) -> list[str]:
    os.makedirs(os.path.dirname(os.path.abspath(out_stem)), exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        path = f"{out_stem}.{ext}"
        fig.savefig(path, dpi=150, bbox_inches="tight", metadata={"CreationDate": None} if ext == "pdf" else None)
        paths.append(path)
    return paths


def _size_axis(ax, stats: Sequence[Mapping[str, Any]]) -> None:
    ax.set_xscale("log")
    ax.set_xlabel("Model parameters")
    pts = sorted({(s["params"], s["size"]) for s in stats})
    ax.set_xticks([p for p, _ in pts], minor=False)
    ax.set_xticklabels([f"{n}\n{_human(p)}" for p, n in pts], fontsize=7)
    ax.minorticks_off()
    ax.grid(True, alpha=0.3)


def _human(n: float) -> str:
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.0f}"


def _line(ax, stats, label, color=None, marker="o"):
    stats = sorted(stats, key=lambda s: s["params"])
    x = [s["params"] for s in stats]
    ax.errorbar(x, [s["mean"] for s in stats], yerr=[s["std"] for s in stats], label=label, color=color,
                marker=marker, markersize=4, capsize=3, linewidth=1.5)


def _seeds_note(stats) -> str:
    n = sorted({s["seeds"] for s in stats})
    return f"mean ± s.d. over {'/'.join(map(str, n))} seed{'s' if n != [1] else ''}"


def plot_scale(rows: Sequence[Mapping[str, Any]], out_stem: Optional[str] = None, metric: str = "score",
               baselines: Optional[Mapping[str, float]] = None):
    """Fig 1: score vs model size per method; `baselines` ({name: score}, e.g. the majority class) are
    dashed horizontal lines. Returns (figure, written paths)."""
    stats = [s for s in seed_stats(rows, metric) if s["panel"] == "methods"]
    if not stats:
        raise ValueError("no 'methods' rows with metric 'score' in the table (is it a scale sweep?)")
    fig = Figure(figsize=(5.2, 3.8))
    ax = fig.add_subplot()
    for method in ("model_tuning", "prompt_tuning", "prompt_design", "few_shot"):
        sub = [s for s in stats if s["method"] == method]
        if sub:
            color, marker = METHOD_STYLE[method]
            _line(ax, sub, METHOD_LABELS[method], color, marker)
    for (name, value), style in zip(sorted((baselines or {}).items()), (":", "--", "-.")):
        ax.axhline(value, color="0.4", linestyle=style, linewidth=1, label=name)
    _size_axis(ax, stats)
    ax.set_ylabel("Score (mean over tasks)")
    ax.set_title(f"Fig 1: score vs model size ({_seeds_note(stats)})", fontsize=9)
    ax.legend(fontsize=8)
    return fig, (_save(fig, out_stem) if out_stem else [])


def _setting_sort(panel: str, setting: str):
    order = SETTING_ORDER.get(panel)
    if order and setting in order:
        return (order.index(setting), 0.0)
    try:
        return (0, float(setting))
    except ValueError:
        return (99, 0.0)


def _setting_label(panel: str, setting: str) -> str:
    if panel == "a_prompt_length":
        return f"{setting}"
    if panel == "d_lm_steps":
        n = int(float(setting))  # 100000 -> '100K'; 1500 -> '1500' (never rounded)
        return f"{n // 1000}K" if n >= 1000 and n % 1000 == 0 else str(n)
    return SETTING_LABELS.get(setting, setting)


def plot_ablations(rows: Sequence[Mapping[str, Any]], out_stem: Optional[str] = None, metric: str = "score"):
    """Fig 3: four panels, one line per setting, each against model size."""
    stats = [s for s in seed_stats(rows, metric) if s["panel"] in PANEL_TITLES]
    if not stats:
        raise ValueError("no ablation panels with metric 'score' in the table (is it an ablations sweep?)")
    fig = Figure(figsize=(10, 7.5))
    axes = fig.subplots(2, 2, sharey=True).ravel()
    legend_titles = {"a_prompt_length": "prompt length", "d_lm_steps": "steps"}
    for i, (ax, panel) in enumerate(zip(axes, PANEL_TITLES)):
        sub = [s for s in stats if s["panel"] == panel]
        ax.set_title(PANEL_TITLES[panel], fontsize=10)
        if not sub:
            ax.text(0.5, 0.5, "no runs yet", ha="center", va="center", transform=ax.transAxes)
            continue
        settings = sorted({s["setting"] for s in sub}, key=lambda v: _setting_sort(panel, v))
        colors = [f"C{i}" for i in range(len(settings))]
        for setting, color in zip(settings, colors):
            _line(ax, [s for s in sub if s["setting"] == setting], _setting_label(panel, setting), color)
        _size_axis(ax, sub)
        if i % 2 == 0:  # the y axis is shared along each row
            ax.set_ylabel("Score (mean over tasks)")
        ax.legend(fontsize=7, title=legend_titles.get(panel), title_fontsize=7)
    fig.suptitle(f"Fig 3: ablations vs model size ({_seeds_note(stats)})", fontsize=11)
    fig.tight_layout()
    return fig, (_save(fig, out_stem) if out_stem else [])


PARAM_STYLE = {  # label, colour, marker; WARP is drawn last-but-one and hollow: it sits just above prompt tuning
    "model_tuning": ("Model Tuning", "tab:orange", "s"),
    "prefix_tuning_train": ("Prefix Tuning (Train)", "tab:purple", "o"),
    "prefix_tuning_inference": ("Prefix Tuning (Infer)", "tab:pink", "o"),
    "prompt_tuning": ("Prompt Tuning", "tab:green", "o"),
    "warp": ("WARP", "tab:brown", "D"),
    "prompt_design": ("Prompt Design", "tab:blue", "^"),
    # Not in the paper's figure: the other methods of prompt_tuning/methods/, one count per size.
    "adapters": ("Adapters (size 64)", "tab:gray", "v"),
    "lora": ("LoRA (r = 8, q and v)", "tab:red", "x"),
    "ia3": ("IA3", "tab:olive", "+"),
}


def plot_parameters(rows: Sequence[Mapping[str, Any]], out_stem: Optional[str] = None):
    """Fig 4: task parameters as % of the model vs model size; bands over the prompt/prefix lengths."""
    sets = list(dict.fromkeys(r["model_set"] for r in rows))
    fig = Figure(figsize=(8.0 * len(sets), 4.2))
    axes = np.atleast_1d(fig.subplots(1, len(sets), squeeze=False).ravel())
    for ax, model_set in zip(axes, sets):
        sub = [r for r in rows if r["model_set"] == model_set]
        sizes = sorted({(r["model_params"], r["size"]) for r in sub})
        for z, (method, (label, color, marker)) in enumerate(PARAM_STYLE.items()):
            m = [r for r in sub if r["method"] == method]
            if not m:
                continue
            x = [p for p, _ in sizes]
            lo = [min(r["percent"] for r in m if r["size"] == s) for _, s in sizes]
            hi = [max(r["percent"] for r in m if r["size"] == s) for _, s in sizes]
            if method == "model_tuning":
                ax.plot(x, hi, color=color, marker=marker, label=label + " (100%)")
                continue
            if {r["prompt_length"] for r in m} == {""}:  # one count per size (LoRA, IA3, adapters)
                ax.plot(x, hi, color=color, marker=marker, markersize=5, linewidth=1, linestyle=":", label=label,
                        zorder=z + 10)
                continue
            lengths = sorted({r["prompt_length"] for r in m})
            span = f" ({'tokens' if method == 'prompt_design' else 'P ='} {lengths[0]:g}-{lengths[-1]:g})"
            ax.fill_between(x, lo, hi, color=color, alpha=0.2, linewidth=0, zorder=z)
            hollow = {"markerfacecolor": "none"} if method == "warp" else {}
            ax.plot(x, hi, color=color, marker=marker, markersize=4, linewidth=1, label=label + span, zorder=z + 10,
                    **hollow)
            ax.plot(x, lo, color=color, marker=marker, markersize=3, linewidth=1, linestyle="--", zorder=z + 10,
                    **hollow)
        ax.set_yscale("log")
        ax.set_ylabel("Task parameters (% of model)")
        ax.set_title(f"Fig 4: parameter usage ({model_set})", fontsize=9)
        _size_axis(ax, [{"params": p, "size": s} for p, s in sizes])
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  title="band: shortest (dashed) to longest", title_fontsize=7)
    fig.tight_layout()
    return fig, (_save(fig, out_stem) if out_stem else [])


def stats_table(rows: Iterable[Mapping[str, Any]], metric: str = "score") -> str:
    """A Markdown table of `seed_stats`: one line per (panel, setting), one column per size.

    Cells: mean ± s.d. over seeds (min-max), the numbers behind the figures' points and error bars.
    """
    stats = seed_stats(rows, metric)
    if not stats:
        raise ValueError(f"no {metric!r} rows to tabulate")
    sizes = sorted({(s["params"], s["size"]) for s in stats})
    lines = ["| panel | setting | " + " | ".join(f"{n} ({_human(p)})" for p, n in sizes) + " |",
             "|---|---|" + "---|" * len(sizes)]
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for s in stats:
        text = f"{s['mean']:.1f} ± {s['std']:.1f} ({s['min']:.1f}-{s['max']:.1f})" if s["seeds"] > 1 else \
            f"{s['mean']:.1f} (1 run)"
        cells.setdefault((s["panel"], str(s["setting"])), {})[s["size"]] = text
    for key in sorted(cells, key=lambda k: (k[0], *_setting_sort(*k), k[1])):
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells[key].get(n, "") for _, n in sizes) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.plots", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("figure", choices=("scale", "ablations", "parameters", "table"))
    ap.add_argument("csv")
    ap.add_argument("--out", required=True, help="output path without extension")
    args = ap.parse_args(argv)
    rows = read_csv(args.csv)
    if args.figure == "table":
        try:
            text = stats_table(rows)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        with open(f"{args.out}.md", "w") as f:
            f.write(text)
        print(text, end="")
        return 0
    fn = {"scale": plot_scale, "ablations": plot_ablations, "parameters": plot_parameters}[args.figure]
    try:
        _, paths = fn(rows, args.out)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("\n".join(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
