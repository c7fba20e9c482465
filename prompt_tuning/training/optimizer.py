"""Adafactor with T5X's semantics, built from optax pieces, and the learning-rate schedule.

The update of one parameter p with gradient g at Adafactor step t (T5X's
`t5x/adafactor.py`, no momentum):

    beta2_t = 1 - (t - step_offset + 1) ** -decay_rate          (0 at t = 0)
    v       = beta2_t * v + (1 - beta2_t) * (g**2 + 1e-30)      second moment; factored into
                                                                row/col means when the two
                                                                largest dims are >= 128
    y       = g / sqrt(v)
    y       = y / max(1, rms(y) / clipping_threshold)           update clipping
    lr'     = lr(step) * max(rms(p), 1e-3)   if multiply_by_parameter_scale else lr(step)
    p       = (1 - weight_decay) * p - lr' * y                  decay NOT scaled by the learning rate

`optax.adafactor` computes the same chain; what this module adds:

- The step counter. T5X feeds Adafactor the train state's step, which for a
  run started from a released checkpoint continues from that checkpoint's step
  (1,100,000 for the LM-adapted T5 1.1), so beta2 starts near 1 (0.99999).
  optax starts its counter at 0 (beta2 = 0 at the first step: v is the first
  squared gradient). Default here: the counter starts at 0, like optax, so a
  run does not depend on how long its frozen model was pretrained;
  `initial_step=<checkpoint step>` (the trainer's
  `adafactor_step_from_checkpoint=True`) reproduces T5X.
- Factoring. T5X's released gin files factor by logical axis rules; this
  module uses the shape heuristic (both of the two largest dims >= 128, the
  largest one averaged for the row statistic). For 2-D kernels both give the
  same estimate (the factored estimate is symmetric in rows and columns); they
  differ only for arrays with a dim < 128, e.g. a [P, H] prompt with P < 128,
  which is never factored here (as in the reference prompt-tuning runs).
- The learning-rate schedule takes the run's step (0 at the start of this run;
  TRAIN_STEPS counts the steps of this run), not the checkpoint's.

Defaults are the paper's prompt-tuning settings: constant learning rate 0.3,
decay exponent 0.8, weight decay 1e-5, no parameter scaling, clipping 1.0, no
momentum. The model-tuning baseline (gin/runs/model_finetune.gin) uses T5X's
fine-tuning defaults: learning rate 0.001, parameter scaling on, no weight decay.
"""
from __future__ import annotations

from typing import Optional

import jax.numpy as jnp
import optax

from prompt_tuning.configurable import gin


@gin.configurable
def learning_rate_schedule(
    base_learning_rate: float = 0.3, warmup_steps: int = 0, decay_factor: Optional[float] = None,
    decay_steps: Optional[int] = None, cosine_steps: Optional[int] = None, cosine_end_factor: float = 0.1,
) -> optax.Schedule:
    """Constant `base_learning_rate`, optional linear warmup and step or cosine decay.

    With `decay_factor` f and `decay_steps` k, the rate is multiplied by f every k steps
    after the warmup (the paper's search space). With `cosine_steps` n, it follows a
    half cosine from 1 to `cosine_end_factor` over steps [warmup_steps, n) and stays
    there (the ladder's pretraining: a run ends at the end of its own schedule). The
    step is the run's step (0 at the start of this run). Raises ValueError.
    """
    if base_learning_rate <= 0:
        raise ValueError(f"learning rate must be > 0, got {base_learning_rate}")
    if (decay_factor is None) != (decay_steps is None):
        raise ValueError("set both decay_factor and decay_steps, or neither")
    if cosine_steps is not None and (decay_factor is not None or cosine_steps <= warmup_steps):
        raise ValueError(f"cosine_steps ({cosine_steps}) must exceed warmup_steps ({warmup_steps}) "
                         f"and excludes decay_factor")

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        lr = jnp.asarray(base_learning_rate, jnp.float32)
        if warmup_steps:
            lr = lr * jnp.minimum(1.0, (step + 1.0) / warmup_steps)
        if decay_factor is not None:
            after = jnp.maximum(step - warmup_steps, 0.0)
            lr = lr * decay_factor ** jnp.floor(after / decay_steps)
        if cosine_steps is not None:
            frac = jnp.clip((step - warmup_steps) / (cosine_steps - warmup_steps), 0.0, 1.0)
            lr = lr * (cosine_end_factor + (1.0 - cosine_end_factor) * 0.5 * (1.0 + jnp.cos(jnp.pi * frac)))
        return lr

    return schedule


def _count_from(tx: optax.GradientTransformation, initial_step: int) -> optax.GradientTransformation:
    """The same transformation with its step counter starting at `initial_step`."""

    def init(params):
        state = tx.init(params)
        return state._replace(count=jnp.asarray(initial_step, jnp.int32))

    return optax.GradientTransformation(init, tx.update)


@gin.configurable
def adafactor(
    learning_rate=None,
    *,
    decay_rate: float = 0.8,
    step_offset: int = 0,
    clipping_threshold: Optional[float] = 1.0,
    weight_decay_rate: Optional[float] = 1e-5,
    multiply_by_parameter_scale: bool = False,
    epsilon1: float = 1e-30,
    epsilon2: float = 1e-3,
    factored: bool = True,
    min_dim_size_to_factor: int = 128,
    initial_step: int = 0,
) -> optax.GradientTransformation:
    """T5X Adafactor (see the module docstring); `learning_rate` is a float or a schedule.

    `initial_step` is where the second-moment counter starts (0, or the initial
    checkpoint's step for T5X's behaviour); `step_offset` is subtracted from it
    as in T5X. Defaults are the paper's prompt-tuning settings.
    """
    if learning_rate is None:
        learning_rate = learning_rate_schedule()
    if initial_step < 0:
        raise ValueError(f"initial_step must be >= 0, got {initial_step}")
    second_moment = optax.scale_by_factored_rms(
        factored=factored, decay_rate=decay_rate, step_offset=step_offset,
        min_dim_size_to_factor=min_dim_size_to_factor, epsilon=epsilon1,
    )
    chain = [_count_from(second_moment, initial_step)]
    if clipping_threshold is not None:
        chain.append(optax.clip_by_block_rms(clipping_threshold))
    chain.append(optax.scale_by_learning_rate(learning_rate, flip_sign=False))
    if multiply_by_parameter_scale:
        chain.append(optax.scale_by_param_block_rms(min_scale=epsilon2))
    if weight_decay_rate:
        # After the learning rate: p <- (1 - wd) * p - lr * y, as T5X.
        chain.append(optax.add_decayed_weights(weight_decay_rate))
    chain.append(optax.scale(-1.0))
    return optax.chain(*chain)


def adafactor_step(opt_state) -> int:
    """The second-moment counter of an `adafactor` state (for logs and tests)."""
    return int(opt_state[0].count)
