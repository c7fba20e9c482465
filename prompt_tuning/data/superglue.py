"""SuperGLUE as text-to-text: T5's formats, without the task-name prefix.

Every formatter takes examples in the TFDS `super_glue/*:1.0.2` schema (both
data sources produce it, see sources.py) and returns `inputs`/`targets`
strings plus what the metrics need. The formats are T5's
(`t5.data.preprocessors.glue`, `record`, `wsc_simple`):

  BoolQ    passage: P question: Q                        -> False | True
  CB       hypothesis: H premise: P                      -> entailment | contradiction | neutral
  COPA     choice1: A choice2: B premise: P question: Q  -> choice1 | choice2
  MultiRC  question: Q answer: A paragraph: P            -> False | True   (one example per answer,
           '<br>' -> ' ' and '<b>', '</b>' removed)
  ReCoRD   query: Q entities: E1, E2, ... passage: P     -> an answer      (one example per answer)
  RTE      hypothesis: H premise: P                      -> entailment | not_entailment
  WiC      sentence1: S1 sentence2: S2 word: W           -> False | True
  WSC      the text with the pronoun marked as *it*      -> the referent's text
  AX-b     as RTE (sentence1 -> premise, sentence2 -> hypothesis)
  AX-g     as RTE

Keys are joined as `key: value` with single spaces, in T5's order: the
explicit orders of MultiRC and WiC, else the example's keys minus
label/idx sorted alphabetically (written out in FEATURE_ORDER). T5 puts the
benchmark name first (`rte hypothesis: ...`); the paper removes that first
word (regex `^[^ ]* `) so the prompt must carry the task. Here the name is
simply not added; `prefix='rte'` reproduces T5's string exactly, and
`remove_first_text_token` is the paper's regex for other T5-formatted data.

An example without a label (-1, test splits) gets the target '<unk>', as in T5.

Verbalizers: `VERBALIZERS[task]` are the target strings of the
classification tasks (TFDS label names, index = class id). ReCoRD and WSC
generate text, so they have no verbalizers; `TASK_WORDS` holds the paper's
label words for their class-label prompt init (section 3.2).
"""
from __future__ import annotations

from typing import Mapping, Optional

import seqio
import tensorflow as tf

# The 8 tasks of the SuperGLUE score, then the two diagnostics (eval only).
BENCHMARK_TASKS = ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc")
DIAGNOSTIC_TASKS = ("axb", "axg")
TASKS = BENCHMARK_TASKS + DIAGNOSTIC_TASKS

# TFDS ClassLabel names: the label id is the index.
LABEL_NAMES: Mapping[str, tuple[str, ...]] = {
    "boolq": ("False", "True"),
    "cb": ("entailment", "contradiction", "neutral"),
    "copa": ("choice1", "choice2"),
    "multirc": ("False", "True"),
    "rte": ("entailment", "not_entailment"),
    "wic": ("False", "True"),
    "wsc": ("False", "True"),
    "axb": ("entailment", "not_entailment"),
    "axg": ("entailment", "not_entailment"),
}

# The verbalizers: what the model generates for each class (the targets) of the classification tasks.
VERBALIZERS: Mapping[str, tuple[str, ...]] = {t: LABEL_NAMES[t] for t in TASKS if t not in ("record", "wsc")}

# The paper's "task words": the label words that initialise prompts for tasks without verbalizers.
TASK_WORDS: Mapping[str, tuple[str, ...]] = {
    "record": ("commonsense", "reasoning", "reading", "comprehension"),
    "wsc": ("commonsense", "pronoun", "resolution"),
}

# T5's key order (explicit for MultiRC and WiC, else sorted keys minus label/idx).
FEATURE_ORDER: Mapping[str, tuple[str, ...]] = {
    "boolq": ("passage", "question"),
    "cb": ("hypothesis", "premise"),
    "copa": ("choice1", "choice2", "premise", "question"),
    "multirc": ("question", "answer", "paragraph"),
    "rte": ("hypothesis", "premise"),
    "wic": ("sentence1", "sentence2", "word"),
    "axb": ("hypothesis", "premise"),
    "axg": ("hypothesis", "premise"),
}

# AX-b stores its pair as sentence1/sentence2; T5 renames them (premise <- sentence1) and formats as RTE.
_SOURCE_KEY = {"axb": {"premise": "sentence1", "hypothesis": "sentence2"}}

# T5 special-cases two WSC texts whose span2_index does not point at the pronoun
# (`_wsc_inputs`); these are its outputs with the pronoun marked.
_WSC_SPECIAL_CASES = (
    (
        'The boy continued to whip the pony , and eventually the pony threw him over. John laughed out '
        'quite loud. "Good for him," he said. ',
        'The boy continued to whip the pony , and eventually the pony threw him over. John laughed out '
        'quite loud. "Good for *him* ," he said.',
    ),
    (
        "When they had eventually calmed down a bit , and had gotten home, Mr. Farley put the magic pebble "
        "in an iron safe . Some day they might want to use it , but really for now, what more could they "
        "wish for?",
        "When they had eventually calmed down a bit , and had gotten home, Mr. Farley put the magic pebble "
        "in an iron safe . Some day they might want to use *it* , but really for now, what more could they "
        "wish for?",
    ),
)

UNKNOWN_TARGET = "<unk>"


def check_task(task: str) -> str:
    """Returns `task` if it is a SuperGLUE task key; ValueError listing the known ones otherwise."""
    if task not in TASKS:
        raise ValueError(f"unknown SuperGLUE task {task!r}; expected one of {TASKS}")
    return task


