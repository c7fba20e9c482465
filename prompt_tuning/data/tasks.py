"""Task registration: one explicit, idempotent `register_tasks()`; nothing registers at import.

Name grammar
------------
SuperGLUE (T5's text-to-text formats without the task-name prefix, superglue.py)::

    taskless_super_glue_<task>_v102[_<source>][<sentinel>]

    <task>      boolq cb copa multirc record rte wic wsc   (the benchmark)
                axb axg                                    (diagnostics; split 'test' only)
    <source>    absent: `register_tasks(default_source=...)`, 'tfds' unless gin says otherwise
                tfds    TFDS super_glue/<task>:1.0.2 (wsc.fixed for wsc)
                jsonl   official jsonl files under `superglue_data_dir` or $SUPERGLUE_DATA_DIR
                        (<dir>/RTE/train.jsonl, <dir>/RTE/val.jsonl, ...; files per split configurable)
    <sentinel>  absent       plain targets
                _sentinel    targets start with <extra_id_0>: the paper's "span corruption +
                             sentinel" (the reading implemented by default)
                _1_sentinel  also <extra_id_0> at the end of the inputs (T5's
                             `add_task_with_sentinels` form, the other reading)

  e.g. taskless_super_glue_rte_v102, taskless_super_glue_wsc_v102_jsonl,
  taskless_super_glue_boolq_v102_tfds_sentinel. Splits: train, validation, test.
  WSC trains on its label-True examples only and evaluates on all.

Transfer (transfer.py)::

    taskless_glue_{mrpc,qqp}_v100               TFDS glue 1.0.0 (the version is `glue_version`)
    taskless_glue_mrpc_from_qqp_v100            MRPC validation scored from QQP label words
    taskless_glue_qqp_from_mrpc_v100            and the reverse
    mrqa_squad                                  MRQA-format SQuAD (train, validation)
    mrqa_{bioasq,drop,duorc,race,relation_extraction,textbookqa}   out-of-domain (validation)

Pretraining (pretraining.py)::

    c4_v301_span_corruption, c4_v301_prefix_lm  TFDS c4/en:3.0.1, split train
    <corpus>_span_corruption, <corpus>_prefix_lm  text files: register_tasks(text_corpora=
                                                  {'<corpus>': {'train': '<file pattern>'}})

Every task has the output features `inputs` and `targets` (int32 ids, EOS
appended by `seqio.preprocessors.append_eos_after_trim`) and keeps
`inputs_pretokenized` / `targets_pretokenized`, so
`seqio.EncDecFeatureConverter` applies. Evaluation tasks have
`predict_metric_fns` (metrics.py) and a postprocessor that maps generated
text to what those metrics compare (class ids, -1 when invalid).

Your own data in a SuperGLUE schema (e.g. synthetic data)::

    from prompt_tuning import data
    data.register_jsonl_task('my_rte', task='rte', data_dir='/path/with/jsonl',
                             split_files={'train': 'train.jsonl', 'validation': 'val.jsonl'},
                             vocabulary=data.get_vocabulary('/path/spiece.model'))

gives task 'my_rte' with RTE's preprocessors, postprocessor and metrics over
rows in the official RTE jsonl schema; `label_words('my_rte')` and `verbalizers('my_rte')` work too.
"""
from __future__ import annotations

import functools
import re
from typing import Any, Mapping, Optional, Sequence

import gin
import seqio
import tensorflow as tf

from prompt_tuning.data import metrics, postprocessors, pretraining, sources, superglue, transfer, vocab

SUPERGLUE_VERSION_TAG = "v102"
SOURCES = ("tfds", "jsonl")
# name suffix -> `in_inputs` of pretraining.add_sentinels (None: no sentinel)
SENTINEL_SUFFIXES = {"": None, "_sentinel": False, "_1_sentinel": True}

SUPERGLUE_METRICS = {
    "boolq": [metrics.accuracy],
    "cb": [metrics.accuracy, metrics.macro_f1(3)],
    "copa": [metrics.accuracy],
    "multirc": [metrics.multirc_f1a, metrics.multirc_exact_match],
    "record": [metrics.record],
    "rte": [metrics.accuracy],
    "wic": [metrics.accuracy],
    "wsc": [metrics.accuracy],
    "axb": [metrics.matthews_corr, metrics.accuracy],
    "axg": [metrics.accuracy],
}

