"""Tasks of the paper's domain-transfer tables: MRPC <-> QQP (Table 2) and SQuAD -> MRQA (Table 1).

GLUE (TFDS `glue/{mrpc,qqp}`, version 1.0.0 as in the paper): T5's `glue`
format without the task name, `sentence1: S1 sentence2: S2` (MRPC) and
`question1: Q1 question2: Q2` (QQP), targets the TFDS label names
(`not_equivalent`/`equivalent`, `not_duplicate`/`duplicate`), metrics F1 and
accuracy. Zero-shot transfer evaluates a prompt trained on one task on the
other's validation split; its predictions are in the training task's label
words, so they are translated before scoring (`..._from_...` tasks).

MRQA 2019 (local files in the MRQA jsonl format: a header line, then one
line per context: {"context", "qas": [{"qid", "question", "answers": [...]}]}),
SQuAD (train + dev) and the six out-of-domain dev sets. Format of T5's
`squad` preprocessor: punctuation padded with spaces, `question: Q context: C`,
target the first answer; metrics EM and F1, max over all answers. The gold
answers are padded the same way, so scores compare the model's padded output
style (as in T5: '2 . 1' matches, an unpadded '2.1' normalises to '21' and does not).
"""
from __future__ import annotations

import os
from typing import Iterable, Iterator, Mapping, Optional

import seqio
import tensorflow as tf

from prompt_tuning.data import metrics, postprocessors, sources

GLUE_VERSION = "1.0.0"

GLUE_LABEL_NAMES = {"mrpc": ("not_equivalent", "equivalent"), "qqp": ("not_duplicate", "duplicate")}
GLUE_FEATURE_ORDER = {"mrpc": ("sentence1", "sentence2"), "qqp": ("question1", "question2")}
GLUE_TASKS = tuple(GLUE_LABEL_NAMES)

# Label words of the training task -> the evaluated task's (index-aligned).
LABEL_TRANSLATIONS = {
    ("qqp", "mrpc"): dict(zip(GLUE_LABEL_NAMES["qqp"], GLUE_LABEL_NAMES["mrpc"])),
    ("mrpc", "qqp"): dict(zip(GLUE_LABEL_NAMES["mrpc"], GLUE_LABEL_NAMES["qqp"])),
}

GLUE_METRICS = [metrics.f1_with_invalid, metrics.accuracy]

MRQA_DATA_DIR_ENV = "MRQA_DATA_DIR"
# File name stems of the MRQA release; each split accepts .jsonl.gz or .jsonl.
MRQA_DATASETS = {
    "squad": "SQuAD",
    "bioasq": "BioASQ",
    "drop": "DROP",
    "duorc": "DuoRC.ParaphraseRC",
    "race": "RACE",
    "relation_extraction": "RelationExtraction",
    "textbookqa": "TextbookQA",
}

MRQA_SPEC = {
    "id": tf.TensorSpec([], tf.string),
    "context": tf.TensorSpec([], tf.string),
    "question": tf.TensorSpec([], tf.string),
    "answers": tf.TensorSpec([None], tf.string),
}


def glue_version_tag(version: str) -> str:
    """'1.0.0' -> 'v100', as the task names spell a TFDS version."""
    return "v" + version.replace(".", "")


# ---------------------------------------------------------------------------
# GLUE
# ---------------------------------------------------------------------------


def format_glue(task: str):
    """T5's glue format for MRPC / QQP, no task name."""
    names, order = GLUE_LABEL_NAMES[task], GLUE_FEATURE_ORDER[task]

    @seqio.map_over_dataset
    def fn(x):
        parts = []
        for key in order:
            parts += [f"{key}:", x[key]]
        label = tf.cast(x["label"], tf.int32)
        target = tf.cond(tf.equal(label, -1), lambda: tf.constant("<unk>"),
                         lambda: tf.gather(tf.constant(names), label))
        return {"inputs": tf.strings.join(parts, separator=" "), "targets": target, "idx": x["idx"]}

    fn.__name__ = f"format_glue_{task}"
    return fn


def glue_source(task: str, version: str = GLUE_VERSION, tfds_data_dir: Optional[str] = None,
                splits=("train", "validation", "test")) -> seqio.DataSource:
    """TFDS glue/<task>:<version> (MRPC or QQP) as a seqio source."""
    return sources.TfdsSource(tfds_name=f"glue/{task}:{version}", tfds_data_dir=tfds_data_dir, splits=splits)


