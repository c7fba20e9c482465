"""Eval throughput: rank classification and greedy decoding, one prompt vs a batch mixing K prompts.

Both use the project's inference functions (`decoding.sequence_log_likelihood`,
`decoding.greedy_decode`), jitted with the parameters as arguments:

  single   a `prompts.Prompt` model (one [P, H] prompt broadcast over the batch);
  mixed    an `ensembling.bank_model` with K prompts [K, P, H], row b under
           prompt b mod K (the mixed-task serving path).

Rank classification scores C verbalizers per example as evaluation.rank
does (`decoding.label_log_likelihoods`: each input encoded once, the decoder
on B*C rows). `rank_repeat` is the layout it replaced, kept as the baseline:
every input repeated C times through the whole model
(`sequence_log_likelihood` on rows i*C + j); `rank_once_over_repeat` is the
speed-up. Greedy decoding runs the full L steps (EOS never
stops it early: random weights would otherwise make the work vary).
Throughput is examples per second.

Shape letters: B examples per batch, C labels, K prompts, T input length,
L target length, P prompt length.
"""
from __future__ import annotations

import functools
import statistics
import time

import numpy as np

from benchmarks import flops
from benchmarks.spec import Spec
from benchmarks.train_bench import model_config

NEVER = -1  # an EOS id no token equals: greedy decoding runs all L steps


def _time_pair(fns: dict, steps: int) -> dict:
    """{name: (first call incl. compilation, median of `steps` calls)}; the calls alternate between
    the functions, so a load change on a shared machine hits both sides of a ratio alike."""
    import jax

    first, times = {}, {name: [] for name in fns}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        first[name] = time.perf_counter() - t0
        jax.block_until_ready(fn())  # warm-up
    for _ in range(steps):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - t0)
    return {name: (first[name], statistics.median(times[name])) for name in fns}


def run(spec: Spec) -> dict:
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from prompt_tuning import ensembling, prompts
    from prompt_tuning.models import decoding, t5

    config = model_config(spec)
    b, c, k, length = spec.eval_batch, spec.eval_labels, spec.eval_prompts, spec.target_len
    tokens = jnp.ones((1, 1), jnp.int32)
    single = t5.T5(config, functools.partial(prompts.Prompt, length=spec.prompt_len))
    params = jax.jit(lambda: nn.meta.unbox(single.init(jax.random.PRNGKey(0), tokens, tokens, tokens)["params"]))()
    frozen = {kk: v for kk, v in params.items()}
    frozen["encoder"] = {kk: v for kk, v in params["encoder"].items() if kk != "prompt"}
    bank = jax.random.uniform(jax.random.PRNGKey(1), (k, spec.prompt_len, config.emb_dim), minval=-0.5, maxval=0.5)
    mixed = ensembling.bank_model(config, k, spec.prompt_len)
    mixed_params = ensembling.bank_params(frozen, bank)
    mixed_index = jnp.asarray(np.arange(b) % k, jnp.int32)

    rng = np.random.default_rng(0)
    inputs = jnp.asarray(rng.integers(3, config.vocab_size, (b, spec.input_len)), jnp.int32)
    labels = rng.integers(3, config.vocab_size, (c, length))
    labels[:, 1:] = 0
    labels[:, 1] = decoding.EOS_ID  # one-token verbalizers + EOS, 0-padded, as evaluation.verbalizer_targets
    dec_in = np.concatenate([np.zeros((c, 1), np.int64), labels[:, :-1]], axis=1)
    rank_inputs = jnp.repeat(inputs, c, axis=0)
    rank_dec_in = jnp.asarray(np.tile(dec_in, (b, 1)), jnp.int32)
    rank_targets = jnp.asarray(np.tile(labels, (b, 1)), jnp.int32)

    label_dec_in, label_targets = jnp.asarray(dec_in, jnp.int32), jnp.asarray(labels, jnp.int32)
    cases = {
        ("rank", "single"): lambda: decoding.label_log_likelihoods(
            single, params, inputs, label_dec_in, label_targets),
        ("rank", "repeat"): lambda: decoding.sequence_log_likelihood(
            single, params, rank_inputs, rank_dec_in, rank_targets),
        ("rank", "mixed"): lambda: decoding.label_log_likelihoods(
            mixed, mixed_params, inputs, label_dec_in, label_targets, mixed_index),
        ("decode", "single"): lambda: decoding.greedy_decode(
            single, params, inputs, max_decode_length=length, eos_id=NEVER),
        ("decode", "mixed"): lambda: decoding.greedy_decode(
            mixed, mixed_params, inputs, max_decode_length=length, prompt_index=mixed_index, eos_id=NEVER),
    }
    out = {"eval_batch": b, "labels": c, "prompts": k, "decode_len": length}
    for task, variants in (("rank", ("single", "mixed", "repeat")), ("decode", ("single", "mixed"))):
        timed = _time_pair({v: cases[(task, v)] for v in variants}, spec.eval_steps)
        for variant, (first, median) in timed.items():
            out[f"{task}_{variant}"] = {"first_call_s": first, "median_s": median, "examples_per_s": b / median}
    rank_flops = flops.step_flops(config, flops.FORWARD, batch=b * c, encoder_len=spec.encoder_len,
                                  target_len=length)["total"]
    out["rank_flops_analytic"] = rank_flops  # the repeat layout's; encode-once does ~1/C of the encoder's
    out["rank_once_over_repeat"] = out["rank_single"]["examples_per_s"] / out["rank_repeat"]["examples_per_s"]
    for task in ("rank", "decode"):
        out[f"{task}_mixed_over_single"] = out[f"{task}_mixed"]["examples_per_s"] / out[f"{task}_single"]["examples_per_s"]
    return out
