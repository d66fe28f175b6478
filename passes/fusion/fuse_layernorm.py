"""Recognize a decomposed layer normalization and replace it by LayerNormalization (opset 17).

::

    mean = ReduceMean(x, axes)              axes = the last k axes
    d    = Sub(x, mean)
    var  = ReduceMean(Pow(d, 2) | Mul(d, d), axes)
    std  = Sqrt(Add(var, eps))
    n    = Div(d, std) | Mul(d, Reciprocal(std))
    y    = Add(Mul(n, gamma), beta)         (Mul and Add optional)
         -> LayerNormalization(x, gamma', beta', axis=-k, epsilon=eps)

``gamma``/``beta`` must be constants that vary only along the normalized axes; they are
expanded to the full normalized shape (ONNX Runtime wants Scale of that shape), and a missing
``gamma`` becomes ones. Left alone: opset < 17 (run ``upgrade_opset`` first), axes that are not
the trailing ones or unknown input rank, both ReduceMeans not over the same axes,
``keepdims=0``, non-constant or non-scalar ``eps``, non-float inputs, and scale/bias that
would broadcast over non-normalized axes. Written as our own rules rather than onnxscript's
``LayerNormFusion`` because that one checks neither the opset nor the shapes of scale and
bias and only reads ReduceMean axes from inputs (opset 18+).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern as orp

from irpass.passes.fusion._rules import (
    FusionRule,
    RuleSetPass,
    attr_int,
    attr_ints,
    const_array,
    constant_scalar,
    either,
    node_of,
    rank_of,
    static_dims,
)
from irpass.registry import register

__all__ = ["FuseLayerNormPass"]

_FLOATS = {ir.DataType.FLOAT, ir.DataType.DOUBLE, ir.DataType.FLOAT16, ir.DataType.BFLOAT16}


def reduce_axes(node: ir.Node) -> list[int] | None:
    """Axes of a ReduceMean from the attribute (opset < 18) or a constant input (18+)."""
    axes = attr_ints(node, "axes")
    if axes is None and len(node.inputs) > 1 and node.inputs[1] is not None:
        array = const_array(node.inputs[1])
        if array is None:
            return None
        axes = [int(v) for v in array.reshape(-1)]
    return axes


def _normalize_to_trailing(axes: list[int], rank: int) -> int | None:
    """-k when ``axes`` are exactly the last k axes of a rank-``rank`` tensor, else None."""
    positive = sorted(a % rank for a in axes)
    k = len(positive)
    if k == 0 or positive != list(range(rank - k, rank)):
        return None
    return -k


@dataclasses.dataclass(frozen=True)
class _LayerNorm:
    """The fused op's axis, epsilon, and scale and bias expanded to the normalized shape."""

    axis: int
    eps: float
    gamma: np.ndarray
    beta: np.ndarray | None


