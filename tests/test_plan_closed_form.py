"""plan_closed_form: hand-derived sizes against the model, the plan's abstract state and measured plans.

Parameter counts and per-device parameter / Adafactor bytes must be exact; the
residual estimate must bound XLA's measured temporaries from below (the
smallest-mesh search rules layouts out with it).
"""
import json
import math
import os
import subprocess
import sys

import pytest

from prompt_tuning import plan_closed_form as cf
from prompt_tuning.models import t5
from tests.conftest import REPO


ABSTRACT_SCRIPT = r"""
import json, sys
import jax, jax.numpy as jnp
from prompt_tuning import plan, prompts
from prompt_tuning.models import t5
from prompt_tuning.training import optimizer, partitioning, steps

out = []
for size, tuning, (data, model), factored in json.loads(sys.argv[1]):
    config = t5.get_config(size)
    mesh = plan._mesh((data, model))
    tx = optimizer.adafactor(factored=factored)
    _, state, frozen, batch, _ = plan.build_abstract(
        config, prompt_length=100 if tuning == "prompt" else None,
        trainable_regex=steps.PROMPT_REGEX if tuning == "prompt" else ".*", tx=tx, mesh=mesh, batch_size=32,
        input_len=512, target_len=16)
    counters = [x for x in jax.tree.leaves(state["opt_state"]) if x.ndim == 0]
    out.append({"params": plan._shard_bytes(frozen) + plan._shard_bytes(state["params"]),
                "trainable": plan._shard_bytes(state["params"]), "optimizer": plan._shard_bytes(state["opt_state"]),
                "counters": plan._shard_bytes(counters), "count": plan._count(frozen) + plan._count(state["params"])})
print(json.dumps(out))
"""

# (size, tuning, mesh, factored): every size, both tunings, the two target meshes and a 1-device one,
# 'small' with 6 heads on an 8-way model axis (its relative-position table stays whole).
ABSTRACT_CASES = [("small", "prompt", (4, 8), True), ("small", "model", (4, 8), True), ("base", "model", (2, 4), True),
                  ("large", "model", (1, 1), True), ("xl", "model", (2, 4), True), ("xl", "prompt", (4, 8), True),
                  ("xxl", "model", (4, 8), True), ("xxl", "prompt", (2, 4), True),
                  ("base", "model", (2, 4), False), ("small", "prompt", (1, 1), False)]


@pytest.fixture(scope="module")
def abstract_sizes():
    """What the plan sees for each case: per-device bytes of the abstract state on 32 simulated devices."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=32")
    proc = subprocess.run([sys.executable, "-c", ABSTRACT_SCRIPT, json.dumps(ABSTRACT_CASES)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# Lester et al. 2021 / T5 1.1 sizes (untied embeddings, gated GELU); prompt tuning adds P x H.
T5_1_1_PARAMETERS = {"small": 76_961_152, "base": 247_577_856, "large": 783_150_080, "xl": 2_849_757_184,
                     "xxl": 11_135_332_352}


def test_parameter_count_is_the_closed_form_and_the_model():
    for size, count in T5_1_1_PARAMETERS.items():
        config = t5.get_config(size)
        assert cf.parameter_count(config) == count
        assert sum(math.prod(shape) for shape, _ in cf.parameter_shapes(config).values()) == count
        assert cf.parameter_count(config, 100) == count + 100 * config.emb_dim


@pytest.mark.slow
def test_plan_bytes_are_the_closed_form(abstract_sizes):
    """Per-device parameter and Adafactor bytes of the plan equal the hand-derived ones, factored or not."""
    for (size, tuning, (data, model), factored), got in zip(ABSTRACT_CASES, abstract_sizes):
        config, prompt = t5.get_config(size), (100 if tuning == "prompt" else None)
        params = cf.parameter_bytes(config, tuning=tuning, model_axis=model, prompt_length=prompt)
        assert got["count"] == cf.parameter_count(config, prompt)
        assert (got["params"], got["trainable"]) == (params.total, params.trainable), (size, tuning, model)
        state = cf.adafactor_state_bytes(config, tuning=tuning, model_axis=model, prompt_length=prompt,
                                         factored=factored)
        assert got["optimizer"] - got["counters"] == state, (size, tuning, model, factored)
    # Factoring is what keeps model tuning's optimizer state small: XXL on a model axis of 8 holds
    # 5.19 GiB of float32 parameters per device, 19 MiB of factored statistics (replicated row and
    # column vectors), 5.19 GiB unfactored and 10.37 GiB of Adam moments.
    xxl = t5.get_config("xxl")
    assert cf.parameter_bytes(xxl, tuning="model", model_axis=8).trainable / 2 ** 30 == pytest.approx(5.187, abs=1e-3)
    assert cf.adafactor_state_bytes(xxl, tuning="model", model_axis=8) / 2 ** 20 == pytest.approx(19.06, abs=0.01)
    assert cf.adafactor_state_bytes(xxl, tuning="model", model_axis=8, factored=False) / 2 ** 30 == pytest.approx(
        5.187, abs=1e-3)
    assert cf.adam_state_bytes(xxl, tuning="model", model_axis=8) / 2 ** 30 == pytest.approx(10.374, abs=1e-3)
    assert cf.adam_state_bytes(xxl, tuning="prompt", model_axis=8, prompt_length=100) == 2 * 4 * 100 * 4096


# Temporaries (GiB per device) measured by the README table's commands (full-depth compiles).
MEASURED_TEMPORARIES = [("small", "prompt", (4, 8), 2.037), ("small", "model", (4, 8), 1.874),
                        ("base", "prompt", (4, 8), 3.704), ("base", "model", (4, 8), 3.615),
                        ("large", "prompt", (4, 8), 7.480), ("large", "model", (4, 8), 7.769),
                        ("xl", "prompt", (4, 8), 14.845), ("xxl", "prompt", (4, 8), 29.689),
                        ("small", "prompt", (2, 4), 4.214), ("small", "model", (2, 4), 3.914),
                        ("base", "prompt", (2, 4), 7.866), ("base", "model", (2, 4), 7.734),
                        ("xl", "prompt", (2, 4), 41.286), ("xxl", "prompt", (2, 4), 82.569)]


def test_measured_temporaries_hold_the_closed_form_residuals():
    """XLA keeps at least the residuals the backward pass reads (and the weight gradients), and at most
    4x that (its extra: pre-softmax logits, dropout bits, layer-norm intermediates, backward scratch).
    The lower bound is what lets the smallest-mesh search rule a layout out without compiling it."""
    for size, tuning, (data, model), temp in MEASURED_TEMPORARIES:
        config, prompt = t5.get_config(size, dropout_rate=0.1), (100 if tuning == "prompt" else None)
        residuals = cf.activation_bytes(config, tuning=tuning, batch_per_device=32 // data, model_axis=model,
                                        input_len=512, target_len=16, prompt_length=prompt)["total"]
        grads = cf.parameter_bytes(config, tuning=tuning, model_axis=model, prompt_length=prompt).trainable
        assert 1.0 <= temp * 2 ** 30 / (residuals + grads) <= 4.0, (size, tuning, data, model)
