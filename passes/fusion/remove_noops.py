"""Remove arithmetic no-ops, but only when shapes and dtypes prove they are no-ops.

::

    x * 1, 1 * x, x / 1, x + 0, 0 + x, x - 0  -> x   (the constant, all ones / all zeros, does
                                                      not enlarge x: its rank <= x's known rank
                                                      and every dim is 1 or equals x's dim)
    Cast(x, to=T)           -> x   when x's dtype is already T
    Expand(x, s)            -> x   when broadcasting x to the constant s gives x's shape
    Reshape(x, s)           -> x   when x's shape is static and s resolves to that shape

``x * 1``, ``x / 1`` and ``x - 0`` are bit-exact; ``x + 0`` only differs for ``x = -0.0``
(gives +0.0), which no float comparison can see. Left alone: a constant of unknown or larger
rank than x (the op would broadcast x up), unknown shapes or dtypes, non-constant operands.

Our own rules because onnxscript's ``no_op`` rules only match scalar constants (no
shape-checked tensors of ones/zeros, no Cast/Expand/Reshape).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx_ir as ir

from irpass.passes.fusion._rules import (
    FusionRule,
    RuleSetPass,
    attr_int,
    const_array,
    node_of,
    passthrough,
    static_shape,
)
from irpass.registry import register

__all__ = ["RemoveNoOpsPass"]


def _dims(value: ir.Value) -> list[Any] | None:
    array = const_array(value)
    if array is not None:
        return list(array.shape)
    if value.shape is None:
        return None
    return [d if isinstance(d, int) else None for d in value.shape]


def keeps_shape(x: ir.Value, c: np.ndarray) -> str | None:
    """Why broadcasting ``x`` with ``c`` could change x's shape (None when it cannot)."""
    if c.ndim == 0:
        return None
    dims = _dims(x)
    if dims is None:
        return "the other operand's rank is unknown"
    if c.ndim > len(dims):
        return f"constant of rank {c.ndim} would raise the rank {len(dims)}"
    for cd, xd in zip(c.shape[::-1], dims[::-1], strict=False):
        if cd != 1 and cd != xd:
            return f"constant of shape {c.shape} may broadcast x of shape {dims}"
    return None


class ArithmeticNoOp(FusionRule):
    """x op identity-constant -> x."""

    stat = "arith_noop"

    def __init__(self, arith: str, neutral: float, const_first: bool) -> None:
        super().__init__(f"{'c_' if const_first else ''}{arith}_{neutral:g}")
        self.arith, self.neutral, self.const_first = arith, neutral, const_first

    def pattern(self, op: Any, x: Any, c: Any) -> Any:
        args = (c, x) if self.const_first else (x, c)
        return getattr(op, self.arith)(*args)

    def plan(self, x: ir.Value, c: ir.Value, **_: Any) -> Any:
        array = const_array(c)
        if array is None:
            return "the operand is not a constant"
        if array.dtype.kind not in "fiu" or not np.all(array == self.neutral):
            return f"the constant is not all {self.neutral:g}"
        reason = keeps_shape(x, array)
        if reason:
            return reason
        if x.dtype is not None and x.dtype.numpy() != array.dtype:
            return "operand dtypes differ"
        return None

    def rewrite(self, op: Any, x: Any, **_: Any) -> Any:
        return passthrough(op, x)


class CastToSameType(FusionRule):
    """Cast(x, to=T) -> x when x is already of type T."""

    stat = "cast_noop"

    def pattern(self, op: Any, x: Any) -> Any:
        return op.Cast(x, _allow_other_attributes=True, _outputs=["out"])

    def plan(self, x: ir.Value, out: ir.Value, **_: Any) -> Any:
        to = attr_int(node_of(out), "to", -1)
        if x.dtype is None or int(x.dtype) != to:
            return f"input dtype {x.dtype} is unknown or differs from to={to}"
        return None

    def rewrite(self, op: Any, x: Any, **_: Any) -> Any:
        return passthrough(op, x)


class ExpandToSameShape(FusionRule):
    """Expand(x, s) -> x when the broadcast leaves x's shape unchanged."""

    stat = "expand_noop"

    def pattern(self, op: Any, x: Any, shape: Any) -> Any:
        return op.Expand(x, shape)

    def plan(self, x: ir.Value, shape: ir.Value, **_: Any) -> Any:
        target = const_array(shape)
        if target is None:
            return "the target shape is not constant"
        reason = keeps_shape(x, np.empty(tuple(int(d) for d in target.reshape(-1)), dtype=np.int8))
        if reason:
            return reason
        return None

    def rewrite(self, op: Any, x: Any, **_: Any) -> Any:
        return passthrough(op, x)


class ReshapeToSameShape(FusionRule):
    """Reshape(x, s) -> x when s resolves to x's static shape."""

    stat = "reshape_noop"

    def pattern(self, op: Any, x: Any, shape: Any) -> Any:
        return op.Reshape(x, shape, _allow_other_attributes=True, _outputs=["out"])

    def plan(self, x: ir.Value, shape: ir.Value, out: ir.Value, **_: Any) -> Any:
        dims = static_shape(x)
        array = const_array(shape)
        if dims is None or array is None:
            return "input shape or target shape unknown"
        target = [int(v) for v in array.reshape(-1)]
        if len(target) != len(dims):
            return "Reshape changes the rank"
        allowzero = attr_int(node_of(out), "allowzero", 0)
        resolved = [
            dims[i] if (v == 0 and not allowzero) else v for i, v in enumerate(target)
        ]
        if resolved.count(-1) == 1:
            known = int(np.prod([v for v in resolved if v != -1]))
            total = int(np.prod(dims))
            if known == 0 or total % known:
                return "cannot resolve -1"
            resolved[resolved.index(-1)] = total // known
        if tuple(resolved) != tuple(dims):
            return f"Reshape {dims} -> {resolved} changes the shape"
        return None

    def rewrite(self, op: Any, x: Any, **_: Any) -> Any:
        return passthrough(op, x)


def _rules() -> list[FusionRule]:
    rules: list[FusionRule] = [
        ArithmeticNoOp("Mul", 1.0, False),
        ArithmeticNoOp("Mul", 1.0, True),
        ArithmeticNoOp("Div", 1.0, False),
        ArithmeticNoOp("Add", 0.0, False),
        ArithmeticNoOp("Add", 0.0, True),
        ArithmeticNoOp("Sub", 0.0, False),
    ]
    return [*rules, CastToSameType(), ExpandToSameShape(), ReshapeToSameShape()]


@register
class RemoveNoOpsPass(RuleSetPass):
    """Remove x*1, x+0, x/1, x-0, same-type Cast, same-shape Expand/Reshape when provable."""

    name = "remove_noops"
    lossless = True

    def phases(self) -> list[list[FusionRule]]:
        """One phase with every no-op rule."""
        return [_rules()]
