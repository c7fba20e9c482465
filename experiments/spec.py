"""What one run is: a point of a sweep, its gin files, overrides and command line.

A sweep (scale.py, ablations.py, ensemble.py) turns a grid of sizes x
settings x tasks x seeds into `RunSpec`s. A spec's `name` is derived from
what the run computes (method, size, task, setting, seed), never from the
sweep that asked for it, so the centre point shared by every ablation panel
(and by Fig 1's prompt-tuning line) is trained once: specs with equal names
are the same run, and the runner executes each name once.

Every value that reaches the trainer is a gin override, written as a gin
literal (`repr` of the Python value; `GinRef` for an unquoted `@ref`/`%MACRO`).
"""
from __future__ import annotations

import dataclasses
import os
import re
import shlex
import sys
from typing import Any, Mapping, Optional, Sequence

PROMPT_TUNING, MODEL_TUNING, PROMPT_DESIGN = "prompt_tuning", "model_tuning", "prompt_design"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIN_METHODS_DIR = "gin/methods"          # one file per parameter-efficient method (gin/methods/<method>.gin)
_GIN_METHOD_SHARED = ("method_run",)     # included by the methods' files, not a method itself
_MACRO = re.compile(r"^([A-Z][A-Z0-9_]*)\s*=", re.M)


def gin_methods() -> tuple[str, ...]:
    """The parameter-efficient methods, one per gin/methods/<method>.gin (lora, prefix, ...), sorted."""
    folder = os.path.join(REPO_ROOT, GIN_METHODS_DIR)
    names = [f[:-4] for f in os.listdir(folder) if f.endswith(".gin")] if os.path.isdir(folder) else []
    return tuple(sorted(n for n in names if n not in _GIN_METHOD_SHARED))


def gin_method_file(method: str) -> str:
    """gin/methods/<method>.gin (relative to the repository root)."""
    return f"{GIN_METHODS_DIR}/{method}.gin"


def gin_method_macros(method: str) -> frozenset[str]:
    """The macros (LORA_RANK, PREFIX_MLP_HIDDEN, METHOD_LEARNING_RATE, ...) a method's gin file and the
    shared method_run.gin define: the hyperparameters a Setting may set for it."""
    out: set[str] = set()
    for name in (method,) + _GIN_METHOD_SHARED:
        with open(os.path.join(REPO_ROOT, gin_method_file(name))) as f:
            out |= set(_MACRO.findall(f.read()))
    return frozenset(out)


GIN_METHODS = gin_methods()
# Few-shot in-context prompt design (the paper's GPT-3 reference in Fig 1): k training demonstrations
# written in front of every input, no training.
FEW_SHOT = "few_shot"
METHODS = (PROMPT_TUNING, MODEL_TUNING, PROMPT_DESIGN, FEW_SHOT) + GIN_METHODS
SPAN_CORRUPTION, SPAN_CORRUPTION_SENTINEL, LM_ADAPT = "span_corruption", "span_corruption_sentinel", "lm_adapt"
OBJECTIVES = (SPAN_CORRUPTION, SPAN_CORRUPTION_SENTINEL, LM_ADAPT)  # the paper's Fig 3(c)
# Controls a self-built ladder can add: span corruption continued for the LM-adaptation budget (so that
# "more LM adaptation" differs from "more training" only in the objective), and the untrained model.
SPAN_CORRUPTION_CONTROL, UNTRAINED = "span_corruption_control", "untrained"
CONTROL_OBJECTIVES = (SPAN_CORRUPTION_CONTROL, UNTRAINED)
INITS = ("random_uniform", "sampled_vocab", "class_labels")
TRAIN_MODULE = "prompt_tuning.train"
MODEL_DIR_NAME = "model"  # run_dir/model is the trainer's MODEL_DIR


class SpecError(ValueError):
    """A sweep definition that cannot produce runs (one-line message)."""


class GinRef(str):
    """A gin value written without quotes: '@prompts.class_labels' or '%PROMPT_LENGTH'."""

    def __repr__(self) -> str:
        return str(self)


