"""The smallest mesh on which a train step fits: a search over device counts and layouts.

`smallest_mesh` tries device counts 1, 2, 4, ... and, for each, every
(data, model) layout whose data axis divides the batch, cheapest first by a
closed-form bound (`lower_bound`, from prompt_tuning/plan_closed_form.py):
a layout whose bound already exceeds the device memory is ruled out without
compiling; the others are planned (prompt_tuning/plan.py compiles the real
step) until one fits. The log it returns shows that every layout of every
smaller count was ruled out or compiled too big.
"""
from __future__ import annotations

from typing import Optional

GiB = 2.0 ** 30


def layouts(devices: int, batch_size: int) -> list[tuple[int, int]]:
    """Every (data, model) mesh of `devices` devices whose data axis divides `batch_size`."""
    return [(devices // m, m) for m in range(1, devices + 1)
            if devices % m == 0 and batch_size % (devices // m) == 0]


def lower_bound(config, *, mesh_shape: tuple[int, int], tuning: Optional[str], prompt_length: Optional[int],
                batch_size: int, input_len: int, target_len: int, frozen_itemsize: int = 4) -> int:
    """Per-device bytes no compiled step can go below (plan_closed_form): parameters, Adafactor state,
    and for prompt or model tuning (`tuning`) the residuals the backward pass reads plus the weight
    gradients. Other methods (tuning=None): parameters and optimizer state only."""
    from prompt_tuning import plan_closed_form as cf

    data, model_axis = mesh_shape
    kind = tuning or "model"  # parameters only: trainable + frozen is the same total either way
    params = cf.parameter_bytes(config, tuning=kind, model_axis=model_axis, prompt_length=prompt_length,
                                frozen_itemsize=frozen_itemsize)
    total = params.total
    if tuning is not None:
        total += cf.adafactor_state_bytes(config, tuning=tuning, model_axis=model_axis, prompt_length=prompt_length)
        total += params.trainable  # the gradient
        total += cf.activation_bytes(config, tuning=tuning, batch_per_device=batch_size // data,
                                     model_axis=model_axis, input_len=input_len, target_len=target_len,
                                     prompt_length=prompt_length)["total"]
    return total


def smallest_mesh(plan_of, bound_of, *, batch_size: int, device_memory_gb: float, max_devices: int):
    """The smallest device count (1, 2, 4, ... `max_devices`) with a (data, model) layout that fits.

    Each count's layouts are tried in order of `bound_of(mesh)` (closed-form bytes no compile can go
    below): a layout whose bound exceeds the memory is ruled out without compiling, the others are
    planned with `plan_of(mesh)` (a Plan) until one fits. Returns (fitting Plan or None, log) where log
    lists (mesh, outcome) for every layout of every count tried, so a smaller count is shown not to fit.
    """
    limit, log = device_memory_gb * GiB, []
    devices = 1
    while devices <= max_devices:
        for mesh in sorted(layouts(devices, batch_size), key=bound_of):
            bound = bound_of(mesh)
            if bound > limit:
                log.append((mesh, f"ruled out: closed-form lower bound {bound / GiB:.3f} GiB"))
                continue
            plan = plan_of(mesh)
            log.append((mesh, f"{plan.total / GiB:.3f} GiB" + (" fits" if plan.total <= limit else "")))
            if plan.total <= limit:
                return plan, log
        devices *= 2
    return None, log
