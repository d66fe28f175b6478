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
    Sum(a, b, c, ...)       -> Add(Add(a, b), c) ...          (left to right, as Sum adds)
    Mean(a, b, ..., n args) -> Div(Add(Add(a, b), ...), n)
    Reciprocal(x)           -> Div(1, x)
    ReduceSum(x, axes)      -> Mul(ReduceMean(x, axes), N),  N = number of reduced elements
                               (static dims only)
    LRN(x, size, alpha, beta, bias)      (x of rank 4, [N, C, H, W])
                            -> x / (bias + alpha * m) ** beta,  m = Transpose(AveragePool(
                               Transpose(x * x, [N, H, C, W]), kernel [size, 1], channel pads
                               floor/ceil((size - 1) / 2), zeros counted), back)
                               (the window mean of squares: alpha/size * window sum)
    Erf(x)                  -> s * (1 - t * P(t) * Exp(-x * x)),  t = 1 / (1 + p * |x|),
                               s = Clip(x * 1e30, -1, 1) (the sign, 0 at 0), P the degree-4
                               polynomial of Abramowitz & Stegun 7.1.26

Which ops to decompose comes from the ``decompose`` option (e.g.
``decompose_ops(decompose=[HardSwish,HardSigmoid])``) and, once target profiles exist, from the
target: every decomposable op the target's ``supported_ops`` lacks is decomposed too (NNAPI, for
example, has no HardSigmoid, Sum, Reciprocal or Erf; Core ML's ML Program no LRN). The
decompositions compute the same function up to float rounding, except Erf: no finite composition
of the ops mobile runtimes offer is exactly erf, so it becomes the A&S 7.1.26 approximation,
whose absolute error (at most 1.5e-7 on the whole real line) is below float32's resolution of
erf's values near +-1 and far inside the verifier's float32 tolerance; the manager checks it
like every lossless rewrite. Erf of float16 inputs is left alone (the 1e30 sign constant would
overflow). Left alone: LRN whose input is not float32/float64 of rank 4, LayerNormalization
whose Mean/InvStdDev outputs are used, or whose input is not float32/float64 (its ``stash_type``
computes float16 in float32, the decomposition would not), and values of unknown dtype.
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
    attr_ints,
    attr_str,
    const_array,
    node_of,
    rank_of,
    static_shape,
)
from irpass.passes.fusion.fold_batchnorm import BatchNormToMulAdd
from irpass.registry import register

__all__ = ["DECOMPOSABLE", "DecomposeOpsPass"]

#: Op types this pass knows how to decompose.
DECOMPOSABLE = (
    "HardSwish",
    "HardSigmoid",
    "Gelu",
    "LayerNormalization",
    "BatchNormalization",
    "Sum",
    "Mean",
    "Reciprocal",
    "ReduceSum",
    "Erf",
    "LRN",
)

#: Abramowitz & Stegun 7.1.26: erf(x) = 1 - t*(a1 + t*(a2 + ... + t*a5)) * exp(-x^2) for x >= 0,
#: t = 1 / (1 + p*x), |error| <= 1.5e-7.
_ERF_P = 0.3275911
_ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
#: Large enough that x * _SIGN_SCALE saturates Clip(., -1, 1) for every float32 x where erf's
#: value is not already below 1e-30 in magnitude.
_SIGN_SCALE = 1e30


class DecomposeBatchNorm(BatchNormToMulAdd):
    """BatchNormalization(x) -> x * s + t (per channel), as fold_batchnorm(lone=mul_add)."""

    stat = "BatchNormalization"


class _Decompose(FusionRule):
    """Shared helpers: constants in the input's dtype, Clip in the model's opset form.

    ``clip_inputs`` picks Clip's bounds as inputs (opset >= 11) or attributes (opset 6-10);
    a rule using Clip exists in both forms and ``min_opset``/``max_opset`` let exactly one
    of them apply to a model. ``None``: the rule emits no Clip and applies at any opset.
    """

    adds_initializers = True

    def __init__(self, name: str | None = None, *, clip_inputs: bool | None = True) -> None:
        super().__init__(name)
        self.clip_inputs = bool(clip_inputs)
        if clip_inputs:
            self.min_opset = max(self.min_opset, 11)
        elif clip_inputs is not None:
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

    def erf(self, op: Any, x: ir.Value, y: Any, near: ir.Node) -> Any:
        """A&S 7.1.26 erf of ``y`` (constants in the dtype of ``x``, which has one)."""

        def const(value: float, name: str) -> ir.Value:
            return self.const(op, x, value, name, near)

        one = const(1.0, "one")
        t = op.Div(one, op.Add(op.Mul(op.Abs(y), const(_ERF_P, "erf_p")), one))
        poly = const(_ERF_A[-1], "erf_a5")
        for k in (3, 2, 1, 0):
            poly = op.Add(op.Mul(poly, t), const(_ERF_A[k], f"erf_a{k + 1}"))
        decay = op.Exp(op.Mul(op.Mul(y, y), const(-1.0, "minus_one")))
        magnitude = op.Sub(one, op.Mul(op.Mul(t, poly), decay))
        sign = op.Clip(op.Mul(y, const(_SIGN_SCALE, "sign_scale")), const(-1.0, "minus_one"), one)
        return op.Mul(sign, magnitude)


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
    """Gelu(x) -> 0.5 * x * (1 + Erf(x / sqrt2)) (or the Tanh form).

    When Erf is decomposed too, its approximation is written inline: the values the rewriter
    creates carry no dtype, so a later Erf rule could not make constants for them.
    """

    stat = "Gelu"

    def __init__(self, inline_erf: bool = False) -> None:
        super().__init__()
        self.inline_erf = inline_erf

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
            scaled = op.Div(x, const(math.sqrt(2.0), "sqrt2"))
            inner = self.erf(op, x, scaled, node) if self.inline_erf else op.Erf(scaled)
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