def gin_literal(value: Any) -> str:
    """A Python value as a gin literal (strings quoted, dicts/lists as Python reprs)."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, float, str, GinRef)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        inner = ", ".join(gin_literal(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{gin_literal(k)}: {gin_literal(v)}" for k, v in value.items()) + "}"
    raise SpecError(f"cannot write {value!r} ({type(value).__name__}) as a gin literal")


def steps_label(steps: int) -> str:
    """100000 -> '100k', 0 -> '0'."""
    return f"{steps // 1000}k" if steps and steps % 1000 == 0 else str(steps)


@dataclasses.dataclass(frozen=True)
class Setting:
    """The knobs the paper's figures vary; the defaults are the paper's centre point."""

    method: str = PROMPT_TUNING
    prompt_length: int = 100
    init: str = "class_labels"
    objective: str = LM_ADAPT
    lm_steps: int = 100_000
    # Hyperparameters a search varies (model tuning's learning rate and dropout); None: the gin files'.
    learning_rate: Optional[float] = None
    dropout: Optional[float] = None
    # A gin method's hyperparameters as its gin file's macros, e.g. (("LORA_RANK", 4),); () for the gin
    # file's defaults. Only gin methods (gin/methods/*.gin) take them; normalized() sorts them.
    method_params: tuple[tuple[str, Any], ...] = ()
    shots: Optional[int] = None            # FEW_SHOT: demonstrations per input (k)

    def __post_init__(self):
        if self.method not in METHODS:
            raise SpecError(f"unknown method {self.method!r}; known: {METHODS}")
        if self.method_params:
            if self.method not in GIN_METHODS:
                raise SpecError(f"method {self.method!r} takes no method_params (only {GIN_METHODS} do)")
            known = gin_method_macros(self.method)
            unknown = sorted(k for k, _ in self.method_params if k not in known)
            if unknown:
                raise SpecError(f"{gin_method_file(self.method)} defines no macro {unknown[0]!r}; "
                                f"known: {sorted(known)}")
        if self.objective not in OBJECTIVES + CONTROL_OBJECTIVES:
            raise SpecError(f"unknown objective {self.objective!r}; known: {OBJECTIVES + CONTROL_OBJECTIVES}")
        if self.init not in INITS and self.method == PROMPT_TUNING:
            raise SpecError(f"unknown prompt init {self.init!r}; known: {INITS}")

    def normalized(self) -> "Setting":
        """Equal computations get equal settings.

        0 steps of LM adaptation is the span-corruption checkpoint; model
        tuning has no prompt; prompt design has a fixed text prompt.
        """
        s = self
        if s.objective == LM_ADAPT and s.lm_steps == 0:
            s = dataclasses.replace(s, objective=SPAN_CORRUPTION)
        if s.objective != LM_ADAPT:
            s = dataclasses.replace(s, lm_steps=0)
        if s.method == MODEL_TUNING:
            s = dataclasses.replace(s, prompt_length=0, init="none")
        if s.method in (PROMPT_DESIGN, FEW_SHOT):
            s = dataclasses.replace(s, prompt_length=0, init="text")
        if s.method in GIN_METHODS:
            s = dataclasses.replace(s, prompt_length=0, init="none", method_params=tuple(sorted(s.method_params)))
        if s.method == FEW_SHOT and (not isinstance(s.shots, int) or s.shots < 1):
            raise SpecError(f"few-shot prompt design needs shots >= 1, got {s.shots!r}")
        if s.method != FEW_SHOT:
            s = dataclasses.replace(s, shots=None)
        return s

    def checkpoint_key(self) -> str:
        """The frozen model's pretraining: 'sc', 'sc' (sentinel targets), 'lm100k', 'sc_control', 'untrained'."""
        s = self.normalized()
        if s.objective == LM_ADAPT:
            return f"lm{steps_label(s.lm_steps)}"
        return {SPAN_CORRUPTION_CONTROL: "sc_control", UNTRAINED: "untrained"}.get(s.objective, "sc")

    def key(self) -> str:
        s = self.normalized()
        objective = {SPAN_CORRUPTION: "sc", SPAN_CORRUPTION_SENTINEL: "scsent", LM_ADAPT: f"lm{steps_label(s.lm_steps)}",
                     SPAN_CORRUPTION_CONTROL: "sccontrol", UNTRAINED: "untrained"}
        extra = "".join(f"-{k}{v:g}" for k, v in (("lr", s.learning_rate), ("d", s.dropout)) if v is not None)
        extra = "".join(f"-{k.lower()}{_value_label(v)}" for k, v in s.method_params) + extra
        if s.method == PROMPT_TUNING:
            return f"p{s.prompt_length}-{s.init}-{objective[s.objective]}{extra}"
        if s.method == FEW_SHOT:
            return f"k{s.shots}-{objective[s.objective]}{extra}"
        return objective[s.objective] + extra


