"""Rematerialisation lowers the compiled train step's memory: `steps.jit_train_step` compiles a remat
model with `steps.compiler_options` (XLA CPU's memory-optimised scheduler), and its temporaries fall well
below the no-remat step's; the same remat step compiled without the option (the fault: XLA CPU's default
concurrency scheduler recomputes every block up front) saves nothing. The update is unchanged."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning import prompts
from prompt_tuning.models import t5
from prompt_tuning.training import optimizer, partitioning, steps

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu", reason="the option is XLA CPU's scheduler")


def _step(remat: str, with_options: bool = True):
    """(temp bytes of the compiled prompt-tuning step, its loss, its new prompt) at toy shapes where
    activations dominate: 4 + 4 layers, B 4, P 8 + T 120, dropout on."""
    vocab = 64
    config = t5.get_config("test", vocab_size=vocab, remat=remat, num_encoder_layers=4, num_decoder_layers=4,
                           dropout_rate=0.1)
    model = t5.T5(config, functools.partial(prompts.Prompt, length=8))
    tokens = jnp.ones((1, 1), jnp.int32)
    params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), tokens, tokens, tokens)["params"])
    trainable, frozen = steps.split_params(params, steps.PROMPT_REGEX)
    tx = optimizer.adafactor()
    state = {"step": jnp.zeros((), jnp.int32), "params": trainable, "opt_state": tx.init(trainable)}
    rng = np.random.default_rng(0)
    targets = rng.integers(2, vocab, (4, 4)).astype(np.int32)
    batch = {"encoder_input_tokens": rng.integers(2, vocab, (4, 120)).astype(np.int32),
             "decoder_input_tokens": np.concatenate([np.zeros((4, 1), np.int32), targets[:, :-1]], 1),
             "decoder_target_tokens": targets, "decoder_loss_weights": np.ones_like(targets)}
    replicated = partitioning.replicated(partitioning.make_mesh())
    if with_options:
        fn = steps.jit_train_step(model=model, tx=tx, z_loss=1e-4, loss_normalizing_factor=None,
                                  state_shardings=jax.tree.map(lambda _: replicated, state), replicated=replicated)
    else:  # the fault: the trainer's jit without the compiler options
        fn = jax.jit(functools.partial(steps.train_step, model=model, tx=tx, z_loss=1e-4, loss_normalizing_factor=None),
                     donate_argnums=(0,))
    compiled = fn.lower(state, frozen, batch, jax.random.PRNGKey(1)).compile()
    temp = compiled.memory_analysis().temp_size_in_bytes
    new_state, metrics = compiled(state, frozen, batch, jax.random.PRNGKey(1))
    return temp, float(metrics["loss"]), np.asarray(new_state["params"]["encoder"]["prompt"]["prompt"])


def test_remat_with_the_memory_scheduler_cuts_the_steps_temporaries():
    assert steps.compiler_options(t5.T5(t5.get_config("test"))) is None  # no remat: XLA's defaults
    base_temp, base_loss, base_prompt = _step("none")
    temp, loss, prompt = _step("full")
    assert temp < 0.65 * base_temp, (temp, base_temp)  # measured 11.3 vs 20.7 MiB (0.55x)
    np.testing.assert_allclose(loss, base_loss, rtol=1e-6)
    np.testing.assert_allclose(prompt, base_prompt, rtol=1e-5, atol=1e-7)
    fault_temp, _, _ = _step("full", with_options=False)
    assert fault_temp > 0.9 * base_temp, (fault_temp, base_temp)  # measured 23.4 MiB: remat saves nothing
