"""Shared fixtures: paths to ../shared/data (skipped with a reason when absent)."""
import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_path(*parts: str) -> pathlib.Path:
    """A path under ../shared/data, or skip the calling test with a reason."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared reference data not found: {path} (see ../shared/data/SOURCES.md)")
    return path


@pytest.fixture
def t5_vocab_path():
    return shared_path("t5", "spiece.model")


@pytest.fixture
def tiny_t5x_checkpoint():
    return shared_path("t5", "t5x_t5_1_1_tiny", "checkpoint_3")
