"""MODEL_DIR: where a run lives, and whether an existing one may be resumed.

    MODEL_DIR/run.json     {"fingerprint", "gin_files", "created"}: written first, atomically
    MODEL_DIR/config.gin   the full gin configuration of the run

The fingerprint is a hash of every gin binding except the ones that may change
between a run and its resumption without changing what it computes: MODEL_DIR
itself and TRAIN_STEPS (so a finished run can be extended). An existing
MODEL_DIR resumes when its fingerprint matches and is refused otherwise, as is
a non-empty directory that this trainer did not write.

Nothing is created until `claim` is called, after every start-up check has
passed, so a bad configuration never leaves a half-written directory.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
from typing import Optional, Sequence

from prompt_tuning.training import gin_bindings
import jax

RUN_FILE, CONFIG_FILE = "run.json", "config.gin"
# Macros that do not change what a run computes step by step.
UNFINGERPRINTED_MACROS = ("MODEL_DIR", "TRAIN_STEPS")
DEFAULT_ROOT = "runs"


class RunDirError(ValueError):
    """A MODEL_DIR that cannot be used (one-line message)."""


def fingerprint(exclude_macros: Sequence[str] = UNFINGERPRINTED_MACROS) -> str:
    """sha256 of the parsed gin bindings (canonical order), minus `exclude_macros`."""
    items = [f"{b.scope}/{b.selector}.{b.arg_name}={b.value!r}" for b in gin_bindings.bindings()
             if not (b.selector == "gin.macro" and b.scope in exclude_macros)]
    return hashlib.sha256("\n".join(sorted(items)).encode()).hexdigest()[:16]


def default_model_dir(gin_files: Sequence[str], root: str = DEFAULT_ROOT, now: Optional[datetime.datetime] = None) -> str:
    """runs/<last gin file's stem>-<YYYYmmdd-HHMMSS>, made unique with a suffix if needed."""
    stem = os.path.splitext(os.path.basename(gin_files[-1]))[0] if gin_files else "run"
    stamp = (now or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")
    base = os.path.join(root, f"{stem}-{stamp}")
    path, i = base, 1
    while os.path.exists(path):
        path, i = f"{base}-{i}", i + 1
    return path


def read_run_file(model_dir: str) -> Optional[dict]:
    path = os.path.join(model_dir, RUN_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise RunDirError(f"MODEL_DIR {model_dir} has an unreadable {RUN_FILE}: {e}") from None


def check(model_dir: str, fp: str) -> bool:
    """True if `model_dir` is a run of this configuration to resume, False if it is new.

    Raises RunDirError for a directory of another configuration or not ours.
    """
    if not os.path.exists(model_dir):
        return False
    if not os.path.isdir(model_dir):
        raise RunDirError(f"MODEL_DIR {model_dir} exists and is not a directory")
    info = read_run_file(model_dir)
    if info is None:
        if os.listdir(model_dir):
            raise RunDirError(
                f"MODEL_DIR {model_dir} is not empty and was not written by this trainer (no {RUN_FILE}); "
                f"choose a new MODEL_DIR"
            )
        return False
    if info.get("fingerprint") != fp:
        raise RunDirError(
            f"MODEL_DIR {model_dir} was written by a different configuration (fingerprint "
            f"{info.get('fingerprint')} != {fp}; see its {CONFIG_FILE}); use a new MODEL_DIR or the same gin settings"
        )
    return True


def claim(model_dir: str, fp: str, gin_files: Sequence[str], config_str: str) -> None:
    """Creates MODEL_DIR with run.json (first) and config.gin; a no-op if already claimed."""
    if jax.process_index() != 0 or read_run_file(model_dir) is not None:
        return
    os.makedirs(model_dir, exist_ok=True)
    info = {"fingerprint": fp, "gin_files": list(gin_files),
            "created": datetime.datetime.now().isoformat(timespec="seconds")}
    for name, text in ((RUN_FILE, json.dumps(info, indent=1)), (CONFIG_FILE, config_str)):
        tmp = os.path.join(model_dir, f".{name}.tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, os.path.join(model_dir, name))
