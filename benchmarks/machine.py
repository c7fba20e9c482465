"""The machine: its description, its measured float32 matmul peak, and this process's memory.

Resident memory comes from /proc/self/status (Linux): VmRSS now, VmHWM the
high-water mark. Writing 5 to /proc/self/clear_refs resets the high-water
mark, which lets a worker separate the compilation peak from the peak while
stepping; where that is not allowed, both read the same (whole-process) peak.
"""
from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from typing import Optional


def _status_kb(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb() -> float:
    """Resident memory now, MiB."""
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else float("nan")


def peak_rss_mb() -> float:
    """Peak resident memory since start (or since the last `reset_peak_rss`), MiB."""
    kb = _status_kb("VmHWM")
    if kb is None:  # not Linux: ru_maxrss is KiB on Linux, bytes on macOS
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // (1024 if sys.platform == "darwin" else 1)
    return kb / 1024


def reset_peak_rss() -> bool:
    """Resets the high-water mark to the current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def load_average() -> Optional[tuple[float, float, float]]:
    try:
        return tuple(round(x, 2) for x in os.getloadavg())
    except OSError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return sorted(flags & {"avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"})
    except OSError:
        pass
    return []


def _mem_total_gb() -> Optional[float]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    return None


def _version(module: str) -> Optional[str]:
    try:
        from importlib import metadata

        return metadata.version(module)
    except Exception:  # not installed
        return None


def describe() -> dict:
    """Host, CPU, memory, accelerator and library versions (imports jax)."""
    import jax

    devices = jax.devices()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "memory_gb": _mem_total_gb(),
        "backend": jax.default_backend(),
        "devices": [f"{d.platform}:{getattr(d, 'device_kind', '')}" for d in devices],
        "versions": {m: _version(m) for m in ("jax", "jaxlib", "flax", "optax", "torch", "transformers", "peft")},
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "load_average": load_average(),
    }


def matmul_peak(n: int, repeats: int = 5, dtype: str = "float32") -> dict:
    """FLOP/s of one n x n x n matmul on the default JAX device (best and median of `repeats`)."""
    import jax
    import jax.numpy as jnp

    ka, kb = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(ka, (n, n), dtype)
    b = jax.random.normal(kb, (n, n), dtype)
    f = jax.jit(lambda x, y: x @ y)
    f(a, b).block_until_ready()
    f(a, b).block_until_ready()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(a, b).block_until_ready()
        times.append(time.perf_counter() - t0)
    flops = 2.0 * n ** 3
    return {"n": n, "dtype": dtype, "best_s": min(times), "median_s": statistics.median(times),
            "peak_flops": flops / min(times), "median_flops": flops / statistics.median(times)}
