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
             num_layers=1)
