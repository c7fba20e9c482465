"""Training checkpoints (orbax): the latest and the best, plus the prompt as .npy at every save.

    MODEL_DIR/checkpoints/<step>/   latest train state (orbax; older ones deleted after a save)
    MODEL_DIR/best/<step>/          the state with the best validation value so far
    MODEL_DIR/best/best.json        {"step", "value", "metrics"} of that state
    MODEL_DIR/prompts/step_<step>.npy  the prompt [P, H] float32 at every save
    MODEL_DIR/prompts/best.npy      the prompt of the best state

A train state is {'step': int64 scalar, 'params': trainable parameters (the
prompt in prompt tuning, everything in model tuning), 'opt_state': optax
state of those parameters}. The frozen model is never written here: it is
read again from INITIAL_CHECKPOINT_PATH.

Atomicity: orbax writes a step into a temporary directory and renames it when
complete, so a kill at any moment leaves either the old or the new step;
partial directories are ignored by `latest_step`. The .npy and .json files are
written to a temporary name and `os.replace`d. Saves are synchronous: when
`save` returns, the checkpoint is on disk.
"""
from __future__ import annotations

import json
import os
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from prompt_tuning.checkpoints.errors import CheckpointError

LATEST_DIR, BEST_DIR, PROMPTS_DIR = "checkpoints", "best", "prompts"
BEST_INFO = "best.json"


def _atomic_write(path: str, write) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_npy(path: str, array) -> None:
    """np.save, atomically."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    _atomic_write(path, lambda f: np.save(f, np.asarray(array, np.float32), allow_pickle=False))


def _manager(directory: str, keep: int) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False, create=True)
    return ocp.CheckpointManager(os.path.abspath(directory), options=options)


class TrainCheckpoints:
    """The latest and best train states of one MODEL_DIR."""

    def __init__(self, model_dir: str, keep: int = 1):
        self.model_dir = model_dir
        self._latest = _manager(os.path.join(model_dir, LATEST_DIR), keep)
        self._best = _manager(os.path.join(model_dir, BEST_DIR), 1)

    # -- queries ------------------------------------------------------------
    def latest_step(self) -> Optional[int]:
        return self._latest.latest_step()

    def best_info(self) -> Optional[dict]:
        path = os.path.join(self.model_dir, BEST_DIR, BEST_INFO)
        if not os.path.exists(path) or self._best.latest_step() is None:
            return None
        with open(path) as f:
            return json.load(f)

    # -- writes -------------------------------------------------------------
    def _write_prompt(self, name: str, prompt) -> None:
        if prompt is not None and jax.process_index() == 0:
            save_npy(os.path.join(self.model_dir, PROMPTS_DIR, name), prompt)

    def save(self, state: dict, prompt=None) -> None:
        """Writes `state` as the latest checkpoint (and the prompt as prompts/step_<step>.npy)."""
        step = int(np.asarray(jax.device_get(state["step"])))
        if self._latest.latest_step() == step:
            return
        self._latest.save(step, args=ocp.args.StandardSave(state))
        self._latest.wait_until_finished()
        self._write_prompt(f"step_{step}.npy", prompt)

    def save_best(self, state: dict, value: float, metrics: dict, prompt=None) -> None:
        """Replaces the best checkpoint with `state` (its validation `value` and `metrics`)."""
        step = int(np.asarray(jax.device_get(state["step"])))
        if self._best.latest_step() != step:
            for old in self._best.all_steps():
                self._best.delete(old)
            self._best.save(step, args=ocp.args.StandardSave(state))
            self._best.wait_until_finished()
        if jax.process_index() == 0:
            info = json.dumps({"step": step, "value": value, "metrics": metrics}, indent=1).encode()
            _atomic_write(os.path.join(self.model_dir, BEST_DIR, BEST_INFO), lambda f: f.write(info))
        self._write_prompt("best.npy", prompt)

    # -- reads --------------------------------------------------------------
    def restore(self, abstract_state: Any, which: str = "latest") -> dict:
        """The latest (or best) state, placed as `abstract_state`'s ShapeDtypeStructs say."""
        mngr = self._latest if which == "latest" else self._best
        step = mngr.latest_step()
        if step is None:
            raise CheckpointError(f"no {which} checkpoint in {self.model_dir}")
        return mngr.restore(step, args=ocp.args.StandardRestore(abstract_state))

    def close(self) -> None:
        self._latest.close()
        self._best.close()


def find_state_dir(path: str) -> tuple[str, int]:
    """(orbax manager dir, step) for a MODEL_DIR, its checkpoints/ or best/ dir, or one step dir."""
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    name = os.path.basename(path)
    if name.isdigit() and os.path.exists(os.path.join(path, "_CHECKPOINT_METADATA")):
        return os.path.dirname(path), int(name)
    for candidate in (path, os.path.join(path, LATEST_DIR)):
        steps = [int(d) for d in os.listdir(candidate) if d.isdigit()] if os.path.isdir(candidate) else []
        if steps:
            return candidate, max(steps)
    raise CheckpointError(f"no trainer checkpoint (checkpoints/<step>/) under {path}")


def read_params(path: str) -> tuple[dict, int]:
    """(trainable params as numpy, step) of a trainer checkpoint, without a target structure."""
    directory, step = find_state_dir(path)
    try:
        with ocp.CheckpointManager(directory) as mngr:
            state = mngr.restore(step, args=ocp.args.StandardRestore())
    except Exception as e:  # orbax raises many types for a damaged directory
        raise CheckpointError(f"cannot read trainer checkpoint {directory}/{step}: {str(e).splitlines()[0]}") from None
    return jax.tree.map(np.asarray, state["params"]), step
