"""The training check every parameter-efficient method's tests share: only the delta changes, the loss falls.

`train_only_the_delta` runs trainer.train_step (jitted as the trainer does) on one
batch and asserts the guarantee: every array outside `regex` (taken from the
params before the split, so a regex or split that lets a frozen array train is
caught) is bit-identical with its dtype, every array inside it was updated, and
the loss fell below `loss_ratio` times its first value.
"""
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from prompt_tuning.training import optimizer, trainer


def flat(tree) -> dict:
    """{'a/b/c': array} of a nested params tree."""
    return traverse_util.flatten_dict(dict(tree), sep="/")


def jitted_step(model, lr: float):
    """(jit(trainer.train_step) for `model` with Adafactor at constant rate `lr`, the optax transform)."""
    tx = optimizer.adafactor(optimizer.learning_rate_schedule(lr), weight_decay_rate=None)
    step = jax.jit(functools.partial(trainer.train_step, model=model, tx=tx, z_loss=1e-4, loss_normalizing_factor=None))
    return step, tx


def initial_state(tx, trainable) -> dict:
    """The trainer's state {'step', 'params', 'opt_state'} at step 0."""
    return {"step": jnp.asarray(0, jnp.int32), "params": trainable, "opt_state": tx.init(trainable)}


def train_only_the_delta(model, params, regex: str, batch: dict, *, lr: float, loss_ratio: float, steps: int = 30):
    """Trains the arrays matching `regex` for `steps` steps on `batch`; asserts the guarantee (module doc).

    Returns (step, final state, frozen tree) for further checks on the compiled step.
    """
    before = flat(params)
    frozen_before = {k: np.array(v, copy=True) for k, v in before.items() if not re.fullmatch(regex, k)}
    delta_before = {k: np.array(v, copy=True) for k, v in before.items() if re.fullmatch(regex, k)}
    assert delta_before and frozen_before, "the regex splits the params into a delta and a frozen model"
    trainable, frozen = trainer.split_params(params, regex)
    step, tx = jitted_step(model, lr)
    state = initial_state(tx, trainable)
    losses = []
    for _ in range(steps):
        state, metrics = step(state, frozen, batch, jax.random.PRNGKey(0))
        losses.append(float(metrics["loss"]))
    assert losses[-1] < loss_ratio * losses[0], losses
    merged = flat(trainer.merge_params(frozen, state["params"]))
    assert set(merged) == set(before)
    for key, value in frozen_before.items():
        got = np.asarray(merged[key])
        assert got.dtype == value.dtype and np.array_equal(got, value), f"frozen array {key} changed"
    unchanged = [k for k, v in delta_before.items() if np.array_equal(np.asarray(merged[k]), v)]
    assert not unchanged, f"delta arrays not updated: {unchanged}"
    return step, state, frozen
