"""The compiled train steps (trainer.train_step, jitted as the trainer does) at a small size.

Each property is checked on the prompt-tuning step and shown to be detectable
on a step that does have it (model tuning, or the frozen weights closed over),
so none of these checks can pass vacuously.
"""
import functools

import jax
import pytest

from benchmarks import flops, hlo, train_bench
from benchmarks.spec import Spec
from prompt_tuning.training import optimizer, partitioning, trainer

# Dims chosen so that no activation row count (B*(P+T) = 45, B*T = 30, B*L = 12) equals a weight dim
# (H = N*D = 32, F = 64, V = 96): an activation can then never pass for a weight gradient.
SPEC = Spec(size="test", batch=3, input_len=10, target_len=4, prompt_len=5, vocab_size=96, num_layers=2)


def _compile(mode):
    step, state, frozen, model, config, data, mesh = train_bench.build(SPEC, mode)
    batch = partitioning.global_batch(data.batch(0), mesh)
    compiled = step.lower(state, frozen, batch, jax.random.PRNGKey(0)).compile()
    return compiled, state, frozen, model, config, batch


@pytest.fixture(scope="module")
def pt():
    return _compile(train_bench.PROMPT)


@pytest.fixture(scope="module")
def mt():
    return _compile(train_bench.MODEL_PT)


def _weights(params):
    return hlo.kernel_shapes(params).values()


def test_shapes_make_the_check_sound(pt):
    _, _, frozen, *_ = pt
    rows = [SPEC.batch * SPEC.encoder_len, SPEC.batch * SPEC.input_len, SPEC.batch * SPEC.target_len]
    assert hlo.ambiguous_dims(_weights(frozen), rows) == set()


def test_prompt_tuning_step_has_no_weight_gradient_matmuls(pt):
    compiled, _, frozen, *_ = pt
    text = compiled.as_text()
    assert len(set(_weights(frozen))) == 5  # [H, N*D], [N*D, H] (= same here), [H, F], [F, H], [V, H], [H, V]
    assert hlo.weight_gradient_ops(text, _weights(frozen)) == []
    assert any(op.backward for op in hlo.matmul_ops(text))  # it does have a backward pass


def test_model_tuning_step_has_them_for_every_kernel(mt):
    compiled, state, *_ = mt
    found = {op.shape for op in hlo.weight_gradient_ops(compiled.as_text(), _weights(state["params"]))}
    for shape in _weights(state["params"]):
        assert shape in found or tuple(reversed(shape)) in found, shape


@pytest.mark.parametrize("fixture,mode", [("pt", flops.PROMPT), ("mt", flops.MODEL)])
def test_compiled_dot_flops_equal_the_analytic_count(request, fixture, mode):
    compiled, _, _, _, config, _ = request.getfixturevalue(fixture)
    expected = flops.step_flops(config, mode, batch=SPEC.batch, encoder_len=SPEC.encoder_len,
                                target_len=SPEC.target_len)["total"]
    assert hlo.dot_flops(compiled.as_text()) == expected


def test_frozen_params_are_arguments_not_constants(pt):
    compiled, state, frozen, model, _, batch = pt
    weights = list(_weights(frozen))
    assert hlo.weight_constants(compiled.as_text(), weights) == []
    # The same step with the frozen tree closed over bakes every weight in: the check would see it.
    baked = jax.jit(functools.partial(
        lambda st, b, k, frozen: trainer.train_step(st, frozen, b, k, model=model, tx=optimizer.adafactor(),
                                                    z_loss=1e-4, loss_normalizing_factor=None),
        frozen=frozen))
    text = baked.lower(state, batch, jax.random.PRNGKey(0)).compile().as_text()
    assert len(hlo.weight_constants(text, weights)) >= len(weights)


def test_no_host_transfers_and_the_state_is_donated(pt):
    compiled, state, frozen, _, _, batch = pt
    assert hlo.host_transfer_ops(compiled.as_text()) == []
    state = jax.tree.map(lambda x: x.copy(), state)  # the fixture's buffers stay usable
    leaves = jax.tree.leaves(state)
    new_state, metrics = compiled(state, frozen, batch, jax.random.PRNGKey(0))
    jax.block_until_ready(metrics)
    # Every state buffer is taken over but optax's one-element placeholders (recreated each update).
    assert all(x.is_deleted() for x in leaves if x.size > 1)
    assert train_bench.donated_fraction(leaves) > 0.95
    assert not any(x.is_deleted() for x in jax.tree.leaves(frozen))
    assert int(new_state["step"]) == 1