def _join(parts) -> tf.Tensor:
    return tf.strings.join(parts, separator=" ")


def _label_text(label: tf.Tensor, names: tuple[str, ...]) -> tf.Tensor:
    label = tf.cast(label, tf.int32)
    return tf.cond(
        tf.equal(label, -1),
        lambda: tf.constant(UNKNOWN_TARGET),
        lambda: tf.gather(tf.constant(names), label),
    )


def _maybe_prefixed(parts: list, prefix: Optional[str]) -> list:
    return ([prefix] if prefix else []) + parts


def format_classification(x: Mapping[str, tf.Tensor], task: str, prefix: Optional[str] = None) -> dict:
    """T5's `glue` formatting for every task except ReCoRD and WSC."""
    order = FEATURE_ORDER[task]
    source_key = _SOURCE_KEY.get(task, {})
    parts = []
    for key in order:
        parts += [f"{key}:", x[source_key.get(key, key)]]
    inputs = _join(_maybe_prefixed(parts, prefix))
    out = {}
    if task == "multirc":
        # HTML markup in the paragraphs; T5 strips it from the joined string.
        inputs = tf.strings.regex_replace(inputs, "<br>", " ")
        inputs = tf.strings.regex_replace(inputs, "<(/)?b>", "")
        for k in ("paragraph", "question", "answer"):
            out[f"idx/{k}"] = x["idx"][k]
    else:
        out["idx"] = x["idx"]
    out["inputs"] = inputs
    out["targets"] = _label_text(x["label"], LABEL_NAMES[task])
    return out


def _record_passage(passage: tf.Tensor) -> tf.Tensor:
    # Highlights are separated by '\n@highlight\n': after final punctuation it
    # becomes a space, otherwise a full stop and a space (T5's `record`).
    passage = tf.strings.regex_replace(passage, r"(\.|\?|\!|\"|\')\n@highlight\n", r"\1 ")
    return tf.strings.regex_replace(passage, r"\n@highlight\n", ". ")


def format_record(ds: tf.data.Dataset, prefix: Optional[str] = None) -> tf.data.Dataset:
    """One example per gold answer ('<unk>' when there is none), all answers kept for the metric."""

    def expand(x):
        inputs = _join(_maybe_prefixed(
            ["query:", x["query"], "entities:", tf.strings.reduce_join(x["entities"], separator=", "),
             "passage:", _record_passage(x["passage"])], prefix))
        answers = x["answers"]
        targets = tf.cond(tf.size(answers) > 0, lambda: answers, lambda: tf.constant([UNKNOWN_TARGET]))
        n = tf.size(targets)

        def tile(v):
            return tf.broadcast_to(v, tf.concat([[n], tf.shape(v)], axis=0))

        return {
            "inputs": tile(inputs),
            "targets": targets,
            "idx/passage": tile(x["idx"]["passage"]),
            "idx/query": tile(x["idx"]["query"]),
            # Every row keeps all gold answers: the metric takes the max over them.
            "answers": tile(answers),
        }

    return ds.map(expand, num_parallel_calls=tf.data.AUTOTUNE).unbatch()


def mark_wsc_pronoun(text: tf.Tensor, span2_index: tf.Tensor) -> tf.Tensor:
    """The text with word `span2_index` (space-split) wrapped in asterisks.

    T5 asserts 0 < index < number of words and that the word equals
    span2_text; here an index out of range leaves the text unmarked instead,
    so malformed or mock data cannot crash a pipeline.
    """
    words = tf.strings.split(text, sep=" ")
    i = tf.cast(span2_index, tf.int32)
    in_range = tf.logical_and(i >= 0, i < tf.size(words))

    def marked():
        mark = tf.strings.join(["*", words[i], "*"])
        return tf.strings.reduce_join(tf.concat([words[:i], [mark], words[i + 1:]], axis=0), separator=" ")

    out = tf.cond(in_range, marked, lambda: text)
    for original, t5_output in _WSC_SPECIAL_CASES:
        out = tf.where(tf.equal(text, original), tf.constant(t5_output), out)
    return out


def format_wsc(x: Mapping[str, tf.Tensor], prefix: Optional[str] = None) -> dict:
    """T5's `wsc_simple`: generate the referent (span1_text) of the marked pronoun.

    Training on WSC uses only examples whose label is True (the source filters
    the train split, see sources.py); evaluation keeps all and the
    postprocessor checks whether the generation names span1.
    """
    inputs = mark_wsc_pronoun(x["text"], x["span2_index"])
    if prefix:
        inputs = _join([prefix, inputs])
    return {
        "inputs": inputs,
        "targets": x["span1_text"],
        "label": tf.cast(x["label"], tf.int64),
        "idx": x["idx"],
    }


def formatter(task: str, prefix: Optional[str] = None):
    """The text preprocessor of `task`: a function dataset -> dataset (seqio style)."""
    check_task(task)
    if task == "record":
        def fn(dataset):
            return format_record(dataset, prefix)
    elif task == "wsc":
        @seqio.map_over_dataset
        def fn(x):
            return format_wsc(x, prefix)
    else:
        @seqio.map_over_dataset
        def fn(x):
            return format_classification(x, task, prefix)
    fn.__name__ = f"format_{task}"
    return fn


@seqio.map_over_dataset
def remove_first_text_token(x, key: str = "inputs"):
    """The paper's prefix removal for T5-formatted data: drop everything up to the first space."""
    x = dict(x)
    x[key] = tf.strings.regex_replace(x[key], r"^[^ ]* ", "", replace_global=False)
    return x
