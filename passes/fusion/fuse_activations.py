"""Recognize decomposed HardSigmoid / HardSwish / GELU and replace them by the single op.

::

    Div(Clip(Add(x, 3), 0, 6), 6)               -> HardSigmoid(x, alpha=1/6, beta=0.5)  opset >= 6
    Mul(x, HardSigmoid(x, 1/6, 0.5))            -> HardSwish(x)                         opset >= 14
    Div(Mul(x, Clip(Add(x, 3), 0, 6)), 6)       -> HardSwish(x)                         opset >= 14
    0.5 * x * (1 + Erf(x / sqrt(2)))            -> Gelu(x)                              opset >= 20
    0.5 * x * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))
                                                -> Gelu(x, approximate="tanh")          opset >= 20

The GELU forms are matched in every association the exporters produce (``(0.5*x)*(1+e)``,
``(x*(1+e))*0.5``, ``x*((1+e)*0.5)``, ``(x*(1+e))/2``; ``x/sqrt2`` or ``x*(1/sqrt2)``;
``Pow(x, 3)`` or ``x*x*x``) and every operand order of Add/Mul. Constants are compared with a
relative tolerance of 1e-5 (they are stored as float32) and may be scalars or shape-(1,)
tensors (then x must have rank >= 1, so the fused op keeps the shape). The fused ops compute
the same function; results differ by float rounding only.

A model whose opset is older than the op keeps its decomposition: run ``upgrade_opset`` first
(e.g. ``upgrade_opset(target=20),fuse``) when the target runtime has the op. Clip bounds are
read from inputs (opset >= 11) or attributes (opset 6-10).

Our own rules because onnxscript's ``_fuse_hardswish`` does not check the model's opset
(HardSwish needs 14) nor read opset-10 Clip attributes, and its GELU fusions target the
``com.microsoft`` contrib ops of ONNX Runtime rather than the standard ``Gelu``.
"""

from __future__ import annotations

import math
from typing import Any

import onnx_ir as ir
from onnxscript.rewriter import pattern as orp

from irpass.passes.fusion._rules import (
    FusionRule,
    RuleSetPass,
    attr_float,
    constant_scalar,
    either,
    is_close,
    node_of,
    one_dim_constant_matched,
    rank_of,
    scalar,
)
from irpass.registry import register

__all__ = ["FuseActivationsPass", "clip_bounds"]

_FLOATS = {ir.DataType.FLOAT, ir.DataType.DOUBLE, ir.DataType.FLOAT16}


def clip_bounds(clip: ir.Node) -> tuple[float | None, float | None] | None:
    """(min, max) of a Clip from attributes or constant inputs; None when not constant."""
    if "min" in clip.attributes or "max" in clip.attributes:
        return attr_float(clip, "min", -math.inf), attr_float(clip, "max", math.inf)
    bounds: list[float | None] = []
    for i in (1, 2):
        value = clip.inputs[i] if len(clip.inputs) > i else None
        if value is None:
            bounds.append(None)
            continue
        scalar = constant_scalar(value)
        if scalar is None:
            return None
        bounds.append(scalar)
    return bounds[0], bounds[1]


def _relu6_of_x_plus_3(op: Any, x: Any) -> Any:
    return op.Clip(
        either(op, "Add", x, scalar(3.0, "three"), "add3_order"),
        _allow_other_inputs=True,
        _allow_other_attributes=True,
        _outputs=["clip"],
    )


def _relu6_refusal(clip: ir.Value) -> str | None:
    bounds = clip_bounds(node_of(clip))
    if bounds is None or not is_close(bounds[0], 0.0) or not is_close(bounds[1], 6.0):
        return f"Clip bounds {bounds} are not (0, 6)"
    return None


class _ActivationRule(FusionRule):
    """Shared refusals: a float x, and no shape-(1,) constant that could raise x's rank.

    ``min_opset`` is the opset that introduced the fused op (checked by ``FusionRule``);
    older models keep their decomposition (run ``upgrade_opset`` first).
    """

    def plan(self, *args: Any, **bindings: Any) -> str | None:
        x: ir.Value = bindings["x"]
        if one_dim_constant_matched(bindings) and (rank_of(x) or 0) < 1:
            return "a shape-(1,) constant could raise the rank of x"
        if x.dtype is not None and x.dtype not in _FLOATS:
            return f"{x.dtype} is not a float type"
        return self.refusal(**bindings)

    def refusal(self, *args: Any, **bindings: Any) -> str | None:
        """What this rule checks beyond the shared conditions (None: nothing)."""
        return None


class HardSigmoidFromClip(_ActivationRule):
    """Clip(x + 3, 0, 6) / 6 -> HardSigmoid(x, 1/6, 0.5)."""

    stat = "HardSigmoid"
    min_opset = 6

    def pattern(self, op: Any, x: Any) -> Any:
        return op.Div(_relu6_of_x_plus_3(op, x), scalar(6.0, "six"))

    def refusal(self, clip: ir.Value, **_: Any) -> str | None:
        return _relu6_refusal(clip)

    def rewrite(self, op: Any, x: Any, **_: Any) -> Any:
        return op.HardSigmoid(x, alpha=1.0 / 6.0, beta=0.5)