class DecomposeSum(_Decompose):
    """Sum(a, b, c, ...) -> Add(Add(a, b), c) ... (a single input becomes an Identity)."""

    stat = "Sum"

    def __init__(self) -> None:
        super().__init__(clip_inputs=None)

    def pattern(self, op: Any, x: Any) -> Any:
        return op.Sum(x, _allow_other_inputs=True, _outputs=["out"])

    def plan(self, x: ir.Value, out: ir.Value, **_: Any) -> Any:
        if any(v is None for v in node_of(out).inputs):
            return "an input is missing"
        return None

    @staticmethod
    def add_chain(op: Any, node: ir.Node) -> Any:
        total = node.inputs[0]
        for value in node.inputs[1:]:
            total = op.Add(total, value)
        return total

    def rewrite(self, op: Any, x: Any, out: ir.Value, **_: Any) -> Any:
        node = node_of(out)
        if len(node.inputs) == 1:
            return op.Identity(x)
        return self.add_chain(op, node)


class DecomposeMean(DecomposeSum):
    """Mean(a, b, ...) -> Div(Add(Add(a, b), ...), n)."""

    stat = "Mean"

    def pattern(self, op: Any, x: Any) -> Any:
        return op.Mean(x, _allow_other_inputs=True, _outputs=["out"])

    def plan(self, x: ir.Value, out: ir.Value, **_: Any) -> Any:
        return super().plan(x, out) or (None if x.dtype is not None else "input dtype is unknown")

    def rewrite(self, op: Any, x: Any, out: ir.Value, **_: Any) -> Any:
        node = node_of(out)
        if len(node.inputs) == 1:
            return op.Identity(x)
        count = self.const(op, x, len(node.inputs), "count", node)
        return op.Div(self.add_chain(op, node), count)


class DecomposeReciprocal(_Decompose):
    """Reciprocal(x) -> Div(1, x)."""

    stat = "Reciprocal"

    def __init__(self) -> None:
        super().__init__(clip_inputs=None)

    def pattern(self, op: Any, x: Any) -> Any:
        return op.Reciprocal(x, _outputs=["out"])

    def rewrite(self, op: Any, x: Any, out: ir.Value, **_: Any) -> Any:
        return op.Div(self.const(op, x, 1.0, "one", node_of(out)), x)


class DecomposeReduceSum(_Decompose):
    """ReduceSum(x, axes) -> Mul(ReduceMean(x, axes), N) for static reduced dims.

    This variant is for opset >= 18, where ReduceMean takes its axes as an input.
    """

    stat = "ReduceSum"
    axes_input = True
    min_opset = 18

    def __init__(self) -> None:
        super().__init__(clip_inputs=None)

    def pattern(self, op: Any, x: Any) -> Any:
        return op.ReduceSum(
            x, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["out"]
        )

    def plan(self, x: ir.Value, out: ir.Value, **_: Any) -> tuple[list[int], int] | str:
        """The sorted non-negative axes and the number of elements each sum adds, or why not."""
        node = node_of(out)
        if x.dtype is None or x.dtype.numpy().kind != "f":
            return "only float inputs (an integer mean would truncate)"
        shape = static_shape(x)
        if shape is None:
            return "the reduced dims are not static"
        rank = len(shape)
        if len(node.inputs) > 1 and node.inputs[1] is not None:
            array = const_array(node.inputs[1])
            if array is None:
                return "axes are not constant"
            axes = [int(a) % rank for a in array.reshape(-1)]
        else:
            attr = attr_ints(node, "axes")
            axes = [a % rank for a in attr] if attr else []
        if not axes:
            if attr_int(node, "noop_with_empty_axes", 0):
                return "empty axes with noop_with_empty_axes: nothing is reduced"
            axes = list(range(rank))
        axes = sorted(set(axes))
        return axes, int(np.prod([shape[a] for a in axes]))

    def rewrite(self, op: Any, x: Any, out: ir.Value, **bindings: Any) -> Any:
        axes, count = self.planned(x=x, out=out, **bindings)
        node = node_of(out)
        keepdims = attr_int(node, "keepdims", 1)
        if self.axes_input:
            value = self.new_initializer(op, np.array(axes, dtype=np.int64), "sum_axes", node)
            mean = op.ReduceMean(x, value, keepdims=keepdims)
        else:
            mean = op.ReduceMean(x, axes=axes, keepdims=keepdims)
        return op.Mul(mean, self.const(op, x, float(count), "count", node))


