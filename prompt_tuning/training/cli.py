"""The command line shared by train / eval / infer: T5X's gin flags (absl) and one-line errors.

    --gin_file=PATH          repeatable; later files win
    --gin.PARAM=VALUE        a gin binding, e.g. --gin.TRAIN_STEPS=100 or
                             --gin.train_and_evaluate.seed=1 (applied after all files);
                             rewritten to --gin_bindings='PARAM = VALUE' as T5X's
                             gin_utils.rewrite_gin_args does
    --gin_bindings='P = V'   the same, T5X's long form (repeatable)
    --gin_search_paths=A,B   where `--gin_file` and `include` look (default: the current
                             directory, then the repository root, so gin/... works anywhere)
    --coordinator_address=HOST:PORT --process_count=N --process_index=I
                             multi-host (jax.distributed.initialize); JAX_* env vars also work

Flags are absl flags (as in T5X), parsed into a FlagValues of their own so
that the commands can be called in-process more than once. Start-up errors
(bad flags, unknown gin file or binding, missing required macro, unknown task,
bad checkpoint, prompt of the wrong shape, a MODEL_DIR of another
configuration, ...) print one line, `error: ...`, and exit with status 2
before anything is written. A non-finite loss exits with status 3.
"""
from __future__ import annotations

import os
import sys
from typing import Callable, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def quiet_import_tensorflow() -> None:
    """Imports TensorFlow (seqio needs it) with its C++ start-up banner sent to /dev/null.

    This TensorFlow build logs oneDNN/CUDA notices through absl before any log
    level applies (TF_CPP_MIN_LOG_LEVEL does not silence them). Python errors
    of the import are still raised normally.
    """
    if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") < "2":
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# TensorFlow first (quietly); then the package, whose imports register every gin configurable
# (prompt initializers, the trainer, evaluation, inference, optimizer, partitioning, tasks, vocabulary).
quiet_import_tensorflow()

import gin  # noqa: E402
from absl import flags  # noqa: E402

from prompt_tuning import data, methods, prompts  # noqa: E402,F401
from prompt_tuning.checkpoints.errors import CheckpointError  # noqa: E402
from prompt_tuning.data.sources import DataFileError  # noqa: E402
from prompt_tuning.training import (config_checks, evaluation, gin_bindings, inference, input_pipeline, optimizer,  # noqa: E402,F401
                                    partitioning, run_dir, trainer)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
USAGE_ERROR, NONFINITE_ERROR = 2, 3
KNOWN_FLAGS = ("--gin_file", "--gin.PARAM=VALUE", "--gin_bindings", "--gin_search_paths", "--coordinator_address",
               "--process_count", "--process_index")


class UsageError(ValueError):
    """A bad flag or gin configuration (one-line message)."""


def define_flags(flag_values: flags.FlagValues) -> flags.FlagValues:
    """Defines T5X's gin flags and the multi-host flags on `flag_values`; returns it."""
    flags.DEFINE_multi_string("gin_file", [], "A gin file; repeatable, later files win.", flag_values=flag_values)
    flags.DEFINE_alias("gin_config", "gin_file", flag_values=flag_values)
    flags.DEFINE_multi_string("gin_bindings", [], "A gin binding 'PARAM = VALUE'; repeatable, applied after the "
                              "files (--gin.PARAM=VALUE is the short form).", flag_values=flag_values)
    flags.DEFINE_list("gin_search_paths", None, "Comma-separated directories for --gin_file and gin `include` "
                      "(default: the current directory, then the repository root).", flag_values=flag_values)
    flags.DEFINE_string("coordinator_address", None, "Multi-host: the coordinator's HOST:PORT.",
                        flag_values=flag_values)
    flags.DEFINE_integer("process_count", None, "Multi-host: the number of processes.", flag_values=flag_values)
    flags.DEFINE_integer("process_index", None, "Multi-host: this process's index.", flag_values=flag_values)
    return flag_values


def rewrite_gin_args(argv: Sequence[str]) -> list[str]:
    """T5X's `--gin.PARAM=VALUE` -> `--gin_bindings=PARAM = VALUE` (UsageError without '=' or PARAM)."""
    out = []
    for arg in argv:
        if arg.startswith("--gin."):
            if "=" not in arg:
                raise UsageError(f"gin bindings look like --gin.PARAM=VALUE, got {arg!r}")
            name, value = arg[len("--gin."):].split("=", 1)
            if not name:
                raise UsageError(f"empty gin binding in {arg!r}")
            arg = f"--gin_bindings={name} = {value}"
        out.append(arg)
    return out