def _value_label(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


# A gin method's runs are named after its gin file (lora-..., p_tuning-...).
METHOD_ABBREV = {PROMPT_TUNING: "pt", MODEL_TUNING: "mt", PROMPT_DESIGN: "pd", FEW_SHOT: "fs",
                 **{m: m for m in GIN_METHODS}}


def run_name(size: str, task: str, setting: Setting, seed: int) -> str:
    """A filesystem-safe name that identifies the computation."""
    name = f"{METHOD_ABBREV[setting.method]}-{size}-{task}-{setting.key()}-s{seed}"
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run: `python -m module --gin_file=... --gin.K=V ... --gin.MODEL_DIR=...`.

    `labels` are the columns it contributes to the results table (sweep,
    panel, method, size, task, setting, seed, ...); `train_steps` lets the
    runner and collector tell a finished run from an interrupted one.
    """

    name: str
    gin_files: tuple[str, ...]
    overrides: tuple[tuple[str, Any], ...]
    labels: tuple[tuple[str, Any], ...]
    train_steps: int
    module: str = TRAIN_MODULE

    @property
    def label_dict(self) -> dict[str, Any]:
        return dict(self.labels)

    def args(self, model_dir: str) -> list[str]:
        """The arguments after `python` (no shell quoting: for subprocess)."""
        out = ["-m", self.module] + [f"--gin_file={f}" for f in self.gin_files]
        out += [f"--gin.{k}={gin_literal(v)}" for k, v in self.overrides]
        out.append(f"--gin.MODEL_DIR={gin_literal(model_dir)}")
        return out

    def command(self, model_dir: str, python: str = "python") -> str:
        """One shell line, e.g. for a cluster scheduler."""
        return " ".join(shell_quote(a) for a in [python] + self.args(model_dir))


_SAFE = re.compile(r"^[A-Za-z0-9_./=:,+@%-]+$")


def shell_quote(arg: str) -> str:
    """Readable shell quoting: bare when safe, "..." around gin's single quotes, else shlex."""
    if _SAFE.match(arg):
        return arg
    if not re.search(r'["$`\\!]', arg):
        return f'"{arg}"'
    return shlex.quote(arg)


def model_dir(results_dir: str, name: str) -> str:
    return os.path.join(results_dir, "runs", name, MODEL_DIR_NAME)


def run_dir(results_dir: str, name: str) -> str:
    return os.path.join(results_dir, "runs", name)


def dedupe(specs: Sequence[RunSpec]) -> list[RunSpec]:
    """First spec of each name, in order; equal names must describe the same command."""
    seen: dict[str, RunSpec] = {}
    for s in specs:
        other = seen.get(s.name)
        if other is None:
            seen[s.name] = s
        elif (other.gin_files, other.overrides, other.module) != (s.gin_files, s.overrides, s.module):
            raise SpecError(f"two different runs are both named {s.name!r}")
    return list(seen.values())


def python_executable() -> str:
    return sys.executable or "python"


def filter_specs(specs: Sequence[RunSpec], only: Optional[str]) -> list[RunSpec]:
    """Specs whose name matches the regular expression `only` (all when None)."""
    if not only:
        return list(specs)
    pattern = re.compile(only)
    return [s for s in specs if pattern.search(s.name)]
