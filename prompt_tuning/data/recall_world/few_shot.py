"""Few-shot in-context demonstrations for the recall tasks (the paper's GPT-3 few-shot reference in Fig 1).

A demonstration is a training row written as the model reads it: the task's input text in SuperGLUE's
T5 format (superglue.py; no task-name prefix) followed by its gold answer,

    boolq   passage: P question: Q True
    rte     hypothesis: H premise: P entailment
    record  query: Q entities: E1, E2, E3 passage: P Hesper

`demonstration_text(task, train_rows, k, seed)` joins the task description (the prompt-design text,
given by the caller) and k demonstrations drawn from the task's *training* split with `seed`; the
backend uses it as a prompt initialised from that text's tokens with 0 training steps, i.e. the text
written in front of every input. The classification tasks draw k/2 demonstrations of each label
(a k-shot draw with one label only would teach the majority label, not the task), ReCoRD draws k rows;
the order is shuffled. Training people never occur in validation or test (world.py's entity-disjoint
splits), so a demonstration never answers a scored question.
"""
from __future__ import annotations

import random
from typing import Optional, Sequence

K = 4  # demonstrations per input (GPT-3's few-shot used as many as fit; 4 fit the recall tasks' budget)


def format_example(task: str, row: dict) -> tuple[str, str]:
    """(inputs, target) of a recall-task row as superglue.py formats it (its format_classification /
    format_record; tests check equality with the registered SeqIO task's pretokenized text)."""
    if task == "boolq":
        return f"passage: {row['passage']} question: {row['question']}", str(bool(row["label"]))
    if task == "rte":
        return f"hypothesis: {row['hypothesis']} premise: {row['premise']}", str(row["label"])
    if task == "record":
        text = row["passage"]["text"]
        entities = sorted({text[e["start"]:e["end"] + 1] for e in row["passage"]["entities"]})
        return (f"query: {row['qas'][0]['query']} entities: {', '.join(entities)} passage: {text}",
                row["qas"][0]["answers"][0]["text"])
    raise ValueError(f"unknown recall task {task!r}; known: boolq, rte, record")


def draw(task: str, train_rows: Sequence[dict], k: int, seed: int) -> list[dict]:
    """k training rows chosen by `seed` (balanced over labels for boolq / rte); ValueError if too few."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    rng = random.Random(f"recall-few-shot/{task}/{k}/{seed}")
    if task in ("boolq", "rte"):
        by_label: dict = {}
        for r in train_rows:
            by_label.setdefault(str(r["label"]), []).append(r)
        labels = sorted(by_label)
        counts = [k // len(labels) + (i < k % len(labels)) for i in range(len(labels))]
        if any(len(by_label[lab]) < c for lab, c in zip(labels, counts)):
            raise ValueError(f"{task}: not enough training rows per label for k={k}")
        picked = [r for lab, c in zip(labels, counts) for r in rng.sample(by_label[lab], c)]
    else:
        if len(train_rows) < k:
            raise ValueError(f"{task}: {len(train_rows)} training rows, k={k}")
        picked = rng.sample(list(train_rows), k)
    rng.shuffle(picked)
    return picked


def demonstration_text(task: str, train_rows: Sequence[dict], k: int, seed: int,
                       description: Optional[str] = None) -> str:
    """`description` (if any), then k demonstrations "inputs target", joined by single spaces."""
    demos = [" ".join(format_example(task, r)) for r in draw(task, train_rows, k, seed)]
    return " ".join(([description] if description else []) + demos)
