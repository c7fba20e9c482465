"""Paper Table 3 ("ensemble"): prompt ensembling on one frozen model.

Claim tested: an ensemble of N prompts trained on the same task (same frozen
model, different seeds) beats the average prompt and matches or beats the
best single prompt (paper: SuperGLUE 90.5 average / 91.0 best / 91.3 ensemble
on T5-XXL with 5 prompts).

Two steps:

1. Train the N prompts: the centre point (length 100, class-label init,
   longest LM adaptation) at the backend's ensemble size (real: xxl, as the
   paper), seeds 0..N-1 (N = 5); seeds 0-2 are the ablations' centre runs,
   so only seeds 3-4 are new.

       python -m experiments.runner --sweep ensemble --backend real --print-commands

2. Evaluate: every validation example is replicated N times in one batch,
   row k under prompt k (prompt_tuning.ensembling), and the N answers are
   combined by majority vote (tie rule in prompt_tuning/ensembling.py).
   Writes ensemble.csv (task, metric, average, best, ensemble) and
   ensemble.md (the same as a Markdown table, the metrics' own scale: 0-100 for
   SuperGLUE).

       python -m experiments.ensemble --backend real [--mode generate|rank] [--out DIR]

On the recall backend (issue #12: select on validation, report on test), step 2 is

       python -m experiments.ensemble --backend recall --test-protocol   # -> results/mini/ensemble/*.jsonl
       python -m experiments.mini_report                                  # -> results/mini/table3_test.{csv,md}

write_predictions keeps every example's N answers, the vote and the gold answer for validation and
test; table3_rows picks the best prompt on validation and reports average / best / ensemble on test
with paired cluster-bootstrap intervals for ensemble - best and ensemble - average.

(experiments/results/mini_v1/ensemble/ holds Table 3 on the first mini world: retired, see
experiments/results/mini_v1/README.md.)
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Optional, Sequence

import numpy as np

from experiments import tables
from experiments import spec as S
from experiments.backends import Backend
from prompt_tuning import ensembling
from prompt_tuning.training import evaluation, input_pipeline

NAME = "ensemble"


def specs(backend: Backend) -> list[S.RunSpec]:
    size = backend.ensemble_size or backend.sizes[-1]
    return [backend.spec(sweep=NAME, panel="prompts", size=size, task=task, setting=backend.centre, seed=seed,
                         value=seed)
            for task in backend.tasks for seed in range(backend.ensemble_prompts)]


def prompt_files(results_dir: str, task_specs: Sequence[S.RunSpec]) -> list[str]:
    """MODEL_DIR/prompts/best.npy of each run (the early-stopping prompt); an error lists the missing ones."""
    paths = [os.path.join(S.model_dir(results_dir, s.name), "prompts", "best.npy") for s in task_specs]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise S.SpecError(f"{len(missing)} of {len(paths)} prompts are not trained yet, e.g. {missing[0]}; "
                          f"run: python -m experiments.runner --sweep ensemble")
    return paths


def evaluate_task(config, frozen_params, prompt_list, task_name: str, lengths, *, mode: str = "generate",
                  split: str = "validation", labels: Optional[Sequence[str]] = None, examples_per_batch: int = 8,
                  max_examples: Optional[int] = None) -> dict:
    """Per-prompt and ensemble predictions and metrics of one task.

    Returns {'per_prompt': [metrics] * K, 'ensemble': metrics, 'predictions': [[K answers] per example],
    'ensemble_predictions': [answer per example], 'targets': [gold text per example],
    'summary': ensembling.summarize(...)}.
    """
    task = input_pipeline.get_task_or_mixture(task_name)
    es = input_pipeline.load_eval_set(task, split, lengths, max_examples)
    vocab = task.output_features["targets"].vocabulary
    bank = ensembling.stack_prompts(prompt_list)
    k, p = bank.shape[:2]
    model = ensembling.bank_model(config, k, p)
    params = ensembling.bank_params(frozen_params, bank)
    enc = es.features["encoder_input_tokens"]
    target_len = es.features["decoder_target_tokens"].shape[1]
    answers, voted = [], []
    if mode == "rank":
        labels = list(labels or evaluation.verbalizers_of(task_name) or [])
        if not labels:
            raise S.SpecError(f"rank mode needs verbalizers for {task_name!r}")
        targets = evaluation.verbalizer_targets(vocab, labels, target_len)
        for chunk, real in input_pipeline.eval_batches({"enc": enc}, examples_per_batch):
            scores = ensembling.ensemble_rank(model, params, chunk["enc"], targets)[:real]
            winners, per_prompt = ensembling.rank_vote(scores)
            answers += [[labels[c] for c in row] for row in per_prompt]
            voted += [labels[c] for c in winners]
    elif mode == "generate":
        for chunk, real in input_pipeline.eval_batches({"enc": enc}, examples_per_batch):
            tokens, scores = ensembling.ensemble_generate(model, params, chunk["enc"], max_decode_length=target_len)
            tokens = np.asarray(tokens)
            texts = [evaluation.decode_predictions(vocab, tokens[b]) for b in range(real)]
            answers += texts
            voted += ensembling.majority_vote(texts, scores[:real], abstain="")
    else:
        raise S.SpecError(f"mode must be 'generate' or 'rank', got {mode!r}")
    per_prompt = [evaluation.task_metrics(task, es.examples, [a[j] for a in answers]) for j in range(k)]
    ensemble = evaluation.task_metrics(task, es.examples, [v if v is not None else "" for v in voted])
    targets = [evaluation.as_text(ex.get("targets_pretokenized", "")) for ex in es.examples]
    return {"per_prompt": per_prompt, "ensemble": ensemble, "predictions": answers, "ensemble_predictions": voted,
            "targets": targets, "summary": ensembling.summarize(per_prompt, ensemble)}


def setup_tasks(backend: Backend) -> None:
    """Registers the backend's tasks in this process ('module' imports it, 'module:function' also calls it)."""
    for entry in backend.task_setup:
        module, _, function = entry.partition(":")
        obj = importlib.import_module(module)
        if function:
            getattr(obj, function)()


