"""Collapse chains of Reshape / Squeeze / Unsqueeze / Flatten into one Reshape.

These ops only relabel the shape of the same row-major data, so two in a row equal one
Reshape to the final shape::

    Reshape(f(x, ...), s)   -> Reshape(x, s)     f in {Reshape, Squeeze, Unsqueeze, Flatten},
                                                  s constant without 0 entries (0 would copy a
                                                  dimension of f's output, unless allowzero=1)
    g(f(x, ...))            -> Reshape(x, S)     g in {Squeeze, Unsqueeze, Flatten, Reshape}
                                                  when g's output shape S is fully static

Left alone: intermediate values with other users (the matcher refuses), target shapes that are
not constant, contain 0 (copy semantics) or are not fully known. Run shape inference first
(``canonicalize`` does) so that static output shapes are known.
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
    static_dims,
)
from irpass.registry import register

__all__ = ["CollapseReshapesPass"]

SHAPE_OPS = ("Reshape", "Squeeze", "Unsqueeze", "Flatten")


class ReshapeAfterShapeOp(FusionRule):
    """Reshape(f(x), s) -> Reshape(x, s) for a constant s without copy-zeros."""

    stat = "into_reshape"

    def __init__(self, first: str) -> None:
        super().__init__(f"{first}_then_Reshape")
        self.first = first

    def pattern(self, op: Any, x: Any, shape: Any) -> Any:
        inner = getattr(op, self.first)(
            x, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["inner"]
        )
        return op.Reshape(inner, shape, _allow_other_attributes=True, _outputs=["out"])

    def plan(self, shape: ir.Value, out: ir.Value, **_: Any) -> Any:
        target = const_array(shape)
        if target is None:
            return "the target shape is not constant"
        if attr_int(node_of(out), "allowzero", 0) == 0 and np.any(target == 0):
            return "the target shape copies a dimension (0) of the intermediate"
        return None

    def rewrite(self, op: Any, x: Any, shape: Any, out: ir.Value, **_: Any) -> Any:
        return op.Reshape(x, shape, **node_of(out).attributes)


class StaticShapeChain(FusionRule):
    """g(f(x)) -> Reshape(x, S) when g's output shape S is fully static."""

    stat = "to_static_reshape"
    adds_initializers = True

    def __init__(self, first: str, second: str) -> None:
        super().__init__(f"{first}_then_{second}")
        self.first, self.second = first, second

    def pattern(self, op: Any, x: Any) -> Any:
        inner = getattr(op, self.first)(
            x, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["inner"]
        )
        return getattr(op, self.second)(
            inner, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["out"]
        )

    def plan(self, out: ir.Value, **_: Any) -> tuple[int, ...] | str:
        dims = static_dims(out.shape)
        if dims is None:
            return f"output shape {out.shape} is not fully static"
        if 0 in dims:
            return "output has an empty dimension"
        return dims

    def rewrite(self, op: Any, x: Any, out: ir.Value, **bindings: Any) -> Any:
        dims = np.array(self.planned(x=x, out=out, **bindings), dtype=np.int64)
        shape = self.new_initializer(op, dims, f"{out.name or 'reshape'}_shape", node_of(out))
        return op.Reshape(x, shape)


@register
class CollapseReshapesPass(RuleSetPass):
    """Collapse chains of Reshape/Squeeze/Unsqueeze/Flatten into a single Reshape."""

    name = "collapse_reshapes"
    lossless = True
    growth_reason = (
        "one int64 target shape per collapsed chain (the chain's own axes/shape constants go "
        "with dead code unless other nodes share them)"
    )

    def phases(self) -> list[list[FusionRule]]:
        """Reshape-terminated chains first, then chains with a static final shape."""
        return [
            [ReshapeAfterShapeOp(f) for f in SHAPE_OPS],
            [StaticShapeChain(f, g) for f in SHAPE_OPS for g in SHAPE_OPS],
        ]
