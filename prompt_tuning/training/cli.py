"""The command line shared by train / eval / infer: T5X's gin flags and one-line errors.

    --gin_file=PATH          repeatable; later files win
    --gin.PARAM=VALUE        a gin binding, e.g. --gin.TRAIN_STEPS=100 or
                             --gin.train_and_evaluate.seed=1 (applied after all files)
    --gin_search_paths=A,B   where `--gin_file` and `include` look (default: the current
                             directory, then the repository root, so gin/... works anywhere)
    --coordinator_address=HOST:PORT --process_count=N --process_index=I
                             multi-host (jax.distributed.initialize); JAX_* env vars also work

Start-up errors (bad flags, unknown gin file or binding, missing required
macro, unknown task, bad checkpoint, prompt of the wrong shape, a MODEL_DIR of
another configuration, ...) print one line, `error: ...`, and exit with status 2
before anything is written. A non-finite loss exits with status 3.
"""
from __future__ import annotations

import os
import sys
from typing import Callable, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import gin  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
USAGE_ERROR, NONFINITE_ERROR = 2, 3


KNOWN_FLAGS = ("gin_file", "gin_config", "gin_bindings", "gin_search_paths", "coordinator_address",
               "process_count", "process_index")


class UsageError(ValueError):
    """A bad flag or gin configuration (one-line message)."""


def parse_args(argv: Sequence[str], prog: str) -> dict:
    """{'gin_files', 'gin_bindings', 'gin_search_paths', 'coordinator_address', 'process_count', 'process_index'}."""
    out = {"gin_files": [], "gin_bindings": [], "gin_search_paths": None, "coordinator_address": None,
           "process_count": None, "process_index": None}
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-h", "--help"):
            print(f"usage: python -m {prog} --gin_file=FILE [--gin_file=...] [--gin.PARAM=VALUE ...] "
                  f"[--gin_search_paths=A,B]\n\n{__doc__}")
            raise SystemExit(0)
        if not arg.startswith("--"):
            raise UsageError(f"unexpected argument {arg!r} (flags look like --gin_file=FILE or --gin.PARAM=VALUE)")
        flag = arg[2:].split("=", 1)[0]
        if not (flag.startswith("gin.") or flag in KNOWN_FLAGS):
            raise UsageError(f"unknown flag --{flag} (known: --gin_file, --gin.PARAM=VALUE, --gin_search_paths, "
                             f"--coordinator_address, --process_count, --process_index)")
        if "=" in arg:
            name, value = arg[2:].split("=", 1)
        elif i + 1 < len(args):
            name, value = arg[2:], args[i + 1]
            i += 1
        else:
            raise UsageError(f"flag {arg} needs a value")
        if name.startswith("gin."):
            if not name[4:]:
                raise UsageError(f"empty gin binding in {arg!r}")
            out["gin_bindings"].append(f"{name[4:]} = {value}")
        elif name in ("gin_file", "gin_config"):
            out["gin_files"].append(value)
        elif name == "gin_bindings":
            out["gin_bindings"].append(value)
        elif name == "gin_search_paths":
            out["gin_search_paths"] = [p for p in value.split(",") if p]
        elif name == "coordinator_address":
            out["coordinator_address"] = value
        elif name in ("process_count", "process_index"):
            try:
                out[name] = int(value)
            except ValueError:
                raise UsageError(f"--{name} must be an int, got {value!r}") from None
        i += 1
    return out


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


def _macro_refs(value, out: set) -> None:
    import gin.config as gc

    if isinstance(value, gc.ConfigurableReference):
        if value.configurable.name == "macro" and value.scopes:
            out.add(value.scopes[-1])
    elif isinstance(value, (list, tuple, set)):
        for v in value:
            _macro_refs(v, out)
    elif isinstance(value, dict):
        for k, v in value.items():
            _macro_refs(k, out)
            _macro_refs(v, out)


def check_required_macros() -> None:
    """Fails with the macro's name when one is `%gin.REQUIRED` or referenced but never set."""
    import gin
    import gin.config as gc

    macros, referenced = {}, set()
    for (scope, selector), params in gc._CONFIG.items():  # gin has no public iterator
        if selector == "gin.macro":
            macros[scope] = params.get("value")
        for v in params.values():
            _macro_refs(v, referenced)
    for name in sorted(set(macros) | referenced):
        value = macros.get(name, gin.REQUIRED)
        required = value is gin.REQUIRED or (
            isinstance(value, gc.ConfigurableReference) and value.configurable.name == "constant"
            and value.scopes == ["gin.REQUIRED"]
        )
        if required:
            raise UsageError(f"missing required value {name}: set it in a gin file or pass --gin.{name}=...")


