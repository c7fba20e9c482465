"""Paper Fig 1 ("scale"): task score vs model size for model tuning, prompt tuning and prompt design.

Claim tested: prompt tuning's gap to model tuning shrinks as the frozen model
grows and closes at the largest size (XXL, 11B, in the paper), while prompt
design (here: zero-shot, a task description in front of the input) stays far
below both.

Grid: every size of the backend x {model tuning, prompt tuning at the centre
point (the backend's centre length: 100 for the paper; class-label init;
longest LM adaptation), prompt design, few-shot prompt design (backends with
`few_shot`: k = backend.shots demonstrations, the paper's GPT-3 reference)}
x every task x seeds {0, 1, 2} (backend.scale_seeds for the trained methods:
recall 0-4). Prompt design is deterministic (no training), so it runs with
seed 0 only; few-shot runs seeds 0-2 (the seed picks the demonstrations). The
prompt-tuning runs the ablations' centre point also has are the same runs
(shared by name; trained once).

Run it:

    python -m experiments.runner --sweep scale --backend real --print-commands   # or --workers N here
    python -m experiments.collect --sweep scale --backend real --out experiments/results/real/scale.csv
    python -m experiments.plots scale experiments/results/real/scale.csv --out experiments/results/real/scale

Real scale: 5 sizes x 8 tasks x 7 = 280 command lines for a cluster (TPU/GPU hours per XL/XXL run).
(experiments/results/mini_v1/ holds this sweep run on the first mini world: retired, see its README.)
"""
from __future__ import annotations

from typing import Optional

from experiments import spec as S
from experiments.backends import Backend

NAME = "scale"
METHODS = (S.MODEL_TUNING, S.PROMPT_TUNING, S.PROMPT_DESIGN, S.FEW_SHOT)


def methods(backend: Backend) -> tuple[str, ...]:
    """Fig 1's methods on `backend`: few-shot prompt design only where the backend can build it."""
    return tuple(m for m in METHODS if m != S.FEW_SHOT or backend.few_shot is not None)


def specs(backend: Backend, results_dir: Optional[str] = None) -> list[S.RunSpec]:
    """Fig 1's runs. A backend with a model-tuning search (backend.model_tuning_choice) runs model
    tuning at the setting chosen on validation in `results_dir` (SpecError until the search is done)."""
    out = []
    centre = backend.centre
    for method in methods(backend):
        setting = S.Setting(method=method, prompt_length=centre.prompt_length, init=centre.init,
                            objective=centre.objective, lm_steps=centre.lm_steps,
                            shots=backend.shots if method == S.FEW_SHOT else None)
        trained = backend.scale_seeds or backend.seeds
        seeds = {S.PROMPT_DESIGN: backend.seeds[:1], S.FEW_SHOT: backend.seeds}.get(method, trained)
        for size in backend.sizes:
            for task in backend.tasks:
                if method == S.MODEL_TUNING and backend.model_tuning_choice is not None:
                    setting = backend.model_tuning_choice(size, task, results_dir)
                for seed in seeds:
                    out.append(backend.spec(sweep=NAME, panel="methods", size=size, task=task, setting=setting,
                                            seed=seed, value=method))
    return out
