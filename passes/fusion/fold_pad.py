"""Fold a zero constant Pad into the pads of the Conv or AveragePool that reads it.

::

    Conv(Pad(x, p, value=0), W, B, pads=q)          -> Conv(x, W, B, pads=q + p[spatial])
    AveragePool(Pad(x, p, value=0), pads=0)          -> AveragePool(x, pads=p[spatial],
                                                                    count_include_pad=1)
    AveragePool(Pad(x, p, 0), pads=q, count_include_pad=1) -> AveragePool(x, pads=q + p, ...)

Conv pads with zeros, so explicit zero padding is the same; AveragePool counts its pads as
zeros only with ``count_include_pad=1``. Left alone: non-constant mode (reflect, edge, wrap),
a non-zero pad value, negative pads (cropping), padding of the batch or channel axes, an
``axes`` input, ``auto_pad`` other than NOTSET, pooling pads that would reach the kernel
size (pooling requires pads < kernel), AveragePool with ``ceil_mode=1`` (windows past the
padded border count differently) or with its own pads and ``count_include_pad=0``, and MaxPool
(its pads act as -inf, not 0).

Our own rule because onnxscript's ``fuse_pad_into_conv`` handles Conv/ConvInteger only, not
AveragePool, and does not bound pads for pooling.
"""

from __future__ import annotations

from typing import Any

import onnx_ir as ir

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
)
from irpass.registry import register

__all__ = ["FoldPadPass"]


def zero_pad_amounts(pad: ir.Node) -> list[int] | str:
    """The ``pads`` of a zero-valued constant-mode Pad, or why it is not one."""
    if attr_str(pad, "mode", "constant") != "constant":
        return "Pad mode is not constant"
    if len(pad.inputs) > 3 and pad.inputs[3] is not None:
        return "Pad has an axes input"
    pads = attr_ints(pad, "pads")
    value = attr_float(pad, "value", 0.0)
    if pads is None:
        if len(pad.inputs) < 2 or pad.inputs[1] is None:
            return "Pad has no pads"
        array = const_array(pad.inputs[1])
        if array is None:
            return "Pad amounts are not constant"
        pads = [int(v) for v in array.reshape(-1)]
        if len(pad.inputs) > 2 and pad.inputs[2] is not None:
            fill = const_array(pad.inputs[2])
            if fill is None or fill.size != 1:
                return "Pad value is not a constant scalar"
            value = float(fill.reshape(()))
    if value != 0.0:
        return f"Pad value is {value}, not 0"
    if any(p < 0 for p in pads):
        return "Pad crops (negative pads)"
    return pads


class FoldPadIntoWindowOp(FusionRule):
    """Conv/AveragePool(Pad(x)) -> Conv/AveragePool(x) with larger pads."""

    stat = "fold_pad"

    def __init__(self, consumer: str) -> None:
        super().__init__(f"pad_into_{consumer}")
        self.consumer = consumer

    def pattern(self, op: Any, x: Any) -> Any:
        padded = op.Pad(
            x, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["padded"]
        )
        return getattr(op, self.consumer)(
            padded, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["out"]
        )

    def plan(self, x: ir.Value, padded: ir.Value, out: ir.Value, **_: Any) -> list[int] | str:
        """The consumer's new pads, or why the Pad cannot fold into it."""
        node = node_of(out)
        if node.inputs[0] is not padded:
            return "the Pad output is not the data input"
        pads = zero_pad_amounts(node_of(padded))
        if isinstance(pads, str):
            return pads
        rank = len(pads) // 2
        if rank < 3 or (rank_of(x) not in (None, rank)):
            return "Pad rank does not match an N, C, spatial... input"
        if pads[0] or pads[1] or pads[rank] or pads[rank + 1]:
            return "Pad pads the batch or channel axis"
        if attr_str(node, "auto_pad", "NOTSET") != "NOTSET":
            return "the consumer uses auto_pad"
        spatial = rank - 2
        own = attr_ints(node, "pads") or [0] * (2 * spatial)
        if self.consumer == "AveragePool":
            if attr_int(node, "ceil_mode", 0):
                return "AveragePool uses ceil_mode=1"
            if any(own) and not attr_int(node, "count_include_pad", 0):
                return "AveragePool excludes its own pads from the average"
        extra = pads[2:rank] + pads[rank + 2:]
        new_pads = [int(a) + int(b) for a, b in zip(own, extra, strict=True)]
        kernel = attr_ints(node, "kernel_shape")
        if self.consumer == "AveragePool" and (
            kernel is None or any(p >= kernel[i % spatial] for i, p in enumerate(new_pads))
        ):
            return f"pooling pads {new_pads} would not be smaller than the kernel"
        return new_pads

    def rewrite(self, op: Any, x: Any, out: ir.Value, **bindings: Any) -> Any:
        pads = self.planned(x=x, out=out, **bindings)
        node = node_of(out)
        attrs = dict(node.attributes)
        attrs["pads"] = ir.AttrInt64s("pads", [int(p) for p in pads])
        if self.consumer == "AveragePool":
            attrs["count_include_pad"] = ir.AttrInt64("count_include_pad", 1)
        return op.op(node.op_type, x, *node.inputs[1:], **attrs)


@register
class FoldPadPass(RuleSetPass):
    """Fold zero constant Pad nodes into the pads of the following Conv or AveragePool."""

    name = "fold_pad"
    lossless = True

    def phases(self) -> list[list[FusionRule]]:
        """One phase: Pad into Conv, Pad into AveragePool."""
        return [[FoldPadIntoWindowOp("Conv"), FoldPadIntoWindowOp("AveragePool")]]