C4_TFDS_NAME = "c4/en:3.0.1"
OBJECTIVES = {"span_corruption": pretraining.span_corruption, "prefix_lm": pretraining.prefix_lm}

_SUPERGLUE_RE = re.compile(
    r"^taskless_super_glue_(?P<task>[a-z]+)_" + SUPERGLUE_VERSION_TAG
    + r"(?:_(?P<source>tfds|jsonl))?(?P<sentinel>_1_sentinel|_sentinel)?$"
)
_GLUE_RE = re.compile(r"^taskless_glue_(?P<task>mrpc|qqp)(?:_from_(?P<train>mrpc|qqp))?_v\d+$")

# Tasks registered by register_jsonl_task: name -> SuperGLUE task type.
_CUSTOM: dict[str, str] = {}


# ---------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------


def _sentinel_suffix(sentinel: Optional[str]) -> str:
    suffix = sentinel or ""
    if suffix and not suffix.startswith("_"):
        suffix = "_" + suffix
    if suffix not in SENTINEL_SUFFIXES:
        raise ValueError(f"sentinel must be one of {[s for s in SENTINEL_SUFFIXES if s]} or None, got {sentinel!r}")
    return suffix


def superglue_task_name(task: str, source: Optional[str] = None, sentinel: Optional[str] = None) -> str:
    """The registered name, e.g. ('rte', 'jsonl', '_sentinel') -> taskless_super_glue_rte_v102_jsonl_sentinel."""
    superglue.check_task(task)
    if source is not None and source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES} or None, got {source!r}")
    suffix = _sentinel_suffix(sentinel)
    return f"taskless_super_glue_{task}_{SUPERGLUE_VERSION_TAG}" + (f"_{source}" if source else "") + suffix


def parse_task_name(name: str) -> dict[str, Any]:
    """{'family', 'task', ...} for any name of the grammar (or a register_jsonl_task name); ValueError otherwise."""
    if name in _CUSTOM:
        return {"family": "superglue", "task": _CUSTOM[name], "source": "jsonl", "sentinel": None, "custom": True}
    m = _SUPERGLUE_RE.match(name)
    if m and m["task"] in superglue.TASKS:
        return {"family": "superglue", "task": m["task"], "source": m["source"], "sentinel": m["sentinel"]}
    m = _GLUE_RE.match(name)
    if m:
        return {"family": "glue", "task": m["task"], "train_task": m["train"] or m["task"]}
    if name.startswith("mrqa_") and name[5:] in transfer.MRQA_DATASETS:
        return {"family": "mrqa", "task": name[5:]}
    for objective in OBJECTIVES:
        if name.endswith("_" + objective):
            return {"family": "pretraining", "task": objective, "corpus": name[: -len(objective) - 1]}
    raise ValueError(f"{name!r} is not a task name of prompt_tuning.data (see the tasks module docstring)")


def base_task(name: str) -> str:
    """'taskless_super_glue_cb_v102_jsonl' -> 'cb'; bare task keys pass through."""
    if name in superglue.TASKS or name in transfer.GLUE_TASKS:
        return name
    return parse_task_name(name)["task"]


def label_words(name: str) -> tuple[str, ...]:
    """The label words of a class-label prompt init: the verbalizers, or the paper's task words
    for ReCoRD / WSC (section 3.2).

    For a transfer task (`..._mrpc_from_qqp_...`) these are the training task's
    words, which the model produces. KeyError for tasks without either.
    """
    try:
        info = parse_task_name(name) if name not in superglue.TASKS else {"family": "superglue", "task": name}
    except ValueError:
        raise KeyError(name) from None
    if info["family"] == "superglue":
        task = info["task"]
        return tuple(superglue.VERBALIZERS.get(task) or superglue.TASK_WORDS[task])
    if info["family"] == "glue":
        return transfer.GLUE_LABEL_NAMES[info["train_task"]]
    raise KeyError(f"task {name!r} generates free text and has no label words")


def verbalizers(name: str) -> Optional[tuple[str, ...]]:
    """The verbalizers to score in rank classification, or None for tasks that generate free text."""
    try:
        info = parse_task_name(name) if name not in superglue.TASKS else {"family": "superglue", "task": name}
    except ValueError:
        return None
    if info["family"] == "superglue":
        return superglue.VERBALIZERS.get(info["task"])
    if info["family"] == "glue":
        return transfer.GLUE_LABEL_NAMES[info["train_task"]]
    return None


