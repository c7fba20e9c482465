"""Setup: the frozen model and the prompt (or a method) built once, split and placed on the mesh.

`build` loads the frozen model (a checkpoint, slice by slice onto the mesh, or
a random initialisation), makes the prompt (prompts.py: the initializer gets a
PromptContext of the frozen embeddings, the task's vocabulary and its label
words), initialises any method's parameters (methods/, e.g. LoRA), checks every
shape against the model, splits the tree by the trainable regex and places
both halves on the mesh. Used by the trainer (trainer.build, re-exported) and
the eval / infer runs (inference.py).

Shape letters: P prompt length, H hidden, K prompts in a bank.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from prompt_tuning import data, prompts
from prompt_tuning.checkpoints import sharded
from prompt_tuning.models import t5
from prompt_tuning.training import input_pipeline, partitioning
from prompt_tuning.training.config_checks import ConfigError
from prompt_tuning.training.steps import merge_params, split_params


@dataclasses.dataclass
class Setup:
    """A model ready to train or evaluate: trees placed on `mesh`."""

    model: t5.T5
    config: t5.T5Config
    mesh: Any
    trainable: dict
    frozen: dict
    checkpoint_step: Optional[int]
    frozen_host: Optional[dict] = None  # host copy when the frozen model was randomly initialised

    @property
    def params(self) -> dict:
        """The whole parameter tree (frozen and trainable merged)."""
        return merge_params(self.frozen, self.trainable)


def _label_words(task_name: str) -> Optional[tuple[str, ...]]:
    try:
        return data.label_words(task_name)
    except KeyError:
        return None


def _prompt_context(task_name: str, embeddings, vocabulary) -> prompts.PromptContext:
    """What the prompt initializer may use: the frozen embeddings, the vocabulary, the task's label words."""
    return prompts.PromptContext(embeddings=embeddings, vocabulary=vocabulary,
                                 label_words=_label_words(task_name), task_name=task_name)


def _abstract_params(model: t5.T5):
    """The boxed (logically partitioned) abstract parameter tree of `model`."""
    tokens = jnp.ones((1, 1), jnp.int32)
    return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), tokens, tokens, tokens))["params"]


def _load_frozen(config: t5.T5Config, path: Optional[str], random_init: bool, seed: int, mesh=None):
    if path:
        # Slice by slice straight onto the mesh: no whole-model host copy (checkpoints/sharded.py).
        shardings = nn.meta.unbox(partitioning.param_shardings(_abstract_params(t5.T5(config)), mesh))
        return sharded.load_sharded(path, config, shardings)
    if not random_init:
        raise ConfigError("INITIAL_CHECKPOINT_PATH is required (the frozen model to tune a prompt for)")
    tokens = jnp.ones((1, 1), jnp.int32)
    variables = jax.jit(lambda: t5.T5(config).init(jax.random.PRNGKey(seed), tokens, tokens, tokens))()
    return jax.tree.map(np.asarray, nn.meta.unbox(variables["params"])), None


def _init_method_params(model: t5.T5, present: Mapping, seed: int) -> dict:
    """Initial values of the parameters `model` has and `present` lacks (the methods' own, e.g. LoRA's).

    One jitted init whose only outputs are the missing leaves, so XLA drops the
    frozen weights' initialisation; the key is fold_in(PRNGKey(seed), 2).
    """
    have = set(traverse_util.flatten_dict(dict(present), sep="/"))
    tokens = jnp.ones((1, 1), jnp.int32)

    def missing():
        params = nn.meta.unbox(model.init(jax.random.fold_in(jax.random.PRNGKey(seed), 2), tokens, tokens, tokens))
        flat = traverse_util.flatten_dict(params["params"], sep="/")
        return {k: v for k, v in flat.items() if k not in have}

    flat = jax.tree.map(np.asarray, jax.jit(missing)())
    return traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})