def frozen_model(backend: Backend, results_dir: str, task_specs: Sequence[S.RunSpec]):
    """(config, params) of the frozen model the prompts were trained on."""
    from prompt_tuning.checkpoints import loading

    first = task_specs[0]
    size = first.label_dict["size"]
    path = dict(first.overrides).get("INITIAL_CHECKPOINT_PATH")
    if path is None:  # a randomly initialised frozen model (tests): the trainer saved it natively
        path = os.path.join(S.model_dir(results_dir, first.name), "frozen_model")
    config = loading.config_from_checkpoint(path) if path.endswith("frozen_model") else backend.size_config(size)
    params, _ = loading.load_params(path, config)
    return config, params


def trained_prompts(backend: Backend, results_dir: str):
    """Per task of the backend (its tasks registered first): (task, its N specs, their N [P, H] prompts, the
    frozen model's config and params, loaded once). SpecError while a prompt is untrained."""
    setup_tasks(backend)
    all_specs = specs(backend)
    config = params = None
    for task in backend.tasks:
        task_specs = [s for s in all_specs if s.label_dict["task"] == task]
        prompt_list = [np.load(f, allow_pickle=False) for f in prompt_files(results_dir, task_specs)]
        if params is None:
            config, params = frozen_model(backend, results_dir, task_specs)
        yield task, task_specs, prompt_list, config, params


def run(backend: Backend, results_dir: str, out_dir: str, *, mode: str = "generate", split: str = "validation",
        examples_per_batch: int = 8, max_examples: Optional[int] = None) -> list[dict]:
    from prompt_tuning import ensembling

    summaries = {}
    for task, task_specs, prompt_list, config, params in trained_prompts(backend, results_dir):
        overrides = dict(task_specs[0].overrides)
        result = evaluate_task(config, params, prompt_list, overrides["MIXTURE_OR_TASK_NAME"],
                               overrides["TASK_FEATURE_LENGTHS"], mode=mode, split=split,
                               labels=backend.task_verbalizers(task), examples_per_batch=examples_per_batch,
                               max_examples=max_examples)
        summaries[task] = result["summary"]
    rows = ensembling.summary_rows(summaries)
    tables.write_csv(os.path.join(out_dir, "ensemble.csv"), rows, ("task", "metric", "average", "best", "ensemble"))
    with open(os.path.join(out_dir, "ensemble.md"), "w") as f:
        f.write(ensembling.format_table(rows, scale=1.0) + "\n")
    return rows