def parse_args(argv: Sequence[str], prog: str) -> dict:
    """{'gin_files', 'gin_bindings', 'gin_search_paths', 'coordinator_address', 'process_count', 'process_index'}.

    `-h` / `--help` prints the usage and exits 0; a bad flag is a UsageError.
    """
    flag_values = define_flags(flags.FlagValues())
    args = rewrite_gin_args(argv)
    if any(a in ("-h", "--help", "--helpfull") for a in args):
        print(f"usage: python -m {prog} --gin_file=FILE [--gin_file=...] [--gin.PARAM=VALUE ...] "
              f"[--gin_search_paths=A,B]\n\n{__doc__}\n{flag_values.get_help()}")
        raise SystemExit(0)
    try:
        rest = flag_values([prog] + args)[1:]
    except flags.UnrecognizedFlagError as e:
        raise UsageError(f"unknown flag --{e.flagname} (known: {', '.join(KNOWN_FLAGS)})") from None
    except flags.Error as e:
        raise UsageError(str(e).splitlines()[0]) from None
    if rest:
        raise UsageError(f"unexpected argument {rest[0]!r} (flags look like --gin_file=FILE or --gin.PARAM=VALUE)")
    return {"gin_files": list(flag_values.gin_file), "gin_bindings": list(flag_values.gin_bindings),
            "gin_search_paths": flag_values.gin_search_paths, "coordinator_address": flag_values.coordinator_address,
            "process_count": flag_values.process_count, "process_index": flag_values.process_index}


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


def check_required_macros() -> None:
    """UsageError naming the macro when one is `%gin.REQUIRED` or referenced but never set."""
    macros, referenced = {}, set()
    for b in gin_bindings.bindings():
        if b.selector == "gin.macro":
            macros[b.scope] = b.value
        referenced |= gin_bindings.macro_references(b.value)
    for name in sorted(set(macros) | referenced):
        if name not in macros or gin_bindings.is_required(macros[name]):
            raise UsageError(f"missing required value {name}: set it in a gin file or pass --gin.{name}=...")


def _gin_error(e: BaseException) -> str:
    lines = [l.strip() for l in str(e).strip().splitlines() if l.strip()]
    where = next((l for l in lines[1:] if l.startswith("In file") or l.startswith("In bindings")), "")
    return f"gin: {lines[0] if lines else type(e).__name__}" + (f" ({where})" if where else "")


def gin_search_paths(search_paths: Optional[Sequence[str]]) -> list[str]:
    """--gin_search_paths, or by default the working directory and the repository root."""
    return list(search_paths) if search_paths else list(dict.fromkeys([os.getcwd(), REPO_ROOT]))


def setup_gin(gin_files: Sequence[str], bindings: Sequence[str], search_paths: Optional[Sequence[str]]) -> None:
    """Parses gin files and bindings (later wins) and checks required macros; UsageError on any problem."""
    gin.clear_config()
    paths = gin_search_paths(search_paths)
    for p in paths:
        gin.add_config_file_search_path(p)
    for f in gin_files:
        if not any(os.path.exists(os.path.join(p, f)) for p in paths) and not os.path.exists(f):
            raise UsageError(f"gin file not found: {f} (searched {', '.join(paths)})")
    try:
        gin.parse_config_files_and_bindings(list(gin_files), list(bindings), finalize_config=False)
    except (ValueError, SyntaxError, OSError, TypeError, ImportError, KeyError) as e:
        raise UsageError(_gin_error(e)) from None
    check_required_macros()


@gin.configurable
def startup(hooks: Sequence[Callable[[], object]] = ()) -> None:
    """`startup.hooks = [@fn, ...]`: called with no arguments after gin is parsed and the data
    package's tasks are registered, before the run (e.g. to write a default world's files or
    register extra tasks)."""
    for hook in hooks:
        hook()


def register_tasks() -> None:
    """After gin is parsed: the data package's tasks (with their gin settings), then startup hooks."""
    data.register_tasks()
    startup()


KNOWN_ERRORS = (UsageError, CheckpointError, prompts.PromptError, trainer.ConfigError, input_pipeline.TaskError,
                run_dir.RunDirError, partitioning.PartitioningError, evaluation.EvaluationError, DataFileError)


def main(run: Callable[[dict], int], argv: Sequence[str], prog: str) -> int:
    """Parses flags and gin, calls run(flags) and turns known errors into one line + exit status."""
    try:
        parsed = parse_args(argv, prog)
        if not parsed["gin_files"] and not parsed["gin_bindings"]:
            raise UsageError(f"no --gin_file given; e.g. python -m {prog} --gin_file=gin/prompt_len_20.gin")
        partitioning.initialize_distributed(parsed["coordinator_address"], parsed["process_count"],
                                            parsed["process_index"])
        setup_gin(parsed["gin_files"], parsed["gin_bindings"], parsed["gin_search_paths"])
        # unknown macros, missing vocabulary files
        config_checks.check_bindings(parsed["gin_files"], parsed["gin_bindings"],
                                     gin_search_paths(parsed["gin_search_paths"]))
        register_tasks()
        return run(parsed) or 0
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return USAGE_ERROR
    except trainer.NonFiniteLossError as e:
        print(f"error: {_first_line(e)}", file=sys.stderr)
        return NONFINITE_ERROR
    except Exception as e:  # noqa: BLE001  -- only known, user-facing errors are shortened
        if isinstance(e, KNOWN_ERRORS) or _is_gin_required_error(e):
            print(f"error: {_first_line(e)}", file=sys.stderr)
            return USAGE_ERROR
        from prompt_tuning.training.config_checks import describe  # settings, files, tf.data, out of memory
        if (message := describe(e)) is not None:
            print(f"error: {message}", file=sys.stderr)
            return USAGE_ERROR
        raise


def _is_gin_required_error(e: BaseException) -> bool:
    return isinstance(e, (RuntimeError, TypeError)) and "Required bindings" in str(e)
