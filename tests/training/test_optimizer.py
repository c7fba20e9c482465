"""Adafactor equals an independent numpy transcription of T5X's update rule."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from prompt_tuning.training import optimizer


def _t5x_reference(param, grads, *, lr, decay_rate=0.8, clip=1.0, wd=None, param_scale=False, start=0,
                   min_dim=128, eps1=1e-30, eps2=1e-3):
    """T5X's Adafactor (t5x/adafactor.py, no momentum), written out for one array, step by step."""
    p = np.asarray(param, np.float64)
    shape = p.shape
    factored = len(shape) >= 2 and sorted(shape)[-2] >= min_dim
    if factored:
        order = np.argsort(shape)
        d1, d0 = int(order[-2]), int(order[-1])
        v_row = np.zeros(np.delete(shape, d0))
        v_col = np.zeros(np.delete(shape, d1))
    else:
        v = np.zeros(shape)
    for i, g in enumerate(grads):
        g = np.asarray(g, np.float64)
        t = start + i + 1.0
        beta2 = 1.0 - t ** (-decay_rate)
        g2 = g * g + eps1
        if factored:
            v_row = beta2 * v_row + (1 - beta2) * g2.mean(axis=d0)
            v_col = beta2 * v_col + (1 - beta2) * g2.mean(axis=d1)
            reduced_d1 = d1 - 1 if d1 > d0 else d1
            row = (v_row / v_row.mean(axis=reduced_d1, keepdims=True)) ** -0.5
            y = g * np.expand_dims(row, d0) * np.expand_dims(v_col ** -0.5, d1)
        else:
            v = beta2 * v + (1 - beta2) * g2
            y = g / np.sqrt(v)
        y = y / max(1.0, np.sqrt(np.mean(y * y)) / clip)
        rate = lr * (max(np.sqrt(np.mean(p * p)), eps2) if param_scale else 1.0)
        new = p - rate * y
        if wd:
            new = new - wd * p
        p = new
    return p


def _run(tx, param, grads):
    params = {"w": jnp.asarray(param)}
    state = tx.init(params)
    for g in grads:
        updates, state = tx.update({"w": jnp.asarray(g)}, state, params)
        params = optax.apply_updates(params, updates)
    return np.asarray(params["w"]), state


@pytest.mark.parametrize("shape,kw", [
    ((20, 32), dict(lr=0.3, wd=1e-5)),                              # the paper's prompt settings
    ((256, 160), dict(lr=0.01, param_scale=True)),                  # factored, T5X fine-tuning
    ((7,), dict(lr=0.1, wd=1e-3, clip=0.5)),
])
def test_matches_t5x_reference(shape, kw):
    rng = np.random.default_rng(0)
    param = rng.normal(size=shape).astype(np.float32)
    grads = [rng.normal(size=shape).astype(np.float32) * s for s in (1.0, 0.01, 3.0, 0.5)]
    tx = optimizer.adafactor(
        kw["lr"], weight_decay_rate=kw.get("wd"), multiply_by_parameter_scale=kw.get("param_scale", False),
        clipping_threshold=kw.get("clip", 1.0),
    )
    got, _ = _run(tx, param, grads)
    want = _t5x_reference(param, grads, **kw)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


def test_first_prompt_step_is_signed_gradient_with_decoupled_weight_decay():
    # beta2 = 0 at step 0, so v = g^2 and y = sign(g); rms(y) = 1 so clipping is a no-op.
    param = np.array([[1.0, -2.0], [0.5, 3.0]], np.float32)
    grad = np.array([[0.2, -5.0], [1e-3, 0.0]], np.float32)
    got, _ = _run(optimizer.adafactor(), param, [grad])
    y = grad / np.sqrt(grad ** 2 + 1e-30)
    y = y / max(1.0, np.sqrt(np.mean(y ** 2)))
    np.testing.assert_allclose(got, (1 - 1e-5) * param - 0.3 * y, rtol=1e-6)


def test_counter_can_continue_from_the_checkpoint_step():
    param = np.ones((3, 4), np.float32)
    grads = [np.full((3, 4), 2.0, np.float32)]
    _, state = _run(optimizer.adafactor(initial_step=1_100_000), param, grads)
    assert optimizer.adafactor_step(state) == 1_100_001
    beta2 = 1 - (1_100_001.0) ** -0.8
    # float32 as in T5X: 1 - beta2 ~ 1.5e-5 keeps only ~3 significant digits.
    np.testing.assert_allclose(np.asarray(state[0].v["w"]), (1 - beta2) * 4.0, rtol=5e-3)
    got, _ = _run(optimizer.adafactor(initial_step=1_100_000, weight_decay_rate=None), param, grads)
    want = _t5x_reference(param, grads, lr=0.3, start=1_100_000)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    _, state0 = _run(optimizer.adafactor(), param, grads)
    assert optimizer.adafactor_step(state0) == 1


def test_learning_rate_schedule():
    const = optimizer.learning_rate_schedule(0.3)
    assert float(const(0)) == pytest.approx(0.3) and float(const(10_000)) == pytest.approx(0.3)
    warm = optimizer.learning_rate_schedule(1.0, warmup_steps=4)
    assert [float(warm(s)) for s in range(5)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])
    decay = optimizer.learning_rate_schedule(1.0, decay_factor=0.5, decay_steps=10)
    assert [float(decay(s)) for s in (0, 9, 10, 25)] == pytest.approx([1.0, 1.0, 0.5, 0.25])
    with pytest.raises(ValueError):
        optimizer.learning_rate_schedule(0.1, decay_factor=0.5)


def test_jit_and_state_only_for_given_params():
    tx = optimizer.adafactor()
    params = {"prompt": jnp.zeros((5, 8))}
    state = jax.jit(tx.init)(params)
    sizes = [x.size for x in jax.tree.leaves(state)]
    assert sum(sizes) <= 5 * 8 + 10  # v [5, 8] plus scalars/placeholders: nothing for other weights


def test_cosine_schedule_warms_up_decays_and_ends_at_its_floor():
    from prompt_tuning.training import optimizer as opt

    sched = opt.learning_rate_schedule(0.02, warmup_steps=10, cosine_steps=110, cosine_end_factor=0.1)
    assert float(sched(0)) == pytest.approx(0.002)
    assert float(sched(9)) == pytest.approx(0.02)
    assert float(sched(60)) == pytest.approx(0.02 * (0.1 + 0.9 * 0.5))  # half way: the mean of 1 and 0.1
    assert float(sched(110)) == pytest.approx(0.002) and float(sched(500)) == pytest.approx(0.002)
    assert all(float(sched(s)) >= float(sched(s + 1)) for s in range(10, 120))
    with pytest.raises(ValueError):
        opt.learning_rate_schedule(0.1, warmup_steps=10, cosine_steps=10)
