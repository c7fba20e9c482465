"""Evaluate a checkpoint: `python -m prompt_tuning.eval --gin_file=gin/eval_prompt.gin --gin.CHECKPOINT_PATH=...`.

Flags and macros: prompt_tuning/training/README.md (and `--help`).
"""
import sys

from prompt_tuning.training import cli


def _run(flags: dict) -> int:
    from prompt_tuning.training import inference

    inference.evaluate_checkpoint()
    return 0


def main(argv=None) -> int:
    return cli.main(_run, sys.argv[1:] if argv is None else argv, "prompt_tuning.eval")


if __name__ == "__main__":
    sys.exit(main())
