"""Fixtures for the data tests: the shared T5 vocabulary and tasks over ../shared/data/superglue."""
import pytest

from tests.conftest import shared_path

SUPERGLUE_DIRS = {
    "boolq": "BoolQ", "cb": "CB", "copa": "COPA", "multirc": "MultiRC", "record": "ReCoRD",
    "rte": "RTE", "wic": "WiC", "wsc": "WSC",
}
LENGTHS = {"inputs": 1024, "targets": 32}


@pytest.fixture(scope="session")
def vocab():
    from prompt_tuning.data import vocab as vocab_lib

    return vocab_lib.get_vocabulary(str(shared_path("t5", "spiece.model")))


@pytest.fixture(scope="session")
def shared_task(vocab):
    """shared_task('rte') -> a task over train32.jsonl (train) / dev32.jsonl (validation)."""
    from prompt_tuning.data import tasks

    def make(task, **kwargs):
        data_dir = shared_path("superglue", SUPERGLUE_DIRS[task])
        return tasks.register_jsonl_task(
            f"test_shared_{task}", task, str(data_dir),
            split_files={"train": "train32.jsonl", "validation": "dev32.jsonl"}, vocabulary=vocab, **kwargs)

    return make


def examples(task, split="train", lengths=LENGTHS):
    """All preprocessed examples of a split, strings decoded."""
    ds = task.get_dataset(dict(lengths), split=split, shuffle=False, num_epochs=1)
    out = []
    for ex in ds.as_numpy_iterator():
        out.append({k: (v.decode() if isinstance(v, bytes) else v) for k, v in ex.items()})
    return out
