"""Named points where the fault-injection tests kill a run (tests/training/test_faults.py).

`reached(name)` does nothing unless the environment variable PROMPT_TUNING_KILL_AT
names this point: then the process sends itself SIGKILL there, as a preemption or
an out-of-memory kill would, with no chance to clean up. `PROMPT_TUNING_KILL_AT=name:N`
kills at the N-th time the point is reached (1-based; default 1).

Points, in the order a run reaches them:
    startup            MODEL_DIR claimed and locked, before the initial state
    eval_started       an evaluation has begun (nothing of it recorded yet)
    best_written       best/<step>/ written, before prompts/best.npy and best.json
    best_before_commit best/<step>/ and best.npy written, best.json not yet
    save_written       orbax has renamed checkpoints/<step>/, before the prompt and checksums.json
    save_committed     checksums.json written, before older steps are deleted
    final_saved        the last step's checkpoint committed, before the end-of-run evaluation
"""
from __future__ import annotations

import os
import signal

ENV_VAR = "PROMPT_TUNING_KILL_AT"
_counts: dict[str, int] = {}


def reached(name: str) -> None:
    spec = os.environ.get(ENV_VAR)
    if not spec:
        return
    target, _, nth = spec.partition(":")
    if target != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
