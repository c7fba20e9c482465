"""Metrics to TensorBoard event files and to MODEL_DIR/metrics.jsonl (process 0 only).

    MODEL_DIR/metrics.jsonl   one JSON object per line: {"step", "kind": "train"|"eval", <name>: value}
                              (also "test": TEST_SPLITS at the best step; "early_stop": the step a run
                              stopped at for want of improvement, {"best_step", "patience"})
    MODEL_DIR/train/, eval/   TensorBoard event files (`tensorboard --logdir MODEL_DIR`)

The JSON-lines file is appended and flushed per record, so a killed run keeps
everything logged before the kill; a resumed run appends after it (records of
steps past the resumed checkpoint may then appear twice; readers keep the last).
"""
from __future__ import annotations

import json
import math
import os
from typing import Mapping, Optional

import jax

JSONL = "metrics.jsonl"
EARLY_STOP = "early_stop"  # the kind of the record a run stopped early by patience writes at its last step


def early_stopped(model_dir: str) -> bool:
    """True if the run in MODEL_DIR stopped early (train_and_evaluate's patience): it is finished."""
    return bool(read(model_dir, EARLY_STOP))


class MetricsWriter:
    """Appends metrics to MODEL_DIR/metrics.jsonl and TensorBoard files (process 0 only)."""
    def __init__(self, model_dir: str, tensorboard: bool = True):
        self.enabled = jax.process_index() == 0
        self.path = os.path.join(model_dir, JSONL)
        self._tb = {}
        self._tensorboard = tensorboard and self.enabled
        self.model_dir = model_dir

    def _summary_writer(self, kind: str):
        if kind not in self._tb:
            import tensorflow as tf  # already loaded by seqio; imported lazily for clarity

            self._tb[kind] = tf.summary.create_file_writer(os.path.join(self.model_dir, kind))
        return self._tb[kind]

    def write(self, step: int, kind: str, metrics: Mapping[str, float]) -> None:
        """One record {'step', 'kind', metrics...}; non-finite values are written as strings ('nan')."""
        if not self.enabled:
            return
        clean = {k: (float(v) if math.isfinite(float(v)) else str(float(v))) for k, v in metrics.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": int(step), "kind": kind, **clean}) + "\n")
        if self._tensorboard:
            import tensorflow as tf

            from tensorflow.core.framework import summary_pb2

            # tf.summary.scalar lives in the tensorboard package, which is not a dependency;
            # this writes the same record (a float tensor tagged for the 'scalars' plugin).
            meta = summary_pb2.SummaryMetadata(
                plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
            with self._summary_writer(kind).as_default(step=int(step)):
                for k, v in metrics.items():
                    tf.summary.write(k, tf.constant(float(v), tf.float32), metadata=meta)
            self._tb[kind].flush()

    def close(self) -> None:
        """Closes the TensorBoard writers."""
        for w in self._tb.values():
            w.close()


def parse_jsonl(lines, kind: Optional[str] = None) -> list[dict]:
    """metrics.jsonl lines -> records sorted by (step, kind), the last record per (step, kind) kept.

    A resumed run rewrites the records of steps it repeats, and a killed run can leave a cut
    last line: both are expected, so duplicates collapse and unparsable lines are skipped.
    """
    latest = {}
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:  # a line cut by a kill
            continue
        if not isinstance(rec, dict) or "step" not in rec:
            continue
        rec_kind = str(rec.get("kind", "eval"))
        if kind is None or rec_kind == kind:
            latest[(int(rec["step"]), rec_kind)] = rec
    return [latest[k] for k in sorted(latest)]


def read(model_dir: str, kind: Optional[str] = None) -> list[dict]:
    """The records of MODEL_DIR/metrics.jsonl (of one kind); see `parse_jsonl`."""
    path = os.path.join(model_dir, JSONL)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return parse_jsonl(f, kind)