# ---------------------------------------------------------------------------
# Building tasks
# ---------------------------------------------------------------------------


def output_features(vocabulary: Optional[seqio.Vocabulary] = None) -> dict[str, seqio.Feature]:
    """{'inputs', 'targets'}: seqio Features of `vocabulary` (default: the gin-configured one), EOS appended."""
    vocabulary = vocabulary or vocab.get_vocabulary()
    return {
        "inputs": seqio.Feature(vocabulary=vocabulary, add_eos=True, required=False),
        "targets": seqio.Feature(vocabulary=vocabulary, add_eos=True),
    }


def _add(name: str, *, source, text_preprocessors: Sequence, postprocess_fn, metric_fns, features,
         token_preprocessors: Sequence = ()) -> seqio.Task:
    """(Re-)registers a text-to-text task: format, tokenize, [token steps], EOS after trimming."""
    if name in seqio.TaskRegistry.names():
        seqio.TaskRegistry.remove(name)
    return seqio.TaskRegistry.add(
        name,
        source=source,
        preprocessors=[*text_preprocessors, seqio.preprocessors.tokenize, seqio.CacheDatasetPlaceholder(),
                       *token_preprocessors, seqio.preprocessors.append_eos_after_trim],
        postprocess_fn=postprocess_fn,
        metric_fns=list(metric_fns),
        output_features=features,
    )


def superglue_postprocessor(task: str):
    """A SuperGLUE task's postprocess_fn: class ids for classification, else T5's MultiRC / ReCoRD / WSC ones."""
    if task == "multirc":
        return postprocessors.multirc
    if task == "record":
        return postprocessors.record
    if task == "wsc":
        return postprocessors.wsc_simple
    return postprocessors.class_id_postprocessor(superglue.LABEL_NAMES[task])


def add_superglue_task(name: str, task: str, source: seqio.DataSource, features: Mapping[str, seqio.Feature],
                       sentinel_in_inputs: Optional[bool] = None) -> seqio.Task:
    """Registers `name` as SuperGLUE `task` over `source` (TFDS schema); sentinel_in_inputs None = no sentinel."""
    superglue.check_task(task)
    post = superglue_postprocessor(task)
    token_steps = []
    if sentinel_in_inputs is not None:
        token_steps.append(functools.partial(pretraining.add_sentinels, in_inputs=sentinel_in_inputs))
        post = postprocessors.strip_sentinel(post)
    return _add(name, source=source, text_preprocessors=[superglue.formatter(task)], postprocess_fn=post,
                metric_fns=SUPERGLUE_METRICS[task], features=features, token_preprocessors=token_steps)


def register_jsonl_task(name: str, task: str, data_dir: str, *, split_files: Optional[Mapping[str, Any]] = None,
                        vocabulary: Optional[seqio.Vocabulary] = None,
                        sentinel: Optional[str] = None) -> seqio.Task:
    """Registers SuperGLUE `task`'s pipeline over the jsonl files of any directory (idempotent).

    `split_files` maps split -> file name in `data_dir` (default: train.jsonl /
    val.jsonl); rows must follow the official schema of `task`. `sentinel`:
    None, '_sentinel' or '_1_sentinel' (see the module docstring).
    """
    superglue.check_task(task)
    in_inputs = SENTINEL_SUFFIXES[_sentinel_suffix(sentinel)]
    src = sources.jsonl_source(task, data_dir, split_files)
    registered = add_superglue_task(name, task, src, output_features(vocabulary), in_inputs)
    _CUSTOM[name] = task
    return registered


def _text_line_source(split_to_filepattern: Mapping[str, Any]) -> seqio.DataSource:
    return seqio.TextLineDataSource(split_to_filepattern=dict(split_to_filepattern))


@seqio.map_over_dataset
def _line_to_targets(line):
    return {"targets": line}


def _nonempty(dataset):
    return dataset.filter(lambda x: tf.strings.length(tf.strings.strip(x["targets"])) > 0)


