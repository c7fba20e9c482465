"""python -m prompt_tuning.plan: T5 1.1 Small on 8 simulated devices, checked against the real step.

The plan compiles `steps.jit_train_step` on abstract arrays. Here the same
configuration is also built the trainer's way (trainer.build with a randomly
initialised frozen Small, the optimizer state, a batch placed on the mesh) and
its compiled step's `memory_analysis()` must agree with the plan's printed
figures. Each runs in a subprocess: the simulated device count is fixed when
JAX starts.
"""
import json
import math
import os
import re
import subprocess
import sys

import pytest

from prompt_tuning import plan
from tests.conftest import REPO

SMALL_PT = ["--gin_file=gin/runs/prompt_finetune.gin", "--gin_file=gin/models/t5_1_1_small.gin",
            "--gin_file=gin/prompts/random_uniform.gin", "--gin.TASK_FEATURE_LENGTHS={'inputs': 512, 'targets': 16}"]

SCRIPT = r"""
import contextlib, io, json, sys
import jax, jax.numpy as jnp, numpy as np
from prompt_tuning import plan, prompts
from prompt_tuning.training import optimizer, partitioning, steps, trainer
from tests.training import synthetic_tasks as st

args = json.loads(sys.argv[1])
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = plan.main(args)
extrapolated = io.StringIO()
with contextlib.redirect_stdout(extrapolated):
    plan.main(args + ["--extrapolate_from_depths=2,4"])
assert jax.device_count() == 8

# The real step, built as train_and_evaluate builds it (Small, prompt 100, batch 32, 512 + 16 tokens, mesh 4x2).
mesh = partitioning.make_mesh(num_partitions=2)
setup = trainer.build(model_config=trainer.t5_config("small", dropout_rate=0.1), task_name=st.TASK,
                      prompt=prompts.make_prompt(100, prompts.random_uniform), initial_checkpoint_path=None,
                      trainable_regex=trainer.PROMPT_REGEX, seed=0, mesh=mesh, random_init_frozen_model=True)
tx = optimizer.adafactor()
replicated = partitioning.replicated(mesh)
shardings = jax.tree.map(lambda x: x.sharding, setup.trainable)
state = {"step": jax.jit(lambda: jnp.zeros((), jnp.int32), out_shardings=replicated)(), "params": setup.trainable,
         "opt_state": jax.jit(tx.init, out_shardings=partitioning.optimizer_state_shardings(
             tx, setup.trainable, shardings, mesh))(setup.trainable)}
step = steps.jit_train_step(model=setup.model, tx=tx, z_loss=1e-4, loss_normalizing_factor=None,
                            state_shardings=jax.tree.map(lambda x: x.sharding, state), replicated=replicated)
batch = partitioning.global_batch({k: np.ones((32, 512 if k == "encoder_input_tokens" else 16), np.int32)
                                   for k in ("encoder_input_tokens", "decoder_input_tokens",
                                             "decoder_target_tokens", "decoder_loss_weights")}, mesh)
compiled = step.lower(state, setup.frozen, batch, jax.device_put(jax.random.PRNGKey(0), replicated)).compile()
mem = compiled.memory_analysis()
params_bytes = sum(s.data.nbytes for x in jax.tree.leaves((setup.frozen, setup.trainable))
                   for s in x.addressable_shards if s.device == jax.devices()[0])
print(json.dumps({"code": code, "out": out.getvalue(), "extrapolated": extrapolated.getvalue(), "argument": mem.argument_size_in_bytes,
                  "output": mem.output_size_in_bytes, "alias": mem.alias_size_in_bytes,
                  "temp": mem.temp_size_in_bytes, "params_device0": params_bytes}))
"""


def _gib(text, label):
    return float(re.search(rf"^\s*{label}\s+([0-9.]+) GiB", text, re.M).group(1))


