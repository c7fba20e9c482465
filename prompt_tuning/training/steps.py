"""The pure loss and steps of training: jit-able, gin-free, TensorFlow-free.

    cross_entropy_loss   T5X's cross entropy with z-loss, on decoder_loss_weights
    merge_params / split_params   the trainable and frozen trees (split by a path regex)
    train_step           one update of the trainable tree (gradients for it only)
    eval_step            teacher-forced NLL sums of one batch
    compiler_options / jit_train_step   the train step jitted as the trainer runs it (remat on XLA CPU:
                         the memory-optimised scheduler)

`trainer.py` (the gin-configured loop) re-exports all of these under the same
names. This module imports only JAX, Flax, Optax, the model and packing.py (numpy), so the train
step runs (and `python -m prompt_tuning.plan` compiles it) on an accelerator
image without TensorFlow, SeqIO or gin.

Shape letters: B batch, T input length, L target length, V vocabulary.
"""
from __future__ import annotations

import functools
import re
from typing import Mapping, Optional

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from prompt_tuning.models import t5
from prompt_tuning.training import packing

PROMPT_REGEX = r".*/prompt/.*"  # encoder/prompt/prompt: prompt tuning
ALL_REGEX = r".*"  # model tuning


def cross_entropy_loss(logits, targets, weights, *, z_loss: float = 1e-4,
                       loss_normalizing_factor: Optional[float] = None):
    """T5X's weighted cross entropy with z-loss.

    logits [B, L, V] float32, targets [B, L], weights [B, L] -> (loss, aux).
    loss = sum_w(-log p(target) + z_loss * log(Z)^2) / normalizer, where the
    normalizer is `loss_normalizing_factor` or, by default, the number of
    weighted target tokens (a per-token mean; Adafactor's update is invariant
    to this scale up to its 1e-30 epsilon).
    """
    log_z = jax.nn.logsumexp(logits, axis=-1)
    target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    nll = log_z - target_logit
    z_term = z_loss * jnp.square(log_z)
    weights = weights.astype(jnp.float32)
    tokens = jnp.sum(weights)
    norm = tokens if loss_normalizing_factor is None else jnp.asarray(loss_normalizing_factor, jnp.float32)
    norm = jnp.maximum(norm, 1.0)
    loss = jnp.sum((nll + z_term) * weights) / norm
    aux = {"nll_sum": jnp.sum(nll * weights), "z_loss": jnp.sum(z_term * weights) / norm, "tokens": tokens}
    return loss, aux


def merge_params(frozen: Mapping, trainable: Mapping) -> dict:
    """One nested parameter tree from the two disjoint ones."""
    flat = traverse_util.flatten_dict(dict(frozen))
    flat.update(traverse_util.flatten_dict(dict(trainable)))
    return traverse_util.unflatten_dict(flat)


def split_params(params: Mapping, regex: str) -> tuple[dict, dict]:
    """(trainable, frozen): leaves whose 'a/b/c' path fully matches `regex` are trainable."""
    pattern = re.compile(regex)
    flat = traverse_util.flatten_dict(dict(params), sep="/")
    trainable = {k: v for k, v in flat.items() if pattern.fullmatch(k)}
    frozen = {k: v for k, v in flat.items() if not pattern.fullmatch(k)}
    unflat = lambda d: traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in d.items()})
    return unflat(trainable), unflat(frozen)


def train_step(state: dict, frozen: dict, batch: dict, dropout_key, *, model: t5.T5,
               tx: optax.GradientTransformation, z_loss: float, loss_normalizing_factor: Optional[float]):
    """One update of state['params'] (the trainable tree only).

    state {'step', 'params', 'opt_state'}, frozen params, batch of [B, T] / [B, L]
    arrays (or packed rows with their segment features, training/packing.py: the same loss)
    -> (new state, {'loss', 'z_loss', 'tokens', 'grad_norm'}).
    """
    rng = jax.random.fold_in(dropout_key, state["step"])

    def loss_of(trainable):
        logits = model.apply(
            {"params": merge_params(frozen, trainable)}, batch["encoder_input_tokens"],
            batch["decoder_input_tokens"], batch["decoder_target_tokens"], enable_dropout=True,
            rngs={"dropout": rng}, **packing.model_kwargs(batch),
        )
        return cross_entropy_loss(logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"],
                                  z_loss=z_loss, loss_normalizing_factor=loss_normalizing_factor)

    (loss, aux), grads = jax.value_and_grad(loss_of, has_aux=True)(state["params"])
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    new_state = {"step": state["step"] + 1, "params": optax.apply_updates(state["params"], updates),
                 "opt_state": opt_state}
    # A NaN gradient can leave the loss finite; the saved state must be finite, so check it too.
    params_finite = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(new_state["params"])]))
    metrics = {"loss": loss, "z_loss": aux["z_loss"], "tokens": aux["tokens"], "grad_norm": optax.global_norm(grads),
               "params_finite": params_finite}
    return new_state, metrics


def eval_step(params: dict, batch: dict, *, model: t5.T5, z_loss: float):
    """Teacher-forced {'nll_sum', 'tokens'} of one batch (dropout off)."""
    logits = model.apply({"params": params}, batch["encoder_input_tokens"], batch["decoder_input_tokens"],
                         batch["decoder_target_tokens"], **packing.model_kwargs(batch))
    _, aux = cross_entropy_loss(logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"], z_loss=z_loss)
    return {"nll_sum": aux["nll_sum"], "tokens": aux["tokens"]}


# XLA CPU's default scheduler orders the program for concurrency: it runs every block's rematerialised
# forward pass as soon as the block's saved input exists, so all blocks' recomputed activations are live
# at once and rematerialisation saves almost nothing (T5 1.1 Small, B 8, P+T 356: 1638 vs 1717 MiB). The
# memory-optimised scheduler (XLA_FLAGS' --xla_cpu_enable_concurrency_optimized_scheduler=false sets this
# option) recomputes each block just before its backward pass (911 MiB). benchmarks/README.md,
# "Rematerialisation", has the measurements.
REMAT_CPU_COMPILER_OPTIONS = {"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"}


def compiler_options(model: t5.T5) -> Optional[dict]:
    """XLA options for compiling the train step of `model`: on the CPU backend with
    `T5Config.remat` on, REMAT_CPU_COMPILER_OPTIONS; otherwise None (XLA's defaults)."""
    if model.config.remat == "none" or jax.default_backend() != "cpu":
        return None
    return dict(REMAT_CPU_COMPILER_OPTIONS)


def jit_train_step(*, model: t5.T5, tx: optax.GradientTransformation, z_loss: float,
                   loss_normalizing_factor: Optional[float], state_shardings, replicated):
    """`train_step` jitted as the trainer runs it: the state donated, outputs placed like the state,
    compiled with `compiler_options(model)`.

    Called with (state, frozen, batch, dropout_key). The plan command lowers
    and compiles this same function for simulated devices.
    """
    step = functools.partial(train_step, model=model, tx=tx, z_loss=z_loss,
                             loss_normalizing_factor=loss_normalizing_factor)
    return jax.jit(step, donate_argnums=(0,), out_shardings=(state_shardings, replicated),
                   compiler_options=compiler_options(model))
