"""Settings checked before a run writes anything, and the one-line form of environment errors.

Called from the command line (`cli.main`) right after gin is parsed:
    check_bindings(gin_files, gin_bindings, search_paths)
        - a command-line binding of a macro (an ALL-CAPS name) that no configuration references
          and no gin file defines is an error suggesting the closest known macro
          (`--gin.PROMPT_LENGHT=7` -> "did you mean PROMPT_LENGTH?");
          (read through gin's public API: training/gin_bindings.py);
        - a vocabulary path bound anywhere (`get_vocabulary.path`, ...) must exist (gs:// and
          other URLs are not checked).
Called by the trainer before MODEL_DIR is created:
    check_run_settings(...)
        - checkpoint_period, eval_period, log_period, keep_checkpoints >= 1;
        - every TASK_FEATURE_LENGTHS value within MAX_FEATURE_LENGTH;
        - an estimate of the training step's activation memory within the memory available.
And when a command fails:
    describe(error) -> the one-line message for an error of the user's input or environment
        (a file that is missing or unreadable, a permission, a DataFileError raised inside
        tf.data, an accelerator or host out of memory), or None for a bug (left as a traceback).
"""
from __future__ import annotations

import difflib
import os
import re
from typing import Mapping, Optional, Sequence

from prompt_tuning.training import gin_bindings

MAX_FEATURE_LENGTH = 8192  # tokens per feature; T5 was trained at 512 (relative positions extend beyond)
MACRO_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
VOCAB_PARAMS = ("path", "vocab_path", "sentencepiece_model_file")


class SettingsError(ValueError):
    """A setting that cannot run (one-line message)."""


class ConfigError(ValueError):
    """A configuration that cannot run (one-line message, shown as is); raised by the trainer and its setup
    (trainer.ConfigError, re-exported there)."""


# -- command line -------------------------------------------------------------------


def _file_macros(gin_files: Sequence[str], search_paths: Sequence[str]) -> set:
    """Macros assigned (`NAME = ...`) in the gin files and everything they include."""
    seen, names, todo = set(), set(), list(gin_files)
    while todo:
        f = todo.pop()
        path = next((p for p in [f] + [os.path.join(s, f) for s in search_paths] if os.path.isfile(p)), None)
        if path is None or path in seen:
            continue
        seen.add(path)
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        names |= set(re.findall(r"^\s*([A-Z][A-Z0-9_]*)\s*=", text, re.M))
        todo += re.findall(r"^\s*include\s+['\"]([^'\"]+)['\"]", text, re.M)
    return names


def check_bindings(gin_files: Sequence[str], command_line_bindings: Sequence[str],
                   search_paths: Sequence[str]) -> None:
    """SettingsError for an unknown command-line macro or a vocabulary file that does not exist.

    `search_paths`: where gin files and relative vocabulary paths are looked up (cli.gin_search_paths).
    """
    search_paths = list(search_paths)
    bound = list(gin_bindings.bindings())
    referenced = set()
    for b in bound:
        referenced |= gin_bindings.macro_references(b.value)
    in_files = _file_macros(gin_files, search_paths)
    for binding in command_line_bindings:
        name = binding.split("=", 1)[0].strip()
        if MACRO_NAME.match(name) and name not in referenced and name not in in_files:
            known = sorted(referenced | in_files)
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else f" (known: {', '.join(known)})"
            raise SettingsError(f"--gin.{name}: no configuration uses the macro {name}{hint}")
    for b in bound:
        if "vocab" in b.selector.lower() and b.arg_name in VOCAB_PARAMS:
            value = b.value
            if isinstance(value, str) and value and "://" not in value:
                if not any(os.path.exists(os.path.join(p, value)) for p in [""] + search_paths):
                    raise SettingsError(f"{b.selector.split('.')[-1]}.{b.arg_name}: vocabulary file not found: {value}")


# -- run settings --------------------------------------------------------------------