class LayerNormFusion(FusionRule):
    """ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div[/Mul][/Add] -> LayerNormalization."""

    stat = "LayerNormalization"
    adds_initializers = True
    min_opset = 17

    def __init__(
        self, with_scale: bool, with_bias: bool, reciprocal: bool, swapped: bool = False
    ) -> None:
        super().__init__(
            f"layernorm{'_scale' if with_scale else ''}{'_bias' if with_bias else ''}"
            f"{'_reciprocal' if reciprocal else '_div'}{'_swapped' if swapped else ''}"
        )
        self.with_scale, self.with_bias = with_scale, with_bias
        self.reciprocal, self.swapped = reciprocal, swapped

    def pattern(self, op: Any, x: Any, eps: Any, gamma: Any, beta: Any) -> Any:
        mean = op.ReduceMean(x, _allow_other_inputs=True, _allow_other_attributes=True,
                             _outputs=["mean"])
        d = op.Sub(x, mean)
        sq = orp.OrValue([op.Pow(d, 2.0), op.Mul(d, d)], tag_var="square_form")
        var = op.ReduceMean(sq, _allow_other_inputs=True, _allow_other_attributes=True,
                            _outputs=["var"])
        std = op.Sqrt(either(op, "Add", var, eps, "eps_order"))
        # (a rule per form: onnxscript cannot root a pattern at an OrValue)
        y = op.Mul(d, op.Reciprocal(std)) if self.reciprocal else op.Div(d, std)
        # the root's operand order is a rule variant (a root cannot be an OrValue)
        if self.with_scale and self.with_bias:
            y = either(op, "Mul", y, gamma, "scale_order")
        elif self.with_scale:
            return op.Mul(gamma, y) if self.swapped else op.Mul(y, gamma)
        if self.with_bias:
            return op.Add(beta, y) if self.swapped else op.Add(y, beta)
        return y

    def plan(self, x: ir.Value, eps: ir.Value, gamma: Any, beta: Any,
             mean: ir.Value, var: ir.Value, **_: Any) -> _LayerNorm | str:
        if x.dtype not in _FLOATS:
            return f"input type {x.dtype} is not a float type"
        rank = rank_of(x)
        if rank is None:
            return "input rank is unknown"
        mean_node, var_node = node_of(mean), node_of(var)
        axes_m, axes_v = reduce_axes(mean_node), reduce_axes(var_node)
        if axes_m is None or axes_v is None:
            return "ReduceMean axes are not constant (or reduce all axes)"
        if sorted(a % rank for a in axes_m) != sorted(a % rank for a in axes_v):
            return "the two ReduceMeans reduce different axes"
        if attr_int(mean_node, "keepdims", 1) != 1 or attr_int(var_node, "keepdims", 1) != 1:
            return "ReduceMean drops the reduced axes"
        axis = _normalize_to_trailing(axes_m, rank)
        if axis is None:
            return f"axes {axes_m} are not the trailing axes"
        eps_value = constant_scalar(eps)
        if eps_value is None or eps_value < 0:
            return "epsilon is not a non-negative constant scalar"
        norm_shape = static_dims(x.shape[axis:]) if x.shape is not None else None
        if norm_shape is None:
            return "normalized dimensions are not static"
        dtype = x.dtype.numpy()
        params = []
        for value, default, present in ((gamma, 1.0, self.with_scale),
                                        (beta, 0.0, self.with_bias)):
            if not present:
                params.append(np.full(norm_shape, default, dtype=dtype) if default else None)
                continue
            array = const_array(value)
            if array is None:
                return f"scale/bias {value.name!r} is not constant"
            if array.ndim > len(norm_shape):
                return f"scale/bias of shape {array.shape} spans unnormalized axes"
            try:
                full = np.broadcast_to(array, norm_shape)
            except ValueError:
                return f"scale/bias {array.shape} does not fit {norm_shape}"
            params.append(np.ascontiguousarray(full).astype(dtype))
        assert params[0] is not None  # a missing scale became ones above
        return _LayerNorm(axis, eps_value, params[0], params[1])

    def rewrite(self, op: Any, x: Any, mean: ir.Value, **bindings: Any) -> Any:
        plan = self.planned(x=x, mean=mean, **bindings)
        near = node_of(mean)
        inputs = [x, self.new_initializer(op, plan.gamma, "ln_scale", near)]
        if plan.beta is not None:
            inputs.append(self.new_initializer(op, plan.beta, "ln_bias", near))
        return op.LayerNormalization(*inputs, axis=plan.axis, epsilon=plan.eps)


@register
class FuseLayerNormPass(RuleSetPass):
    """Fuse decomposed layer normalization subgraphs into LayerNormalization (opset >= 17)."""

    name = "fuse_layernorm"
    lossless = True

    def phases(self) -> list[list[FusionRule]]:
        """Longest pattern first.

        The longest pattern's root comes last in the graph, so a shorter rule applied in the
        same phase would claim the normalization before the scale and bias.
        """
        forms = (False, True)
        return [
            [LayerNormFusion(True, True, r, sw) for r in forms for sw in forms],
            [LayerNormFusion(s, not s, r, sw) for s in forms for r in forms for sw in forms],
            [LayerNormFusion(False, False, r) for r in forms],
        ]
