"""Will a run fit, and what will a step cost? The real train step compiled for simulated devices.

    python -m prompt_tuning.plan --gin_file=gin/runs/prompt_finetune.gin \
        --gin_file=gin/models/t5_1_1_xxl.gin --gin_file=gin/prompts/random_uniform.gin \
        --gin.TASK_FEATURE_LENGTHS="{'inputs': 512, 'targets': 16}" \
        --mesh=4x8 --device_memory_gb=16 --peak_tflops=123

The gin files are the training run's own (model size, prompt or model tuning,
optimizer, BATCH_SIZE, TASK_FEATURE_LENGTHS); the task and the checkpoint are
not read. `--mesh=DATAxMODEL` asks for DATA*MODEL devices: this process makes
that many XLA:CPU devices (`--xla_force_host_platform_device_count`), builds the
(data, model) mesh, and lowers and compiles `steps.jit_train_step` (exactly
what `trainer.train_and_evaluate` runs) on `jax.ShapeDtypeStruct`s carrying
the parameters' shardings: no parameter is allocated, so XXL plans on a laptop.

Printed per device (bytes of the SPMD-partitioned program, MiB/GiB):
  parameters      the frozen and trainable shards (dtype: --frozen_dtype for frozen)
  optimizer       Adafactor's state shards (trainable parameters only)
  batch           the batch rows of this device
  outputs         new state and metrics not written in place (the state is donated)
  temporaries     activations kept for the backward pass and scratch (XLA's temp buffers)
  total           arguments + outputs - aliased + temporaries (XLA's memory_analysis)
and per step: FLOPs (XLA's cost analysis of the partitioned program, per
device and for the mesh), and at `--peak_tflops` per device an estimated step
time (FLOPs / peak, i.e. at 100% utilisation: a lower bound) and examples/s.

A configuration whose total exceeds --device_memory_gb is refused in one line
(exit status 1), with the smallest model-axis size on the same devices that
fits, if one does. The memory figures are XLA:CPU's for the same partitioned
program; a TPU or GPU compiler fuses and schedules differently, so treat
temporaries as an estimate (parameters, optimizer state and batch are exact).

More flags:
  --extrapolate_from_depths=D1,D2  compile at D1 and D2 encoder/decoder layers and
                    extrapolate linearly to the model's depth (`extrapolate_step`):
                    XL and XXL in minutes instead of hours on a small CPU
  --smallest_mesh=true [--max_devices=N]  also find the fewest devices (1, 2, 4, ...)
                    with a DATA x MODEL layout that fits (prompt_tuning/plan_search.py);
                    --mesh may then be left out
  --plan_cache=FILE keep compiled plans in a JSON file, shared by later calls with the
                    same gin files, bindings, depths and --frozen_dtype
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Optional, Sequence

from prompt_tuning.plan_search import layouts, lower_bound, smallest_mesh  # noqa: F401  (the CLI's search)

GiB, MiB = 2.0 ** 30, 2.0 ** 20
USAGE_ERROR, DOES_NOT_FIT = 2, 1
_PLAN_DEFAULTS = ("MIXTURE_OR_TASK_NAME = 'plan'", "INITIAL_CHECKPOINT_PATH = None")


class PlanError(ValueError):
    """A plan request that cannot be answered (one-line message)."""


@dataclasses.dataclass
class Plan:
    """Per-device bytes and per-step FLOPs of one compiled train step."""

    mesh: tuple[int, int]
    params: int
    optimizer: int
    batch: int
    argument: int       # XLA: all argument buffers (params + optimizer + step + batch + key)
    output: int
    alias: int          # outputs written into donated arguments
    temp: int
    flops: float        # per device
    num_trainable: int
    num_frozen: int
    extrapolated_from: Optional[tuple[int, int]] = None  # (d1, d2): figures from two shallower compiles

    @property
    def devices(self) -> int:
        return self.mesh[0] * self.mesh[1]

    @property
    def total(self) -> int:
        return self.argument + self.output - self.alias + self.temp


def _shard_bytes(abstract_tree) -> int:
    import jax
    import numpy as np

    return sum(int(np.prod(x.sharding.shard_shape(x.shape), dtype=np.int64)) * np.dtype(x.dtype).itemsize
               for x in jax.tree.leaves(abstract_tree))


def _count(tree) -> int:
    import jax
    import numpy as np

    return sum(int(np.prod(x.shape, dtype=np.int64)) for x in jax.tree.leaves(tree))


def build_abstract(config, *, prompt_length: Optional[int], trainable_regex: str, tx, mesh, batch_size: int,
                   input_len: int, target_len: int, frozen_dtype: str = "float32", num_prompts: Optional[int] = None):
    """(model, state, frozen, batch, key) as ShapeDtypeStructs with the trainer's shardings; nothing allocated."""
    import functools

    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from prompt_tuning import prompts
    from prompt_tuning.models import t5
    from prompt_tuning.training import partitioning, steps

    factory = None
    if prompt_length:
        cls = functools.partial(prompts.PromptBank, num_prompts=num_prompts) if num_prompts else prompts.Prompt
        factory = functools.partial(cls, length=prompt_length, prompt_init=prompts.random_uniform())
    model = t5.T5(config, factory)
    tokens = jnp.ones((1, 1), jnp.int32)
    boxed = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), tokens, tokens, tokens))["params"]
    shardings = nn.meta.unbox(partitioning.param_shardings(boxed, mesh))
    abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), nn.meta.unbox(boxed),
                            shardings)
    trainable, frozen = steps.split_params(abstract, trainable_regex)
    if not trainable:
        raise PlanError(f"no parameter matches trainable_regex {trainable_regex!r}")
    frozen = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, jnp.dtype(frozen_dtype), sharding=x.sharding), frozen)
    t_shardings = jax.tree.map(lambda x: x.sharding, trainable)
    opt_shardings = partitioning.optimizer_state_shardings(tx, trainable, t_shardings, mesh)
    opt = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                       jax.eval_shape(tx.init, trainable), opt_shardings)
    replicated = partitioning.replicated(mesh)
    state = {"step": jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated), "params": trainable, "opt_state": opt}
    rows = partitioning.batch_sharding(mesh)
    batch = {k: jax.ShapeDtypeStruct((batch_size, input_len if k == "encoder_input_tokens" else target_len),
                                     jnp.int32, sharding=rows)
             for k in ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens", "decoder_loss_weights")}
    key = jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=replicated)
    return model, state, frozen, batch, key


