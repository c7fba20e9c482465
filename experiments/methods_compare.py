"""The parameter-efficient family compared on the recall world (issue #15): every method x rung x task.

    python -m experiments.runner --sweep methods --backend recall --workers 1 --list     # what would run
    python -m experiments.runner --sweep methods --backend recall --workers 1            # search, then seeds
    python -m experiments.methods_compare [--results-dir DIR] [--out-dir DIR]           # tables + figure

Variants (`VARIANTS`; the method sizes are trimmed to the CPU budget and fixed, only the rate is searched):

    prompt_tuning       prompt tuning at the centre point (P = 100, class-label init): Fig 1's runs
    prompt_tuning_p20   prompt tuning at P = 20 (seed 0 is Fig 3(a)'s run): P-tuning without its prompt encoder
    p_tuning_mlp        P-tuning, P = 20, MLP prompt encoder of hidden 128 (gin/methods/p_tuning.gin)
    prefix_mlp          prefix tuning, P = 20, reparameterised through an MLP of hidden 128
    prefix_direct       prefix tuning, P = 20, prefixes trained directly (deep prompt tuning)
    lora_r4             LoRA rank 4, alpha 8, on every attention's query and value
    adapters_8          Houlsby adapters of bottleneck 8
    ia3                 IA3 (keys, values, feed-forward hidden)
    multitask_prompt    multi-task prompts, 'add', P = 20, one task per run (K = 1): the recall world
                        registers no mixture, so this is the method's single-task form (a shared prompt
                        plus a task prompt); the mixed-task form needs a recall mixture (not built)
    model_tuning        Fig 1's model tuning at the setting its own search chose (model_search.py)

Protocol: the recall backend's (experiments/recall.py): early stopping on validation (EVAL_PERIOD 50,
PATIENCE 5), TEST_SPLITS scored once at the best validation checkpoint, per-example predictions,
dropout 0, batch 32, step cap 5,000 (prompt tuning's), Adafactor at a constant rate.

Learning rates are searched, not guessed, with experiments/model_search.py's machinery (`search`,
`choose` with a `base` setting and a `grid`): each variant's three rates (`Variant.grid`, around the
gin file's rate, half a decade apart; prefix_direct's around 1e-2, a decade above its gin file's
1e-3) on seed 0, extended by half a decade past a winning edge (twice at most per edge), the best
validation score at the best checkpoint chosen (ties: lower validation loss). Trimmed grid: the
search runs on the middle rung (`search_rung`: s) only, per task, and every rung uses the rate
chosen there for that task (an assumption the table states: a rate that suits s may not suit xxs or
l); then seeds 0, 1, 2 at the chosen rate on every rung and task.
A run at the gin file's own rate carries no rate override (`SearchGrid.default_rate`), so the
prompt-tuning points share their names (and runs) with Fig 1 (P = 100, rate 0.3), Fig 3(a) (P = 20)
and the prompt_lr check (P = 100, rate 1.0); model tuning's points are Fig 1's. Until a variant's
search has finished on a task, its seed runs are not in the sweep yet (the runner re-reads the
sweep after each pass and runs them); model tuning's points appear once its own search has finished.

Cost (`python -m experiments.runner --sweep methods --backend recall --list` counts the runs; the
per-run times are from one 100-step run per method on xxs, table in experiments/README.md):
  search   9 variants x 3 tasks x 3 rates on s = 81 runs (+ 4 per task and variant at most for
           extensions), of which 9 are shared (Fig 1, Fig 3(a), prompt_lr)
  seeds    9 variants x 5 rungs x 3 tasks x 3 seeds = 405 points, 27 of them the search's own runs
           (seed 0 on s); prompt tuning's at the paper's rate are Fig 1's / Fig 3(a)'s runs
  model tuning: Fig 1's runs (0 new).
If every search keeps its gin file's rate: 459 distinct runs, 366 new (up to ~450 if prompt tuning's
searches choose other rates). Measured on xxs: 61-158 s for a 100-step run at load average ~8.5
(start-up and test scoring dominate); a full early-stopped run ~1.5-3 min on xxs, up to ~8 min on l:
at ~4 min on average, about 25-30 CPU-hours on one worker. Cheaper cuts, in order: seeds (0, 1)
only, drop rung xs, search on fewer tasks.

Outputs (`main`): <out>/methods_test.csv (recall_tables' rows plus `variant` and `trainable`:
trainable parameters counted from the module tree, prompt_tuning/methods/counts.py: what the trainer
trains, so a reparameterised variant counts its encoder, which export drops), methods_test.md
(mean +- s.d. over seeds per variant x rung x task x metric on the test split), methods_search.md
(the searches), methods_pairs.md (reparameterised vs direct: paired cluster bootstrap over test
examples, experiments/stats.py), methods.png/.pdf (score against trainable parameters per task: the
matched-budget view).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import sys
from typing import Any, Optional, Sequence

from experiments import model_search, recall, recall_tables, sweeps, tables
from experiments import spec as S
from experiments.backends import Backend
from experiments.model_search import SearchGrid

NAME = "methods"
SEARCH_PANEL, COMPARE_PANEL = "search", "compare"

MODEL_TUNING = S.MODEL_TUNING  # also its variant name
PRIMARY_METRIC = recall.PRIMARY_METRICS  # the figure's y per task

_PROMPT_RATES = SearchGrid(rates=(0.1, 0.3, 1.0), dropouts=(None,), default_rate=0.3)   # gin: 0.3
_METHOD_RATES = SearchGrid(rates=(3e-4, 1e-3, 3e-3), dropouts=(None,), default_rate=1e-3)  # gin: 1e-3


def search_rung(backend: Backend) -> str:
    """The rung the rates are searched on: the middle size (recall: s; real: large)."""
    return backend.sizes[len(backend.sizes) // 2]


@dataclasses.dataclass(frozen=True)
class Variant:
    """A method at fixed sizes (`setting`, learning rate unset) and the rates its search starts from."""

    name: str
    setting: S.Setting
    grid: SearchGrid


def _variants(backend: Backend) -> tuple[Variant, ...]:
    c = backend.centre
    pre = dict(objective=c.objective, lm_steps=c.lm_steps)

    def gin_method(name, method, grid=_METHOD_RATES, **params):
        return Variant(name, S.Setting(method=method, method_params=tuple(params.items()), **pre), grid)

    return (
        Variant("prompt_tuning", dataclasses.replace(c), _PROMPT_RATES),
        Variant("prompt_tuning_p20", dataclasses.replace(c, prompt_length=20), _PROMPT_RATES),
        gin_method("p_tuning_mlp", "p_tuning", P_TUNING_LENGTH=20, P_TUNING_ENCODER="mlp", P_TUNING_HIDDEN=128),
        gin_method("prefix_mlp", "prefix", PREFIX_LENGTH=20, PREFIX_MLP_HIDDEN=128),
        # Direct prefixes are vectors in activation space, trained like prompts: a decade above the MLP's rate.
        gin_method("prefix_direct", "prefix", SearchGrid(rates=(3e-3, 1e-2, 3e-2), dropouts=(None,)),
                   PREFIX_LENGTH=20, PREFIX_MLP_HIDDEN=None),
        gin_method("lora_r4", "lora", LORA_RANK=4),
        gin_method("adapters_8", "adapters", ADAPTER_SIZE=8),
        gin_method("ia3", "ia3", SearchGrid(rates=(1e-3, 3e-3, 1e-2), dropouts=(None,), default_rate=3e-3)),
        gin_method("multitask_prompt", "multitask_prompt", _PROMPT_RATES, MULTITASK_LENGTH=20,
                   MULTITASK_NUM_TASKS=1),
    )


# (reparameterised, direct): the same prompt / prefix shape, with and without the trained encoder.
PAIRS = (("prefix_mlp", "prefix_direct"), ("p_tuning_mlp", "prompt_tuning_p20"))


def variants(backend: Backend) -> dict[str, Variant]:
    return {v.name: v for v in _variants(backend)}


def search_specs(backend: Backend, results_dir: Optional[str] = None) -> list[S.RunSpec]:
    """Every variant's rate search on the search rung, as far as the finished runs say."""
    out = []
    for v in _variants(backend):
        out += model_search.specs(backend, results_dir, base=v.setting, grid=v.grid, sizes=(search_rung(backend),),
                                  sweep=NAME, panel=f"{SEARCH_PANEL}:{v.name}")
    return out


