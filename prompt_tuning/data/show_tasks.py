"""List the registered tasks and print preprocessed examples: what the model really reads.

    python -m prompt_tuning.data.show_tasks                                  # every task, by family
    python -m prompt_tuning.data.show_tasks 'rte'                            # names matching a regex
    python -m prompt_tuning.data.show_tasks recall_world_boolq --example 2  # the main command's task
    python -m prompt_tuning.data.show_tasks taskless_super_glue_rte_v102_jsonl --example 1 --split train

Registers what the trainer's command line registers: every name of the
grammar in prompt_tuning/data/tasks.py (SuperGLUE, transfer, pretraining;
`data.register_tasks()`), plus the recall world's tasks (`recall_world_*`,
the main command's; files written to its cache, seconds the first time). An
example is shown after the task's preprocessors (T5's text-to-text format,
tokenisation, EOS), as text and as token ids; tasks whose data is not on
this machine say so in one line. The regex is matched with `re.search`.
Exit status: 0, or 2 for a bad flag / regex or a task whose examples
cannot be read.
"""
from __future__ import annotations

import os
import re
import sys
from typing import Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import seqio  # noqa: E402
from absl import flags  # noqa: E402

from prompt_tuning import data  # noqa: E402
from prompt_tuning.data.recall_world import default as recall_default  # noqa: E402
from prompt_tuning.data.recall_world import registry as recall_registry  # noqa: E402

RECALL_WORLD_FAMILY = "recall world"


def register_all() -> list[str]:
    """Registers the grammar's tasks and the recall world's; returns the names."""
    data.register_tasks()
    recall_registry.prepare_recall_world(vocab_path=str(recall_default.ASSETS_DIR / "spm.model"))
    return sorted(seqio.TaskRegistry.names())


def family(name: str) -> str:
    """'superglue', 'glue', 'mrqa', 'pretraining' (the grammar), 'recall world', or 'other'."""
    if name.startswith(recall_registry.PREFIX):
        return RECALL_WORLD_FAMILY
    try:
        return data.parse_task_name(name)["family"]
    except ValueError:
        return "other"


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def format_example(example: dict) -> str:
    """One preprocessed example: each text feature, then each token-id feature with its length."""
    lines = []
    for key in sorted(example):
        value = example[key]
        if isinstance(value, (bytes, str)):
            lines.append(f"  {key}: {_text(value)}")
        elif isinstance(value, np.ndarray) and value.dtype.kind in "iu":
            lines.append(f"  {key} ({value.size} ids): {value.tolist()}")
    return "\n".join(lines)


def examples(name: str, split: str, count: int) -> list[dict]:
    """The first `count` examples of `split`, preprocessed (no truncation, no shuffling)."""
    task = seqio.get_mixture_or_task(name)
    dataset = task.get_dataset(sequence_length=None, split=split, shuffle=False, use_cached=False)
    return list(dataset.take(count).as_numpy_iterator())


def show(pattern: str = "", example: int = 0, split: Optional[str] = None, out=sys.stdout) -> int:
    """Prints the matching task names (grouped by family) and `example` examples of each; the exit status."""
    try:
        regex = re.compile(pattern)
    except re.error as e:
        print(f"error: bad regex {pattern!r}: {e}", file=sys.stderr)
        return 2
    names = [n for n in register_all() if regex.search(n)]
    if not names:
        print(f"error: no registered task matches {pattern!r}", file=sys.stderr)
        return 2
    status = 0
    by_family: dict[str, list[str]] = {}
    for n in names:
        by_family.setdefault(family(n), []).append(n)
    for fam in sorted(by_family):
        print(f"{fam} ({len(by_family[fam])}):", file=out)
        for n in by_family[fam]:
            print(f"  {n}", file=out)
    if example <= 0:
        return status
    for n in names:
        task = seqio.get_mixture_or_task(n)
        splits = list(getattr(task, "splits", ()) or ())
        chosen = split or ("validation" if "validation" in splits else (splits[0] if splits else "train"))
        print(f"\n== {n} [{chosen}]", file=out)
        try:
            rows = examples(n, chosen, example)
        except Exception as e:  # noqa: BLE001  -- absent data (TFDS not prepared, files missing): one line
            print(f"  (no examples: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__})",
                  file=out)
            status = 2
            continue
        for i, row in enumerate(rows):
            print(f"-- example {i}\n{format_example(row)}", file=out)
    return status


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`show_tasks [REGEX] [--example N] [--split S]`; returns the exit status."""
    flag_values = flags.FlagValues()
    flags.DEFINE_integer("example", 0, "Print this many preprocessed examples of each matching task.",
                         flag_values=flag_values)
    flags.DEFINE_string("split", None, "The split to read (default: validation when the task has it).",
                        flag_values=flag_values)
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(f"usage: python -m prompt_tuning.data.show_tasks [REGEX] [--example N] [--split S]\n\n{__doc__}")
        return 0
    try:
        rest = flag_values(["show_tasks"] + argv)[1:]
    except flags.Error as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    if len(rest) > 1:
        print(f"error: one REGEX at most, got {rest}", file=sys.stderr)
        return 2
    return show(rest[0] if rest else "", flag_values.example, flag_values.split)


if __name__ == "__main__":
    sys.exit(main())
