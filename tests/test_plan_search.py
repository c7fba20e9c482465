"""plan_search.smallest_mesh with stand-in plans: order, ruling out, and the log of smaller counts."""
from prompt_tuning import plan, plan_search


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

    best, log = plan_search.smallest_mesh(plan_of, bound_of, batch_size=32, device_memory_gb=5, max_devices=64)
    # 4 devices: bounds 2x2 = 6, 4x1 = 9, 1x4 = 6 GiB: all out. 8 devices: 2x4 (bound 4), 4x2 and 1x8
    # (5) compile to 6, 6 and 9 GiB; 8x1 (8.5) is out. 16 devices: 4x4 has the lowest bound (3), compiles to
    # 4 GiB and fits.
    assert best.mesh == (4, 4) and best.total == 4 * plan.GiB
    tried = [mesh for mesh, _ in log]
    for devices in (1, 2, 4, 8):
        assert set(plan_search.layouts(devices, 32)) <= set(tried), devices
    assert all("ruled out" in outcome for mesh, outcome in log if mesh not in compiled)
    assert compiled == [(2, 4), (4, 2), (1, 8), (4, 4)]
    assert plan_search.smallest_mesh(plan_of, bound_of, batch_size=32, device_memory_gb=1, max_devices=64)[0] is None
    assert plan_search.layouts(8, 2) == [(2, 4), (1, 8)]
