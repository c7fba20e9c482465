"""MODEL_DIR: where a run lives, and whether an existing one may be resumed.

    MODEL_DIR/run.json     {"fingerprint", "gin_files", "created"}: written first, atomically
    MODEL_DIR/config.gin   the full gin configuration of the run
    MODEL_DIR/.lock        held (fcntl.flock, exclusive) by the one process running in MODEL_DIR;
                           it names the holder (pid, host, start time). The OS releases the lock
                           when that process exits or is killed, so a stale lock never blocks.

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
import fcntl
import hashlib
import json
import os
import socket
from typing import Optional, Sequence

from prompt_tuning.training import gin_bindings
import jax

RUN_FILE, CONFIG_FILE, LOCK_FILE = "run.json", "config.gin", ".lock"
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
        check_writable(model_dir)
        return False
    if not os.path.isdir(model_dir):
        raise RunDirError(f"MODEL_DIR {model_dir} exists and is not a directory")
    check_writable(model_dir)
    info = read_run_file(model_dir)
    if info is None:
        ours = (LOCK_FILE, f".{RUN_FILE}.tmp", f".{CONFIG_FILE}.tmp")
        if [n for n in os.listdir(model_dir) if n not in ours]:
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


def check_writable(model_dir: str) -> None:
    """RunDirError (one line) unless MODEL_DIR, or the nearest existing parent that would hold it, is writable."""
    path = os.path.abspath(model_dir)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        raise RunDirError(f"cannot create MODEL_DIR {model_dir}: {path} is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise RunDirError(f"cannot write MODEL_DIR {model_dir}: no write permission on {path}")


class RunLock:
    """The exclusive lock of a MODEL_DIR (process 0 only; a no-op elsewhere).

    `acquire()` raises RunDirError naming the holder when another live process holds it.
    The lock is released by `release()` or by the OS when the process ends, however it ends.
    """

    def __init__(self, model_dir: str):
        self.model_dir = model_dir
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        if self._fd is not None or jax.process_index() != 0:
            return
        path = os.path.join(self.model_dir, LOCK_FILE)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise RunDirError(f"MODEL_DIR {self.model_dir} is in use by {holder}; wait for it to finish "
                              f"or use another MODEL_DIR") from None
        os.ftruncate(fd, 0)
        stamp = datetime.datetime.now().isoformat(timespec="seconds")
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} (since {stamp})".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = None


def claim(model_dir: str, fp: str, gin_files: Sequence[str], config_str: str, lock: Optional[RunLock] = None) -> None:
    """Creates MODEL_DIR, takes `lock`, then writes run.json and config.gin; a no-op if already claimed."""
    if jax.process_index() != 0:
        return
    os.makedirs(model_dir, exist_ok=True)
    if lock is not None:
        lock.acquire()
    if read_run_file(model_dir) is not None:
        return
    info = {"fingerprint": fp, "gin_files": list(gin_files),
            "created": datetime.datetime.now().isoformat(timespec="seconds")}
    for name, text in ((RUN_FILE, json.dumps(info, indent=1)), (CONFIG_FILE, config_str)):
        tmp = os.path.join(model_dir, f".{name}.tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, os.path.join(model_dir, name))