@pytest.mark.slow
def test_small_plan_on_8_devices_agrees_with_the_real_step():
    args = SMALL_PT + ["--mesh=4x2", "--device_memory_gb=16", "--peak_tflops=100"]
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=8")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(args)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    out = r["out"]
    assert r["code"] == 0 and "(fits)" in out, out
    assert "mesh 4x2 (data x model) = 8 devices; 51,200 trainable, 76,961,152 frozen parameters" in out
    real_total = (r["argument"] + r["output"] - r["alias"] + r["temp"]) / 2 ** 30
    # The printed figures (GiB, 3 decimals) are the real step's memory_analysis() on device 0's program.
    assert _gib(out, "total") == pytest.approx(real_total, abs=1.5e-3), (out, r)
    assert _gib(out, "temporaries") == pytest.approx(r["temp"] / 2 ** 30, abs=1.5e-3)
    assert _gib(out, "parameters") == pytest.approx(r["params_device0"] / 2 ** 30, abs=1.5e-3)
    # Prompt tuning: the optimizer holds state for the 100 x 512 prompt only (well under 1 MiB).
    assert _gib(out, "optimizer") == 0.0
    # Two shallow compiles (2 and 4 layers per stack) extrapolated to Small's 8 give the full compile's figures.
    ext = r["extrapolated"]
    assert "extrapolated from compiles at depths 2 and 4 to 8 layers" in ext
    for label in ("parameters", "optimizer", "outputs"):
        assert _gib(ext, label) == _gib(out, label), label
    for label in ("temporaries", "total"):
        assert _gib(ext, label) == pytest.approx(_gib(out, label), rel=0.01), (label, ext, out)
    # The closed-form residuals (plan_closed_form) are a lower bound of the temporaries, within 4x.
    from prompt_tuning import plan_closed_form as cf
    from prompt_tuning.models import t5
    residuals = cf.activation_bytes(t5.get_config("small", dropout_rate=0.1), tuning="prompt", batch_per_device=8,
                                    model_axis=2, input_len=512, target_len=16, prompt_length=100)["total"]
    assert 1.0 <= r["temp"] / residuals <= 4.0
    flops = float(re.search(r"FLOPs per step: ([0-9.e+]+) per device", out).group(1))
    assert float(re.search(r"FLOPs per step: ([0-9.e+]+) per device", ext).group(1)) == pytest.approx(flops, rel=0.01)
    ms = float(re.search(r"([0-9.]+) ms per step", out).group(1))
    assert ms == pytest.approx(flops / 100e12 * 1e3, rel=0.05)


