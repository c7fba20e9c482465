"""Analytic matmul FLOPs of a T5 1.1 train step: 2*m*n*k for every matmul the step needs.

A step needs:
  - the forward pass;
  - model tuning: for every matmul the gradient w.r.t. each operand (input and
    weight gradients), i.e. 3x the forward matmuls;
  - prompt tuning: only gradients that lead back to the prompt. A matmul
    operand needs its gradient iff it depends on the prompt; the frozen
    weights never do. Everything in the encoder depends on the prompt (it is
    concatenated before layer 0), as does everything in the decoder that
    reads the encoder output. Decoder layer 0's self-attention and its
    cross-attention query read only the (frozen) decoder token embeddings, so
    JAX's autodiff, which propagates symbolic zero tangents, forms no
    gradient for them; the cross-attention scores there need d(keys) only.
    Gradients are counted per whole matmul: the encoder's first-layer input
    gradient covers all P+T rows even though only the P prompt rows are kept.

Elementwise work (norms, softmax, GELU, Adafactor) is not counted: these are
matmul FLOPs, the ones a matmul peak can be compared with. XLA's
`cost_analysis()` counts elementwise FLOPs too, so it reads a little higher.

Shape letters: B batch, S encoder length (P+T with a prompt), L decoder
length, H hidden, N heads, D head dim, F MLP dim, V vocabulary.
"""
from __future__ import annotations

import dataclasses

PROMPT, MODEL, FORWARD = "prompt", "model", "forward"


@dataclasses.dataclass(frozen=True)
class Matmul:
    """One kind of matmul in the step, with what its backward pass costs.

    `forward` is 2*m*n*k summed over its `count` instances; `prompt_grad`
    the FLOPs of the operand gradients prompt tuning needs; `input_grad` and
    `weight_grad` those model tuning needs.
    """

    name: str
    forward: int
    prompt_grad: int
    input_grad: int
    weight_grad: int


def _mm(m: int, n: int, k: int) -> int:
    return 2 * m * n * k


def matmuls(config, *, batch: int, encoder_len: int, target_len: int) -> list[Matmul]:
    """Every matmul of one T5 forward pass on [B, S] inputs and [B, L] targets.

    `config` is a prompt_tuning.models.t5.T5Config (any object with its fields).
    """
    b, s, l = batch, encoder_len, target_len
    h, n, d, f, v = config.emb_dim, config.num_heads, config.head_dim, config.mlp_dim, config.vocab_size
    nd, le, ld = n * d, config.num_encoder_layers, config.num_decoder_layers
    gates = len(config.mlp_activations)
    out: list[Matmul] = []

    def weight(name, rows, k_in, n_out, layers, prompt_needs=True):
        fwd = _mm(rows, n_out, k_in) * layers
        out.append(Matmul(name, fwd, fwd if prompt_needs else 0, fwd, fwd))

    def act(name, fwd, prompt_operands):
        """Activation x activation (attention): no weight; each operand's gradient costs one forward."""
        out.append(Matmul(name, fwd, fwd * prompt_operands, 2 * fwd, 0))

    # Encoder: every operand depends on the prompt.
    weight("encoder q,k,v", b * s, h, 3 * nd, le)
    act("encoder scores", _mm(b * n * s, s, d) * le, 2)
    act("encoder attn x v", _mm(b * n * s, d, s) * le, 2)
    weight("encoder out", b * s, nd, h, le)
    weight("encoder mlp wi", b * s, h, gates * f, le)
    weight("encoder mlp wo", b * s, f, h, le)

    # Decoder: split into layer 0 (self-attention input independent of the prompt) and the rest.
    for tag, layers, first in (("decoder layer 0", 1, True), ("decoder layers 1+", ld - 1, False)):
        if layers <= 0:
            continue
        weight(f"{tag} self q,k,v", b * l, h, 3 * nd, layers, prompt_needs=not first)
        act(f"{tag} self scores", _mm(b * n * l, l, d) * layers, 0 if first else 2)
        act(f"{tag} self attn x v", _mm(b * n * l, d, l) * layers, 0 if first else 2)
        weight(f"{tag} self out", b * l, nd, h, layers, prompt_needs=not first)
        weight(f"{tag} cross q", b * l, h, nd, layers, prompt_needs=not first)
        weight(f"{tag} cross k,v", b * s, h, 2 * nd, layers)
        act(f"{tag} cross scores", _mm(b * n * l, s, d) * layers, 1 if first else 2)
        act(f"{tag} cross attn x v", _mm(b * n * l, d, s) * layers, 2)
        weight(f"{tag} cross out", b * l, nd, h, layers)
        weight(f"{tag} mlp wi", b * l, h, gates * f, layers)
        weight(f"{tag} mlp wo", b * l, f, h, layers)
    weight("logits", b * l, h, v, 1)
    return out


def step_flops(config, mode: str, *, batch: int, encoder_len: int, target_len: int) -> dict[str, int]:
    """{'forward', 'backward', 'total'} matmul FLOPs of one step of `mode`.

    mode: 'prompt' (gradients to the prompt only), 'model' (all weights), or
    'forward' (inference: no backward pass).
    """
    mms = matmuls(config, batch=batch, encoder_len=encoder_len, target_len=target_len)
    fwd = sum(m.forward for m in mms)
    if mode == PROMPT:
        bwd = sum(m.prompt_grad for m in mms)
    elif mode == MODEL:
        bwd = sum(m.input_grad + m.weight_grad for m in mms)
    elif mode == FORWARD:
        bwd = 0
    else:
        raise ValueError(f"mode must be {PROMPT!r}, {MODEL!r} or {FORWARD!r}, got {mode!r}")
    return {"forward": fwd, "backward": bwd, "total": fwd + bwd}