class DecomposeReduceSumOpset17(DecomposeReduceSum):
    """The same before opset 18, where ReduceMean takes its axes as an attribute."""

    axes_input = False
    min_opset = 1
    max_opset = 17


class DecomposeLRN(_Decompose):
    """LRN over channels -> a channel-window AveragePool of x * x, then Add/Pow/Div."""

    stat = "LRN"
    min_opset = 7  # AveragePool's count_include_pad

    def __init__(self) -> None:
        super().__init__(clip_inputs=None)

    def pattern(self, op: Any, x: Any) -> Any:
        return op.LRN(x, _allow_other_attributes=True, _outputs=["out"])

    def plan(self, x: ir.Value, **_: Any) -> Any:
        if x.dtype not in (ir.DataType.FLOAT, ir.DataType.DOUBLE):
            return f"input type {x.dtype}: only float32/float64"
        if rank_of(x) != 4:
            return "input rank is not 4 (the pool runs over [N, H, C, W])"
        return None

    def rewrite(self, op: Any, x: Any, out: ir.Value, **_: Any) -> Any:
        node = node_of(out)
        size = attr_int(node, "size", 1)
        alpha, beta = attr_float(node, "alpha", 1e-4), attr_float(node, "beta", 0.75)
        bias = attr_float(node, "bias", 1.0)
        below = (size - 1) // 2  # the window ONNX defines: [c - below, c + above]
        above = size - 1 - below
        # channels moved to a spatial axis so a [size, 1] pool slides along them; padded
        # zeros are counted, so the pool is the window sum over size
        squares = op.Transpose(op.Mul(x, x), perm=[0, 2, 1, 3])
        mean = op.AveragePool(squares, kernel_shape=[size, 1], pads=[below, 0, above, 0],
                              count_include_pad=1)
        mean = op.Transpose(mean, perm=[0, 2, 1, 3])
        scale = op.Add(op.Mul(mean, self.const(op, x, alpha, "lrn_alpha", node)),
                       self.const(op, x, bias, "lrn_bias", node))
        return op.Div(x, op.Pow(scale, self.const(op, x, beta, "lrn_beta", node)))


class DecomposeErf(_Decompose):
    """Erf(x) -> the A&S 7.1.26 approximation built from Abs/Mul/Add/Div/Exp/Clip."""

    stat = "Erf"

    def pattern(self, op: Any, x: Any) -> Any:
        return op.Erf(x, _outputs=["out"])

    def plan(self, x: ir.Value, **_: Any) -> Any:
        if x.dtype not in (ir.DataType.FLOAT, ir.DataType.DOUBLE):
            return f"input type {x.dtype}: only float32/float64"
        return None

    def rewrite(self, op: Any, x: Any, out: ir.Value, **_: Any) -> Any:
        return self.erf(op, x, x, node_of(out))


def _check_ops(ops: tuple[str, ...]) -> None:
    unknown = [o for o in ops if o not in DECOMPOSABLE]
    if unknown:
        raise ValueError(
            f"cannot decompose {', '.join(unknown)}; decomposable: {', '.join(DECOMPOSABLE)}"
        )


@dataclasses.dataclass(frozen=True)
class DecomposeOptions:
    """Options of decompose_ops."""

    decompose: tuple[str, ...] = option((), "op types to decompose: " + ", ".join(DECOMPOSABLE))

    def __post_init__(self) -> None:
        _check_ops(tuple(self.decompose))


@register
class DecomposeOpsPass(RuleSetPass):
    """Decompose HardSwish/HardSigmoid/Gelu/LayerNorm/BN/Sum/Mean/Reciprocal/ReduceSum/Erf/LRN.

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
            rest.append(DecomposeGelu(inline_erf="Erf" in ops))
        if "LayerNormalization" in ops:
            rest += [DecomposeLayerNorm(), DecomposeLayerNorm(axes_input=False)]
        if "BatchNormalization" in ops:
            rest.append(DecomposeBatchNorm())
        simple: dict[str, type[FusionRule]] = {
            "Sum": DecomposeSum,
            "Mean": DecomposeMean,
            "Reciprocal": DecomposeReciprocal,
            "Erf": DecomposeErf,
            "LRN": DecomposeLRN,
        }
        rest += [rule() for op_type, rule in simple.items() if op_type in ops]
        if "ReduceSum" in ops:
            rest += [DecomposeReduceSum(), DecomposeReduceSumOpset17()]
        return [first, rest]
