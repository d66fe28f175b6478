"""Replace ops a target runtime lacks by their decomposition (the reverse of fusion).

::

    HardSwish(x)            -> Mul(x, HardSigmoid(x, 1/6, 0.5))
                               or, when HardSigmoid is decomposed too,
                               Mul(x, Clip(Add(Mul(x, 1/6), 0.5), 0, 1))
    HardSigmoid(x, a, b)    -> Clip(Add(Mul(x, a), b), 0, 1)
    Gelu(x)                 -> Mul(Mul(x, 0.5), Add(Erf(Div(x, sqrt 2)), 1))
    Gelu(x, tanh)           -> Mul(Mul(x, 0.5), Add(Tanh(Mul(Add(x, Mul(Pow(x, 3), 0.044715)),
                                                            sqrt(2/pi))), 1))
    LayerNormalization(x, s, b, axis=a, epsilon=e)
                            -> d = x - ReduceMean(x, axes a..-1);
                               d / Sqrt(ReduceMean(d * d, axes a..-1) + e) * s + b
    BatchNormalization(x, g, b, m, v)   (inference mode)
                            -> Add(Mul(x, s), t),  s = g / sqrt(v + eps), t = b - m * s

Which ops to decompose comes from the ``decompose`` option (e.g.
``decompose_ops(decompose=[HardSwish,HardSigmoid])``) and, once target profiles exist, from the
target: every decomposable op the target's ``supported_ops`` lacks is decomposed too (NNAPI,
for example, has no HardSigmoid). The decompositions compute the same function up to float
rounding. Left alone: LayerNormalization whose Mean/InvStdDev outputs are used, or whose input
is not float32/float64 (its ``stash_type`` computes float16 in float32, the decomposition would
not), and values of unknown dtype.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import onnx_ir as ir

from irpass.pass_base import option
from irpass.passes.fusion._rules import (
    FusionRule,
    RuleSetPass,
    attr_float,
    attr_int,
    attr_str,
    node_of,
    rank_of,
)
from irpass.passes.fusion.fold_batchnorm import BatchNormToMulAdd
from irpass.registry import register

__all__ = ["DECOMPOSABLE", "DecomposeOpsPass"]

#: Op types this pass knows how to decompose.
DECOMPOSABLE = ("HardSwish", "HardSigmoid", "Gelu", "LayerNormalization", "BatchNormalization")


class DecomposeBatchNorm(BatchNormToMulAdd):
    """BatchNormalization(x) -> x * s + t (per channel), as fold_batchnorm(lone=mul_add)."""

    stat = "BatchNormalization"


class _Decompose(FusionRule):
    """Shared helpers: constants in the input's dtype, Clip in the model's opset form.

    ``clip_inputs`` picks Clip's bounds as inputs (opset >= 11) or attributes (opset 6-10);
    a rule using Clip exists in both forms and ``min_opset``/``max_opset`` let exactly one
    of them apply to a model.
    """

    adds_initializers = True

    def __init__(self, name: str | None = None, *, clip_inputs: bool = True) -> None:
        super().__init__(name)
        self.clip_inputs = clip_inputs
        if clip_inputs:
            self.min_opset = max(self.min_opset, 11)
        else:
            self.max_opset = 10

    def plan(self, *args: Any, **bindings: Any) -> Any:
        return None if bindings["x"].dtype is not None else "input dtype is unknown"

    def const(self, op: Any, x: ir.Value, value: float, name: str, near: ir.Node) -> ir.Value:
        assert x.dtype is not None  # every plan requires a known dtype
        return self.new_initializer(op, np.array(value, dtype=x.dtype.numpy()), name, near)

    def clip01(self, op: Any, x: ir.Value, y: Any, near: ir.Node) -> Any:
        if self.clip_inputs:
            zero, one = self.const(op, x, 0.0, "zero", near), self.const(op, x, 1.0, "one", near)
            return op.Clip(y, zero, one)
        return op.Clip(y, min=0.0, max=1.0)

    def hard_sigmoid(self, op: Any, x: ir.Value, alpha: float, beta: float, near: ir.Node) -> Any:
        scaled = op.Mul(x, self.const(op, x, alpha, "alpha", near))
        return self.clip01(op, x, op.Add(scaled, self.const(op, x, beta, "beta", near)), near)


class DecomposeHardSwish(_Decompose):
    """HardSwish(x) -> x * HardSigmoid(x) (or its Clip form)."""

    stat = "HardSwish"
    min_opset = 14

    def __init__(self, inline_hard_sigmoid: bool) -> None:
        super().__init__()
        self.inline_hard_sigmoid = inline_hard_sigmoid

    def pattern(self, op: Any, x: Any) -> Any:
        return op.HardSwish(x, _outputs=["out"])

    def rewrite(self, op: Any, x: Any, out: ir.Value, **_: Any) -> Any:
        if self.inline_hard_sigmoid:
            return op.Mul(x, self.hard_sigmoid(op, x, 1.0 / 6.0, 0.5, node_of(out)))
        return op.Mul(x, op.HardSigmoid(x, alpha=1.0 / 6.0, beta=0.5))


class DecomposeHardSigmoid(_Decompose):
    """HardSigmoid(x, a, b) -> Clip(x * a + b, 0, 1)."""

    stat = "HardSigmoid"

    def __init__(self, *, clip_inputs: bool = True) -> None:
        name = "DecomposeHardSigmoid" + ("" if clip_inputs else "_opset10")
        super().__init__(name, clip_inputs=clip_inputs)

    def pattern(self, op: Any, x: Any) -> Any:
        return op.HardSigmoid(x, _allow_other_attributes=True, _outputs=["out"])

    def rewrite(self, op: Any, x: Any, out: ir.Value, **_: Any) -> Any:
        node = node_of(out)
        alpha, beta = attr_float(node, "alpha", 0.2), attr_float(node, "beta", 0.5)
        return self.hard_sigmoid(op, x, alpha, beta, node)


class DecomposeGelu(_Decompose):
    """Gelu(x) -> 0.5 * x * (1 + Erf(x / sqrt2)) (or the Tanh form)."""

    stat = "Gelu"

    def pattern(self, op: Any, x: Any) -> Any:
        return op.Gelu(x, _allow_other_attributes=True, _outputs=["out"])

    def rewrite(self, op: Any, x: Any, out: ir.Value, **_: Any) -> Any:
        node = node_of(out)

        def const(value: float, name: str) -> ir.Value:
            return self.const(op, x, value, name, node)

        if attr_str(node, "approximate", "none") == "tanh":
            cube = op.Pow(x, const(3.0, "three"))
            poly = op.Add(x, op.Mul(cube, const(0.044715, "gelu_c")))
            inner = op.Tanh(op.Mul(poly, const(math.sqrt(2 / math.pi), "sqrt_2_pi")))
        else:
            inner = op.Erf(op.Div(x, const(math.sqrt(2.0), "sqrt2")))
        one_plus = op.Add(inner, const(1.0, "one"))
        return op.Mul(op.Mul(x, const(0.5, "half")), one_plus)


class DecomposeLayerNorm(_Decompose):
    """LayerNormalization -> ReduceMean/Sub/Mul/ReduceMean/Add/Sqrt/Div/Mul/Add.

    ``axes_input`` picks ReduceMean's axes as an input (opset >= 18) or an attribute (17).
    """

    stat = "LayerNormalization"

    def __init__(self, *, axes_input: bool = True) -> None:
        super().__init__("DecomposeLayerNorm" + ("" if axes_input else "_opset17"))
        self.axes_input = axes_input
        if axes_input:
            self.min_opset = 18
        else:
            self.max_opset = 17

    def pattern(self, op: Any, x: Any) -> Any:
        return op.LayerNormalization(
            x, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["out"]
        )

    def plan(self, x: ir.Value, out: ir.Value, **_: Any) -> list[int] | str:
        """The axes to reduce over (negative, trailing), or why not."""
        node = node_of(out)
        if x.dtype not in (ir.DataType.FLOAT, ir.DataType.DOUBLE):
            return f"input type {x.dtype} would need stash_type handling"
        if any(v.uses() or v.is_graph_output() for v in node.outputs[1:]):
            return "the Mean/InvStdDev outputs are used"
        axis = attr_int(node, "axis", -1)
        if axis >= 0:
            rank = rank_of(x)
            if rank is None:
                return "input rank is unknown for a non-negative axis"
            axis -= rank
        return list(range(axis, 0))

    def reduce_mean(self, op: Any, y: Any, axes: list[int], near: ir.Node) -> Any:
        if self.axes_input:
            value = self.new_initializer(op, np.array(axes, dtype=np.int64), "ln_axes", near)
            return op.ReduceMean(y, value, keepdims=1)
        return op.ReduceMean(y, axes=axes, keepdims=1)

    def rewrite(self, op: Any, x: Any, out: ir.Value, **bindings: Any) -> Any:
        axes = self.planned(x=x, out=out, **bindings)
        node = node_of(out)
        eps = attr_float(node, "epsilon", 1e-5)
        d = op.Sub(x, self.reduce_mean(op, x, axes, node))
        var = self.reduce_mean(op, op.Mul(d, d), axes, node)
        y = op.Div(d, op.Sqrt(op.Add(var, self.const(op, x, eps, "ln_eps", node))))
        y = op.Mul(y, node.inputs[1])
        if len(node.inputs) > 2 and node.inputs[2] is not None:
            y = op.Add(y, node.inputs[2])
        return y


def _check_ops(ops: tuple[str, ...]) -> None:
    unknown = [o for o in ops if o not in DECOMPOSABLE]
    if unknown:
        raise ValueError(
            f"cannot decompose {', '.join(unknown)}; decomposable: {', '.join(DECOMPOSABLE)}"
        )


@dataclasses.dataclass(frozen=True)
class DecomposeOptions:
    """Options of decompose_ops."""

    decompose: tuple[str, ...] = option(
        (),
        "op types to decompose: HardSwish, HardSigmoid, Gelu, LayerNormalization, "
        "BatchNormalization",
    )

    def __post_init__(self) -> None:
        _check_ops(tuple(self.decompose))


@register
class DecomposeOpsPass(RuleSetPass):
    """Decompose HardSwish/HardSigmoid/Gelu/LayerNormalization/BN for targets that lack them.

    The ops come from the ``decompose`` option and from the target profile's ``supported_ops``
    (when the context carries a target that has one).
    """

    name = "decompose_ops"
    lossless = True
    Options = DecomposeOptions

    def ops_to_decompose(self) -> set[str]:
        """The option's ops plus the decomposable ops the target does not support."""
        ops = set(self.options.decompose)
        supported = getattr(self.context.target, "supported_ops", None)
        if supported is not None:
            ops |= {o for o in DECOMPOSABLE if o not in supported}
        return ops

    def phases(self) -> list[list[FusionRule]]:
        """HardSwish first (it may produce HardSigmoid), then the others."""
        ops = self.ops_to_decompose()
        first: list[FusionRule] = []
        if "HardSwish" in ops:
            first.append(DecomposeHardSwish(inline_hard_sigmoid="HardSigmoid" in ops))
        rest: list[FusionRule] = []
        if "HardSigmoid" in ops:
            rest += [DecomposeHardSigmoid(), DecomposeHardSigmoid(clip_inputs=False)]
        if "Gelu" in ops:
            rest.append(DecomposeGelu())
        if "LayerNormalization" in ops:
            rest += [DecomposeLayerNorm(), DecomposeLayerNorm(axes_input=False)]
        if "BatchNormalization" in ops:
            rest.append(DecomposeBatchNorm())
        return [first, rest]
