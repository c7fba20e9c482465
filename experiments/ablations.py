"""Paper Fig 3 ("ablations"): four prompt-tuning ablations, each against model size.

Every panel varies one factor and holds the others at the centre point
(the backend's centre prompt length: the paper's 100 for real T5 1.1;
class-label init; LM adaptation at the backend's longest budget: 100K steps
for real T5 1.1):

  (a) prompt_length   {1, 5, 20, 100, 150}
      claim: beyond ~20 tokens gains are marginal; 150 is slightly worse than
      100 for large models; the spread shrinks with scale.
  (b) init            {random uniform, sampled vocabulary, class label}
      claim: class label >= sampled vocab > random uniform, and the gap
      vanishes at the largest size.
  (c) objective       {span corruption, span corruption + sentinel, LM adaptation}
      claim: plain span corruption is poor (near 0 for mid sizes), the
      sentinel helps a little, LM adaptation helps at every size.
  (d) lm_steps        {0, then the backend's budgets}: real {0, 10K, 50K, 100K}
      claim: longer LM adaptation helps, most for small models.

Panels share runs: (d)'s 0 steps is (c)'s span corruption, and each panel's
centre value is the same run (see spec.Setting.normalized); the runner trains
each distinct run once. Each point is 3 seeds (backend.ablation_seeds: fewer
where a backend trims its grid to a budget); plots show their mean and
min-max.

Run it:

    python -m experiments.runner --sweep ablations --backend real --print-commands   # or --workers N here
    python -m experiments.collect --sweep ablations --backend real --out experiments/results/real/ablations.csv
    python -m experiments.plots ablations experiments/results/real/ablations.csv --out experiments/results/real/ablations

Distinct runs = sizes x tasks x seeds x (4 lengths + 2 inits + 2 objectives + 2 LM budgets + the
centre): real scale 5 x 8 x 3 x 11 = 1,320 command lines. `--list` prints the count, `--only REGEX`
selects a subset (e.g. one size). (experiments/results/mini_v1/ holds this sweep run on the first mini
world: retired, see its README.)
"""
from __future__ import annotations

import dataclasses

from experiments import spec as S
from experiments.backends import Backend

NAME = "ablations"
PROMPT_LENGTHS = (1, 5, 20, 100, 150)


def panel_settings(backend: Backend) -> dict[str, list[tuple[object, S.Setting]]]:
    """panel -> [(legend value, setting)], each a one-factor change of the centre point."""
    c = backend.centre
    r = dataclasses.replace
    return {
        "a_prompt_length": [(p, r(c, prompt_length=p)) for p in PROMPT_LENGTHS],
        "b_init": [(i, r(c, init=i)) for i in S.INITS],
        "c_objective": [(o, r(c, objective=o)) for o in backend.objectives],
        "d_lm_steps": [(n, r(c, objective=S.LM_ADAPT, lm_steps=n)) for n in backend.lm_budgets],
    }


def specs(backend: Backend) -> list[S.RunSpec]:
    """Every run of the four panels: each setting x size x task x seed (shared runs appear once per panel)."""
    out = []
    for panel, settings in panel_settings(backend).items():
        for value, setting in settings:
            for size in backend.sizes:
                for task in backend.tasks:
                    for seed in backend.ablation_seeds or backend.seeds:
                        out.append(backend.spec(sweep=NAME, panel=panel, size=size, task=task, setting=setting,
                                                seed=seed, value=value))
    return out
