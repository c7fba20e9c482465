"""Prompt tuning's learning-rate check at the centre point (the issue's "{0.3, 1.0} at least").

    python -m experiments.runner --sweep prompt_lr --backend recall --workers 1
    python -m experiments.recall_tables --sweep prompt_lr

Every size x task of the backend, seed 0, the centre setting at each rate of `RATES`. The paper's
0.3 (gin/runs/prompt_finetune.gin) is the centre run itself (shared by name with Fig 1 and Fig 3);
other rates override learning_rate_schedule.base_learning_rate. The check is read on validation
(collect.py); if 1.0 wins by more than the seed spread, the protocol's rate should be revisited.
"""
from __future__ import annotations

import dataclasses

from experiments import spec as S
from experiments.backends import Backend

NAME = "prompt_lr"
PAPER_RATE = 0.3  # gin/runs/prompt_finetune.gin
RATES = (0.3, 1.0)


def specs(backend: Backend) -> list[S.RunSpec]:
    out = []
    for rate in RATES:
        setting = dataclasses.replace(backend.centre, learning_rate=None if rate == PAPER_RATE else rate)
        for size in backend.sizes:
            for task in backend.tasks:
                out.append(backend.spec(sweep=NAME, panel="prompt_lr", size=size, task=task, setting=setting,
                                        seed=backend.seeds[0], value=rate))
    return out
