"""Closed-form sizes of a T5 1.1 train step: the plan's numbers, derived by hand.

`prompt_tuning.plan` compiles the real step and reads XLA's figures; this
module derives the same quantities from the architecture alone (no JAX, no
compilation), so each can be checked against the other:

  parameter_shapes / parameter_count   every T5 1.1 weight and its logical axes
                                       (T5X's names), counted from the config
  parameter_bytes                      per-device bytes of the frozen and trainable
                                       shards under T5X's 1-D model-parallel rules
  adafactor_state_bytes                optax/T5X Adafactor state: factored (row and
                                       column means) or unfactored (a full second
                                       moment), and Adam's two moments for contrast
  activation_bytes                     the forward residuals the backward pass keeps
                                       (no rematerialisation), by tensor, per device

Shapes: B batch (global), b = B / DATA rows per device, S = P + T encoder
length (P prompt, T inputs), L target length, H emb_dim, D = heads x head_dim,
F mlp_dim, V vocabulary, M the model-axis size. Bytes are float32 unless a
dtype is given. Sources: the T5 1.1 gin files (shapes), T5X's
`standard_logical_axis_rules` (sharding; prompt_tuning/training/partitioning.py),
optax.scale_by_factored_rms (Adafactor state), Kingma & Ba 2015 (Adam: two
moments per parameter).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

# T5X's standard rules: which logical axes are split over the model axis (partitioning.STANDARD_RULES).
MODEL_SPLIT_AXES = ("vocab", "mlp", "heads", "joined_kv")


def parameter_shapes(config, prompt_length: Optional[int] = None) -> dict[str, tuple[tuple[int, ...], tuple[str, ...]]]:
    """{'encoder/layers_0/mlp/wi_0/kernel': ((H, F), ('embed', 'mlp')), ...} for prompt_tuning.models.t5.T5."""
    c = config
    H, D, F, V, n = c.emb_dim, c.num_heads * c.head_dim, c.mlp_dim, c.vocab_size, c.num_heads
    out = {"token_embedder/embedding": ((V, H), ("vocab", "embed"))}

    def attention(prefix):
        for name in ("query", "key", "value"):
            out[f"{prefix}/{name}/kernel"] = ((H, D), ("embed", "joined_kv"))
        out[f"{prefix}/out/kernel"] = ((D, H), ("joined_kv", "embed"))

    def mlp(prefix):
        for i in range(len(c.mlp_activations)):
            out[f"{prefix}/wi_{i}/kernel"] = ((H, F), ("embed", "mlp"))
        out[f"{prefix}/wo/kernel"] = ((F, H), ("mlp", "embed"))

    def norm(name):
        out[name] = ((H,), ("embed",))

    for stack, layers in (("encoder", c.num_encoder_layers), ("decoder", c.num_decoder_layers)):
        out[f"{stack}/relpos_bias/rel_embedding"] = ((n, c.relative_attention_num_buckets), ("heads", "relpos_buckets"))
        for i in range(layers):
            p = f"{stack}/layers_{i}"
            if stack == "encoder":
                norm(f"{p}/pre_attention_layer_norm/scale")
                attention(f"{p}/attention")
            else:
                norm(f"{p}/pre_self_attention_layer_norm/scale")
                attention(f"{p}/self_attention")
                norm(f"{p}/pre_cross_attention_layer_norm/scale")
                attention(f"{p}/encoder_decoder_attention")
            norm(f"{p}/pre_mlp_layer_norm/scale")
            mlp(f"{p}/mlp")
        norm(f"{stack}/{stack}_norm/scale")
    if not c.logits_via_embedding:
        out["decoder/logits_dense/kernel"] = ((H, V), ("embed", "vocab"))
    if prompt_length:
        out["encoder/prompt/prompt"] = ((prompt_length, H), ("prompt", "embed"))
    return out


def parameter_count(config, prompt_length: Optional[int] = None) -> int:
    """Closed form: 2VH + 2nR + L_e(4HD + 3HF + 2H) + L_d(8HD + 3HF + 3H) + 2H + PH (gated GELU, untied logits)."""
    c = config
    H, D, F, V = c.emb_dim, c.num_heads * c.head_dim, c.mlp_dim, c.vocab_size
    k = len(c.mlp_activations) + 1  # wi_0, wi_1, wo
    embeddings = V * H * (1 if c.logits_via_embedding else 2)
    relpos = 2 * c.num_heads * c.relative_attention_num_buckets
    encoder = c.num_encoder_layers * (4 * H * D + k * H * F + 2 * H) + H
    decoder = c.num_decoder_layers * (8 * H * D + k * H * F + 3 * H) + H
    return embeddings + relpos + encoder + decoder + (prompt_length or 0) * H


def shard_shape(shape: tuple[int, ...], axes: tuple[str, ...], model_axis: int) -> tuple[int, ...]:
    """The per-device shape: T5X's first model-split axis that divides by M is divided (partitioning._spec)."""
    out, used = list(shape), False
    for i, (size, name) in enumerate(zip(shape, axes)):
        if not used and name in MODEL_SPLIT_AXES and size % model_axis == 0:
            out[i], used = size // model_axis, True
    return tuple(out)


