"""Channel rules of elementwise ops: activations pass channels, broadcasting couples them."""

from __future__ import annotations

import onnx_ir as ir

from irpass.analysis.channel_rules._base import (
    Context,
    couple_broadcast,
    is_used,
    pass_all,
    rule,
)


@rule(
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Elu",
    "Selu",
    "Celu",
    "Gelu",
    "Softplus",
    "Softsign",
    "Mish",
    "Exp",
    "Log",
    "Sqrt",
    "Reciprocal",
    "Neg",
    "Abs",
    "Erf",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Sin",
    "Cos",
    "Tan",
    "Not",
    "IsNaN",
    "IsInf",
    "ThresholdedRelu",
    "Shrink",
    "Identity",
    "Cast",
    "CastLike",
    "BitwiseNot",
    "Dropout",
)
def _unary(ctx: Context, node: ir.Node) -> None:
    """Y = f(x) per element: every channel map passes through (Dropout's mask too)."""
    for out in node.outputs:
        if is_used(out):
            pass_all(ctx, node.inputs[0], out)
    ctx.all_maps(node.inputs[0])


@rule(
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Sum",
    "Mean",
    "Max",
    "Min",
    "Pow",
    "Mod",
    "PRelu",
    "Where",
    "Equal",
    "Less",
    "Greater",
    "LessOrEqual",
    "GreaterOrEqual",
    "And",
    "Or",
    "Xor",
    "BitShift",
    "BitwiseAnd",
    "BitwiseOr",
    "BitwiseXor",
    "Clip",
)
def _elementwise(ctx: Context, node: ir.Node) -> None:
    """Broadcasting ops: operands of full length on a channel axis are coupled position-wise."""
    couple_broadcast(ctx, [v for v in node.inputs if v is not None], node.outputs[0])
