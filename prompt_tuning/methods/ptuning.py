"""P-tuning (Liu et al., 2021, "GPT Understands, Too"): a soft prompt produced by a prompt encoder.

The P prompt vectors [P, H] prepended to the embedded encoder input (as in
prompt tuning, always visible) are not trained directly: a prompt encoder makes
them from trainable inputs E [P, H], which ties the vectors to each other.

    encoder='mlp'   relu(relu(E W1 + b1) W2 + b2) W3 + b3          W1 [H, h], W2 [h, h], W3 [h, H]
    encoder='lstm'  a 2-layer bidirectional LSTM of hidden size h over the P positions, then
                    relu(. W1 + b1) W2 + b2                          W1 [2h, 2h], W2 [2h, H]

This is PEFT's PromptEncoder (PromptEncoderConfig, encoder_reparameterization_type
'MLP' / 'LSTM', encoder_dropout 0) with torch's default initialisation (E ~ N(0, 1),
Linear and LSTM weights U(-1/sqrt(fan), 1/sqrt(fan))); the paper's encoder is the LSTM
then a 2-layer MLP. Here the prompt is placed in front of the input (the paper's
templates may place prompt vectors around the input; PEFT also prepends).

Parameters under `encoder/p_tuning/`: `embedding` [P, H], `mlp/{dense_0,dense_1,...}/{kernel,bias}`,
and for the LSTM `lstm/{l0_fwd,l0_bwd,l1_fwd,l1_bwd}/{w_ih [in, 4h], w_hh [h, 4h], bias [4h]}` (gates
i, f, g, o, torch's order; bias = torch's b_ih + b_hh). After training the encoder is dropped:
`prompt(params, hidden)` is the plain prompt [P, H] that prompt tuning serves
(PROMPT_INIT = @from_file or prompts.from_array) with the same logits.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning import prompts
from prompt_tuning.configurable import gin
from prompt_tuning.models import layers

ENCODERS = ("mlp", "lstm")
NAME = "p_tuning"


def _uniform(bound):
    """U(-bound, bound), torch's default for Linear (bound 1/sqrt(fan_in)) and LSTM (1/sqrt(h)) weights."""
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


@dataclasses.dataclass(frozen=True)
class PTuning:
    """A prompt of `length` vectors made by an `encoder` ('mlp' or 'lstm') of hidden size `hidden`."""

    length: int = 20
    hidden: int = 128
    encoder: str = "mlp"

    TRAINABLE_REGEX = r"encoder/p_tuning/.*"
    PACKABLE = False  # its positions are per row, not per packed segment (the trainer refuses pack_width)

    def __post_init__(self):
        for name in ("length", "hidden"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"P-tuning {name} must be a positive int, got {value!r}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"P-tuning encoder must be one of {ENCODERS}, got {self.encoder!r}")

    def __call__(self, next_fun, args, kwargs, context):
        """The interceptor: prepends the encoded prompt to the encoder's embedded input."""
        if context.method_name != "extend_input" or tuple(context.module.path) != ("encoder",):
            return next_fun(*args, **kwargs)
        x, mask = next_fun(*args, **kwargs)
        prompt = PromptEncoder(self.length, self.hidden, self.encoder, name=NAME)(x.shape[-1])
        prompt = jnp.broadcast_to(prompt.astype(x.dtype)[None], (x.shape[0],) + prompt.shape)
        return prompts.prepend_prompt(prompt, x, mask)

    def prompt(self, params: Mapping, hidden: int) -> np.ndarray:
        """The plain prompt [P, H] the encoder produces from `params` (the whole tree or `encoder/p_tuning`'s).

        Raises KeyError when the tree holds no P-tuning parameters.
        """
        tree = params["encoder"][NAME] if "encoder" in params else params
        module = PromptEncoder(self.length, self.hidden, self.encoder)
        return np.asarray(module.apply({"params": tree}, hidden))


class PromptEncoder(nn.Module):
    """Trainable inputs `embedding` [P, H] through an MLP or a bidirectional LSTM and an MLP -> [P, H]."""

    length: int
    hidden: int
    encoder: str = "mlp"

    @nn.compact
    def __call__(self, emb_dim: int):
        """-> the prompt [P, H] float32."""
        e = layers._param(self, "embedding", nn.initializers.normal(1.0), (self.length, emb_dim), ("prompt", "embed"))
        if self.encoder == "mlp":
            return _MLP((self.hidden, self.hidden, emb_dim), name="mlp")(e)
        h = _BiLSTM(self.hidden, num_layers=2, name="lstm")(e)
        return _MLP((2 * self.hidden, emb_dim), name="mlp")(h)


class _MLP(nn.Module):
    """Dense layers `dense_i` of the given widths with ReLU between them (torch.nn.Linear's init)."""

    widths: tuple

    @nn.compact
    def __call__(self, x):
        for i, width in enumerate(self.widths):
            if i:
                x = jax.nn.relu(x)
            x = _Dense(width, _uniform(1.0 / np.sqrt(x.shape[-1])), name=f"dense_{i}")(x)
        return x


class _Dense(nn.Module):
    features: int
    init: layers.Initializer

    @nn.compact
    def __call__(self, x):
        kernel = layers._param(self, "kernel", self.init, (x.shape[-1], self.features), (None, None))
        bias = layers._param(self, "bias", self.init, (self.features,), (None,))
        return jnp.dot(x, kernel) + bias


class _BiLSTM(nn.Module):
    """torch.nn.LSTM(bidirectional=True, batch_first=True) over one sequence [P, in] -> [P, 2h]."""

    hidden: int
    num_layers: int = 2

    @nn.compact
    def __call__(self, x):
        for layer in range(self.num_layers):
            x = jnp.concatenate([_LSTMDirection(self.hidden, reverse=False, name=f"l{layer}_fwd")(x),
                                 _LSTMDirection(self.hidden, reverse=True, name=f"l{layer}_bwd")(x)], axis=-1)
        return x


class _LSTMDirection(nn.Module):
    hidden: int
    reverse: bool

    @nn.compact
    def __call__(self, x):
        h = self.hidden
        init = _uniform(1.0 / np.sqrt(h))
        w_ih = layers._param(self, "w_ih", init, (x.shape[-1], 4 * h), (None, None))
        w_hh = layers._param(self, "w_hh", init, (h, 4 * h), (None, None))
        # torch has two biases (b_ih, b_hh), each U(-1/sqrt(h), 1/sqrt(h)); their sum is one parameter here.
        bias = layers._param(self, "bias", lambda k, s, d=jnp.float32: init(k, s, d) + init(jax.random.fold_in(k, 1), s, d),
                             (4 * h,), (None,))
        inputs = jnp.dot(x, w_ih) + bias  # [P, 4h]

        def step(carry, z):
            c, hs = carry
            i, f, g, o = jnp.split(z + jnp.dot(hs, w_hh), 4)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            hs = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (c, hs), hs

        zeros = jnp.zeros((h,), x.dtype)
        _, out = jax.lax.scan(step, (zeros, zeros), inputs, reverse=self.reverse)
        return out


@gin.configurable
def p_tuning(length: int = 20, hidden: int = 128, encoder: str = "mlp") -> PTuning:
    """`@p_tuning()` in gin (P_TUNING_LENGTH, P_TUNING_HIDDEN, P_TUNING_ENCODER in gin/methods/p_tuning.gin)."""
    return PTuning(length=length, hidden=hidden, encoder=encoder)