def chosen(backend: Backend, variant: Variant, task: str, results_dir: Optional[str] = None) -> S.Setting:
    """The variant's setting at the rate its search chose on (search_rung, task); SpecError until then."""
    return model_search.choose(backend, search_rung(backend), task, results_dir, base=variant.setting,
                               grid=variant.grid, sweep=NAME)


def compare_specs(backend: Backend, results_dir: Optional[str] = None) -> list[S.RunSpec]:
    """The seeds at each chosen rate on every rung and task, and Fig 1's model tuning; points whose
    search (or model tuning's) has not finished are left out until it has."""
    return [spec for spec, _ in compare_points(backend, results_dir)]


def compare_points(backend: Backend, results_dir: Optional[str] = None) -> list[tuple[S.RunSpec, S.Setting]]:
    """compare_specs with the setting each was made from."""
    out = []
    for task in backend.tasks:
        settings = []
        for v in _variants(backend):
            try:
                settings.append((v.name, chosen(backend, v, task, results_dir)))
            except S.SpecError:
                continue
        for size in backend.sizes:
            here = list(settings)
            if backend.model_tuning_choice is not None:
                try:
                    here.append((MODEL_TUNING, backend.model_tuning_choice(size, task, results_dir)))
                except S.SpecError:
                    pass
            for name, setting in here:
                for seed in backend.seeds:
                    out.append((backend.spec(sweep=NAME, panel=COMPARE_PANEL, size=size, task=task, setting=setting,
                                             seed=seed, value=name), setting))
    return out


