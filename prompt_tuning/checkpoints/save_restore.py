"""Training checkpoints (orbax): the latest and the best, plus the prompt as .npy at every save.

    MODEL_DIR/checkpoints/<step>/   latest train states (orbax; the newest `keep` verified ones kept)
    MODEL_DIR/checkpoints/<step>/checksums.json   sha256 of every file of the step: written last
    MODEL_DIR/best/<step>/          the state with the best validation value so far (+ checksums.json)
    MODEL_DIR/best/best.json        {"step", "value", "metrics"} of that state: the best's commit point
    MODEL_DIR/prompts/step_<step>.npy  the prompt [P, H] float32 at every save
    MODEL_DIR/prompts/best.npy      the prompt of the best state
    MODEL_DIR/corrupt/              checkpoints that failed verification, moved aside (never deleted)
    <export>/method_params.safetensors  a method's plain parameters (prompt_tuning.export; read_params reads it)

A train state is {'step': int64 scalar, 'params': trainable parameters (the
prompt in prompt tuning, everything in model tuning), 'opt_state': optax
state of those parameters}. The frozen model is never written here: it is
read again from INITIAL_CHECKPOINT_PATH.

Atomicity and verification. A save is: orbax writes the step into a temporary
directory and renames it; the prompt .npy is written; then `checksums.json`
(the sha256 of every file in the step directory, hence of every saved
array's bytes) is written atomically, last. Only then are older steps
deleted. A step without checksums.json is an unfinished save (a kill between
the rename and the checksums) and is discarded; a step whose files do not
match their checksums, or that orbax cannot read, is corrupt: it is moved to
MODEL_DIR/corrupt/ with a one-line notice and the newest intact checkpoint is
used instead (`restore_intact`). `read_params` (eval / infer) refuses any step
it cannot verify. The best checkpoint commits with best.json, written after
best/<step>/ and prompts/best.npy; a best/<step>/ that best.json does not name
is a leftover of an interrupted write. Saves are synchronous.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Any, Callable, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util
from safetensors import numpy as st_numpy
from safetensors import safe_open

from prompt_tuning.checkpoints.errors import CheckpointError

LATEST_DIR, BEST_DIR, PROMPTS_DIR, CORRUPT_DIR = "checkpoints", "best", "prompts", "corrupt"
BEST_INFO = "best.json"
CHECKSUMS = "checksums.json"


class UnfinishedCheckpoint(CheckpointError):
    """A step directory without checksums.json: a save that was interrupted before its end."""


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


# -- checksums ------------------------------------------------------------------


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _step_files(step_dir: str) -> list[str]:
    out = []
    for root, _, files in os.walk(step_dir):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), step_dir)
            if rel != CHECKSUMS:
                out.append(rel)
    return sorted(out)


def write_checksums(step_dir: str) -> None:
    """Records the sha256 of every file of a finished step directory in checksums.json (atomically)."""
    sums = {rel: _sha256(os.path.join(step_dir, rel)) for rel in _step_files(step_dir)}
    text = json.dumps({"sha256": sums}, indent=1, sort_keys=True).encode()
    _atomic_write(os.path.join(step_dir, CHECKSUMS), lambda f: f.write(text))


def verify(step_dir: str) -> None:
    """Raises UnfinishedCheckpoint (no checksums.json) or CheckpointError (a file missing, added,
    or not matching its checksum) with a one-line message naming the file."""
    path = os.path.join(step_dir, CHECKSUMS)
    if not os.path.exists(path):
        raise UnfinishedCheckpoint(f"checkpoint {step_dir} is unverifiable: no {CHECKSUMS} "
                                   f"(an interrupted save, or written by an older version)")
    try:
        with open(path) as f:
            sums = json.load(f)["sha256"]
        assert isinstance(sums, dict) and sums
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        raise CheckpointError(f"checkpoint {step_dir} is corrupt: unreadable {CHECKSUMS}") from None
    present = set(_step_files(step_dir))
    for rel in sorted(set(sums) | present):
        if rel not in present:
            raise CheckpointError(f"checkpoint {step_dir} is corrupt: {rel} is missing")
        if rel not in sums:
            raise CheckpointError(f"checkpoint {step_dir} is corrupt: unexpected file {rel}")
        if _sha256(os.path.join(step_dir, rel)) != sums[rel]:
            raise CheckpointError(f"checkpoint {step_dir} is corrupt: {rel} does not match its checksum")


def _restore(mngr: ocp.CheckpointManager, step: int, abstract_state: Any = None):
    """orbax restore with every failure turned into one CheckpointError line."""
    args = ocp.args.StandardRestore(abstract_state) if abstract_state is not None else ocp.args.StandardRestore()
    try:
        return mngr.restore(step, args=args)
    except Exception as e:  # noqa: BLE001  -- orbax / TensorStore raise many types for damaged files
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"checkpoint {mngr.directory}/{step} cannot be read: {first[:300]}") from None


def _manager(directory: str) -> ocp.CheckpointManager:
    # Retention is done here (after checksums.json), not by orbax's max_to_keep.
    options = ocp.CheckpointManagerOptions(max_to_keep=None, enable_async_checkpointing=False, create=True)
    return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def _step_dirs(directory: str) -> list[int]:
    """Finished (renamed) step directories, newest first."""
    if not os.path.isdir(directory):
        return []
    return sorted((int(d) for d in os.listdir(directory) if d.isdigit()), reverse=True)


class TrainCheckpoints:
    """The latest and best train states of one MODEL_DIR.

    `say` receives one-line notices (a corrupt checkpoint moved aside, an unfinished one discarded).
    """

    def __init__(self, model_dir: str, keep: int = 1, say: Callable[[str], None] = print):
        if not isinstance(keep, int) or keep < 1:
            raise CheckpointError(f"keep_checkpoints must be an int >= 1, got {keep!r}")
        self.model_dir = model_dir
        self.keep = keep
        self.say = say
        self._latest = _manager(os.path.join(model_dir, LATEST_DIR))
        self._best = _manager(os.path.join(model_dir, BEST_DIR))

    # -- queries ------------------------------------------------------------
    @staticmethod
    def has_committed(model_dir: str) -> bool:
        """Whether MODEL_DIR holds a committed (checksummed) latest checkpoint."""
        directory = os.path.join(model_dir, LATEST_DIR)
        return any(os.path.exists(os.path.join(directory, str(s), CHECKSUMS)) for s in _step_dirs(directory))

    def latest_step(self) -> Optional[int]:
        """The newest step that has checksums.json (verification of its files is `restore_intact`'s)."""
        directory = os.path.join(self.model_dir, LATEST_DIR)
        steps = [s for s in _step_dirs(directory) if os.path.exists(os.path.join(directory, str(s), CHECKSUMS))]
        return steps[0] if steps else None

    def best_info(self) -> Optional[dict]:
        """best.json, or None when there is no best yet. CheckpointError (one line) if it is unreadable."""
        path = os.path.join(self.model_dir, BEST_DIR, BEST_INFO)
        if not os.path.exists(path):
            return None
        try:
            with open(path) as f:
                info = json.load(f)
            if not isinstance(info, dict) or not isinstance(info.get("step"), int) or "value" not in info:
                raise ValueError("not a {step, value, metrics} object")
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{path} is corrupt ({str(e).splitlines()[0][:120]}); move it and "
                                  f"{os.path.join(self.model_dir, BEST_DIR)} aside to continue without "
                                  f"a best checkpoint") from None
        return info

    # -- writes -------------------------------------------------------------
    def _write_prompt(self, name: str, prompt) -> None:
        if prompt is not None and jax.process_index() == 0:
            save_npy(os.path.join(self.model_dir, PROMPTS_DIR, name), prompt)

    def _save_verified(self, mngr: ocp.CheckpointManager, state: dict, step: int, prompt_name: str, prompt,
                       fault_prefix: str) -> None:
        from prompt_tuning import fault_points

        step_dir = os.path.join(str(mngr.directory), str(step))
        if os.path.isdir(step_dir):  # an unfinished save of this step (no checksums): redo it
            if jax.process_index() == 0:
                shutil.rmtree(step_dir)
            mngr.reload()
        mngr.save(step, args=ocp.args.StandardSave(state))
        mngr.wait_until_finished()
        fault_points.reached(f"{fault_prefix}_written")
        self._write_prompt(prompt_name, prompt)
        if jax.process_index() == 0:
            write_checksums(step_dir)

    def save(self, state: dict, prompt=None) -> None:
        """Writes `state` as the latest checkpoint (and the prompt as prompts/step_<step>.npy), then
        deletes the verified steps beyond the newest `keep`."""
        from prompt_tuning import fault_points

        step = int(np.asarray(jax.device_get(state["step"])))
        if self.latest_step() == step:
            return
        self._save_verified(self._latest, state, step, f"step_{step}.npy", prompt, "save")
        fault_points.reached("save_committed")
        for old in [s for s in _step_dirs(os.path.join(self.model_dir, LATEST_DIR)) if s != step][self.keep - 1:]:
            self._latest.delete(old)

    def save_best(self, state: dict, value: float, metrics: dict, prompt=None) -> None:
        """Replaces the best checkpoint with `state` (its validation `value` and `metrics`).

        Order: best/<step>/ (verified), prompts/best.npy, best.json (the commit), then older best steps go.
        """
        from prompt_tuning import fault_points

        step = int(np.asarray(jax.device_get(state["step"])))
        best_dir = os.path.join(self.model_dir, BEST_DIR)
        if not os.path.exists(os.path.join(best_dir, str(step), CHECKSUMS)):
            self._save_verified(self._best, state, step, "best.npy", prompt, "best")
        else:
            self._write_prompt("best.npy", prompt)
        fault_points.reached("best_before_commit")
        if jax.process_index() == 0:
            info = json.dumps({"step": step, "value": value, "metrics": metrics}, indent=1).encode()
            _atomic_write(os.path.join(best_dir, BEST_INFO), lambda f: f.write(info))
        for old in _step_dirs(best_dir):
            if old != step:
                self._best.delete(old)

    # -- reads --------------------------------------------------------------
    def _move_aside(self, which: str, step: int, reason: str) -> None:
        src = os.path.join(self.model_dir, which, str(step))
        if jax.process_index() == 0 and os.path.isdir(src):
            if reason == "unfinished":
                shutil.rmtree(src)
            else:
                dst = os.path.join(self.model_dir, CORRUPT_DIR, f"{which}-{step}")
                i = 1
                while os.path.exists(dst):
                    dst, i = os.path.join(self.model_dir, CORRUPT_DIR, f"{which}-{step}-{i}"), i + 1
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                os.replace(src, dst)
        (self._latest if which == LATEST_DIR else self._best).reload()

    def _try(self, which: str, step: int, abstract_state: Any) -> Optional[dict]:
        mngr = self._latest if which == LATEST_DIR else self._best
        step_dir = os.path.join(self.model_dir, which, str(step))
        try:
            verify(step_dir)
            return _restore(mngr, step, abstract_state)
        except UnfinishedCheckpoint:
            self.say(f"note: {step_dir} is an unfinished save (no {CHECKSUMS}); discarded")
            self._move_aside(which, step, "unfinished")
        except CheckpointError as e:
            self.say(f"warning: {e}; moved to {os.path.join(self.model_dir, CORRUPT_DIR)}/")
            self._move_aside(which, step, "corrupt")
        return None

    def check_best(self, abstract_state: Any) -> bool:
        """Verifies the best checkpoint best.json names and removes leftovers of interrupted best writes.

        True if the best is intact (or there is none); False if it was corrupt (then moved aside with
        best.json, and the caller must rebuild it).
        """
        info = self.best_info()
        best_dir = os.path.join(self.model_dir, BEST_DIR)
        for s in _step_dirs(best_dir):
            if info is None or s != info["step"]:
                if jax.process_index() == 0:
                    shutil.rmtree(os.path.join(best_dir, str(s)))
        self._best.reload()
        if info is None:
            return True
        if os.path.isdir(os.path.join(best_dir, str(info["step"]))) and \
                self._try(BEST_DIR, info["step"], abstract_state) is not None:
            return True
        if jax.process_index() == 0:
            os.makedirs(os.path.join(self.model_dir, CORRUPT_DIR), exist_ok=True)
            os.replace(os.path.join(best_dir, BEST_INFO),
                       os.path.join(self.model_dir, CORRUPT_DIR, f"{BEST_INFO}-{info['step']}"))
        self.say(f"warning: the best checkpoint (step {info['step']}) is missing or corrupt")
        return False

    def restore_intact(self, abstract_state: Any) -> Optional[dict]:
        """The newest intact state: a latest checkpoint, or the best one when it is newer than every
        intact latest one (its state is the same train state). None if there is no checkpoint at all.

        Corrupt steps are reported (one line each) and moved aside; unfinished ones are discarded.
        Raises CheckpointError when checkpoints existed but none is intact.
        """
        directory = os.path.join(self.model_dir, LATEST_DIR)
        info = self.best_info()
        candidates = [(s, LATEST_DIR) for s in _step_dirs(directory)]
        if info is not None and os.path.isdir(os.path.join(self.model_dir, BEST_DIR, str(info["step"]))):
            candidates.append((info["step"], BEST_DIR))
        candidates.sort(key=lambda c: (c[0], c[1] == LATEST_DIR), reverse=True)
        bad = []
        for step, which in candidates:
            was_finished = os.path.exists(os.path.join(self.model_dir, which, str(step), CHECKSUMS))
            state = self._try(which, step, abstract_state)
            if state is not None:
                if bad:
                    where = "the best checkpoint" if which == BEST_DIR else "the newest intact checkpoint"
                    self.say(f"note: resuming from {where}, step {step}")
                return state
            if was_finished:
                bad.append(step)
        if bad:
            raise CheckpointError(f"no intact checkpoint in {self.model_dir} (corrupt: steps "
                                  f"{', '.join(map(str, bad))}, moved to {CORRUPT_DIR}/); remove MODEL_DIR "
                                  f"or choose a new one to start over")
        return None

    def discard_latest(self) -> None:
        """Deletes every latest checkpoint (a run restarting from step 0 rewrites them)."""
        for step in _step_dirs(os.path.join(self.model_dir, LATEST_DIR)):
            if jax.process_index() == 0:
                shutil.rmtree(os.path.join(self.model_dir, LATEST_DIR, str(step)))
        self._latest.reload()

    def restore(self, abstract_state: Any, which: str = "latest") -> dict:
        """The latest (or best) state, verified, placed as `abstract_state`'s ShapeDtypeStructs say."""
        name = LATEST_DIR if which == "latest" else BEST_DIR
        mngr = self._latest if which == "latest" else self._best
        steps = _step_dirs(os.path.join(self.model_dir, name))
        if not steps:
            raise CheckpointError(f"no {which} checkpoint in {self.model_dir}")
        verify(os.path.join(self.model_dir, name, str(steps[0])))
        return _restore(mngr, steps[0], abstract_state)

    def close(self) -> None:
        self._latest.close()
        self._best.close()