def _is_trainable(name: str, tuning: str) -> bool:
    return tuning == "model" or name.endswith("/prompt/prompt")


@dataclasses.dataclass(frozen=True)
class ParameterBytes:
    trainable: int
    frozen: int

    @property
    def total(self) -> int:
        return self.trainable + self.frozen


def parameter_bytes(config, *, tuning: str, model_axis: int, prompt_length: Optional[int] = None,
                    frozen_itemsize: int = 4) -> ParameterBytes:
    """Per-device bytes of the trainable (float32) and frozen (`frozen_itemsize`) shards. tuning: 'prompt' | 'model'."""
    if tuning not in ("prompt", "model"):
        raise ValueError(f"tuning must be 'prompt' or 'model', got {tuning!r}")
    trainable = frozen = 0
    for name, (shape, axes) in parameter_shapes(config, prompt_length).items():
        size = math.prod(shard_shape(shape, axes, model_axis))
        if _is_trainable(name, tuning):
            trainable += 4 * size
        else:
            frozen += frozen_itemsize * size
    return ParameterBytes(trainable, frozen)


def _factored(shape, min_dim_size_to_factor: int) -> bool:
    # optax._factored_dims: at least 2-D and the second-largest dim >= min_dim_size_to_factor.
    return len(shape) >= 2 and sorted(shape)[-2] >= min_dim_size_to_factor


def adafactor_state_bytes(config, *, tuning: str, model_axis: int, prompt_length: Optional[int] = None,
                          factored: bool = True, min_dim_size_to_factor: int = 128) -> int:
    """Per-device bytes of optax.scale_by_factored_rms's state for the trainable parameters (counters excluded).

    Factored [r, c] weight: a row vector (the second-largest dim), a column vector
    (the largest), both replicated, and a 1-element placeholder for v. Unfactored:
    v, sharded like the parameter, and 1-element row and column placeholders.
    """
    total = 0
    for name, (shape, axes) in parameter_shapes(config, prompt_length).items():
        if not _is_trainable(name, tuning):
            continue
        if factored and _factored(shape, min_dim_size_to_factor):
            total += 4 * (sorted(shape)[-2] + sorted(shape)[-1] + 1)
        else:
            total += 4 * (math.prod(shard_shape(shape, axes, model_axis)) + 2)
    return total


def adam_state_bytes(config, *, tuning: str, model_axis: int, prompt_length: Optional[int] = None) -> int:
    """Per-device bytes of Adam's two float32 moments, sharded like the trainable parameters."""
    return 2 * parameter_bytes(config, tuning=tuning, model_axis=model_axis, prompt_length=prompt_length).trainable


def activation_bytes(config, *, tuning: str, batch_per_device: int, model_axis: int, input_len: int,
                     target_len: int, prompt_length: Optional[int] = None) -> dict[str, int]:
    """Per-device bytes of the forward residuals the backward pass reads, by tensor (float32, no remat).

    Per example and encoder layer: the layer input and the residual after attention
    (2SH, for the layer norms), q, k, v (3SD/M), the attention probabilities and
    their dropout mask (nS^2/M at 4 + 1 bytes), the gated MLP's two pre-activations
    and the GELU output (3SF/M). Model tuning also keeps the inputs of every weight
    matmul for the weight gradients: both normalised inputs (2SH), the attention
    context (SD/M) and the MLP product (SF/M). The decoder likewise over L target
    positions, plus cross-attention's keys and values over the S encoder positions
    (2SD/M per layer) and its L x S probabilities; then the [L, V/M] logits and
    their softmax. Heads or dims that do not divide by M stay whole (replicated),
    as partitioning does. Returns {'encoder', 'decoder', 'logits', 'total'}.
    """
    c, b = config, batch_per_device
    H = c.emb_dim

    def split(size):
        return size // model_axis if size % model_axis == 0 else size

    n, D, F, V = split(c.num_heads), split(c.num_heads * c.head_dim), split(c.mlp_dim), split(c.vocab_size)
    S, L = input_len + (prompt_length or 0), target_len
    weights = tuning == "model"
    dropout = 1 if c.dropout_rate > 0 else 0

    def attention(q_len, kv_len):
        kept = q_len * D + 2 * kv_len * D + n * q_len * kv_len  # q, k, v, probabilities (float32)
        kept += q_len * D if weights else 0                       # context, for the output kernel's gradient
        return 4 * kept + dropout * n * q_len * kv_len            # + the probabilities' dropout mask (bool)

    def mlp(length):
        return 4 * length * ((3 + weights) * F + (1 + weights) * H)  # wi_0, wi_1, gelu [, product]; LN in [, out]

    encoder_layer = attention(S, S) + mlp(S) + 4 * S * H * (1 + weights)
    decoder_layer = (attention(L, L) + attention(L, S) + mlp(L) + 4 * L * H * (2 + 2 * weights))
    logits = 4 * L * V * 2  # logits and their softmax
    out = {"encoder": b * c.num_encoder_layers * encoder_layer,
           "decoder": b * c.num_decoder_layers * decoder_layer,
           "logits": b * logits}
    out["total"] = sum(out.values())
    return out
