"""The SuperGLUE score: the metrics averaged within each task, then over the 8 benchmark tasks.

As the SuperGLUE leaderboard computes it (and the paper's Table 3): a task
with several metrics (CB: accuracy and F1; MultiRC: F1a and exact match;
ReCoRD: EM and F1) counts once, with the mean of its metrics. The result
says which tasks it averaged, so a partial score is never mistaken for one.
"""
from __future__ import annotations

import collections
from typing import Any, Mapping, Optional

import numpy as np

from prompt_tuning.data import tasks
from prompt_tuning.data.superglue import BENCHMARK_TASKS


def superglue_score(results: Mapping[str, Any], task_of: Optional[Any] = None) -> dict[str, Any]:
    """Mean over tasks of the mean of each task's metrics.

    `results` is either {task: {metric: value}} or a flat {'<task name>/<metric>':
    value} dict as the trainer writes it; task names are reduced to the
    SuperGLUE task with `task_of(name)` (default: tasks.base_task). Tasks
    outside the 8 of the benchmark (AX-b, AX-g, transfer tasks) are ignored.

    Returns {'score', 'tasks' (averaged, in benchmark order), 'missing' (of the
    8), 'complete' (all 8 present), 'per_task' {task: mean}, 'report' (one line)}.
    """
    if task_of is None:
        def task_of(name):
            try:
                return tasks.base_task(name)
            except ValueError:
                return None

    per_metric: dict[str, list[float]] = collections.defaultdict(list)
    for key, value in results.items():
        if isinstance(value, Mapping):
            items = [(key, v) for v in value.values()]
        else:
            items = [(key.rsplit("/", 1)[0], value)] if "/" in key else []
        for name, v in items:
            task = name if name in BENCHMARK_TASKS else task_of(name)
            if task in BENCHMARK_TASKS:
                per_metric[task].append(float(getattr(v, "value", v)))
    per_task = {t: float(np.mean(per_metric[t])) for t in BENCHMARK_TASKS if per_metric.get(t)}
    averaged = list(per_task)
    missing = [t for t in BENCHMARK_TASKS if t not in per_task]
    score = float(np.mean(list(per_task.values()))) if per_task else float("nan")
    named = ", ".join(averaged) or "none"
    what = f"all 8 SuperGLUE tasks ({named})" if not missing else \
        f"{len(averaged)} of 8 tasks ({named}; missing {', '.join(missing)})"
    report = f"SuperGLUE score {score:.2f}: mean of per-task metric means over {what}"
    return {"score": score, "tasks": averaged, "missing": missing, "complete": not missing,
            "per_task": per_task, "report": report}
