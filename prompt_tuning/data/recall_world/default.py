"""The embedded default of the main command: a shipped recall-world model, its vocabulary and a task.

    assets/recall_world/spm.model        the recall world's SentencePiece model (seed 0)
    assets/recall_world/default/         a ladder rung, pretrained (span corruption + LM
                                         adaptation) by experiments/recall_world/build_ladder.py,
                                         native format (params.safetensors + config.json)
    assets/recall_world/baselines.json   the untrained-frozen-model baseline of the default
                                         run, measured by the command it names
    assets/recall_world/README.md        sizes and the commands that reproduce them

`ensure_recall_world_default()` (a gin startup hook) writes the world's files into the
cache (deterministic; 3.6 s the first time, measured at load 4), registers
the tasks, checks the shipped files and prints the baselines a score must beat
on the test split. It never trains; a missing file is an error naming the
command that rebuilds it.
"""
from __future__ import annotations

import json
import os
import pathlib

import gin

from prompt_tuning.data.recall_world import baselines, registry

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
ASSETS_DIR = REPO_ROOT / "assets" / "recall_world"
REBUILD_COMMAND = "python -m experiments.recall_world.build_default"


@gin.configurable
def ensure_recall_world_default(task: str = "record", split: str = "test", assets_dir: str | None = None) -> dict:
    """Writes and registers the world; prints majority, lookup and untrained-frozen baselines on `split`.

    Returns {'model_dir', 'vocab_path', 'task_name', 'baselines'}. Raises FileNotFoundError (one line,
    with the rebuild command) when a shipped file is missing.
    """
    assets = pathlib.Path(assets_dir or ASSETS_DIR)
    vocab_path, model_dir = assets / "spm.model", assets / "default"
    missing = [str(p) for p in (vocab_path, model_dir / "params.safetensors", model_dir / "config.json")
               if not p.exists()]
    if missing:
        raise FileNotFoundError(f"recall-world default assets missing: {', '.join(missing)}; "
                                f"rebuild them with `{REBUILD_COMMAND}`")
    info = registry.prepare_recall_world(vocab_path=str(vocab_path))
    name = registry.task_name(task)
    found = baselines.baselines(os.path.join(info["task_dir"], task), task, split)
    measured = assets / "baselines.json"
    if measured.exists():
        untrained = json.loads(measured.read_text()).get(name, {}).get(split)
        if untrained is not None:
            found["untrained_frozen"] = untrained
    note = (" (untrained_frozen: the same prompt tuning on the untrained frozen model, measured by "
            "experiments/recall_world/build_default.py)") if "untrained_frozen" in found else ""
    print(f"recall world: task {name}, baselines on {split}: "
          + ", ".join(f"{k} {v:.2f}" for k, v in found.items()) + note, flush=True)
    return {"model_dir": str(model_dir), "vocab_path": str(vocab_path), "task_name": name, "baselines": found}
