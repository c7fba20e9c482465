"""Where the sweeps' abstract points meet the trainer: the one mapping to gin files and values.

A `Backend` says which model sizes, tasks, checkpoints, gin files and
hyperparameters a sweep runs with. Two exist here (tests build their own):

- "real": the paper's grid. T5 1.1 Small..XXL from the public T5X checkpoints
  (span corruption: t5_1_1_<size>/checkpoint_1000000; LM-adapted 100K:
  t5_1_1_lm100k_<size>/checkpoint_1100000), the 8 SuperGLUE tasks from TFDS
  1.0.2, prompt length 100, class-label init, 30K steps at batch 32 with
  Adafactor at constant learning rate 0.3 (gin/runs/prompt_finetune.gin);
  model tuning through gin/runs/model_finetune.gin (lr 0.001, batch 128 =
  2^16 tokens at 512 input tokens). The checkpoints are read from a local
  copy (T5X_ROOT below). Other LM-adaptation budgets (10K, 50K) were not
  released: produce them with the LM-adaptation objective (prefix LM on C4)
  and put them under LM_ADAPT_ROOT.

- "recall": the recall world's ladder and tasks at CPU scale, with the paper's protocol scaled
  down (early stopping, test-split reporting, a model-tuning search): experiments/recall.py,
  whose docstring is the protocol. Its runs and tables: experiments/results/mini/.

The first mini world's backend ("mini", results in experiments/results/mini_v1/) is
retired with that world: its ladder came from a second training stack and its task
could be solved by shortcuts (experiments/mini_world/RESULTS.md).

Gin file order (the trainer's headers): gin/runs/<method>.gin,
gin/models/<size>.gin, gin/prompts/<init>.gin, the backend's task gin files,
then --gin.X=Y overrides (MIXTURE_OR_TASK_NAME, TASK_FEATURE_LENGTHS,
INITIAL_CHECKPOINT_PATH, PROMPT_LENGTH, RANDOM_SEED, TRAIN_STEPS, BATCH_SIZE;
MODEL_DIR is added by the runner).

Prompt design (zero-shot) is a prompt initialised from a task description
(gin/prompts/from_string.gin) whose length is exactly the text's token count,
evaluated at TRAIN_STEPS = 0: the frozen model sees the text's embeddings in
front of the input, as if the text were written there. Few-shot prompt design
(S.FEW_SHOT, backends with `few_shot`) is the same with the description followed by
k training demonstrations (input and answer) chosen by the run's seed.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Mapping, Optional

from experiments import spec as S
from prompt_tuning import data
from prompt_tuning.models import t5

# The public T5X checkpoints live in gs://t5-data/pretrained_models/t5x/<name>/checkpoint_<step>. The
# project's loader reads local files, so copy them first, keeping the layout, e.g.
#   gsutil -m cp -r gs://t5-data/pretrained_models/t5x/t5_1_1_lm100k_base checkpoints/t5x/
# and point $PT_T5X_CHECKPOINTS at another root if needed (it is read when the commands are made).
T5X_BUCKET = "gs://t5-data/pretrained_models/t5x"
T5X_ROOT = os.environ.get("PT_T5X_CHECKPOINTS", "checkpoints/t5x")
LM_ADAPT_ROOT = os.environ.get("PT_LM_ADAPTED_CHECKPOINTS", "checkpoints/lm_adapted")  # self-made budgets


@dataclasses.dataclass(frozen=True)
class Backend:
    name: str
    sizes: tuple[str, ...]
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    lm_budgets: tuple[int, ...]            # LM-adaptation steps for Fig 3(d); the last one is the centre
    size_gin: str                          # '{size}' template
    checkpoints: Mapping[str, Optional[str]]   # Setting.checkpoint_key() -> '{size}' template (None: no file)
    task_template: str                     # '{task}' template of MIXTURE_OR_TASK_NAME
    sentinel_task_template: str            # the same task with a sentinel before every target
    feature_lengths: Mapping[str, Mapping[str, int]]   # task -> TASK_FEATURE_LENGTHS ('*' = default)
    prompt_design: Mapping[str, tuple[str, int]]       # task -> (text, its token count)
    size_config: Callable[[str], t5.T5Config]
    train_steps: Mapping[str, int]         # method -> TRAIN_STEPS ('*': every gin method not listed)
    batch_size: Mapping[str, Optional[int]]   # method -> BATCH_SIZE (None: the gin default; '*' as above)
    method_gin: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=lambda: {
        S.PROMPT_TUNING: ("gin/runs/prompt_finetune.gin",),
        S.MODEL_TUNING: ("gin/runs/model_finetune.gin",),
        S.PROMPT_DESIGN: ("gin/runs/prompt_finetune.gin",),
        S.FEW_SHOT: ("gin/runs/prompt_finetune.gin",),
    })
    init_gin: str = "gin/prompts/{init}.gin"
    prompt_design_gin: str = "gin/prompts/from_string.gin"
    task_gin: tuple[str, ...] = ()         # gin files that import/register the tasks (for the trainer)
    # In-process task registration (ensemble evaluation): 'module' imports, 'module:function' also calls.
    task_setup: tuple[str, ...] = ()
    extra_overrides: tuple[tuple[str, Any], ...] = ()
    ensemble_size: str = ""                # the size Table 3 is run on (the paper: XXL)
    ensemble_prompts: int = 5
    minutes_per_run: float = 0.0           # a rough runtime estimate for the docstrings / --list
    centre_prompt_length: int = 100        # the paper's default
    # Tasks prompt_tuning.data does not know (a test's own task): task -> verbalizers / label words.
    # The paper's tasks read both from the data package (data.verbalizers, data.label_words).
    verbalizers: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    label_words: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    objectives: tuple[str, ...] = S.OBJECTIVES      # Fig 3(c)'s settings (a world without sentinel tasks: fewer)
    scale_seeds: Optional[tuple[int, ...]] = None   # Fig 1's trained points (None: `seeds`)
    ablation_seeds: Optional[tuple[int, ...]] = None  # Fig 3's points (None: `seeds`; fewer: a budget trim)
    results_name: str = ""                 # experiments/results/<results_name> (default: `name`)
    task_overrides: Mapping[str, tuple[tuple[str, Any], ...]] = dataclasses.field(default_factory=dict)
    # Model tuning's chosen (learning rate, dropout) per (size, task) from a search on validation
    # (experiments/model_search.py); None: the gin files' values. Called with the results directory.
    model_tuning_choice: Optional[Callable[..., S.Setting]] = None
    model_search: Any = None                        # model_search.SearchGrid, or None: no search
    # Few-shot prompt design: (task, k, seed) -> (text: the task description and k training demonstrations,
    # its token count); None: the backend cannot run it (no training split at hand, e.g. `real`).
    few_shot: Optional[Callable[[str, int, int], tuple[str, int]]] = None
    shots: int = 4                                  # k of Fig 1's few-shot points

    @property
    def centre(self) -> S.Setting:
        """The defaults every ablation varies one factor of: the centre prompt length (paper: 100),
        class-label init, the longest LM adaptation."""
        return S.Setting(prompt_length=self.centre_prompt_length, lm_steps=self.lm_budgets[-1])

    def checkpoint(self, size: str, setting: S.Setting) -> Optional[str]:
        key = setting.checkpoint_key()
        if key not in self.checkpoints:
            raise S.SpecError(f"backend {self.name!r} has no checkpoint for {key!r}; known: {sorted(self.checkpoints)}")
        path = self.checkpoints[key]
        return None if path is None else path.format(size=size)

    def task_name(self, task: str, setting: S.Setting) -> str:
        sentinel = setting.normalized().objective == S.SPAN_CORRUPTION_SENTINEL
        return (self.sentinel_task_template if sentinel else self.task_template).format(task=task)

    def task_verbalizers(self, task: str) -> Optional[tuple[str, ...]]:
        """The strings rank classification scores for `task` (None: it generates free text)."""
        return self.verbalizers.get(task) or data.verbalizers(task)

    def task_label_words(self, task: str) -> Optional[tuple[str, ...]]:
        """The label words of a class-label init on `task`: its verbalizers or the paper's task words."""
        if task in self.label_words:
            return self.label_words[task]
        try:
            return data.label_words(task)
        except KeyError:
            return None

    def lengths(self, task: str) -> dict[str, int]:
        return dict(self.feature_lengths.get(task, self.feature_lengths["*"]))

    def params(self, size: str) -> int:
        """Total parameters of a size (for the results table's x axis)."""
        return t5.num_parameters(self.size_config(size))

    def spec(self, *, sweep: str, panel: str, size: str, task: str, setting: S.Setting, seed: int,
             value: Any) -> S.RunSpec:
        """One run of `setting` at `size` on `task` with `seed`; `value` is its x / legend value."""
        s = setting.normalized()
        # A gin method (gin/methods/<method>.gin) needs no entry: its file is its run file.
        method_gin = self.method_gin.get(s.method) or ((S.gin_method_file(s.method),) if s.method in S.GIN_METHODS
                                                       else None)
        if method_gin is None:
            raise S.SpecError(f"backend {self.name!r} has no gin files for method {s.method!r}")
        gin_files = list(method_gin) + [self.size_gin.format(size=size)]
        overrides: list[tuple[str, Any]] = [
            ("MIXTURE_OR_TASK_NAME", self.task_name(task, s)),
            ("TASK_FEATURE_LENGTHS", self.lengths(task)),
            ("INITIAL_CHECKPOINT_PATH", self.checkpoint(size, s)),
        ]
        if s.method == S.PROMPT_TUNING:
            gin_files.append(self.init_gin.format(init=s.init))
            overrides.append(("PROMPT_LENGTH", s.prompt_length))
            if s.init == "class_labels":
                # The trainer reads a task's label words from the data package itself; they are written
                # out when they are not the verbalizers (ReCoRD's and WSC's task words, a test's own
                # task), and a prompt shorter than the list keeps the first P (the initializer refuses
                # label words that do not fit).
                known = self.task_label_words(task)
                labels = known if known and (task in self.label_words or not self.task_verbalizers(task)) else None
                if known and len(known) > s.prompt_length:
                    labels = known[: s.prompt_length]
                if labels:
                    overrides.append(("class_labels.labels", list(labels)))
        elif s.method == S.PROMPT_DESIGN:
            if task not in self.prompt_design:
                raise S.SpecError(f"backend {self.name!r} has no prompt-design text for task {task!r}")
            text, length = self.prompt_design[task]
            gin_files.append(self.prompt_design_gin)
            overrides += [("PROMPT_TEXT", text), ("PROMPT_LENGTH", length)]
        elif s.method == S.FEW_SHOT:
            if self.few_shot is None:
                raise S.SpecError(f"backend {self.name!r} cannot run few-shot prompt design (no few_shot)")
            text, length = self.few_shot(task, s.shots, seed)
            gin_files.append(self.prompt_design_gin)
            overrides += [("PROMPT_TEXT", text), ("PROMPT_LENGTH", length)]
        gin_files += list(self.task_gin)
        overrides += list(s.method_params)
        steps = _per_method(self.train_steps, s.method, self.name, "train_steps")
        overrides += [("RANDOM_SEED", seed), ("TRAIN_STEPS", steps)]
        batch = self.batch_size.get(s.method, self.batch_size.get("*"))
        if batch is not None:
            overrides.append(("BATCH_SIZE", batch))
        overrides += list(self.extra_overrides)
        overrides += list(self.task_overrides.get(task, ()))
        if s.learning_rate is not None:
            overrides.append(("learning_rate_schedule.base_learning_rate", s.learning_rate))
        if s.dropout is not None:
            overrides.append(("DROPOUT_RATE", s.dropout))
        labels = (("sweep", sweep), ("panel", panel), ("method", s.method), ("size", size), ("task", task),
                  ("setting", str(value)), ("seed", seed), ("prompt_length", s.prompt_length), ("init", s.init),
                  ("objective", s.objective), ("lm_steps", s.lm_steps))
        return S.RunSpec(name=S.run_name(size, task, s, seed), gin_files=tuple(gin_files), overrides=tuple(overrides),
                         labels=labels, train_steps=steps)