@pytest.mark.slow
def test_a_config_that_does_not_fit_is_refused_in_one_line():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run([sys.executable, "-m", "prompt_tuning.plan", *SMALL_PT, "--mesh=8x1",
                           "--device_memory_gb=0.5", "--suggest=false"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == plan.DOES_NOT_FIT, proc.stderr[-3000:]
    refusal = [line for line in proc.stdout.splitlines() if line.startswith("refused:")]
    assert len(refusal) == 1 and "does not fit in 0.5 GiB on mesh 8x1" in refusal[0], proc.stdout


def test_usage_errors_are_one_line():
    for argv, message in [([], "--mesh=DATAxMODEL (or --smallest_mesh=true) and --device_memory_gb=N are required"),
                          (["--mesh=4by2", "--device_memory_gb=1"], "--mesh must be DATAxMODEL"),
                          (["--mesh=4x2", "--device_memory_gb=1", "--bogus=1"], "unknown flag --bogus")]:
        with pytest.raises(plan.PlanError, match=re.escape(message)):
            plan._parse(argv)


def test_model_axis_candidates_keep_the_devices_and_divide_the_batch():
    assert plan.model_axis_candidates(32, 8, 32) == [16, 32]
    assert plan.model_axis_candidates(8, 1, 32) == [2, 4, 8]
    assert plan.model_axis_candidates(8, 1, 2) == [4, 8]  # data axis 4 and 8 would not divide a batch of 2


# ----------------------------------------------------------------------------- the closed form


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
    from prompt_tuning import plan_closed_form as cf
    from prompt_tuning.models import t5

    for size, count in T5_1_1_PARAMETERS.items():
        config = t5.get_config(size)
        assert cf.parameter_count(config) == count
        assert sum(math.prod(shape) for shape, _ in cf.parameter_shapes(config).values()) == count
        assert cf.parameter_count(config, 100) == count + 100 * config.emb_dim


@pytest.mark.slow
def test_plan_bytes_are_the_closed_form(abstract_sizes):
    """Per-device parameter and Adafactor bytes of the plan equal the hand-derived ones, factored or not."""
    from prompt_tuning import plan_closed_form as cf
    from prompt_tuning.models import t5

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
    from prompt_tuning import plan_closed_form as cf
    from prompt_tuning.models import t5

    for size, tuning, (data, model), temp in MEASURED_TEMPORARIES:
        config, prompt = t5.get_config(size, dropout_rate=0.1), (100 if tuning == "prompt" else None)
        residuals = cf.activation_bytes(config, tuning=tuning, batch_per_device=32 // data, model_axis=model,
                                        input_len=512, target_len=16, prompt_length=prompt)["total"]
        grads = cf.parameter_bytes(config, tuning=tuning, model_axis=model, prompt_length=prompt).trainable
        assert 1.0 <= temp * 2 ** 30 / (residuals + grads) <= 4.0, (size, tuning, data, model)


def test_smallest_mesh_rules_out_by_bound_and_shows_every_smaller_count():
    def bound_of(mesh):
        data, model = mesh
        return (8 / model + 4 / data) * plan.GiB  # a bound of 8 GiB of parameters and 4 GiB of activations

    compiled = []

    def plan_of(mesh):
        compiled.append(mesh)
        data, model = mesh
        total = round((8 / model + 8 / data) * plan.GiB)  # the "real" step needs twice the bound's activations
        return plan.Plan(mesh=mesh, params=0, optimizer=0, batch=0, argument=total, output=0, alias=0, temp=0,
                         flops=0.0, num_trainable=0, num_frozen=0)

    best, log = plan.smallest_mesh(plan_of, bound_of, batch_size=32, device_memory_gb=5, max_devices=64)
    # 4 devices: bounds 2x2 = 6, 4x1 = 9, 1x4 = 6 GiB: all out. 8 devices: 2x4 (bound 4), 4x2 and 1x8
    # (5) compile to 6, 6 and 9 GiB; 8x1 (8.5) is out. 16 devices: 4x4 has the lowest bound (3), compiles to
    # 4 GiB and fits.
    assert best.mesh == (4, 4) and best.total == 4 * plan.GiB
    tried = [mesh for mesh, _ in log]
    for devices in (1, 2, 4, 8):
        assert set(plan.layouts(devices, 32)) <= set(tried), devices
    assert all("ruled out" in outcome for mesh, outcome in log if mesh not in compiled)
    assert compiled == [(2, 4), (4, 2), (1, 8), (4, 4)]
    assert plan.smallest_mesh(plan_of, bound_of, batch_size=32, device_memory_gb=1, max_devices=64)[0] is None
    assert plan.layouts(8, 2) == [(2, 4), (1, 8)]


@pytest.mark.slow
def test_smallest_mesh_search_compiles_until_a_count_fits(tmp_path):
    """The 'test' T5 on up to 8 simulated devices of 12 MiB: the chosen mesh fits, and every layout of
    every smaller device count is in the log, ruled out by the closed-form bound or compiled too big."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    cache = tmp_path / "plans.json"
    argv = [sys.executable, "-m", "prompt_tuning.plan", "--gin_file=gin/runs/prompt_finetune.gin",
            "--gin_file=gin/prompts/random_uniform.gin", "--gin_file=gin/models/t5_1_1_test.gin",
            "--gin.BATCH_SIZE=8", "--gin.TASK_FEATURE_LENGTHS={'inputs': 64, 'targets': 8}", "--mesh=1x1",
            "--device_memory_gb=0.012", "--smallest_mesh=true", "--max_devices=8", "--suggest=false",
            f"--plan_cache={cache}"]
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == plan.DOES_NOT_FIT, proc.stderr[-3000:]
    found = re.search(r"^smallest mesh: (\d+)x(\d+) \((\d+) devices\), ([0-9.]+) GiB per device", proc.stdout, re.M)
    assert found, proc.stdout
    data, model, devices, total = int(found[1]), int(found[2]), int(found[3]), float(found[4])
    assert data * model == devices and total <= 0.012
    log = dict(re.findall(r"^  (\d+x\d+): (.*)$", proc.stdout, re.M))
    for smaller in (1, 2, 4, 8):
        if smaller >= devices:
            break
        for d, m in plan.layouts(smaller, 8):
            outcome = log[f"{d}x{m}"]
            assert outcome.startswith("ruled out") or float(outcome.split()[0]) > 0.012, (d, m, outcome)
    # Every compiled plan (the asked-for 1x1 too) went to the cache; a second run compiles nothing and
    # answers the same.
    compiled = {mesh for mesh, outcome in log.items() if not outcome.startswith("ruled out")}
    assert set(json.loads(cache.read_text()).popitem()[1]) == compiled | {"1x1"}
    again = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert again.stdout == proc.stdout