# -- a method's plain parameters (prompt_tuning/methods/export.py) -------------------------------

METHOD_PARAMS_FILE = "method_params.safetensors"  # flat parameter paths -> arrays; metadata {"step": "<int>"}


def is_method_export(path: str) -> bool:
    """True for a directory holding an exported method's plain parameters (METHOD_PARAMS_FILE)."""
    return os.path.isdir(path) and os.path.exists(os.path.join(path, METHOD_PARAMS_FILE))


def save_method_params(path: str, flat: dict, step: Optional[int]) -> None:
    """Writes {'encoder/layers_0/attention/prefix_key': array, ...} to path/METHOD_PARAMS_FILE (float32, atomically)."""
    os.makedirs(path, exist_ok=True)
    tensors = {k: np.ascontiguousarray(np.asarray(v, np.float32)) for k, v in flat.items()}
    metadata = {"step": str(step)} if step is not None else {}
    _atomic_write(os.path.join(path, METHOD_PARAMS_FILE), lambda f: f.write(st_numpy.save(tensors, metadata)))


def _read_method_params(path: str) -> tuple[dict, Optional[int]]:
    file = os.path.join(path, METHOD_PARAMS_FILE)
    try:
        with safe_open(file, framework="numpy") as f:
            step = (f.metadata() or {}).get("step")
            flat = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # a truncated or foreign file
        raise CheckpointError(f"{file} cannot be read ({type(e).__name__}: {e})") from None
    return {tuple(k.split("/")): v for k, v in flat.items()}, (int(step) if step is not None else None)


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


def read_params(path: str) -> tuple[dict, Optional[int]]:
    """(trainable params as numpy, step) of a trainer checkpoint, without a target structure.

    The step is verified first (CheckpointError, one line, if it has no checksums.json or a file
    does not match), so eval / infer never read an unverifiable checkpoint. A directory holding
    METHOD_PARAMS_FILE (an exported method, e.g. prefix tuning's plain prefixes) gives its arrays
    and the step it was exported from (None if unrecorded).
    """
    if is_method_export(path):
        flat, step = _read_method_params(path)
        return traverse_util.unflatten_dict(flat), step
    directory, step = find_state_dir(path)
    verify(os.path.join(directory, str(step)))
    mngr = ocp.CheckpointManager(directory)
    try:
        state = _restore(mngr, step)
    finally:
        mngr.close()
    return jax.tree.map(np.asarray, state["params"]), step