def _per_method(table: Mapping[str, Any], method: str, backend: str, what: str) -> Any:
    """table[method], else table['*'] for a gin method; SpecError when neither is there."""
    if method in table:
        return table[method]
    if method in S.GIN_METHODS and "*" in table:
        return table["*"]
    raise S.SpecError(f"backend {backend!r} has no {what} for method {method!r}")


# ---------------------------------------------------------------------------- real
SUPERGLUE = ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc")

REAL = Backend(
    name="real",
    sizes=("small", "base", "large", "xl", "xxl"),
    tasks=SUPERGLUE,
    seeds=(0, 1, 2),
    lm_budgets=(0, 10_000, 50_000, 100_000),
    size_gin="gin/models/t5_1_1_{size}.gin",
    checkpoints={
        "sc": T5X_ROOT + "/t5_1_1_{size}/checkpoint_1000000",
        "lm100k": T5X_ROOT + "/t5_1_1_lm100k_{size}/checkpoint_1100000",
        "lm10k": LM_ADAPT_ROOT + "/t5_1_1_lm10k_{size}/checkpoint_1010000",
        "lm50k": LM_ADAPT_ROOT + "/t5_1_1_lm50k_{size}/checkpoint_1050000",
    },
    # The data package's TFDS SuperGLUE 1.0.2 tasks, benchmark prefix removed (prompt_tuning/data/tasks.py);
    # the trainer's command line registers them.
    task_template="taskless_super_glue_{task}_v102",
    sentinel_task_template="taskless_super_glue_{task}_v102_sentinel",
    feature_lengths={"*": {"inputs": 512, "targets": 8}, "record": {"inputs": 512, "targets": 32},
                     "wsc": {"inputs": 512, "targets": 16}},
    # Token counts with the T5 SentencePiece model (checked by tests/experiments/test_sweeps.py).
    prompt_design={
        "boolq": ("Answer the question about the passage with True or False.", 13),
        "cb": ("Does the premise entail, contradict, or say nothing about the hypothesis? "
               "Answer entailment, contradiction or neutral.", 27),
        "copa": ("Which choice is the cause or effect the question asks for? Answer choice1 or choice2.", 19),
        "multirc": ("Is the answer to the question about the paragraph correct? Answer True or False.", 19),
        "record": ("Replace @placeholder in the query with the entity from the passage that fits.", 16),
        "rte": ("Does the premise entail the hypothesis? Answer entailment or not_entailment.", 22),
        "wic": ("Is the word used with the same meaning in both sentences? Answer True or False.", 20),
        "wsc": ("Name the person or thing that the pronoun between asterisks refers to.", 19),
    },
    size_config=t5.get_config,
    task_setup=("prompt_tuning.data:register_tasks",),  # what the trainer's command line does
    train_steps={S.PROMPT_TUNING: 30_000, S.MODEL_TUNING: 30_000, S.PROMPT_DESIGN: 0, "*": 30_000},
    batch_size={S.PROMPT_TUNING: 32, S.MODEL_TUNING: 128, S.PROMPT_DESIGN: 32, "*": 32},
    ensemble_size="xxl",
    minutes_per_run=0.0,  # TPU/GPU cluster: hours per run at XL/XXL; not run here
)

