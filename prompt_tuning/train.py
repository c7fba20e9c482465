"""Train a prompt (or a whole model): `python -m prompt_tuning.train --gin_file=gin/prompt_len_20.gin`.

Flags and macros: prompt_tuning/training/README.md (and `--help`).
"""
import sys

import gin

from prompt_tuning.training import cli, trainer


def _run(flags: dict) -> int:
    trainer.train_and_evaluate(gin_files=flags["gin_files"], config_str=gin.config_str())
    return 0


def main(argv=None) -> int:
    """Runs the command with `argv` (default: sys.argv[1:]); returns the exit status."""
    return cli.main(_run, sys.argv[1:] if argv is None else argv, "prompt_tuning.train")


if __name__ == "__main__":
    sys.exit(main())