# ---------------------------------------------------------------------------- Table 3 on test (issue #12)
SELECT_SPLIT, REPORT_SPLIT = "validation", "test"
PREDICTIONS_DIR = "ensemble"          # <results_dir>/ensemble/<task>_<split>.jsonl, prompts.json
TABLE3_COLUMNS = ("task", "metric", "average", "best", "best_prompt", "ensemble", "ensemble_minus_best",
                  "ensemble_minus_best_ci", "ensemble_minus_best_p", "ensemble_minus_average",
                  "ensemble_minus_average_ci", "ensemble_minus_average_p", "clusters", "examples")


def write_predictions(backend: Backend, results_dir: str, *, examples_per_batch: int = 8,
                      max_examples: Optional[int] = None) -> list[str]:
    """Scores each task's N prompts alone and voted, in mixed batches on the one frozen model (evaluate_task,
    each task's EVAL_MODE), on SELECT_SPLIT and REPORT_SPLIT, and writes per example
    <results_dir>/ensemble/<task>_<split>.jsonl rows {'prompts': [N answers], 'ensemble': the vote,
    'target': gold} and prompts.json {task: [the N runs, in prompt order]}. Returns the paths written.
    Raises SpecError while a prompt is untrained."""
    import json

    out_dir = os.path.join(results_dir, PREDICTIONS_DIR)
    os.makedirs(out_dir, exist_ok=True)
    names, written = {}, []
    for task, task_specs, prompt_list, config, params in trained_prompts(backend, results_dir):
        overrides = dict(task_specs[0].overrides)
        names[task] = [s.name for s in task_specs]
        for split in (SELECT_SPLIT, REPORT_SPLIT):
            got = evaluate_task(config, params, prompt_list, overrides["MIXTURE_OR_TASK_NAME"],
                                overrides["TASK_FEATURE_LENGTHS"], mode=overrides.get("EVAL_MODE", "generate"),
                                split=split, labels=backend.task_verbalizers(task),
                                examples_per_batch=examples_per_batch, max_examples=max_examples)
            path = os.path.join(out_dir, f"{task}_{split}.jsonl")
            with open(path, "w") as f:
                for answers, voted, target in zip(got["predictions"], got["ensemble_predictions"], got["targets"]):
                    f.write(json.dumps({"prompts": list(answers), "ensemble": voted or "", "target": target}) + "\n")
            written.append(path)
    path = os.path.join(out_dir, "prompts.json")
    with open(path, "w") as f:
        json.dump(names, f, indent=1)
    return written + [path]


def table3_scores(results_dir: str, task: str, metrics: Sequence[str], rows_dir=None) -> Optional[dict]:
    """One task's Table 3 per example, from write_predictions' files (no model): {'best_prompt': the prompt
    with the highest SELECT_SPLIT score on the task's primary metric (first on ties), 'keys': [N] test
    clusters (recall.aligned_clusters: person and fact), and per metric {'prompts': [K, N], 'ensemble': [N]}
    test scores}; None while the files are absent. rows_dir: the task files' directory, or task -> directory
    (default recall.task_dir)."""
    from experiments import recall, stats

    paths = [os.path.join(results_dir, PREDICTIONS_DIR, f"{task}_{split}.jsonl") for split in (SELECT_SPLIT, REPORT_SPLIT)]
    if not all(os.path.exists(p) for p in paths):
        return None
    select, report = (stats.read_predictions(p) for p in paths)
    k = len(report[0]["prompts"])
    as_rows = lambda rows, j: [{"prediction": r["prompts"][j], "target": r["target"]} for r in rows]
    primary = recall.PRIMARY_METRICS[task]
    chosen = [stats.example_scores(as_rows(select, j), [primary])[primary].mean() for j in range(k)]
    per_prompt = [stats.example_scores(as_rows(report, j), metrics) for j in range(k)]
    voted = stats.example_scores([{"prediction": r["ensemble"], "target": r["target"]} for r in report], metrics)
    out = {"best_prompt": max(range(k), key=lambda j: (chosen[j], -j)),
           "keys": recall.aligned_clusters(task, REPORT_SPLIT, report, rows_dir)}
    out.update({m: {"prompts": np.stack([p[m] for p in per_prompt]), "ensemble": voted[m]} for m in metrics})
    return out