def _gin_error(e: BaseException) -> str:
    lines = [l.strip() for l in str(e).strip().splitlines() if l.strip()]
    where = next((l for l in lines[1:] if l.startswith("In file") or l.startswith("In bindings")), "")
    return f"gin: {lines[0] if lines else type(e).__name__}" + (f" ({where})" if where else "")


def setup_gin(gin_files: Sequence[str], gin_bindings: Sequence[str], search_paths: Optional[Sequence[str]]) -> None:
    """Parses gin files and bindings (later wins) and checks required macros; UsageError on any problem."""
    gin.clear_config()
    paths = list(search_paths) if search_paths else list(dict.fromkeys([os.getcwd(), REPO_ROOT]))
    for p in paths:
        gin.add_config_file_search_path(p)
    for f in gin_files:
        if not any(os.path.exists(os.path.join(p, f)) for p in paths) and not os.path.exists(f):
            raise UsageError(f"gin file not found: {f} (searched {', '.join(paths)})")
    try:
        gin.parse_config_files_and_bindings(list(gin_files), list(gin_bindings), finalize_config=False)
    except (ValueError, SyntaxError, OSError, TypeError, ImportError, KeyError) as e:
        raise UsageError(_gin_error(e)) from None
    check_required_macros()


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


def register_configurables() -> None:
    """Imports every module with gin configurables (before gin parses the files)."""
    quiet_import_tensorflow()
    from prompt_tuning import prompts  # noqa: F401  (initializers)
    from prompt_tuning.training import evaluation, inference, optimizer, partitioning, trainer  # noqa: F401

    try:
        from prompt_tuning import data  # noqa: F401  (register_tasks, get_vocabulary)
    except ImportError:
        pass


@gin.configurable
def startup(hooks: Sequence[Callable[[], object]] = ()) -> None:
    """`startup.hooks = [@fn, ...]`: called with no arguments after gin is parsed and the data
    package's tasks are registered, before the run (e.g. to write a default world's files or
    register extra tasks)."""
    for hook in hooks:
        hook()


def register_tasks() -> None:
    """After gin is parsed: the data package's tasks (with their gin settings), then startup hooks."""
    try:
        from prompt_tuning import data
    except ImportError:
        data = None
    if data is not None and callable(getattr(data, "register_tasks", None)):
        data.register_tasks()
    startup()


def known_errors() -> tuple:
    from prompt_tuning import prompts
    from prompt_tuning.checkpoints.errors import CheckpointError
    from prompt_tuning.data.sources import DataFileError
    from prompt_tuning.training import evaluation, input_pipeline, partitioning, run_dir, trainer

    return (UsageError, CheckpointError, prompts.PromptError, trainer.ConfigError, input_pipeline.TaskError,
            run_dir.RunDirError, partitioning.PartitioningError, evaluation.EvaluationError, DataFileError)


def main(run: Callable[[dict], int], argv: Sequence[str], prog: str) -> int:
    """Parses flags and gin, calls run(flags) and turns known errors into one line + exit status."""
    try:
        flags = parse_args(argv, prog)
        if not flags["gin_files"] and not flags["gin_bindings"]:
            raise UsageError(f"no --gin_file given; e.g. python -m {prog} --gin_file=gin/prompt_len_20.gin")
        from prompt_tuning.training import partitioning

        partitioning.initialize_distributed(flags["coordinator_address"], flags["process_count"],
                                            flags["process_index"])
        register_configurables()
        setup_gin(flags["gin_files"], flags["gin_bindings"], flags["gin_search_paths"])
        register_tasks()
        return run(flags) or 0
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return USAGE_ERROR
    except Exception as e:  # noqa: BLE001  -- only known, user-facing errors are shortened
        from prompt_tuning.training import trainer

        if isinstance(e, trainer.NonFiniteLossError):
            print(f"error: {_first_line(e)}", file=sys.stderr)
            return NONFINITE_ERROR
        if isinstance(e, known_errors()):
            print(f"error: {_first_line(e)}", file=sys.stderr)
            return USAGE_ERROR
        if _is_gin_required_error(e):
            print(f"error: {_first_line(e)}", file=sys.stderr)
            return USAGE_ERROR
        raise


def _is_gin_required_error(e: BaseException) -> bool:
    return isinstance(e, (RuntimeError, TypeError)) and "Required bindings" in str(e)
