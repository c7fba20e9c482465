"""Export a trained method as plain arrays (prompt_tuning/training/export.py): LoRA merged into the weights,
prefix tuning's prefixes without the MLP, P-tuning's prompt without its encoder, multi-task prompts per task:
`python -m prompt_tuning.export --gin_file=gin/methods/<lora|prefix|p_tuning|multitask_prompt>.gin
--gin_file=gin/default_world.gin --gin_file=gin/runs/export.gin --gin.CHECKPOINT_PATH="'runs/<run>/best'"
--gin.OUTPUT_DIR="'runs/<run>/export'"`; how each export is served: gin/runs/export.gin.

Flags and macros: prompt_tuning/training/README.md (and `--help`).
"""
import sys

from prompt_tuning.training import cli, export


def _run(flags: dict) -> int:
    del flags
    export.export_merged()
    return 0


def main(argv=None) -> int:
    """Runs the command with `argv` (default: sys.argv[1:]); returns the exit status."""
    return cli.main(_run, sys.argv[1:] if argv is None else argv, "prompt_tuning.export")


if __name__ == "__main__":
    sys.exit(main())
