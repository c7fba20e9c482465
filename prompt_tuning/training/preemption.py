"""Preemption: SIGTERM (or Ctrl-C) asks the training loop to save a checkpoint and return.

The handler only sets a flag; the loop checks it after every step, so the
checkpoint is written between steps, never in the middle of an update. With
several processes the flag is OR-ed across them every step, so all of them
stop (and take part in the checkpoint save) at the same step.
"""
from __future__ import annotations

import signal
import threading
from typing import Optional

import jax
import numpy as np


class StopSignal:
    """SIGTERM (and SIGINT) set a flag; the loop saves a checkpoint and returns at the next step."""

    def __init__(self):
        self.signum: Optional[int] = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def requested(self) -> bool:
        """True once a signal arrived here, or (multi-host) on any process, so all stop at the same step."""
        flag = self.signum is not None
        if jax.process_count() > 1:  # every process must stop at the same step
            from jax.experimental import multihost_utils

            flag = bool(np.any(multihost_utils.process_allgather(np.asarray(flag))))
        return flag