def unsearched(backend: Backend, results_dir: Optional[str] = None) -> list[tuple[str, str]]:
    """(variant, task) pairs whose rate search has not chosen yet (their seed points are not in the sweep)."""
    out = []
    for v in _variants(backend):
        for task in backend.tasks:
            try:
                chosen(backend, v, task, results_dir)
            except S.SpecError:
                out.append((v.name, task))
    return out


def specs(backend: Backend, results_dir: Optional[str] = None) -> list[S.RunSpec]:
    return search_specs(backend, results_dir) + compare_specs(backend, results_dir)


# ---------------------------------------------------------------------------- trainable parameters
@functools.lru_cache(maxsize=None)
def gin_method_module(method: str, params: tuple[tuple[str, Any], ...] = ()):
    """The method object gin/methods/<method>.gin builds with `params` bound (its METHODS[0]), read with
    gin itself so that no method needs a branch here. Leaves gin's configuration cleared."""
    import gin

    import prompt_tuning.train  # noqa: F401  (registers the configurables the gin files name)

    gin.clear_config()
    try:
        bindings = [f"{k} = {S.gin_literal(v)}" for k, v in params]
        with gin.unlock_config():
            gin.parse_config_files_and_bindings([os.path.join(S.REPO_ROOT, S.gin_method_file(method))], bindings,
                                                skip_unknown=True, finalize_config=False)
        refs = gin.query_parameter("METHODS/macro.value")
        return refs[0].scoped_configurable_fn()
    finally:
        gin.clear_config()


def trainable(backend: Backend, size: str, setting: S.Setting) -> int:
    """Parameters `setting` trains at `size`, counted from the module tree (prompt_tuning/methods/counts.py);
    model tuning: all of them (counts.py caches per config and method)."""
    from prompt_tuning.methods import counts

    s = setting.normalized()
    config = backend.size_config(size)
    if s.method == S.MODEL_TUNING:
        return backend.params(size)
    if s.method == S.PROMPT_TUNING:
        return counts.prompt_parameters(config, s.prompt_length)
    if s.method in S.GIN_METHODS:
        return counts.trainable_parameters(config, gin_method_module(s.method, s.method_params))
    raise S.SpecError(f"no trainable-parameter count for method {s.method!r}")