def _available_memory() -> Optional[int]:
    """Bytes a step may use: the accelerators' limits summed over all devices, or the host's
    MemAvailable on CPU (where every simulated device shares it)."""
    import jax

    device = jax.devices()[0]
    if device.platform != "cpu":  # the batch and the model are spread over every device
        limit = (device.memory_stats() or {}).get("bytes_limit")
        return limit * jax.device_count() if limit else None
    try:  # MemAvailable counts reclaimable page cache, which free pages do not
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def activation_bytes(config, batch_size: int, lengths: Mapping[str, int], prompt_length: int = 0) -> int:
    """A rough estimate of one training step's activations (float32 bytes, whole batch).

    Per encoder layer (T' = T + P positions): attention logits and probabilities
    2 * heads * T'^2, plus about 10 * H + 3 * d_ff values per position; the decoder
    adds self- (L^2) and cross-attention (L * T') logits. Backpropagation keeps them all.
    """
    t = int(lengths.get("inputs", 0)) + int(prompt_length)
    length = int(lengths.get("targets", 0))
    h, ff, heads = config.emb_dim, config.mlp_dim, config.num_heads
    enc = config.num_encoder_layers * (2 * heads * t * t + t * (10 * h + 3 * ff))
    dec = config.num_decoder_layers * (2 * heads * (length * length + length * t) + length * (14 * h + 3 * ff))
    logits = 2 * length * config.vocab_size
    return 4 * int(batch_size) * (enc + dec + logits)


def check_run_settings(*, checkpoint_period, eval_period, log_period, keep_checkpoints,
                       task_feature_lengths: Mapping[str, int], model_config=None, batch_size: int = 1,
                       prompt_length: int = 0, available: Optional[int] = None) -> None:
    """SettingsError (one line, naming the setting) for a run setting that cannot work."""
    for name, value in (("checkpoint_period", checkpoint_period), ("log_period", log_period),
                        ("keep_checkpoints", keep_checkpoints)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SettingsError(f"train_and_evaluate.{name} must be an int >= 1, got {value!r}")
    if eval_period is not None and (isinstance(eval_period, bool) or not isinstance(eval_period, int)
                                    or eval_period < 1):
        raise SettingsError(f"train_and_evaluate.eval_period must be an int >= 1 (or None: every "
                            f"checkpoint), got {eval_period!r}")
    if not isinstance(task_feature_lengths, Mapping):
        raise SettingsError(f"TASK_FEATURE_LENGTHS must be a dict, got {task_feature_lengths!r}")
    for k, v in task_feature_lengths.items():
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_FEATURE_LENGTH:
            raise SettingsError(f"TASK_FEATURE_LENGTHS[{k!r}] must be an int in [1, {MAX_FEATURE_LENGTH}], got {v!r}")
    if model_config is not None:
        need = activation_bytes(model_config, batch_size, task_feature_lengths, prompt_length)
        have = available if available is not None else _available_memory()
        if have and need > have:
            raise SettingsError(
                f"TASK_FEATURE_LENGTHS {dict(task_feature_lengths)} at BATCH_SIZE {batch_size} needs about "
                f"{need / 2**30:.1f} GiB of activations, more than the {have / 2**30:.1f} GiB available; "
                f"use shorter features or a smaller batch")


# -- errors ---------------------------------------------------------------------------


def describe(error: BaseException) -> Optional[str]:
    """One line for an error of the user's input or environment; None for anything else."""
    from prompt_tuning.data import sources

    if isinstance(error, SettingsError):  # gin appends "In call to configurable ..." lines
        return str(error).strip().splitlines()[0]
    inner = sources.unwrap(error) if type(error).__module__.startswith("tensorflow") else None
    if inner is not None:
        return str(inner).splitlines()[0]
    text = str(error)
    if "RESOURCE_EXHAUSTED" in text or isinstance(error, MemoryError):
        first = next((l for l in text.splitlines() if "RESOURCE_EXHAUSTED" in l), text.splitlines()[0] if text else "")
        return f"out of memory: {first.strip()[:200]}; use shorter TASK_FEATURE_LENGTHS or a smaller BATCH_SIZE"
    if isinstance(error, (UnicodeDecodeError, EOFError)):
        return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"
    if isinstance(error, OSError) and (error.filename or isinstance(error, (FileNotFoundError, PermissionError))):
        what = error.strerror or type(error).__name__
        return f"{what}: {error.filename}" if error.filename else (text.splitlines()[0] if text else what)
    return None
