"""Baselines that need no model, computed from the task files: what a score has to beat.

    majority          the most frequent answer of the task's *training* split, always
    lookup            the training split's most frequent answer for the same question key
                      (the person and the relation or trait asked about),
                      else the majority answer: what memorising the task's training data buys
    random_candidate  ReCoRD: the expected accuracy of a uniformly random passage entity

Each is an accuracy in [0, 100] on the split given (the test split for reports).
The model baselines (closed-book: the `test_closed_book` split; the untrained frozen
model) are runs of the trainer, not computed here.
"""
from __future__ import annotations

import collections
import os

from prompt_tuning.data import sources
from prompt_tuning.data.recall_world import tasks as recall_tasks


def split_rows(task_dir: str, split: str) -> list[dict]:
    """The split's rows (sources.read_jsonl: a bad row is a one-line DataFileError naming file and line)."""
    return list(sources.read_jsonl(os.path.join(task_dir, recall_tasks.SPLIT_FILES[split])))


def answer(task: str, row: dict) -> str:
    """The gold answer string of a row (ReCoRD: the answer entity)."""
    if task == "record":
        return row["qas"][0]["answers"][0]["text"]
    return str(row["label"])


def question_key(task: str, row: dict) -> tuple[str, str]:
    """What the answer is a function of, in the world: (person, relation or trait) (tasks.fact_asked)."""
    return recall_tasks.fact_asked(task, row)


def _candidates(row: dict) -> list[str]:
    text = row["passage"]["text"]
    return sorted({text[e["start"]:e["end"] + 1] for e in row["passage"]["entities"]})


def baselines(task_dir: str, task: str, split: str = "test") -> dict[str, float]:
    """{'majority', 'lookup'[, 'random_candidate']}: accuracies (percent) on `split`."""
    train, rows = split_rows(task_dir, "train"), split_rows(task_dir, split)
    counts = collections.Counter(answer(task, r) for r in train)
    majority = counts.most_common(1)[0][0]
    table: dict = collections.defaultdict(collections.Counter)
    for r in train:
        table[question_key(task, r)][answer(task, r)] += 1
    hit = lambda pred, r: pred == answer(task, r)
    out = {"majority": 100 * sum(hit(majority, r) for r in rows) / len(rows)}
    lookup = [table[question_key(task, r)].most_common(1)[0][0] if question_key(task, r) in table else majority
              for r in rows]
    out["lookup"] = 100 * sum(hit(p, r) for p, r in zip(lookup, rows)) / len(rows)
    if task == "record":
        out["random_candidate"] = 100 * sum(
            (answer(task, r) in _candidates(r)) / len(_candidates(r)) for r in rows) / len(rows)
    return out