def _mesh(mesh_shape: tuple[int, int], devices=None):
    import jax

    from prompt_tuning.training import partitioning

    data, model_axis = mesh_shape
    devices = list(devices if devices is not None else jax.devices())
    if data * model_axis > len(devices):
        raise PlanError(f"mesh {data}x{model_axis} needs {data * model_axis} devices, this process has {len(devices)}")
    return partitioning.make_mesh(num_partitions=model_axis, devices=devices[:data * model_axis])


def compile_step(config, *, mesh_shape: tuple[int, int], tx, prompt_length: Optional[int], trainable_regex: str,
                 batch_size: int, input_len: int, target_len: int, z_loss: float = 1e-4,
                 loss_normalizing_factor: Optional[float] = None, frozen_dtype: str = "float32",
                 num_prompts: Optional[int] = None, devices=None):
    """(Plan, compiled) for `steps.jit_train_step` on a DATA x MODEL mesh of the first DATA*MODEL devices."""
    import jax

    from prompt_tuning.training import partitioning, steps

    mesh = _mesh(mesh_shape, devices)
    partitioning.check_batch_size(batch_size, mesh)
    model, state, frozen, batch, key = build_abstract(
        config, prompt_length=prompt_length, trainable_regex=trainable_regex, tx=tx, mesh=mesh,
        batch_size=batch_size, input_len=input_len, target_len=target_len, frozen_dtype=frozen_dtype,
        num_prompts=num_prompts)
    state_shardings = jax.tree.map(lambda x: x.sharding, state)
    step = steps.jit_train_step(model=model, tx=tx, z_loss=z_loss, loss_normalizing_factor=loss_normalizing_factor,
                                state_shardings=state_shardings, replicated=partitioning.replicated(mesh))
    compiled = step.lower(state, frozen, batch, key).compile()
    mem = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    plan = Plan(
        mesh=tuple(mesh_shape), params=_shard_bytes(frozen) + _shard_bytes(state["params"]),
        optimizer=_shard_bytes(state["opt_state"]), batch=_shard_bytes(batch),
        argument=int(mem.argument_size_in_bytes), output=int(mem.output_size_in_bytes),
        alias=int(mem.alias_size_in_bytes), temp=int(mem.temp_size_in_bytes),
        flops=float((cost or {}).get("flops", float("nan"))),
        num_trainable=_count(state["params"]), num_frozen=_count(frozen))
    return plan, compiled


