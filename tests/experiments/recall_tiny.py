"""A one-rung, one-task recall backend on the real ladder's xxs rung, for end-to-end tests."""
import dataclasses
import os

import pytest

from experiments import backends, recall
from tests.conftest import REPO


def tiny_backend(monkeypatch, **fields):
    """Registers backend 'recall_tiny' (xxs, boolq, seed 0, the real ladder's checkpoints) with `fields`
    replaced and returns it; skips the test when the ladder's xxs rung is not built."""
    ladder = recall.LADDER if os.path.isabs(recall.LADDER) else str(REPO / recall.LADDER)
    if not os.path.exists(os.path.join(ladder, "xxs", "lm", "config.json")):
        pytest.skip(f"the recall ladder's xxs rung is not built under {ladder}")
    tiny = dataclasses.replace(
        recall.RECALL, name="recall_tiny", sizes=("xxs",), tasks=("boolq",), seeds=(0,),
        checkpoints={k: v.replace(recall.LADDER, ladder) for k, v in recall.RECALL.checkpoints.items()}, **fields)
    monkeypatch.setitem(backends.BACKENDS, "recall_tiny", tiny)
    return tiny
