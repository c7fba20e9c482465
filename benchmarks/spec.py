"""What one benchmark run measures: model size, shapes, step counts, dtypes.

A `Spec` travels to every worker process as JSON, so all workers of a run
measure exactly the same shapes.

Shape letters: B batch, T input length, L target length, P prompt length,
K prompts in a mixed batch, C class labels (rank classification).
"""
from __future__ import annotations

import dataclasses
import json
from typing import Optional


@dataclasses.dataclass(frozen=True)
class Spec:
    size: str = "small"           # prompt_tuning.models.t5.CONFIGS key; random weights
    batch: int = 8                # B
    input_len: int = 256          # T
    target_len: int = 4           # L
    prompt_len: int = 100         # P
    dropout_rate: float = 0.1     # gin/runs/train.gin's DROPOUT_RATE, the same for PEFT
    warmup: int = 3               # untimed steps after compilation
    steps: int = 10               # timed steps (the median is reported)
    peft_warmup: int = 3
    peft_steps: int = 5           # PEFT is ~2 s/step on a 2-core CPU at the full shapes
    eval_batch: int = 8           # examples per eval batch (single- and mixed-prompt alike)
    eval_prompts: int = 5         # K prompts in the mixed batch
    eval_labels: int = 2          # C verbalizers scored per example (rank classification)
    eval_steps: int = 10
    matmul_size: int = 4096       # n of the n x n x n float32 matmul that measures the peak
    dtype: str = "float32"        # activation dtype (T5Config.dtype); bfloat16 on accelerators
    frozen_dtype: str = "float32"  # storage dtype of the frozen params passed to the step
    vocab_size: Optional[int] = None  # override (None: the size's own, 32128)
    num_layers: Optional[int] = None  # encoder and decoder layers override (None: the size's own)
    remat: str = "none"           # T5Config.remat of every train step: 'none', 'full' or 'dots'
    # The real-length benchmark (benchmarks/real_bench.py): the RTE train set, one epoch's layouts.
    real_batch: int = 32          # B of the real-length training steps
    real_inputs: int = 512        # TASK_FEATURE_LENGTHS['inputs'] (fixed padding)
    real_buckets: tuple = (64, 96, 128, 192, 256, 384)  # gin/runs/length_buckets.gin's
    real_window: int = 50         # TrainData.bucket_window
    real_steps: int = 2           # timed steps per distinct shape (after the compiling call)
    real_peft_points: int = 6     # lengths at which the PEFT step is timed (interpolated between)
    real_eval_examples: int = 277  # RTE validation's size
    real_eval_batch: int = 16
    real_max_examples: Optional[int] = None  # use only the first N train examples (CI)
    real_layers: Optional[int] = None  # encoder and decoder layers of the real-length runs (None: num_layers)
    real_pack_width: Optional[int] = None  # packed encoder row width, prompts included (None: P + real_inputs)
    real_pack_target_width: int = 32  # packed decoder row width
    real_pack_row_multiple: int = 1  # packed row counts rounded up to a multiple of this (fewer shapes)

    @property
    def encoder_len(self) -> int:
        """P + T: what the prompted encoder sees."""
        return self.prompt_len + self.input_len

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Spec":
        return cls(**json.loads(text))

    def replace(self, **kw) -> "Spec":
        return dataclasses.replace(self, **kw)


# The shapes: T5 1.1 Small, batch 8, 256 input tokens, 4 targets, prompt 100, float32.
FULL = Spec()

# CI: the same code paths at toy shapes, a few seconds of compute per worker.
QUICK = Spec(size="test", batch=2, input_len=16, target_len=4, prompt_len=5, warmup=1, steps=3,
             peft_warmup=1, peft_steps=2, eval_batch=5, eval_steps=2, matmul_size=512, vocab_size=512,
             num_layers=1, real_batch=8, real_steps=1, real_peft_points=3, real_eval_examples=24, real_eval_batch=8,
             real_max_examples=96)
