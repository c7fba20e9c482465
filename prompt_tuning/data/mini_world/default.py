"""The embedded default of the main command: a shipped mini model, its vocabulary and a mini task.

    assets/mini_world/spm.model          the mini world's SentencePiece model (seed 0)
    assets/mini_world/default/           the pretrained (span corruption + LM adaptation)
                                         default model, native format (params.safetensors
                                         with T5X names + config.json)
    assets/mini_world/README.md          sizes and the exact command that reproduces them

`ensure_default_assets()` writes the task files (deterministic, < 1 s) into a
cache directory, registers the mini world's SeqIO tasks, checks the shipped
files and returns where everything is. It never trains: the model is
shipped (building it takes longer than the main command's 5-minute budget);
when it is missing the error names the command that rebuilds it.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import pathlib
from typing import Optional

import gin

from prompt_tuning.data.mini_world import registry
from prompt_tuning.data.mini_world import tasks as mini_tasks
from prompt_tuning.data.mini_world import world as world_lib

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
ASSETS_DIR = REPO_ROOT / "assets" / "mini_world"
CACHE_ENV = "MINI_WORLD_CACHE"
DEFAULT_SEED = 0
DEFAULT_TASK = "record"
REBUILD_COMMAND = "python experiments/mini_world/build_default.py"


@dataclasses.dataclass(frozen=True)
class DefaultAssets:
    model_dir: str    # INITIAL_CHECKPOINT_PATH
    vocab_path: str   # the SentencePiece model (seqio adds 100 extra ids)
    task_name: str    # MIXTURE_OR_TASK_NAME
    data_dir: str     # <data_dir>/<task>/{train,val}.jsonl


def cache_dir(seed: int = DEFAULT_SEED) -> str:
    root = os.environ.get(CACHE_ENV) or str(REPO_ROOT / ".cache" / "mini_world")
    return os.path.join(root, f"seed{seed}")


def ensure_task_files(data_dir: str, seed: int = DEFAULT_SEED) -> str:
    """Writes every mini task's jsonl files under data_dir unless all are there."""
    files = [os.path.join(data_dir, t, f) for t in mini_tasks.TASKS for f in mini_tasks.SPLIT_FILES.values()]
    if not all(os.path.exists(f) for f in files):
        mini_tasks.write_tasks(data_dir, world_lib.build_world(seed))
    return data_dir


def majority_baseline(data_dir: str, task: str, split: str = "validation") -> tuple[str, float]:
    """(most frequent answer in `split`, the accuracy of always giving it): the floor a prompt must beat."""
    path = os.path.join(data_dir, task, mini_tasks.SPLIT_FILES[split])
    from prompt_tuning.data.sources import read_jsonl  # DataFileError `file:line: ...` for a bad row

    rows = list(read_jsonl(path))
    if task == "record":  # an example is right if the constant is among its answers
        golds = [{a["text"] for qa in r["qas"] for a in qa["answers"]} for r in rows]
    else:
        golds = [{str(r["label"])} for r in rows]
    best, hits = collections.Counter(a for g in golds for a in g).most_common(1)[0]
    return best, hits / len(rows)


@gin.configurable
def ensure_default_assets(task: str = DEFAULT_TASK, assets_dir: Optional[str] = None,
                          data_dir: Optional[str] = None) -> DefaultAssets:
    """Task files written, tasks registered, shipped model and vocabulary checked."""
    assets = pathlib.Path(assets_dir or ASSETS_DIR)
    vocab_path, model_dir = assets / "spm.model", assets / "default"
    missing = [str(p) for p in (vocab_path, model_dir / "params.safetensors", model_dir / "config.json")
               if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"mini-world default assets missing: {', '.join(missing)}; rebuild them with `{REBUILD_COMMAND}`")
    data_dir = ensure_task_files(data_dir or os.path.join(cache_dir(DEFAULT_SEED), "tasks"))
    registry.register_mini_world_tasks(data_dir, str(vocab_path))
    answer, accuracy = majority_baseline(data_dir, task)
    print(f"mini world: task {registry.task_name(task)}, majority baseline on validation "
          f"{100 * accuracy:.2f} (always {answer!r})", flush=True)
    return DefaultAssets(str(model_dir), str(vocab_path), registry.task_name(task), data_dir)
