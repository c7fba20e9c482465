"""Multi-task prompts: a prompt shared by all tasks combined with a task-specific prompt, the task chosen per row.

The reference prompt-tuning code's extensions (multi-task prompts) and Multitask
Prompt Tuning (Wang et al., 2023) share what tasks have in common in one prompt
and keep a small prompt per task. Row b of a batch is prompted for task
`prompt_index[b]` (the argument PromptBank reads), so one batch mixes tasks on
one frozen model. Two combinations of the shared prompt S and task k's prompt T_k:

    combine='add'     S [P, H] + T_k [P, H]          -> [P, H]         (P = length)
    combine='concat'  [S [Ps, H]; T_k [Pt, H]]         -> [Ps + Pt, H]   (Ps = shared_length, Pt = length)

The effective prompt is prepended to the embedded encoder input as in prompt
tuning (always visible, the input's padding masked). Parameters under
`encoder/multitask_prompt/`: `shared` [Ps, H] and `tasks` [K, Pt, H]. The shared
prompt starts U[-0.5, 0.5] (the paper's random init); the task prompts start
U[-0.5, 0.5] for 'concat' and at zero for 'add', so an added prompt starts in
the same range as a single prompt (the shared one). (Wang et al.'s own
combination is a Hadamard product with a rank-one task matrix, and the
reference code also reads the task index from the input's first token; neither
is done here.)

Through the trainer and the eval / infer commands, `prompt_index` is the batch's
`encoder_prompt_index`: each row's task in a fixed order (MULTITASK_TASKS, else
the mixture's tasks sorted by name; training/input_pipeline.py).
`prompt_index` None means task 0 for every row (as PromptBank). A concrete index
outside [0, K) is a ValueError; a traced one gives NaN rows (never another
task's prompt). After training, `task_prompts(params)` exports the per-task
effective prompts [K, P, H]; each row is a plain prompt that prompt tuning
serves (prompts.from_array, or saved as .npy for PROMPT_INIT = @from_file) with
the same logits.

gin: `@multitask_prompt()` (gin/methods/multitask_prompt.gin).
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning import prompts
from prompt_tuning.configurable import gin
from prompt_tuning.models import t5

COMBINES = ("add", "concat")
NAME = "multitask_prompt"
_ENCODER_SIGNATURE = inspect.signature(t5.Encoder.__call__)


@dataclasses.dataclass(frozen=True)
class MultiTaskPrompt:
    """K task prompts of `length` combined with one shared prompt (`combine`: 'add' or 'concat')."""

    num_tasks: int = 2
    length: int = 20
    combine: str = "add"
    shared_length: Optional[int] = None  # 'concat' only: Ps (default: `length`)

    TRAINABLE_REGEX = r"encoder/multitask_prompt/.*"
    PACKABLE = False  # the task index here is per row, not per packed segment (the trainer refuses pack_width)
    TASK_INDEXED = True  # rows carry encoder_prompt_index, their task's index (trainer.task_order)

    def __post_init__(self):
        for name in ("num_tasks", "length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"multi-task prompt {name} must be a positive int, got {value!r}")
        if self.combine not in COMBINES:
            raise ValueError(f"multi-task prompt combine must be one of {COMBINES}, got {self.combine!r}")
        if self.shared_length is not None:
            if self.combine == "add":
                raise ValueError("an added shared prompt has the task prompts' length; shared_length is for 'concat'")
            if not isinstance(self.shared_length, int) or isinstance(self.shared_length, bool) or self.shared_length < 1:
                raise ValueError(f"multi-task prompt shared_length must be a positive int, got {self.shared_length!r}")

    @property
    def prompt_length(self) -> int:
        """P of the effective prompt: `length` ('add') or shared_length + length ('concat')."""
        return self.length if self.combine == "add" else (self.shared_length or self.length) + self.length

    def __call__(self, next_fun, args, kwargs, context):
        """The interceptor: reads the encoder's prompt_index, then prepends each row's prompt to its input."""
        if context.method_name != "__call__" or not isinstance(context.module, t5.Encoder):
            return next_fun(*args, **kwargs)
        bound = _ENCODER_SIGNATURE.bind(None, *args, **kwargs)
        bound.apply_defaults()
        if bound.arguments["segment_ids"] is not None:
            raise ValueError("multi-task prompts do not pack (the task index is per row); unset pack_width")
        with nn.intercept_methods(functools.partial(_prepend, self, bound.arguments["prompt_index"])):
            return next_fun(*args, **kwargs)

    def task_prompts(self, params: Mapping) -> np.ndarray:
        """The effective prompt of every task [K, P, H] from `params` (the whole tree or `encoder/multitask_prompt`'s).

        Row k, served as a plain prompt (prompts.Prompt), gives task k's logits.
        Raises KeyError when the tree holds no multi-task prompt.
        """
        tree = params["encoder"][NAME] if "encoder" in params else params
        table = TaskPrompts(self.num_tasks, self.length, self.combine, self.shared_length)
        hidden = np.shape(tree["shared"])[-1]
        return np.asarray(table.apply({"params": tree}, hidden, jnp.arange(self.num_tasks)))


def _prepend(method: MultiTaskPrompt, prompt_index, next_fun, args, kwargs, context):
    """Inner interceptor (inside the encoder): its `extend_input` gets the rows' prompts in front."""
    if context.method_name != "extend_input" or not isinstance(context.module, t5.Encoder):
        return next_fun(*args, **kwargs)
    x, mask = next_fun(*args, **kwargs)
    if prompt_index is None:
        prompt_index = jnp.zeros((x.shape[0],), jnp.int32)
    table = TaskPrompts(method.num_tasks, method.length, method.combine, method.shared_length, name=NAME)
    return prompts.prepend_prompt(table(x.shape[-1], prompt_index).astype(x.dtype), x, mask)


class TaskPrompts(nn.Module):
    """`shared` [Ps, H] and `tasks` [K, Pt, H] -> the rows' effective prompts [B, P, H] for task indices [B]."""

    num_tasks: int
    length: int
    combine: str = "add"
    shared_length: Optional[int] = None

    @nn.compact
    def __call__(self, hidden: int, task_index) -> jax.Array:
        """task_index [B] int in [0, K) -> [B, P, H] float32 (ValueError for a concrete index outside [0, K))."""
        shared_length = self.length if self.combine == "add" else (self.shared_length or self.length)
        uniform = lambda rng, shape, dtype=jnp.float32: jax.random.uniform(rng, shape, dtype, -0.5, 0.5)
        task_init = uniform if self.combine == "concat" else nn.initializers.zeros
        shared = self.param("shared", nn.with_logical_partitioning(uniform, ("prompt", "embed")),
                            (shared_length, hidden))
        tasks = self.param("tasks", nn.with_logical_partitioning(task_init, (None, "prompt", "embed")),
                           (self.num_tasks, self.length, hidden))
        if not isinstance(task_index, jax.core.Tracer):
            idx = np.asarray(task_index)
            if idx.size and (idx.min() < 0 or idx.max() >= self.num_tasks):
                raise ValueError(f"task index (prompt_index) must lie in [0, {self.num_tasks}), got values in "
                                 f"[{idx.min()}, {idx.max()}]")
        rows = jnp.take(tasks, task_index, axis=0, mode="fill", fill_value=jnp.nan)  # [B, Pt, H]
        shared = jnp.broadcast_to(shared[None], (rows.shape[0],) + shared.shape)
        if self.combine == "add":
            return shared + rows
        return jnp.concatenate([shared, rows], axis=1)


@gin.configurable
def multitask_prompt(num_tasks: int = 2, length: int = 20, combine: str = "add",
                     shared_length: Optional[int] = None) -> MultiTaskPrompt:
    """`@multitask_prompt()` in gin (MULTITASK_* macros in gin/methods/multitask_prompt.gin)."""
    return MultiTaskPrompt(num_tasks=num_tasks, length=length, combine=combine, shared_length=shared_length)
