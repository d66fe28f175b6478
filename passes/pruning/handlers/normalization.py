"""Surgery for normalization ops: their per-channel parameters lose the pruned channels.

::

    BatchNormalization(x[:, keep], scale[keep], B[keep], mean[keep], var[keep])
    InstanceNormalization(x[:, keep], scale[keep], B[keep])
    GroupNormalization(x[:, keep], scale[keep], bias[keep])       num_groups stays
    LayerNormalization(x[..., keep], scale[keep], B[keep])        statistics over kept channels

Parameters of GroupNormalization opset 18 (one per group) stay as they are: the analysis
removes channel k of every group at once.
"""

from __future__ import annotations

import onnx_ir as ir

from irpass.passes.pruning.handlers.base import Surgery, register

__all__ = ["normalization"]


@register("BatchNormalization", "InstanceNormalization", "GroupNormalization", "LayerNormalization")
def normalization(node: ir.Node, surgery: Surgery) -> None:
    """Slice the per-channel parameters."""
    surgery.slice_inputs(node)