def table3_rows(backend: Backend, results_dir: str, *, rows_dir=None, resamples: int = 10_000) -> list[dict]:
    """Table 3 per task and metric (recall.METRICS: accuracy; exact match and F1 apart), from table3_scores:
    the average prompt (mean of the N prompts' test scores), the best prompt (chosen on SELECT_SPLIT, scored
    on test) and the majority-vote ensemble, with ensemble - best and ensemble - average as paired cluster
    bootstraps over the test examples (stats.paired_bootstrap; 95% interval, two-sided p).
    rows_dir: task -> its files' directory (default recall.task_dir). [] while a task has no files."""
    from experiments import recall, stats

    out = []
    for task in backend.tasks:
        metrics = list(recall.METRICS[task])
        got = table3_scores(results_dir, task, metrics, rows_dir)
        if got is None:
            return []
        best = got["best_prompt"]
        for m in metrics:
            prompts, voted = got[m]["prompts"], got[m]["ensemble"]
            vs_best = stats.paired_bootstrap(voted, prompts[best], got["keys"], resamples=resamples)
            vs_average = stats.paired_bootstrap(voted, prompts, got["keys"], resamples=resamples)
            out.append({"task": task, "metric": m, "average": float(prompts.mean()), "best": float(prompts[best].mean()),
                        "best_prompt": best, "ensemble": float(voted.mean()),
                        "ensemble_minus_best": vs_best.difference,
                        "ensemble_minus_best_ci": f"[{vs_best.low:+.1f}, {vs_best.high:+.1f}]",
                        "ensemble_minus_best_p": vs_best.p_text(),
                        "ensemble_minus_average": vs_average.difference,
                        "ensemble_minus_average_ci": f"[{vs_average.low:+.1f}, {vs_average.high:+.1f}]",
                        "ensemble_minus_average_p": vs_average.p_text(),
                        "clusters": vs_best.clusters, "examples": vs_best.examples})
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    from experiments import sweeps

    ap = sweeps.cli_parser("python -m experiments.ensemble", __doc__, sweep=False)
    ap.add_argument("--out", default=None, help="output directory (default: <results-dir>/ensemble)")
    ap.add_argument("--mode", choices=("generate", "rank"), default="generate")
    ap.add_argument("--split", default="validation")
    ap.add_argument("--examples-per-batch", type=int, default=8)
    ap.add_argument("--max-examples", type=int, default=None)
    ap.add_argument("--test-protocol", action="store_true",
                    help="Table 3 as issue #12 reports it: per-example predictions on validation and test into "
                         "<results-dir>/ensemble/ (the table: python -m experiments.mini_report)")
    cli = sweeps.resolve_cli(ap, argv)
    if cli is None:
        return 2
    args, backend, results_dir, _ = cli
    if args.test_protocol:
        try:
            for path in write_predictions(backend, results_dir, examples_per_batch=args.examples_per_batch,
                                          max_examples=args.max_examples):
                print(path)
        except S.SpecError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    out = args.out or os.path.join(results_dir, "ensemble")
    try:
        rows = run(backend, results_dir, out, mode=args.mode, split=args.split,
                   examples_per_batch=args.examples_per_batch, max_examples=args.max_examples)
    except S.SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from prompt_tuning import ensembling

    print(ensembling.format_table(rows, scale=1.0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