def extrapolate_step(config, *, depths: tuple[int, int], mesh_shape: tuple[int, int], devices=None, **kw) -> Plan:
    """The Plan of `config` from compiles of the same step at two smaller depths d1 < d2.

    T5 1.1 has as many decoder as encoder layers (L). Without rematerialisation
    every layer adds the same parameters, optimizer state, residuals kept for the
    backward pass and FLOPs, so each XLA figure f is linear in the depth:
    f(L) = f(d1) + (L - d1) (f(d2) - f(d1)) / (d2 - d1). Compiling at depths 1-4
    instead of 24 makes XL and XXL plannable in minutes on a small CPU (XLA's
    collective combiner is superlinear in the program's size). Parameter,
    optimizer and batch bytes are exact (the full model's abstract shards); the
    rest are extrapolated. `tests/test_plan.py` checks the extrapolation against
    the full compile. Raises PlanError when the stacks differ in depth.
    """
    layers = config.num_encoder_layers
    d1, d2 = depths
    if config.num_decoder_layers != layers:
        raise PlanError(f"depth extrapolation needs equal encoder and decoder depths, got {layers} and "
                        f"{config.num_decoder_layers}")
    if not 1 <= d1 < d2:
        raise PlanError(f"--extrapolate_from_depths needs 1 <= d1 < d2, got {d1},{d2}")
    if d2 >= layers:
        return compile_step(config, mesh_shape=mesh_shape, devices=devices, **kw)[0]
    shallow = [compile_step(config.replace(num_encoder_layers=d, num_decoder_layers=d), mesh_shape=mesh_shape,
                            devices=devices, **kw)[0] for d in depths]

    def line(name):
        a, b = (getattr(p, name) for p in shallow)
        return a + (layers - d1) * (b - a) / (d2 - d1)

    mesh = _mesh(mesh_shape, devices)
    _, state, frozen, batch, _ = build_abstract(
        config, prompt_length=kw["prompt_length"], trainable_regex=kw["trainable_regex"], tx=kw["tx"], mesh=mesh,
        batch_size=kw["batch_size"], input_len=kw["input_len"], target_len=kw["target_len"],
        frozen_dtype=kw.get("frozen_dtype", "float32"), num_prompts=kw.get("num_prompts"))
    return Plan(mesh=tuple(mesh_shape), params=_shard_bytes(frozen) + _shard_bytes(state["params"]),
                optimizer=_shard_bytes(state["opt_state"]), batch=_shard_bytes(batch),
                argument=round(line("argument")), output=round(line("output")), alias=round(line("alias")),
                temp=round(line("temp")), flops=line("flops"), num_trainable=_count(state["params"]),
                num_frozen=_count(frozen), extrapolated_from=tuple(depths))