def glue_task_kwargs(version: str = GLUE_VERSION, tfds_data_dir: Optional[str] = None) -> dict[str, dict]:
    """{task name: seqio.Task keyword arguments (without output_features)} for MRPC, QQP and their transfers."""
    tag = glue_version_tag(version)
    out = {}
    for task in GLUE_TASKS:
        out[f"taskless_glue_{task}_{tag}"] = dict(
            source=glue_source(task, version, tfds_data_dir),
            text_preprocessors=[format_glue(task)],
            postprocess_fn=postprocessors.class_id_postprocessor(GLUE_LABEL_NAMES[task]),
            metric_fns=GLUE_METRICS,
        )
    for (train_task, eval_task), mapping in LABEL_TRANSLATIONS.items():
        out[f"taskless_glue_{eval_task}_from_{train_task}_{tag}"] = dict(
            source=glue_source(eval_task, version, tfds_data_dir, splits=("validation",)),
            text_preprocessors=[format_glue(eval_task)],
            postprocess_fn=postprocessors.translate_labels(
                postprocessors.class_id_postprocessor(GLUE_LABEL_NAMES[eval_task]), mapping),
            metric_fns=GLUE_METRICS,
        )
    return out


# ---------------------------------------------------------------------------
# MRQA
# ---------------------------------------------------------------------------


def parse_mrqa(rows: Iterable[dict]) -> Iterator[dict]:
    """MRQA jsonl rows -> one example per question: {id, context, question, answers}."""
    for row in rows:
        if "header" in row:
            continue
        try:
            context = row["context"]
            for qa in row["qas"]:
                answers = [str(a) for a in qa.get("answers", [])]
                if not answers:  # some releases only list detected answer spans
                    answers = sorted({d["text"] for d in qa.get("detected_answers", [])})
                yield {"id": str(qa["qid"]), "context": context, "question": qa["question"], "answers": answers}
        except (KeyError, TypeError) as e:
            raise sources.DataFileError(f"MRQA row lacks or mistypes field {e}") from None


def _pad_punctuation(text: tf.Tensor) -> tf.Tensor:
    # T5's squad spacing: every non-word character (RE2, ASCII \W) gets spaces around it.
    text = tf.strings.regex_replace(text, r"(\W)", r" \1 ")
    return tf.strings.regex_replace(text, r"\s+", " ")


@seqio.map_over_dataset
def format_mrqa(x):
    """T5's `squad` format: 'question: Q context: C' -> the first answer (all kept for the metric)."""
    question, context = _pad_punctuation(x["question"]), _pad_punctuation(x["context"])
    answers = _pad_punctuation(x["answers"])
    inputs = tf.strings.regex_replace(
        tf.strings.join(["question:", question, "context:", context], separator=" "), r"\s+", " ")
    target = tf.cond(tf.size(answers) > 0, lambda: answers[0], lambda: tf.constant(""))
    return {"inputs": inputs, "targets": target, "answers": answers, "id": x["id"]}


def mrqa_split_files(name: str) -> dict[str, tuple[str, ...]]:
    """split -> candidate file names (gzipped or not) of an MRQA dataset, as the MRQA release lays them out."""
    stem = MRQA_DATASETS[name]
    gz = lambda base: (f"{base}.jsonl.gz", f"{base}.jsonl")  # noqa: E731
    if name == "squad":
        return {"train": gz(f"train/{stem}"), "validation": gz(f"dev/{stem}")}
    return {"validation": gz(f"dev/{stem}") + gz(stem)}


def mrqa_source(name: str, data_dir: Optional[str] = None,
                split_files: Optional[Mapping[str, object]] = None) -> sources.JsonlDataSource:
    """MRQA jsonl files under `data_dir` (or $MRQA_DATA_DIR), read when a dataset is built."""
    return sources.JsonlDataSource(
        lambda: data_dir or os.environ.get(MRQA_DATA_DIR_ENV), split_files or mrqa_split_files(name),
        parse_mrqa, MRQA_SPEC, what=f"MRQA {name}",
        missing_hint=f" (set register_tasks.mrqa_data_dir or ${MRQA_DATA_DIR_ENV})",
    )


def mrqa_task_kwargs(data_dir: Optional[str] = None) -> dict[str, dict]:
    """{task name: seqio.Task keyword arguments} for `mrqa_squad` and the six out-of-domain sets."""
    return {
        f"mrqa_{name}": dict(
            source=mrqa_source(name, data_dir),
            text_preprocessors=[format_mrqa],
            postprocess_fn=postprocessors.qa,
            metric_fns=[metrics.squad],
        )
        for name in MRQA_DATASETS
    }
