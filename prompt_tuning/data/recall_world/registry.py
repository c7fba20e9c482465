"""Writes the recall world's files (deterministic, cached) and registers its SeqIO tasks.

    recall_world_<task>            <task> in boolq rte record: SuperGLUE's pipeline for that
                                   task; splits train, validation, test, test_closed_book,
                                   test_paraphrase, test_long_passage (tasks.SPLIT_FILES)
    recall_world_span_corruption   the pretraining corpus under T5's objectives;
    recall_world_prefix_lm         splits train, validation (held-out documents)

`prepare_recall_world` (a gin startup hook, see gin/recall_world.gin) writes
world, corpus, vocabulary and task files under a cache directory keyed by every
setting, and registers the tasks. Nothing registers at import.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
from typing import Optional

import gin

from prompt_tuning.data import tasks as data_tasks
from prompt_tuning.data import vocab as data_vocab
from prompt_tuning.data.recall_world import vocab as spm_vocab
from prompt_tuning.data.recall_world import corpus as corpus_lib
from prompt_tuning.data.recall_world import shifts as shifts_lib
from prompt_tuning.data.recall_world import tasks as recall_tasks
from prompt_tuning.data.recall_world import world as world_lib

PREFIX = "recall_world_"
REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
CACHE_ENV = "RECALL_WORLD_CACHE"
# Bumped when the meaning of the world changes (a new design, not a fix); the cache key also holds a hash
# of the generators' source (`generator_fingerprint`), so an edited generator never reuses a stale cache.
WORLD_VERSION = 3
_GENERATORS = (world_lib, corpus_lib, recall_tasks, shifts_lib)


def generator_fingerprint() -> str:
    """First 10 hex digits of the SHA-256 of world.py, corpus.py, tasks.py and shifts.py: the cache key's source part."""
    digest = hashlib.sha256()
    for module in _GENERATORS:
        digest.update(pathlib.Path(module.__file__).read_bytes())
    return digest.hexdigest()[:10]


def task_name(task: str) -> str:
    """'boolq' -> 'recall_world_boolq' (ValueError for an unknown task)."""
    if task not in recall_tasks.TASKS:
        raise ValueError(f"unknown recall task {task!r}; known: {sorted(recall_tasks.TASKS)}")
    return PREFIX + task


def cache_dir(seed: int, num_people: int, corpus_documents: int) -> str:
    root = os.environ.get(CACHE_ENV) or str(REPO_ROOT / ".cache" / "recall_world")
    return os.path.join(root, f"v{WORLD_VERSION}-{generator_fingerprint()}-seed{seed}-people{num_people}"
                              f"-docs{corpus_documents}")


@gin.configurable
def prepare_recall_world(seed: int = 0, num_people: int = world_lib.DEFAULT_NUM_PEOPLE, corpus_documents: int = 60_000,
                         validation_documents: int = 2_000, vocab_path: Optional[str] = None,
                         vocab_size: int = 1000, out_dir: Optional[str] = None) -> dict:
    """Writes (once) and registers everything; returns {'dir', 'vocab_path', 'tasks', 'corpus'}.

    vocab_path: an existing SentencePiece model to use, or None to train one on the
    corpus (BPE, `vocab_size` an upper bound; recall_world/vocab.py) kept in the cache.
    Raises FileNotFoundError for a vocab_path that does not exist.
    """
    out = out_dir or cache_dir(seed, num_people, corpus_documents)
    world = world_lib.build_world(seed, num_people)
    corpus = {"train": os.path.join(out, "corpus_train.txt"), "validation": os.path.join(out, "corpus_val.txt")}
    if not os.path.exists(corpus["train"]):
        corpus_lib.write_corpus(corpus["train"], world, corpus_documents)
    if not os.path.exists(corpus["validation"]):
        corpus_lib.write_corpus(corpus["validation"], world, validation_documents, corpus_lib.VALIDATION_START)
    if vocab_path is None:
        vocab_path = os.path.join(out, "spm.model")
        if not os.path.exists(vocab_path):
            spm_vocab.train_vocab(corpus["train"], vocab_path, vocab_size)
    elif not os.path.exists(vocab_path):
        raise FileNotFoundError(f"recall world vocabulary not found: {vocab_path}")
    task_dir = os.path.join(out, "tasks")
    done = os.path.join(task_dir, "DONE")
    if not os.path.exists(done):
        recall_tasks.write_tasks(task_dir, world)
        with open(done, "w") as f:
            json.dump({"seed": seed, "num_people": num_people}, f)
    vocabulary = data_vocab.get_vocabulary(vocab_path)
    names = []
    for task in sorted(recall_tasks.TASKS):
        name = task_name(task)
        data_tasks.register_jsonl_task(name, task, os.path.join(task_dir, task),
                                       split_files=dict(recall_tasks.SPLIT_FILES), vocabulary=vocabulary)
        names.append(name)
    names += data_tasks.register_text_pretraining_tasks("recall_world", corpus, vocabulary=vocabulary)
    return {"dir": out, "vocab_path": vocab_path, "tasks": names, "corpus": corpus, "task_dir": task_dir}