def build(*, model_config: t5.T5Config, task_name: str, prompt: Optional[prompts.PromptSpec],
          initial_checkpoint_path: Optional[str], trainable_regex: str, seed: int, mesh,
          random_init_frozen_model: bool = False, overrides: Optional[Mapping] = None,
          methods: Sequence[Any] = ()) -> Setup:
    """Loads the frozen model, makes the prompt, builds the model once, splits and places both trees.

    The prompt is made in prompts.py: `prompt.initializer(context)` with a
    PromptContext of the frozen embeddings, the task's vocabulary and label
    words. `overrides` (a nested tree, e.g. a trainer checkpoint's params)
    replaces leaves after loading; a prompt found there is used instead of the
    initializer (prompts.from_array). `methods` (prompt_tuning/methods/, e.g.
    LoRA) are attached to the model; their parameters are initialised by the
    model (_init_method_params) unless `overrides` holds them. Raises
    ConfigError / CheckpointError / prompts.PromptError with one-line messages.
    """
    if not isinstance(model_config, t5.T5Config):
        raise ConfigError(f"MODEL_CONFIG must be a T5Config (e.g. @t5_config()), got {type(model_config).__name__}")
    vocabulary = input_pipeline.leaf_tasks(task_name)[0].output_features["targets"].vocabulary
    if vocabulary.vocab_size > model_config.vocab_size:
        raise ConfigError(f"the task's vocabulary has {vocabulary.vocab_size} ids but the model only "
                          f"{model_config.vocab_size} embedding rows")
    frozen_np, ckpt_step = _load_frozen(model_config, initial_checkpoint_path, random_init_frozen_model, seed, mesh)
    params = frozen_np
    factory = None
    if prompt is not None:
        restored = (overrides or {}).get("encoder", {}).get("prompt", {}).get("prompt")
        if restored is None:
            embeddings = partitioning.fetch(params["token_embedder"]["embedding"])  # gathered when sharded
            context = _prompt_context(task_name, embeddings, vocabulary)
            init_fn = prompt.initializer(context)
            factory = prompt.module(init_fn)
            values = prompt.initialize(init_fn, jax.random.PRNGKey(seed + 1), model_config.emb_dim)
        else:
            values = np.asarray(restored)
            factory = prompt.module(prompts.from_array(values), bank_values=bool(prompt.num_prompts))
        params = merge_params(params, {"encoder": {"prompt": {"prompt": values}}})
    model = t5.T5(model_config, factory, tuple(methods))
    if methods:
        params = merge_params(_init_method_params(model, params, seed), params)
    if overrides:
        params = merge_params(params, jax.tree.map(np.asarray, dict(overrides)))
    abstract = _abstract_params(model)
    expected = {k: v.value.shape for k, v in traverse_util.flatten_dict(
        abstract, sep="/", is_leaf=lambda _, x: isinstance(x, nn.LogicallyPartitioned)).items()}
    got = {k: np.shape(v) for k, v in traverse_util.flatten_dict(params, sep="/").items()}
    for k in sorted(set(expected) | set(got)):
        if expected.get(k) != got.get(k):
            raise ConfigError(f"parameter {k}: the model expects shape {expected.get(k)}, got {got.get(k)}")
    shardings = nn.meta.unbox(partitioning.param_shardings(abstract, mesh))
    trainable, frozen = split_params(params, trainable_regex)
    if not trainable:
        raise ConfigError(f"no parameter matches trainable_regex {trainable_regex!r} "
                          f"(a prompt run needs PROMPT set; model tuning uses '.*')")
    t_shard, f_shard = split_params(shardings, trainable_regex)
    return Setup(
        model=model, config=model_config, mesh=mesh,
        trainable=partitioning.put(trainable, t_shard), frozen=partitioning.put(frozen, f_shard),
        checkpoint_step=ckpt_step, frozen_host=frozen_np if random_init_frozen_model and not initial_checkpoint_path else None,
    )


def task_order(methods: Sequence[Any], task_name: str, tasks: Optional[Sequence[str]] = None) -> Optional[tuple]:
    """The task order of multi-task prompts (input_pipeline.task_order) when a method reads each row's task
    index (`TASK_INDEXED`, e.g. methods.MultiTaskPrompt), else None: the batches then carry no index.

    Raises ConfigError when MULTITASK_TASKS is set without such a method or when there are more tasks than
    the method's MULTITASK_NUM_TASKS prompts; input_pipeline.TaskError for a bad MULTITASK_TASKS.
    """
    indexed = [m for m in methods if getattr(m, "TASK_INDEXED", False)]
    if not indexed:
        if tasks is not None:
            raise ConfigError("MULTITASK_TASKS orders the tasks of multi-task prompts, but no METHOD reads a task "
                              "index (METHODS = [@multitask_prompt()], gin/methods/multitask_prompt.gin)")
        return None
    order = input_pipeline.task_order(task_name, tasks)
    for method in indexed:
        if len(order) > method.num_tasks:
            raise ConfigError(f"{len(order)} tasks {list(order)} but the multi-task prompt holds "
                              f"MULTITASK_NUM_TASKS = {method.num_tasks} task prompts")
    return order


def prompt_array(trainable: Mapping) -> Optional[np.ndarray]:
    """The prompt [P, H] (or bank [K, P, H]) of a trainable tree, on the host; None if absent."""
    node = trainable.get("encoder", {}).get("prompt", {}).get("prompt") if isinstance(trainable, Mapping) else None
    return None if node is None else partitioning.fetch(node)
