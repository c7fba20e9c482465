"""Predict with a checkpoint: `python -m prompt_tuning.infer --gin_file=gin/prompt_len_20.gin --gin_file=gin/runs/infer.gin --gin.CHECKPOINT_PATH=...`.

Flags and macros: prompt_tuning/training/README.md (and `--help`).
"""
import sys

from prompt_tuning.training import cli, inference


def _run(flags: dict) -> int:
    del flags
    inference.infer()
    return 0


def main(argv=None) -> int:
    """Runs the command with `argv` (default: sys.argv[1:]); returns the exit status."""
    return cli.main(_run, sys.argv[1:] if argv is None else argv, "prompt_tuning.infer")


if __name__ == "__main__":
    sys.exit(main())
