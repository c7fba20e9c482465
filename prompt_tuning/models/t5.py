"""T5 1.1 encoder-decoder with an optional soft prompt on the encoder.

The parameter tree matches T5X's T5 1.1 checkpoints:

  token_embedder/embedding                         [V, H]
  encoder/relpos_bias/rel_embedding                [N, buckets]
  encoder/layers_{i}/pre_attention_layer_norm/scale
  encoder/layers_{i}/attention/{query,key,value}/kernel [H, N*D], out/kernel [N*D, H]
  encoder/layers_{i}/pre_mlp_layer_norm/scale
  encoder/layers_{i}/mlp/{wi_0,wi_1}/kernel [H, F], wo/kernel [F, H]
  encoder/encoder_norm/scale
  encoder/prompt/prompt                            [P, H]  (only when prompted)
  decoder/relpos_bias/rel_embedding
  decoder/layers_{i}/{pre_self_attention_layer_norm, self_attention,
                      pre_cross_attention_layer_norm, encoder_decoder_attention,
                      pre_mlp_layer_norm, mlp}
  decoder/decoder_norm/scale
  decoder/logits_dense/kernel                      [H, V]  (untied in T5 1.1)

With a prompt of length P the encoder output has P+T positions; the prompt
positions are always visible and the decoder attends to all of them.
Packed rows (training/packing.py) instead carry each segment's P prompt slots
inside the row, with segment ids that keep every attention inside its segment.

Parameter-efficient methods (LoRA, IA3, adapters: prompt_tuning/methods/) attach
through `T5(config, methods=(...))`: each method is a Flax method interceptor
(`nn.intercept_methods`) installed around `encode` and `decode`, which adds its
own parameters inside the modules it targets (e.g. `.../attention/query/lora_a`)
and rewrites their inputs or outputs. The model code has no branch per method; two
identity methods are extension points for methods that add positions:
`MultiHeadDotProductAttention.extend_memory` (prefix tuning's keys and values) and
`Encoder.extend_input` (P-tuning's prompt).

Shape letters: B batch, T encoder input length, L decoder length, P prompt
length, H hidden size, V vocabulary.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning import prompts
from prompt_tuning.models import layers

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class T5Config:
    """Architecture of a T5 1.1 model (T5X's `T5Config` field names)."""

    vocab_size: int = 32128
    emb_dim: int = 512
    num_heads: int = 6
    num_encoder_layers: int = 8
    num_decoder_layers: int = 8
    head_dim: int = 64
    mlp_dim: int = 1024
    mlp_activations: tuple[str, ...] = ("gelu", "linear")
    dropout_rate: float = 0.0
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    logits_via_embedding: bool = False
    dtype: str = "float32"  # activations; parameters are always float32
    # Rematerialisation of each encoder / decoder block in training (execution only: the parameters
    # and the outputs are unchanged). 'none' keeps every activation for the backward pass; 'full'
    # keeps only each block's input and recomputes the block (nn.remat); 'dots' also keeps the
    # matmul outputs without batch dimensions (jax.checkpoint_policies.dots_with_no_batch_dims_saveable).
    remat: str = "none"

    @property
    def jnp_dtype(self):
        """The activation dtype as a jnp.dtype."""
        return jnp.dtype(self.dtype)

    def replace(self, **kw) -> "T5Config":
        """A copy with the given fields changed."""
        return dataclasses.replace(self, **kw)


# The published T5 1.1 shapes (google-research/text-to-text-transfer-transformer,
# t5_1_1 gin files); parameter counts are asserted in tests against Table 4.
CONFIGS: dict[str, T5Config] = {
    "small": T5Config(emb_dim=512, num_heads=6, num_encoder_layers=8, num_decoder_layers=8, mlp_dim=1024),
    "base": T5Config(emb_dim=768, num_heads=12, num_encoder_layers=12, num_decoder_layers=12, mlp_dim=2048),
    "large": T5Config(emb_dim=1024, num_heads=16, num_encoder_layers=24, num_decoder_layers=24, mlp_dim=2816),
    "xl": T5Config(emb_dim=2048, num_heads=32, num_encoder_layers=24, num_decoder_layers=24, mlp_dim=5120),
    "xxl": T5Config(emb_dim=4096, num_heads=64, num_encoder_layers=24, num_decoder_layers=24, mlp_dim=10240),
    # The shape of ../shared/data/t5/t5x_t5_1_1_tiny (a real T5X checkpoint).
    "tiny": T5Config(
        emb_dim=4, num_heads=2, head_dim=2, num_encoder_layers=2, num_decoder_layers=2, mlp_dim=8,
        relative_attention_num_buckets=4, relative_attention_max_distance=8,
    ),
    # Fast unit-test size with the real vocabulary.
    "test": T5Config(
        emb_dim=32, num_heads=4, head_dim=8, num_encoder_layers=2, num_decoder_layers=2, mlp_dim=64,
        relative_attention_num_buckets=8, relative_attention_max_distance=16,
    ),
}


REMAT_POLICIES = ("none", "full", "dots")


def get_config(name: str, **overrides) -> T5Config:
    """A named size with optional field overrides, e.g. get_config('small', dropout_rate=0.1)."""
    if name not in CONFIGS:
        raise ValueError(f"unknown T5 size {name!r}; known: {sorted(CONFIGS)}")
    config = CONFIGS[name].replace(**overrides)
    if config.remat not in REMAT_POLICIES:
        raise ValueError(f"remat must be one of {REMAT_POLICIES}, got {config.remat!r}")
    return config


def _block(cls, config: T5Config, static_argnums: tuple[int, ...]):
    """`cls`, or `cls` under nn.remat as `config.remat` asks (argument numbers count self as 0)."""
    if config.remat == "none":
        return cls
    if config.remat not in REMAT_POLICIES:
        raise ValueError(f"remat must be one of {REMAT_POLICIES}, got {config.remat!r}")
    policy = jax.checkpoint_policies.dots_with_no_batch_dims_saveable if config.remat == "dots" else None
    return nn.remat(cls, static_argnums=static_argnums, policy=policy)


class EncoderLayer(nn.Module):
    """Pre-norm self-attention then the gated MLP, each with a residual and dropout (T5 1.1)."""
    config: T5Config

    @nn.compact
    def __call__(self, x: Array, mask: Array, bias: Array, deterministic: bool) -> Array:
        """x [B, T, H] -> [B, T, H]."""
        c, dt = self.config, self.config.jnp_dtype
        y = layers.LayerNorm(dtype=dt, name="pre_attention_layer_norm")(x)
        y = layers.MultiHeadDotProductAttention(c.num_heads, c.head_dim, c.dropout_rate, dt, name="attention")(
            y, y, mask, bias, deterministic=deterministic
        )
        x = x + nn.Dropout(c.dropout_rate, broadcast_dims=(-2,))(y, deterministic=deterministic)
        y = layers.LayerNorm(dtype=dt, name="pre_mlp_layer_norm")(x)
        y = layers.MlpBlock(c.mlp_dim, c.mlp_activations, c.dropout_rate, dt, name="mlp")(y, deterministic)
        return x + nn.Dropout(c.dropout_rate, broadcast_dims=(-2,))(y, deterministic=deterministic)


class DecoderLayer(nn.Module):
    """Pre-norm causal self-attention, cross-attention to the encoder, then the gated MLP (T5 1.1)."""
    config: T5Config

    @nn.compact
    def __call__(self, y, encoded, self_mask, cross_mask, bias, deterministic, decode):
        """y [B, L, H], encoded [B, P+T, H] -> [B, L, H]."""
        c, dt = self.config, self.config.jnp_dtype
        attn = lambda name: layers.MultiHeadDotProductAttention(c.num_heads, c.head_dim, c.dropout_rate, dt, name=name)
        drop = lambda z: nn.Dropout(c.dropout_rate, broadcast_dims=(-2,))(z, deterministic=deterministic)
        z = layers.LayerNorm(dtype=dt, name="pre_self_attention_layer_norm")(y)
        y = y + drop(attn("self_attention")(z, z, self_mask, bias, deterministic=deterministic, decode=decode))
        z = layers.LayerNorm(dtype=dt, name="pre_cross_attention_layer_norm")(y)
        y = y + drop(attn("encoder_decoder_attention")(z, encoded, cross_mask, None, deterministic=deterministic))
        z = layers.LayerNorm(dtype=dt, name="pre_mlp_layer_norm")(y)
        return y + drop(layers.MlpBlock(c.mlp_dim, c.mlp_activations, c.dropout_rate, dt, name="mlp")(z, deterministic))


def _pairwise_mask(q_valid: Array, k_valid: Array) -> Array:
    """[B, T], [B, S] -> [B, 1, T, S] boolean attention mask."""
    return jnp.logical_and(q_valid[:, None, :, None], k_valid[:, None, None, :])


def _same_segment(q_segments: Array, k_segments: Array) -> Array:
    """[B, T], [B, S] segment ids -> [B, 1, T, S]: query and key in the same segment (packing)."""
    return jnp.equal(q_segments[:, None, :, None], k_segments[:, None, None, :])


class Encoder(nn.Module):
    """Embeds tokens, prepends the prompt (if any), and runs the encoder stack."""

    config: T5Config
    shared_embedding: nn.Module
    prompt_factory: Optional[Any] = None  # (name=...) -> prompts.Prompt | prompts.PromptBank

    @nn.compact
    def __call__(self, tokens: Array, deterministic: bool, prompt_index: Optional[Array] = None,
                 segment_ids: Optional[Array] = None, prompt_slots: Optional[Array] = None):
        """tokens [B, T] -> (encoded [B, P+T, H], mask [B, P+T] bool).

        Packed rows (`segment_ids` given, training/packing.py): tokens [B, W] already hold each
        segment's P prompt slots, `prompt_slots` [B, W] says which prompt vector goes where (-1: a
        token) and `prompt_index` [B, W] (PromptBank only) which prompt; the output is
        (encoded [B, W, H], segment_ids [B, W]) and attention stays inside each segment. The
        relative position bias stays the row's: a segment is contiguous, so key index - query index
        is the offset within the segment (as T5X's packed encoder does); other pairs are masked.
        """
        c = self.config
        x = self.shared_embedding(tokens)
        if segment_ids is not None:
            if prompt_slots is None:
                raise ValueError("packed encoder input needs prompt_slots with segment_ids")
            if self.prompt_factory is not None:
                x = prompts.place_prompts(self.prompt_factory(name="prompt"), x, prompt_slots, prompt_index)
            mask = segment_ids
        else:
            mask = tokens > 0
        if self.prompt_factory is not None and segment_ids is None:
            prompt = self.prompt_factory(name="prompt")(x, prompt_index)
            x, mask = prompts.prepend_prompt(prompt, x, mask)
        x, mask = self.extend_input(x, mask)  # the extension point for methods that add input positions
        # After the concatenation, as in the reference code: dropout hits the prompt too.
        x = nn.Dropout(c.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)
        length = x.shape[1]
        bias = layers.RelativePositionBiases(
            c.relative_attention_num_buckets, c.relative_attention_max_distance, c.num_heads,
            c.jnp_dtype, name="relpos_bias",
        )(length, length, bidirectional=True)
        attn_mask = _pairwise_mask(mask > 0, mask > 0)
        if segment_ids is not None:
            attn_mask = jnp.logical_and(attn_mask, _same_segment(segment_ids, segment_ids))
        layer = _block(EncoderLayer, c, static_argnums=(4,))  # deterministic
        for i in range(c.num_encoder_layers):
            x = layer(c, name=f"layers_{i}")(x, attn_mask, bias, deterministic)
        x = layers.LayerNorm(dtype=c.jnp_dtype, name="encoder_norm")(x)
        return nn.Dropout(c.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic), mask

    def extend_input(self, x: Array, mask: Array) -> tuple[Array, Array]:
        """The embedded input the stack reads: x [B, T, H], mask [B, T] (after any prompt).

        The identity here. A method that adds input positions intercepts this
        call (P-tuning, prompt_tuning/methods/ptuning.py, returns [B, P+T, H] and
        its mask).
        """
        return x, mask


class Decoder(nn.Module):
    """Embeds decoder tokens (the shared table), runs the decoder stack and the untied output layer."""
    config: T5Config
    shared_embedding: nn.Module

    @nn.compact
    def __call__(self, encoded, encoder_mask, decoder_input_tokens, decoder_target_tokens=None,
                 *, deterministic: bool, decode: bool = False, decoder_segment_ids=None):
        """encoded [B, S, H], encoder_mask [B, S], decoder tokens [B, L] -> logits [B, L, V] float32.

        Packed rows: `decoder_segment_ids` [B, L] with encoder_mask the encoder's segment ids
        [B, S] (what a packed `encode` returns); self- and cross-attention then stay inside each
        segment (teacher forcing only, not with decode=True).

        With decode=True, L is 1 and the self-attention caches carry the past.
        The decoder batch may be a multiple G of the encoder batch: decoder rows
        b*G ... b*G+G-1 then read encoder row b (rank classification, each input
        encoded once for its G candidate labels).
        """
        c = self.config
        y = self.shared_embedding(decoder_input_tokens)
        y = nn.Dropout(c.dropout_rate, broadcast_dims=(-2,))(y, deterministic=deterministic)
        length = y.shape[1]
        relpos = layers.RelativePositionBiases(
            c.relative_attention_num_buckets, c.relative_attention_max_distance, c.num_heads,
            c.jnp_dtype, name="relpos_bias",
        )
        if decode and self.has_variable("cache", "position"):
            # One new query per call at `position`; the layers' caches mask the future.
            position = self.variable("cache", "position", jnp.zeros, (), jnp.int32)
            max_length = self.get_variable("cache", "max_length").shape[0]
            bias = relpos(1, max_length, bidirectional=False, query_offset=position.value)
            position.value = position.value + 1
            self_mask = None
            q_valid = jnp.ones(decoder_input_tokens.shape, bool)
        else:
            if decode:  # the call that shapes the caches: full length L = max decode length
                self.variable("cache", "position", jnp.zeros, (), jnp.int32)
                self.variable("cache", "max_length", jnp.zeros, (length,), jnp.int8)
            bias = relpos(length, length, bidirectional=False)
            # As T5X: queries are the loss positions (targets > 0), causally masked.
            if decoder_target_tokens is not None:
                q_valid = decoder_target_tokens > 0
            else:
                q_valid = jnp.ones(decoder_input_tokens.shape, bool)
            causal = jnp.tril(jnp.ones((length, length), bool))[None, None]
            self_mask = jnp.logical_and(_pairwise_mask(q_valid, q_valid), causal)
            if decoder_segment_ids is not None:
                self_mask = jnp.logical_and(self_mask, _same_segment(decoder_segment_ids, decoder_segment_ids))
        groups, rest = divmod(decoder_input_tokens.shape[0], encoder_mask.shape[0])
        if rest:
            raise ValueError(f"decoder batch {decoder_input_tokens.shape[0]} is not a multiple of the encoder "
                             f"batch {encoder_mask.shape[0]}")
        if groups > 1:
            encoder_mask = jnp.repeat(encoder_mask, groups, axis=0)
        if decoder_segment_ids is not None:
            if decode:
                raise ValueError("packed decoder rows (decoder_segment_ids) are for teacher forcing, not decode=True")
            cross_mask = jnp.logical_and(_pairwise_mask(q_valid, encoder_mask > 0),
                                         _same_segment(decoder_segment_ids, encoder_mask))
        else:
            cross_mask = _pairwise_mask(q_valid, encoder_mask)
        # Cached decoding computes no gradient: no remat there.
        layer = DecoderLayer if decode else _block(DecoderLayer, c, static_argnums=(6, 7))  # deterministic, decode
        for i in range(c.num_decoder_layers):
            y = layer(c, name=f"layers_{i}")(y, encoded, self_mask, cross_mask, bias, deterministic, decode)
        y = layers.LayerNorm(dtype=c.jnp_dtype, name="decoder_norm")(y)
        y = nn.Dropout(c.dropout_rate, broadcast_dims=(-2,))(y, deterministic=deterministic)
        if c.logits_via_embedding:
            logits = self.shared_embedding.attend(y) / jnp.sqrt(y.shape[-1])
        else:
            logits = layers.Dense(c.vocab_size, ("embed", "vocab"), dtype=c.jnp_dtype, name="logits_dense")(y)
        return logits.astype(jnp.float32)


@contextlib.contextmanager
def attached(methods: Sequence[Any]):
    """Installs each method as a Flax method interceptor, the first outermost."""
    with contextlib.ExitStack() as stack:
        for method in methods:
            stack.enter_context(nn.intercept_methods(method))
        yield


class T5(nn.Module):
    """T5 1.1 encoder-decoder; `prompt` (a `prompts.Prompt` or `PromptBank`) is optional.

    A model with no prompt is its own configuration (model tuning, zero-shot).
    """

    config: T5Config
    # (name=...) -> prompts.Prompt | prompts.PromptBank, e.g. functools.partial(Prompt, length=P).
    prompt_factory: Optional[Any] = None
    # Hashable method interceptors (prompt_tuning/methods/), e.g. (methods.LoRA(rank=8),).
    methods: Sequence[Any] = ()

    def setup(self):
        """The shared token embedder, the (prompted) encoder and the decoder."""
        c = self.config
        self.token_embedder = layers.Embed(c.vocab_size, c.emb_dim, c.jnp_dtype)
        self.encoder = Encoder(c, self.token_embedder, self.prompt_factory)
        self.decoder = Decoder(c, self.token_embedder)

    def encode(self, encoder_input_tokens, *, enable_dropout: bool = False, prompt_index=None,
               encoder_segment_ids=None, encoder_prompt_slots=None):
        """[B, T] -> (encoded [B, P+T, H], mask [B, P+T]); packed rows: see `Encoder`."""
        with attached(self.methods):
            return self.encoder(encoder_input_tokens, not enable_dropout, prompt_index, encoder_segment_ids,
                                encoder_prompt_slots)

    def decode(self, encoded, encoder_mask, decoder_input_tokens, decoder_target_tokens=None,
               *, enable_dropout: bool = False, decode: bool = False, decoder_segment_ids=None):
        """-> logits [B, L, V] float32; packed rows: see `Decoder`."""
        with attached(self.methods):
            return self.decoder(
                encoded, encoder_mask, decoder_input_tokens, decoder_target_tokens,
                deterministic=not enable_dropout, decode=decode, decoder_segment_ids=decoder_segment_ids,
            )

    def __call__(self, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens=None,
                 *, enable_dropout: bool = False, prompt_index=None, encoder_segment_ids=None,
                 encoder_prompt_slots=None, decoder_segment_ids=None):
        """Teacher-forced logits [B, L, V] float32.

        Packed rows (training/packing.py's features): encoder_segment_ids and encoder_prompt_slots
        [B, W], decoder_segment_ids [B, L], prompt_index [B, W] for a PromptBank; each segment then
        scores exactly as its example alone would.
        """
        encoded, mask = self.encode(encoder_input_tokens, enable_dropout=enable_dropout, prompt_index=prompt_index,
                                    encoder_segment_ids=encoder_segment_ids, encoder_prompt_slots=encoder_prompt_slots)
        return self.decode(encoded, mask, decoder_input_tokens, decoder_target_tokens, enable_dropout=enable_dropout,
                           decoder_segment_ids=decoder_segment_ids)


@functools.lru_cache(maxsize=None)
def num_parameters(config: T5Config) -> int:
    """Exact parameter count of T5(config) without a prompt, from abstract shapes (nothing is allocated).

    T5 1.1's published sizes give the paper's Table 4 (tests/models/test_t5.py).
    """
    tokens = jnp.ones((1, 1), jnp.int32)
    shapes = jax.eval_shape(lambda: T5(config).init(jax.random.PRNGKey(0), tokens, tokens))["params"]
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nn.meta.unbox(shapes))))
