"""How many parameters a method trains on a given T5, counted from the module's abstract parameter tree.

    trainable_parameters(config, method) -> int
    prompt_parameters(config, length) -> int     prompt tuning's P x H, counted the same way

The attached model is initialised abstractly (`jax.eval_shape`, nothing
allocated) and the leaves the method's TRAINABLE_REGEX selects are summed, so
the count is that of the parameters the trainer would actually train. Closed
forms (tests/methods/test_counts.py checks them at the five T5 1.1 sizes), with
H = emb_dim, d = num_heads * head_dim, F = mlp_dim, L_e / L_d encoder / decoder
layers and A = L_e + 2 L_d attentions:

    LoRA (query, value)   2 * A * r * (H + d)
    IA3                   2 * A * d + (L_e + L_d) * F
    adapters (size s)     (2 L_e + 3 L_d) * (2 H s + s + H)
    prefix, direct        2 * P * d * A                                   (the paper's three sites)
    prefix, MLP hidden h  sum over the sites' stacks (L = L_e, L_d, L_d) of
                          P H + H h + h + (h + 1) * 2 L d
    multi-task prompts    (Ps + K Pt) H   (K tasks; 'add': Ps = Pt = P)
"""
from __future__ import annotations

import functools
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from prompt_tuning import prompts
from prompt_tuning.models import t5


def _count(model: t5.T5, regex: str) -> int:
    tokens = jnp.ones((1, 1), jnp.int32)
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), tokens, tokens, tokens))["params"]
    flat = traverse_util.flatten_dict(nn.meta.unbox(shapes), sep="/")
    return int(sum(np.prod(v.shape) for k, v in flat.items() if re.fullmatch(regex, k)))


@functools.lru_cache(maxsize=None)
def trainable_parameters(config: t5.T5Config, method) -> int:
    """Parameters of `T5(config, methods=(method,))` that `method.TRAINABLE_REGEX` selects."""
    return _count(t5.T5(config, methods=(method,)), method.TRAINABLE_REGEX)


@functools.lru_cache(maxsize=None)
def prompt_parameters(config: t5.T5Config, length: int) -> int:
    """Parameters of a prompt-tuned T5 (`prompts.Prompt` of `length`) that prompt tuning trains ('.*/prompt/.*')."""
    return _count(t5.T5(config, functools.partial(prompts.Prompt, length=length)), r".*/prompt/.*")
