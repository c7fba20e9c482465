"""Train a prompt (or a whole model): `python -m prompt_tuning.train --gin_file=gin/prompt_len_20.gin`.

Flags and macros: prompt_tuning/training/README.md (and `--help`).
"""
import sys

from prompt_tuning.training import cli


def _run(flags: dict) -> int:
    import gin

    from prompt_tuning.training import trainer

    summary = trainer.train_and_evaluate(gin_files=flags["gin_files"], config_str=gin.config_str())
    del summary
    return 0


def main(argv=None) -> int:
    return cli.main(_run, sys.argv[1:] if argv is None else argv, "prompt_tuning.train")


if __name__ == "__main__":
    sys.exit(main())