# ---------------------------------------------------------------------------- tables, pairs, figure
def table(backend: Backend, results_dir: str, split: Optional[str] = None) -> tuple[list[dict], int]:
    """recall_tables' rows of the compare points (`split`: that split only) with `variant` (the point's
    name in VARIANTS, or model_tuning) and `trainable` (parameters trained at that rung); and the number
    of compare points without a test record."""
    points = compare_points(backend, results_dir)
    setting_of = {spec.name: setting for spec, setting in points}
    rows, missing = recall_tables.rows([spec for spec, _ in points], results_dir, backend.params)
    out = [{**r, "variant": r["setting"], "trainable": trainable(backend, r["size"], setting_of[r["run"]])}
           for r in rows if not split or r["split"] == split]
    return out, missing


SUMMARY_KEYS = ("variant", "size", "task", "split", "metric")


def summary(rows: Sequence[dict]) -> list[dict]:
    """Mean +- s.d. over seeds per (variant, rung, task, split, metric), with the trainable parameters."""
    return recall_tables.summary(rows, SUMMARY_KEYS, carry=("trainable",))


def write_tables(rows: Sequence[dict], out_dir: str, missing: int,
                 pending: Sequence[tuple[str, str]] = ()) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    path_csv, path_md = os.path.join(out_dir, "methods_test.csv"), os.path.join(out_dir, "methods_test.md")
    tables.write_csv(path_csv, rows, recall_tables.COLUMNS + ("variant", "trainable"))
    lines = [f"Test-split scores at the best validation checkpoint, mean +- s.d. over seeds (n); trainable = "
             f"parameters the method trains (module tree; a reparameterised variant's encoder included, which "
             f"export drops). {missing} point(s) without a test record; "
             f"{len(pending)} (variant, task) pair(s) whose rate search has not chosen yet"
             + (": " + ", ".join(f"{v}/{t}" for v, t in pending) if pending else "") + ".", "",
             "| variant | rung | task | split | metric | trainable | score | capped |",
             "|---|---|---|---|---|---|---|---|"]
    for g in summary(rows):
        lines.append(f"| {g['variant']} | {g['size']} | {g['task']} | {g['split']} | {g['metric']} | "
                     f"{g['trainable']:,} | {g['text']} | {g['capped']} |")
    with open(path_md, "w") as f:
        f.write("\n".join(lines) + "\n")
    return [path_csv, path_md]


def search_table(backend: Backend, results_dir: str) -> str:
    """Markdown: every variant's searched rates on the search rung per task, validation score, chosen, at edge."""
    lines = [f"Learning-rate searches on rung {search_rung(backend)} (seed 0, validation score at the best "
             "checkpoint).", "",
             "| variant | task | rate | validation | chosen | complete | at edge |", "|---|---|---|---|---|---|---|"]
    for v in _variants(backend):
        for r in model_search.table(backend, results_dir, base=v.setting, grid=v.grid, sizes=(search_rung(backend),)):
            val = "" if r["validation"] is None else f"{r['validation']:.2f}"
            lines.append(f"| {v.name} | {r['task']} | {r['learning_rate']:g} | {val} | {r['chosen']} | "
                         f"{r['search_complete']} | {r['at_edge']} |")
    return "\n".join(lines) + "\n"


def pairs(backend: Backend, specs_: Sequence[S.RunSpec], results_dir: str, *, resamples: int = 10_000) -> list[dict]:
    """Reparameterised vs direct (PAIRS) per rung and task on the test split's primary metric: the paired
    cluster bootstrap over test examples of the seeds' per-example mean (recall_tables.compare)."""
    names: dict = {}
    for s in specs_:
        lab = s.label_dict
        if lab["panel"] == COMPARE_PANEL and os.path.isdir(os.path.join(S.model_dir(results_dir, s.name),
                                                                          "test_predictions")):
            names.setdefault((lab["setting"], lab["size"], lab["task"]), []).append(s.name)
    out = []
    for a, b in PAIRS:
        for size in backend.sizes:
            for task in backend.tasks:
                na, nb = names.get((a, size, task)), names.get((b, size, task))
                if not na or not nb:
                    continue
                boot = recall_tables.compare(results_dir, na, nb, task, "test", PRIMARY_METRIC[task],
                                             resamples=resamples)
                out.append({"reparameterised": a, "direct": b, "size": size, "task": task,
                            "metric": PRIMARY_METRIC[task], "seeds": (len(na), len(nb)), "bootstrap": boot})
    return out