def gin_size_config(path: str) -> t5.T5Config:
    """The T5Config a gin/models/*.gin file builds, read with gin's own parser from its literal
    `t5_config.<field> = <value>` bindings (references such as %DROPOUT_RATE stay at the config's
    default, dropout 0), so the gin file stays the one definition. SpecError if the file is missing."""
    import gin
    import gin.config
    import gin.config_parser

    if not os.path.isabs(path):
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), path)
    if not os.path.exists(path):
        raise S.SpecError(f"no model gin file {path}")
    with open(path) as f:
        parser = gin.config_parser.ConfigParser(f, gin.config.ParserDelegate(skip_unknown=True))
        fields: dict[str, Any] = {
            b.arg_name: b.value for b in parser
            if isinstance(b, gin.config_parser.BindingStatement) and b.selector == "t5_config" and not b.scope
            and not isinstance(b.value, gin.config.ConfigurableReference)}
    return t5.get_config(fields.pop("size"), **fields)


BACKENDS = {"real": REAL}
# Backends defined in their own modules (imported when asked for): name -> 'module:attribute'.
LAZY_BACKENDS = {"recall": "experiments.recall:RECALL"}


def get_backend(name: str) -> Backend:
    if name in LAZY_BACKENDS and name not in BACKENDS:
        import importlib

        module, attr = LAZY_BACKENDS[name].split(":")
        BACKENDS[name] = getattr(importlib.import_module(module), attr)
    if name not in BACKENDS:
        raise S.SpecError(f"unknown backend {name!r}; known: {sorted(set(BACKENDS) | set(LAZY_BACKENDS))}")
    return BACKENDS[name]
