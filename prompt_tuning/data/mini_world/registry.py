"""SeqIO tasks over the mini world's jsonl files.

    mini_world_<task>            <task> in boolq cb copa record rte wic: SuperGLUE's pipeline for
                                 that task (preprocessor, label words, postprocessor, metrics)
    mini_world_<task>_sentinel   targets start with <extra_id_0> (span corruption + sentinel)
    mini_world_span_corruption   the pretraining corpus under T5's objectives
    mini_world_prefix_lm

Nothing registers at import (as in `prompt_tuning.data`): call
`register_mini_world_tasks(data_dir, vocab_path)`.
"""
from __future__ import annotations

import os
from typing import Optional

import gin

from prompt_tuning.data import tasks as data_tasks
from prompt_tuning.data import vocab as data_vocab
from prompt_tuning.data.mini_world import tasks as mini_tasks

PREFIX = "mini_world_"


def task_name(task: str, sentinel: bool = False) -> str:
    if task not in mini_tasks.TASKS:
        raise ValueError(f"unknown mini task {task!r}; known: {sorted(mini_tasks.TASKS)}")
    return f"{PREFIX}{task}" + ("_sentinel" if sentinel else "")


@gin.configurable
def register_mini_world_tasks(data_dir: str = gin.REQUIRED, vocab_path: str = gin.REQUIRED,
                              corpus_file: Optional[str] = None) -> list[str]:
    """Registers the mini SuperGLUE tasks over <data_dir>/<task>/{train,val}.jsonl (idempotent).

    corpus_file: a text file, one document per line, for the two pretraining tasks.
    """
    vocabulary = data_vocab.get_vocabulary(vocab_path)
    names = []
    for task in sorted(mini_tasks.TASKS):
        task_dir = os.path.join(data_dir, task)
        for sentinel in (False, True):
            name = task_name(task, sentinel)
            data_tasks.register_jsonl_task(name, task, task_dir, split_files=dict(mini_tasks.SPLIT_FILES),
                                           vocabulary=vocabulary, sentinel="_sentinel" if sentinel else None)
            names.append(name)
    if corpus_file:
        names += data_tasks.register_text_pretraining_tasks(
            "mini_world", {"train": corpus_file}, vocabulary=vocabulary)
    return names