def write_pairs(found: Sequence[dict], path: str) -> None:
    lines = ["Reparameterised minus direct, test split, paired cluster bootstrap over test examples "
             "(person+fact clusters) of the per-example mean over seeds.", "",
             "| reparameterised | direct | rung | task | metric | seeds | difference [95% CI] |",
             "|---|---|---|---|---|---|---|"]
    for p in found:
        lines.append(f"| {p['reparameterised']} | {p['direct']} | {p['size']} | {p['task']} | {p['metric']} | "
                     f"{p['seeds'][0]} vs {p['seeds'][1]} | {p['bootstrap'].format()} |")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def plot(rows: Sequence[dict], out_stem: Optional[str] = None, split: str = "test"):
    """Score (the task's primary metric, mean +- s.d. over seeds) against trainable parameters (log x),
    one panel per task, one line per variant through the rungs: the matched-budget view."""
    from matplotlib.figure import Figure

    from experiments import plots

    groups = [g for g in summary(rows) if g["split"] == split and g["metric"] == PRIMARY_METRIC.get(g["task"])]
    tasks = sorted({g["task"] for g in groups})
    fig = Figure(figsize=(4.2 * max(1, len(tasks)), 3.6))
    axes = fig.subplots(1, max(1, len(tasks)), squeeze=False)[0]
    names = list(dict.fromkeys(g["variant"] for g in groups))
    colours = {n: f"C{i % 10}" for i, n in enumerate(names)}
    for ax, task in zip(axes, tasks):
        for n in names:
            pts = sorted((g for g in groups if g["task"] == task and g["variant"] == n), key=lambda g: g["trainable"])
            if not pts:
                continue
            x = [g["trainable"] for g in pts]
            y = [g["mean"] for g in pts]
            err = [0.0 if math.isnan(g["sd"]) else g["sd"] for g in pts]
            ax.errorbar(x, y, yerr=err, label=n, color=colours[n], marker="o", ms=3, lw=1, capsize=2)
        ax.set_xscale("log")
        ax.set_xlabel("trainable parameters")
        ax.set_ylabel(f"{task} {PRIMARY_METRIC.get(task, '')} ({split})")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    if names:
        by_label = {}
        for ax in axes:
            for h, label in zip(*ax.get_legend_handles_labels()):
                by_label.setdefault(label, h)
        fig.legend(list(by_label.values()), list(by_label), loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(5, len(names)),
                   fontsize=7, frameon=False)
    return plots._save(fig, out_stem) if out_stem else fig


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = sweeps.cli_parser("python -m experiments.methods_compare", __doc__, backend="recall", sweep=False)
    ap.add_argument("--out-dir", default=None, help="default: the results directory")
    ap.add_argument("--resamples", type=int, default=10_000)
    cli = sweeps.resolve_cli(ap, argv)
    if cli is None:
        return 2
    backend, results_dir = cli.backend, cli.results_dir
    out = cli.args.out_dir or results_dir
    all_specs = specs(backend, results_dir)
    rows, missing = table(backend, results_dir)
    written = write_tables(rows, out, missing, unsearched(backend, results_dir))
    with open(os.path.join(out, "methods_search.md"), "w") as f:
        f.write(search_table(backend, results_dir))
    write_pairs(pairs(backend, all_specs, results_dir, resamples=cli.args.resamples),
                os.path.join(out, "methods_pairs.md"))
    written += [os.path.join(out, "methods_search.md"), os.path.join(out, "methods_pairs.md")]
    if rows:
        written += plot(rows, os.path.join(out, "methods"))
    print("\n".join(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