def add_pretraining_task(name: str, objective: str, source: seqio.DataSource, features,
                         text_preprocessors: Sequence) -> seqio.Task:
    """Registers a pretraining task: text -> 'targets' tokens -> `objective` (no metrics)."""
    if name in seqio.TaskRegistry.names():
        seqio.TaskRegistry.remove(name)
    return seqio.TaskRegistry.add(
        name,
        source=source,
        preprocessors=[*text_preprocessors, _nonempty, seqio.preprocessors.tokenize,
                       seqio.CacheDatasetPlaceholder(), OBJECTIVES[objective],
                       seqio.preprocessors.append_eos_after_trim],
        output_features=features,
        metric_fns=[],
    )


def register_text_pretraining_tasks(corpus: str, split_to_filepattern: Mapping[str, Any],
                                    vocabulary: Optional[seqio.Vocabulary] = None) -> list[str]:
    """`<corpus>_span_corruption` and `<corpus>_prefix_lm` over plain-text files (one document per line)."""
    features = output_features(vocabulary)
    names = []
    for objective in OBJECTIVES:
        name = f"{corpus}_{objective}"
        add_pretraining_task(name, objective, _text_line_source(split_to_filepattern), features, [_line_to_targets])
        names.append(name)
    return names


@gin.configurable
def register_tasks(vocabulary: Optional[seqio.Vocabulary] = None, *, default_source: str = "tfds",
                   superglue_data_dir: Optional[str] = None,
                   superglue_split_files: Optional[Mapping[str, str]] = None,
                   tfds_data_dir: Optional[str] = None, glue_version: str = transfer.GLUE_VERSION,
                   mrqa_data_dir: Optional[str] = None,
                   text_corpora: Optional[Mapping[str, Mapping[str, Any]]] = None) -> list[str]:
    """Registers every task of the name grammar with seqio's TaskRegistry; returns the names.

    Idempotent: calling again re-registers the same names (with the new
    settings). Reads no data: sources open their files when a dataset is built.

    vocabulary: default `vocab.get_vocabulary()` (gin-configurable path).
    default_source: what the names without a source suffix read, 'tfds' or 'jsonl'.
    superglue_data_dir: root of the official SuperGLUE download (default $SUPERGLUE_DATA_DIR, read lazily).
    superglue_split_files: split -> file name for the 8 benchmark tasks (default train.jsonl / val.jsonl).
    tfds_data_dir: TFDS data directory for the TFDS sources (default: TFDS's).
    glue_version: TFDS glue version of MRPC / QQP (the paper: 1.0.0); it names the tasks (v100).
    mrqa_data_dir: MRQA files (default $MRQA_DATA_DIR, read lazily).
    text_corpora: {corpus: {split: file pattern}} for `<corpus>_span_corruption` / `_prefix_lm`.
    """
    if default_source not in SOURCES:
        raise ValueError(f"default_source must be one of {SOURCES}, got {default_source!r}")
    features = output_features(vocabulary)
    hint = f" (set register_tasks.superglue_data_dir or ${sources.SUPERGLUE_DIR_ENV})"
    names = []
    for task in superglue.TASKS:
        split_files = None
        if superglue_split_files and task in superglue.BENCHMARK_TASKS:
            split_files = dict(superglue_split_files)
        for source in (None,) + SOURCES:
            kind = source or default_source
            for suffix, in_inputs in SENTINEL_SUFFIXES.items():
                if kind == "tfds":
                    src = sources.tfds_source(task, tfds_data_dir=tfds_data_dir)
                else:
                    src = sources.jsonl_source(task, sources.benchmark_jsonl_dir(task, superglue_data_dir),
                                               split_files, missing_hint=hint)
                name = superglue_task_name(task, source, suffix or None)
                add_superglue_task(name, task, src, features, in_inputs)
                names.append(name)
    for name, kwargs in {**transfer.glue_task_kwargs(glue_version, tfds_data_dir),
                         **transfer.mrqa_task_kwargs(mrqa_data_dir)}.items():
        _add(name, features=features, **kwargs)
        names.append(name)
    c4 = sources.TfdsSource(tfds_name=C4_TFDS_NAME, tfds_data_dir=tfds_data_dir, splits=("train", "validation"))
    for objective in OBJECTIVES:
        name = f"c4_v301_{objective}"
        add_pretraining_task(name, objective, c4, features,
                             [functools.partial(seqio.preprocessors.rekey, key_map={"targets": "text"})])
        names.append(name)
    for corpus, files in (text_corpora or {}).items():
        names += register_text_pretraining_tasks(corpus, files, vocabulary)
    return names