def report(plan: Plan, *, device_memory_gb: float, peak_tflops: Optional[float], batch_size: int) -> str:
    lines = [
        f"mesh {plan.mesh[0]}x{plan.mesh[1]} (data x model) = {plan.devices} devices; "
        f"{plan.num_trainable:,} trainable, {plan.num_frozen:,} frozen parameters",
        "per device:",
        f"  parameters   {plan.params / GiB:9.3f} GiB",
        f"  optimizer    {plan.optimizer / GiB:9.3f} GiB",
        f"  batch        {plan.batch / MiB:9.3f} MiB",
        f"  outputs      {(plan.output - plan.alias) / GiB:9.3f} GiB (not written in place)",
        f"  temporaries  {plan.temp / GiB:9.3f} GiB (activations, gradients, scratch)",
        f"  total        {plan.total / GiB:9.3f} GiB of {device_memory_gb:g} GiB "
        f"({'fits' if fits(plan, device_memory_gb) else 'DOES NOT FIT'})",
        f"FLOPs per step: {plan.flops:.4g} per device, {plan.flops * plan.devices:.4g} for the mesh",
    ]
    if peak_tflops:
        seconds = plan.flops / (peak_tflops * 1e12)
        lines.append(f"at {peak_tflops:g} TFLOP/s per device (100% utilisation, a lower bound): "
                     f"{seconds * 1e3:.1f} ms per step, {batch_size / seconds:,.0f} examples/s")
    return "\n".join(lines)


def fits(plan: Plan, device_memory_gb: float) -> bool:
    return plan.total <= device_memory_gb * GiB


