"""Inference with a (prompted) T5: cached greedy decoding and sequence scoring.

Both functions are pure and jit-able with `model` and lengths static; the
frozen parameters (and the prompt) are ordinary arguments, so one compiled
function serves every prompt of the same shape.

Shape letters: B batch, T encoder input length, P prompt length, L decoder
length, H hidden, V vocabulary.
"""
from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp

Array = jax.Array

PAD_ID = 0  # also T5's decoder start ("BOS") id
EOS_ID = 1


def _init_cache(model, params, encoded, encoder_mask, batch: int, max_decode_length: int):
    """Zeroed key/value caches shaped for `max_decode_length` decoder positions."""
    shapes = jax.eval_shape(
        lambda: model.apply(
            {"params": params}, encoded, encoder_mask, jnp.zeros((batch, max_decode_length), jnp.int32),
            decode=True, method=model.decode, mutable=["cache"],
        )[1]["cache"]
    )
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


@functools.partial(jax.jit, static_argnames=("model", "max_decode_length", "eos_id"))
def greedy_decode(model, params, encoder_input_tokens: Array, *, max_decode_length: int,
                  prompt_index: Optional[Array] = None, eos_id: int = EOS_ID) -> Array:
    """Greedy generation with a key/value cache.

    encoder_input_tokens [B, T] -> tokens [B, L] (L = max_decode_length), the
    generated ids with EOS kept and everything after it set to PAD_ID. The
    loop stops as soon as every row has produced EOS.
    """
    batch = encoder_input_tokens.shape[0]
    encoded, mask = model.apply(
        {"params": params}, encoder_input_tokens, prompt_index=prompt_index, method=model.encode
    )
    cache = _init_cache(model, params, encoded, mask, batch, max_decode_length)

    def step(state):
        i, cache, last, out, done = state
        logits, mutated = model.apply(
            {"params": params, "cache": cache}, encoded, mask, last[:, None],
            decode=True, method=model.decode, mutable=["cache"],
        )
        token = jnp.argmax(logits[:, 0], axis=-1).astype(jnp.int32)
        token = jnp.where(done, PAD_ID, token)
        out = out.at[:, i].set(token)
        return i + 1, mutated["cache"], token, out, jnp.logical_or(done, token == eos_id)

    def cond(state):
        i, _, _, _, done = state
        return jnp.logical_and(i < max_decode_length, jnp.logical_not(jnp.all(done)))

    init = (
        jnp.array(0, jnp.int32), cache, jnp.full((batch,), PAD_ID, jnp.int32),
        jnp.zeros((batch, max_decode_length), jnp.int32), jnp.zeros((batch,), bool),
    )
    return jax.lax.while_loop(cond, step, init)[3]


def token_log_likelihood(model, params, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens,
                         prompt_index=None) -> Array:
    """Teacher-forced log p(target token) [B, L], zero at padding (target 0)."""
    logits = model.apply(
        {"params": params}, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens,
        prompt_index=prompt_index,
    )
    logp = jax.nn.log_softmax(logits, axis=-1)
    ll = jnp.take_along_axis(logp, decoder_target_tokens[..., None], axis=-1)[..., 0]
    return jnp.where(decoder_target_tokens > 0, ll, 0.0)


@functools.partial(jax.jit, static_argnames=("model",))
def sequence_log_likelihood(model, params, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens,
                            prompt_index=None) -> Array:
    """Sum of target-token log-likelihoods [B]: the score for rank classification."""
    return token_log_likelihood(
        model, params, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens, prompt_index
    ).sum(axis=-1)


@functools.partial(jax.jit, static_argnames=("model",))
def label_log_likelihoods(model, params, encoder_input_tokens, label_input_tokens, label_target_tokens,
                          prompt_index=None) -> Array:
    """Rank-classification scores with each input encoded once: [B, T], [C, L], [C, L] -> [B, C].

    Entry [b, c] is log p(label c | input b), the sum over label c's target
    tokens (0 = padding), equal to `sequence_log_likelihood` of the pair. The
    encoder runs on the B inputs only; the decoder runs on B*C rows (row b*C + c
    is input b with label c) whose cross-attention projects each encoding's
    keys and values once for its C labels.
    """
    batch, num_labels = encoder_input_tokens.shape[0], label_target_tokens.shape[0]
    encoded, mask = model.apply(
        {"params": params}, encoder_input_tokens, prompt_index=prompt_index, method=model.encode
    )
    dec_in = jnp.tile(label_input_tokens, (batch, 1))
    targets = jnp.tile(label_target_tokens, (batch, 1))
    logits = model.apply({"params": params}, encoded, mask, dec_in, targets, method=model.decode)
    logp = jax.nn.log_softmax(logits, axis=-1)
    ll = jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    return jnp.where(targets > 0, ll, 0.0).sum(axis=-1).reshape(batch, num_labels)


@functools.partial(jax.jit, static_argnames=("model",))
def packed_token_log_likelihood(model, params, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens,
                                encoder_segment_ids, encoder_prompt_slots, decoder_segment_ids,
                                prompt_index=None) -> Array:
    """Teacher-forced log p(target token) of packed rows (training/packing.py), zero at padding.

    encoder rows [R, W] with their segment ids and prompt slots (and `prompt_index` [R, W] for a
    PromptBank); decoder rows [R*G, LW] with decoder_segment_ids naming the encoder segment each
    slot belongs to -> [R*G, LW]. G > 1 decoder rows per encoder row (row r*G + g reads encoder row r)
    score G candidate targets of every segment with each row encoded once (rank classification).
    """
    logits = model.apply(
        {"params": params}, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens,
        prompt_index=prompt_index, encoder_segment_ids=encoder_segment_ids,
        encoder_prompt_slots=encoder_prompt_slots, decoder_segment_ids=decoder_segment_ids,
    )
    logp = jax.nn.log_softmax(logits, axis=-1)
    ll = jnp.take_along_axis(logp, decoder_target_tokens[..., None], axis=-1)[..., 0]
    return jnp.where(decoder_target_tokens > 0, ll, 0.0)
