"""Surgery for weighted ops: Conv, ConvTranspose, Gemm, MatMul.

::

    Conv(x[:, keep_in], W[keep_out][:, keep_in], B[keep_out])           group = 1 / grouped
    Conv(x[:, keep], W[keep], B[keep], group=len(keep))                   depthwise
    ConvTranspose(x[:, keep_in], W[keep_in][:, keep_out], B[...])
    Gemm(A[:, keep_k], B'[keep_k][:, keep_n], C[keep_n]);  MatMul likewise

A grouped convolution keeps its group count (the analysis removes channel k of every group at
once); a depthwise one (one input channel per group) loses whole groups, so ``group`` becomes
the number of input channels left.
"""

from __future__ import annotations

import onnx_ir as ir

from irpass.analysis.layout import weight_layout
from irpass.passes.pruning.handlers.base import Surgery, register

__all__ = ["conv", "linear"]


@register("Conv", "ConvTranspose")
def conv(node: ir.Node, surgery: Surgery) -> None:
    """Slice weight and bias; a depthwise conv's ``group`` follows its input channels."""
    layout = weight_layout(node)
    before = surgery.const(node.inputs[1])
    surgery.slice_inputs(node)
    if layout is None or before is None or layout.groups == 1:
        return
    rank = before.ndim
    per_group_in = before.shape[1] if node.op_type == "Conv" else before.shape[0] // layout.groups
    if per_group_in != 1:
        return  # grouped: channel k goes from every group, the group count stays
    keep = surgery.keep(node.inputs[0], 1 - rank)
    if keep is not None:
        surgery.set_int_attribute(node, "group", int(keep.sum()))
        surgery.stats["groups_changed"] += 1


@register("Gemm", "MatMul")
def linear(node: ir.Node, surgery: Surgery) -> None:
    """Slice the weight's pruned input / output features and the bias."""
    surgery.slice_inputs(node)