def model_axis_candidates(devices: int, model_axis: int, batch_size: int) -> list[int]:
    """Larger model-axis sizes on the same devices whose data axis still divides the batch."""
    return [m for m in range(model_axis + 1, devices + 1)
            if devices % m == 0 and batch_size % (devices // m) == 0]


# ----------------------------------------------------------------------------- command line


def _parse(argv: Sequence[str]) -> dict:
    # Parsed by hand like training/cli.py: absl flags cannot take the open-ended --gin.PARAM=VALUE.
    out = {"gin_files": [], "gin_bindings": [], "mesh": None, "device_memory_gb": None, "peak_tflops": None,
           "frozen_dtype": "float32", "search": True, "depths": None, "smallest_mesh": False, "max_devices": 1024,
           "plan_cache": None}
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            raise PlanError(f"unexpected argument {arg!r} (flags look like --name=value)")
        name, value = arg[2:].split("=", 1)
        if name.startswith("gin."):
            out["gin_bindings"].append(f"{name[4:]} = {value}")
        elif name in ("gin_file", "gin_config"):
            out["gin_files"].append(value)
        elif name == "mesh":
            try:
                data, model = (int(v) for v in value.lower().split("x"))
                assert data > 0 and model > 0
            except (ValueError, AssertionError):
                raise PlanError(f"--mesh must be DATAxMODEL with positive ints, e.g. 4x8; got {value!r}") from None
            out["mesh"] = (data, model)
        elif name in ("device_memory_gb", "peak_tflops"):
            try:
                out[name] = float(value)
            except ValueError:
                raise PlanError(f"--{name} must be a number, got {value!r}") from None
        elif name == "frozen_dtype":
            if value not in ("float32", "bfloat16"):
                raise PlanError(f"--frozen_dtype must be float32 or bfloat16, got {value!r}")
            out["frozen_dtype"] = value
        elif name in ("suggest", "smallest_mesh"):
            out["search" if name == "suggest" else name] = value.lower() not in ("0", "false", "no")
        elif name == "extrapolate_from_depths":
            try:
                d1, d2 = (int(v) for v in value.split(","))
                assert 1 <= d1 < d2
            except (ValueError, AssertionError):
                raise PlanError(f"--extrapolate_from_depths must be D1,D2 with 1 <= D1 < D2, got {value!r}") from None
            out["depths"] = (d1, d2)
        elif name == "plan_cache":
            out["plan_cache"] = value
        elif name == "max_devices":
            if not value.isdigit() or int(value) < 1:
                raise PlanError(f"--max_devices must be a positive int, got {value!r}")
            out["max_devices"] = int(value)
        else:
            raise PlanError(f"unknown flag --{name} (known: --gin_file, --gin.PARAM=VALUE, --mesh, "
                            f"--device_memory_gb, --peak_tflops, --frozen_dtype, --suggest, "
                            f"--extrapolate_from_depths, --smallest_mesh, --max_devices, --plan_cache)")
    if out["device_memory_gb"] is None or (out["mesh"] is None and not out["smallest_mesh"]):
        raise PlanError("--mesh=DATAxMODEL (or --smallest_mesh=true) and --device_memory_gb=N are required")
    if not out["gin_files"]:
        raise PlanError("give the run's gin files (--gin_file=...), e.g. gin/runs/prompt_finetune.gin and a model")
    return out


def _simulate_devices(count: int) -> None:
    """Ask XLA:CPU for `count` devices; must run before JAX initialises its backends."""
    if "jax" in sys.modules:
        import jax

        if len(jax.devices()) >= count:
            return
        raise PlanError(f"JAX is already initialised with {len(jax.devices())} devices; run the plan in a fresh "
                        f"process (python -m prompt_tuning.plan)")
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    # Only the buffer assignment and the cost analysis are wanted, not fast CPU code: skip LLVM's
    # expensive optimisation (the memory figures are unchanged; a Small plan compiles ~25% sooner).
    fast = ["--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true"]
    os.environ["XLA_FLAGS"] = " ".join(fast + flags + [f"--xla_force_host_platform_device_count={count}"])
    os.environ["JAX_PLATFORMS"] = "cpu"


def _run_config(args: dict) -> dict:
    """The training run's settings, read from its gin files as train_and_evaluate would get them."""
    import gin

    from prompt_tuning.training import cli, trainer  # noqa: F401  (registers every configurable)

    for path in (os.getcwd(), cli.REPO_ROOT):
        gin.add_config_file_search_path(path)
    try:
        gin.clear_config()  # a fresh parse per call (the tests call main twice in one process)
        gin.parse_config_files_and_bindings(args["gin_files"], list(_PLAN_DEFAULTS) + args["gin_bindings"])
        bound = gin.get_bindings(trainer.train_and_evaluate, resolve_references=True)
    except (ValueError, IOError, KeyError, TypeError, NameError) as e:
        raise PlanError(f"gin: {str(e).splitlines()[0]}") from None
    for name in ("model_config", "batch_size", "task_feature_lengths"):
        if name not in bound:
            raise PlanError(f"the gin files do not set train_and_evaluate.{name}")
    prompt = bound.get("prompt")
    factory = bound.get("optimizer_factory") or trainer.optimizer.adafactor
    return {
        "config": bound["model_config"], "batch_size": bound["batch_size"],
        "input_len": bound["task_feature_lengths"]["inputs"], "target_len": bound["task_feature_lengths"]["targets"],
        "prompt_length": prompt.length if prompt is not None else None,
        "num_prompts": prompt.num_prompts if prompt is not None else None,
        "trainable_regex": bound.get("trainable_regex", trainer.PROMPT_REGEX), "tx": factory(),
        "z_loss": bound.get("z_loss", 1e-4), "loss_normalizing_factor": bound.get("loss_normalizing_factor"),
    }


def _cache_key(args: dict) -> str:
    """What a plan depends on besides the mesh: the run's gin files and bindings, depths, frozen dtype."""
    return json.dumps([args["gin_files"], args["gin_bindings"], args["depths"], args["frozen_dtype"]])


class _PlanCache:
    """Plans already compiled, in a JSON file (`--plan_cache`), so a table's rows share their compiles."""

    def __init__(self, path: Optional[str], key: str):
        self.path, self.key = path, key
        self.entries = {}
        if path and os.path.exists(path):
            with open(path) as f:
                self.entries = json.load(f)

    def get(self, mesh) -> Optional[Plan]:
        entry = self.entries.get(self.key, {}).get(f"{mesh[0]}x{mesh[1]}")
        if entry is None:
            return None
        entry = dict(entry, mesh=tuple(entry["mesh"]))
        if entry.get("extrapolated_from"):
            entry["extrapolated_from"] = tuple(entry["extrapolated_from"])
        return Plan(**entry)

    def put(self, mesh, plan: Plan) -> None:
        if not self.path:
            return
        if os.path.exists(self.path):  # another process may have added plans meanwhile
            with open(self.path) as f:
                self.entries = json.load(f)
        self.entries.setdefault(self.key, {})[f"{mesh[0]}x{mesh[1]}"] = dataclasses.asdict(plan)
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.entries, f, indent=1, sort_keys=True)
        os.replace(tmp, self.path)


def _tuning(run: dict) -> Optional[str]:
    """'prompt' or 'model' when the run is one of the two the closed form covers, else None."""
    from prompt_tuning.training import steps

    if run["prompt_length"] and run["trainable_regex"] == steps.PROMPT_REGEX and not run["num_prompts"]:
        return "prompt"
    if not run["prompt_length"] and run["trainable_regex"] == ".*":
        return "model"
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    plans = {}
    try:
        args = _parse(argv)
        data, model_axis = args["mesh"] or (1, 1)
        _simulate_devices(max(data * model_axis, args["max_devices"] if args["smallest_mesh"] else 1))
        run = _run_config(args)
        common = {k: v for k, v in run.items() if k != "config"}
        common["frozen_dtype"] = args["frozen_dtype"]

        cache = _PlanCache(args["plan_cache"], _cache_key(args))

        def plan_of(mesh):
            if mesh not in plans:
                plans[mesh] = cache.get(mesh)
            if plans[mesh] is None:
                if args["depths"]:
                    plans[mesh] = extrapolate_step(run["config"], depths=args["depths"], mesh_shape=mesh, **common)
                else:
                    plans[mesh] = compile_step(run["config"], mesh_shape=mesh, **common)[0]
                cache.put(mesh, plans[mesh])
            return plans[mesh]

        plan = plan_of((data, model_axis)) if args["mesh"] else None
    except PlanError as e:
        print(f"error: {e}", file=sys.stderr)
        return USAGE_ERROR
    except ValueError as e:  # partitioning / config errors carry one-line messages
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return USAGE_ERROR
    memory = args["device_memory_gb"]
    if args["depths"] and args["depths"][1] < run["config"].num_encoder_layers:
        print(f"(outputs, temporaries and FLOPs extrapolated from compiles at depths {args['depths'][0]} "
              f"and {args['depths'][1]} to {run['config'].num_encoder_layers} layers)")
    if plan is not None:
        print(report(plan, device_memory_gb=memory, peak_tflops=args["peak_tflops"], batch_size=run["batch_size"]))
    if args["smallest_mesh"]:
        tuning = _tuning(run)
        itemsize = 2 if args["frozen_dtype"] == "bfloat16" else 4

        def bound_of(mesh):
            return lower_bound(run["config"], mesh_shape=mesh, tuning=tuning, prompt_length=run["prompt_length"],
                               batch_size=run["batch_size"], input_len=run["input_len"],
                               target_len=run["target_len"], frozen_itemsize=itemsize)

        best, log = smallest_mesh(plan_of, bound_of, batch_size=run["batch_size"], device_memory_gb=memory,
                                  max_devices=args["max_devices"])
        print("smallest mesh search (device counts 1, 2, 4, ...; per layout: per-device total or why skipped):")
        for (d, m), outcome in log:
            print(f"  {d}x{m}: {outcome}")
        if best is None:
            print(f"smallest mesh: none of up to {args['max_devices']} devices of {memory:g} GiB fits")
        else:
            count = f"{best.devices} device" + ("s" if best.devices > 1 else "")
            print(f"smallest mesh: {best.mesh[0]}x{best.mesh[1]} ({count}), "
                  f"{best.total / GiB:.2f} GiB per device of {memory:g} GiB")
        if plan is None:
            return 0 if best is not None else DOES_NOT_FIT
    if fits(plan, memory):
        return 0
    devices = data * model_axis
    suggestion = "no model-axis size on these devices fits; use more devices"
    if args["search"]:
        for m in model_axis_candidates(devices, model_axis, run["batch_size"]):
            other = plan_of((devices // m, m))
            if fits(other, memory):
                suggestion = (f"--mesh={devices // m}x{m} (model axis {m}) fits: {other.total / GiB:.2f} GiB per device")
                break
    else:
        suggestion = "search skipped (--suggest=false)"
    print(f"refused: {plan.total / GiB:.2f} GiB per device does not fit in {memory:g} GiB on mesh "
          f"{data}x{model_axis}; {suggestion}")
    return DOES_NOT_FIT


if __name__ == "__main__":
    sys.exit(main())
