"""Reading a compiled step's optimized HLO: which matmuls it still performs.

A weight gradient dW = x^T dy is a dot (or, on some backends, a convolution
or a GEMM custom call) whose output has the shape of a weight, [H, N*D],
[N*D, H], [H, F], [F, H], [H, V] or [V, H] (or its transpose). A prompt-tuning
step must contain none of them; a model-tuning step contains one per kernel.
The check is only meaningful when no activation can have a weight's shape,
i.e. when the batch*length products differ from every weight dimension;
`ambiguous_dims` reports collisions so callers can pick safe shapes.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Iterable, Mapping, Sequence

from flax import traverse_util

# `%name = f32[512,384]{1,0} dot(...)`; a GEMM custom call returns a tuple whose first element is the result.
_INSTR = re.compile(
    r"^\s*(?:ROOT\s+)?%?(?P<name>[\w.\-]+)\s*=\s*\(?\s*(?P<dtype>[a-z]+\d*)\[(?P<dims>[\d,]*)\][^=]*?\s"
    r"(?P<op>dot|convolution|custom-call)\("
)
_TARGET = re.compile(r'custom_call_target="(?P<target>[^"]+)"')
_OP_NAME = re.compile(r'op_name="(?P<op_name>[^"]+)"')
_GEMM_TARGETS = ("gemm", "matmul", "dot")


@dataclasses.dataclass(frozen=True)
class MatmulOp:
    """One matmul instruction of an HLO module."""

    name: str
    op: str
    dtype: str
    shape: tuple[int, ...]
    op_name: str  # JAX's metadata, e.g. 'jit(train_step)/transpose(jvp(T5))/.../mlp/wo/dot_general'

    @property
    def backward(self) -> bool:
        """Part of the backward pass (JAX names transposed computations 'transpose(...)')."""
        return "transpose(" in self.op_name


def matmul_ops(hlo_text: str) -> list[MatmulOp]:
    """Every dot, convolution and GEMM-like custom call in an HLO module text (fusions included)."""
    ops = []
    for line in hlo_text.splitlines():
        m = _INSTR.match(line)
        if not m:
            continue
        if m.group("op") == "custom-call":
            target = _TARGET.search(line)
            if not target or not any(t in target.group("target").lower() for t in _GEMM_TARGETS):
                continue
        dims = tuple(int(x) for x in m.group("dims").split(",") if x)
        op_name = _OP_NAME.search(line)
        ops.append(MatmulOp(m.group("name"), m.group("op"), m.group("dtype"), dims,
                            op_name.group("op_name") if op_name else ""))
    return ops


_ANY_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?(?P<name>[\w.\-]+)\s*=\s*(?P<dtype>[a-z]+\d*)\[(?P<dims>[\d,]*)\]")
_DOT_ARGS = re.compile(r"\sdot\((?P<args>[^)]*)\)")
_LHS_CONTRACTING = re.compile(r"lhs_contracting_dims=\{(?P<dims>[\d,]*)\}")


def dot_flops(hlo_text: str) -> int:
    """2 * (output elements) * (contracted elements) summed over every `dot` of the module.

    Counts each dot once as written (a dot inside a loop body counts once);
    convolutions and GEMM custom calls (GPU) are not counted.
    """
    shapes = {}
    for line in hlo_text.splitlines():
        m = _ANY_INSTR.match(line)
        if m:
            shapes[m.group("name")] = tuple(int(x) for x in m.group("dims").split(",") if x)
    total = 0
    for line in hlo_text.splitlines():
        m, args = _INSTR.match(line), _DOT_ARGS.search(line)
        if not m or m.group("op") != "dot" or not args:
            continue
        lhs = args.group("args").split(",")[0].strip().split()[-1].lstrip("%")
        contracting = _LHS_CONTRACTING.search(line)
        dims = [int(x) for x in contracting.group("dims").split(",") if x] if contracting else []
        out = 1
        for x in (int(x) for x in m.group("dims").split(",") if x):
            out *= x
        k = 1
        for d in dims:
            k *= shapes[lhs][d]
        total += 2 * out * k
    return total


def kernel_shapes(params: Mapping) -> dict[str, tuple[int, int]]:
    """'a/b/kernel' -> shape of every matmul weight of a parameter tree (2-D kernels, the embedding).

    The relative-position tables are left out: they are gathered from, never multiplied.
    """
    flat = traverse_util.flatten_dict(dict(params), sep="/")
    return {k: tuple(v.shape) for k, v in flat.items()
            if k.rsplit("/", 1)[-1] in ("kernel", "embedding") and len(getattr(v, "shape", ())) == 2}


def weight_gradient_ops(hlo_text: str, weight_shapes: Iterable[Sequence[int]]) -> list[MatmulOp]:
    """Matmuls whose output is shaped like one of the weights (either orientation)."""
    targets = set()
    for shape in weight_shapes:
        targets.add(tuple(shape))
        targets.add(tuple(reversed(tuple(shape))))
    return [op for op in matmul_ops(hlo_text) if op.shape in targets]


_HOST_OPS = re.compile(r"\b(infeed|outfeed|send|recv|send-done|recv-done)\(|custom_call_target=\"[^\"]*callback")


def host_transfer_ops(hlo_text: str) -> list[str]:
    """Instructions that talk to the host mid-program (infeed/outfeed, send/recv, Python callbacks)."""
    return [line.strip() for line in hlo_text.splitlines() if _HOST_OPS.search(line)]


_CONSTANT = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*[a-z]+\d*\[(?P<dims>[\d,]*)\][^=]*?\sconstant\(")


def weight_constants(hlo_text: str, weight_shapes: Iterable[Sequence[int]]) -> list[str]:
    """Constants shaped like a weight: parameters baked into the program instead of passed in.

    A jitted function that closes over the frozen arrays embeds them as
    literals (a copy per compiled program, recompiled when they change).
    """
    targets = {tuple(s) for s in weight_shapes}
    out = []
    for line in hlo_text.splitlines():
        m = _CONSTANT.match(line)
        if m and tuple(int(x) for x in m.group("dims").split(",") if x) in targets:
            out.append(line.strip())
    return out


def ambiguous_dims(weight_shapes: Iterable[Sequence[int]], activation_rows: Iterable[int]) -> set[int]:
    """Activation row counts (B*T, B*L, ...) equal to a weight dim: they would make the check unsound."""
    dims = {d for shape in weight_shapes for d in shape}
    return dims & set(activation_rows)