class HardSwishFromHardSigmoid(_ActivationRule):
    """x * HardSigmoid(x, 1/6, 0.5) -> HardSwish(x)."""

    stat = "HardSwish"
    min_opset = 14

    def __init__(self, swapped: bool = False) -> None:
        super().__init__(f"hardswish_from_hardsigmoid{'_swapped' if swapped else ''}")
        self.swapped = swapped

    def pattern(self, op: Any, x: Any) -> Any:
        hsig = op.HardSigmoid(x, _allow_other_attributes=True, _outputs=["hsig"])
        return op.Mul(hsig, x) if self.swapped else op.Mul(x, hsig)

    def refusal(self, hsig: ir.Value, **_: Any) -> str | None:
        node = node_of(hsig)
        alpha, beta = attr_float(node, "alpha", 0.2), attr_float(node, "beta", 0.5)
        if not (is_close(alpha, 1.0 / 6.0) and is_close(beta, 0.5)):
            return f"HardSigmoid(alpha={alpha}, beta={beta}) is not 1/6, 0.5"
        return None

    def rewrite(self, op: Any, x: Any, **_: Any) -> Any:
        return op.HardSwish(x)


class HardSwishFromClip(_ActivationRule):
    """x * Clip(x + 3, 0, 6) / 6 -> HardSwish(x)."""

    stat = "HardSwish"
    min_opset = 14

    def pattern(self, op: Any, x: Any) -> Any:
        relu6 = _relu6_of_x_plus_3(op, x)
        return op.Div(either(op, "Mul", x, relu6, "mul_order"), scalar(6.0, "six"))

    def refusal(self, clip: ir.Value, **_: Any) -> str | None:
        return _relu6_refusal(clip)

    def rewrite(self, op: Any, x: Any, **_: Any) -> Any:
        return op.HardSwish(x)


class GeluFusion(_ActivationRule):
    """0.5 * x * (1 + Erf(x/sqrt2)) -> Gelu(x); the Tanh form -> Gelu(x, approximate=tanh)."""

    stat = "Gelu"
    min_opset = 20

    def __init__(self, form: str, outer: int, swapped: bool = False) -> None:
        super().__init__(f"gelu_{form}_{outer}{'_swapped' if swapped else ''}")
        self.form, self.outer, self.swapped = form, outer, swapped

    def pattern(self, op: Any, x: Any) -> Any:
        if self.form == "erf":
            scaled = orp.OrValue(
                [
                    op.Div(x, scalar(math.sqrt(2.0), "sqrt2")),
                    either(op, "Mul", x, scalar(1.0 / math.sqrt(2.0), "rsqrt2"), "t0"),
                ],
                tag_var="scale_form",
            )
            inner = op.Erf(scaled)
        else:
            cube = orp.OrValue(
                [op.Pow(x, scalar(3.0, "p3")), op.Mul(op.Mul(x, x), x), op.Mul(x, op.Mul(x, x))],
                tag_var="cube_form",
            )
            cubic = either(op, "Mul", cube, scalar(0.044715, "c"), "t1")
            poly = either(op, "Add", x, cubic, "t2")
            inner = op.Tanh(either(op, "Mul", poly, scalar(math.sqrt(2.0 / math.pi), "k"), "t3"))
        one_plus = either(op, "Add", inner, scalar(1.0, "one"), "t4")
        # the root node cannot be an OrValue: its two operand orders are separate rules
        if self.outer == 0:
            a, b = either(op, "Mul", x, scalar(0.5, "half"), "t5"), one_plus
        elif self.outer == 1:
            a, b = either(op, "Mul", x, one_plus, "t5"), scalar(0.5, "half")
        elif self.outer == 2:
            a, b = x, either(op, "Mul", one_plus, scalar(0.5, "half"), "t5")
        else:
            return op.Div(either(op, "Mul", x, one_plus, "t5"), scalar(2.0, "two"))
        return op.Mul(b, a) if self.swapped else op.Mul(a, b)

    def rewrite(self, op: Any, x: Any, **_: Any) -> Any:
        if self.form == "erf":
            return op.Gelu(x)
        return op.Gelu(x, approximate="tanh")


@register
class FuseActivationsPass(RuleSetPass):
    """Fuse decomposed HardSigmoid, HardSwish and GELU (erf and tanh) into single ops.

    Needs the op's opset in the model (HardSwish 14, Gelu 20); see the module docstring.
    """

    name = "fuse_activations"
    lossless = True

    def phases(self) -> list[list[FusionRule]]:
        """HardSwish and GELU first (they contain the HardSigmoid pattern), then HardSigmoid."""
        gelu: list[FusionRule] = [
            GeluFusion(form, outer, swapped)
            for form in ("erf", "tanh")
            for outer in range(4)
            for swapped in ((False,) if outer == 3 else (False, True))
        ]
        hardswish = [HardSwishFromHardSigmoid(False), HardSwishFromHardSigmoid(True)]
        return [
            [HardSwishFromClip(), *hardswish, *gelu],
            [HardSigmoidFromClip(), *hardswish],
        ]
