"""Turn a 2-D MatMul followed by a bias Add into one Gemm.

::

    Add(MatMul(A, B), C)  -> Gemm(A, B, C)      A: (M, K), B: (K, N), both known to be 2-D
    Add(C, MatMul(A, B))  -> Gemm(A, B, C)

``C`` need not be constant, but its shape must be known and unidirectionally broadcastable to
``(M, N)`` (rank <= 2, last dim N or 1, first dim M or 1), so the Add's output is exactly
``(M, N)``. Left alone: operands of unknown or other rank (batched MatMul keeps its MatMul), a
``C`` that would enlarge the result, and non-float types (Gemm before opset 11 only takes
floats; integer MatMul stays). Gemm computes ``1.0 * A @ B + 1.0 * C``, the same float
operations in the same order.

Our own rule because onnxscript's ``MatMulAddToGemm`` checks only that A and B are 2-D: a bias
that broadcasts the sum up (e.g. rank 3) or an integer MatMul would become an invalid Gemm.
"""

from __future__ import annotations

from typing import Any

import onnx_ir as ir

from irpass.passes.fusion._rules import FusionRule, RuleSetPass, const_array
from irpass.registry import register

__all__ = ["MatMulAddToGemmPass"]

_FLOATS = {ir.DataType.FLOAT, ir.DataType.DOUBLE, ir.DataType.FLOAT16}


def _shape(value: ir.Value) -> tuple[Any, ...] | None:
    array = const_array(value)
    if array is not None:
        return tuple(array.shape)
    if value.shape is None:
        return None
    return tuple(d if isinstance(d, int) else (d.value or object()) for d in value.shape)


def _same_dim(a: Any, b: Any) -> bool:
    return a == b and a is not None


class MatMulAddToGemm(FusionRule):
    """MatMul(A, B) + C -> Gemm(A, B, C) for 2-D A and B."""

    stat = "matmul_add_to_gemm"

    def pattern(self, op: Any, a: Any, b: Any, c: Any) -> Any:
        return op.Add(op.MatMul(a, b), c)

    def plan(self, a: ir.Value, b: ir.Value, c: ir.Value, **_: Any) -> Any:
        dtype = a.dtype or (b.dtype if b is not None else None)
        if dtype not in _FLOATS:
            return f"element type {dtype} is not a float type"
        sa, sb, sc = _shape(a), _shape(b), _shape(c)
        if sa is None or sb is None or len(sa) != 2 or len(sb) != 2:
            return f"MatMul operands are not known to be 2-D ({sa}, {sb})"
        if sc is None or len(sc) > 2:
            return f"bias shape {sc} is unknown or has rank > 2"
        m, n = sa[0], sb[1]
        if sc and sc[-1] != 1 and not _same_dim(sc[-1], n):
            return f"bias shape {sc} does not broadcast to (M, {n})"
        if len(sc) == 2 and sc[0] != 1 and not _same_dim(sc[0], m):
            return f"bias shape {sc} does not broadcast to ({m}, N)"
        return None

    def rewrite(self, op: Any, a: Any, b: Any, c: Any, **_: Any) -> Any:
        return op.Gemm(a, b, c)


@register
class MatMulAddToGemmPass(RuleSetPass):
    """Fuse a 2-D MatMul and its bias Add into Gemm (both operand orders of the Add)."""

    name = "matmul_add_to_gemm"
    lossless = True
    commute = True
    rule_phases = ((MatMulAddToGemm,),)
