"""Value rules for graph inputs a model uses as indices, lengths, ratios or thresholds.

The companions of the Gather/OneHot/divisor rules in :mod:`irpass.verify.feeds`, for the other
consumers that ONNX Runtime checks at run time::

    ScatterElements<axis=a>(data: [.., n, ..], indices, updates)   indices in [0, n)
    ScatterND(data: [n0, n1, ..], indices: [.., k], updates)        indices in [0, min(n0..))
    TensorScatter<axis=a>(cache: [.., m, ..], update: [.., u, ..], write_indices)
                                                                   write_indices in [0, m-u]
    LSTM/GRU/RNN(X: [seq, ..], .., sequence_lens)                   lengths in [1, seq]
    OneHot(indices, depth) -> [.., d, ..]                          depth = d (or >= 1)
    Dropout(x, ratio, training_mode)                               ratio in [0, 0.9), inference
    NonMaxSuppression(.., iou_threshold, ..)                       iou_threshold in [0, 1]

A training-mode Dropout draws a random mask on every run, so no two runs can be compared; the
verification inputs select inference mode, the one an optimized model ships with.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from irpass.verify.feeds import ValueHint, register_value_rule
from irpass.verify.shape_operands import declared_shape

__all__: list[str] = []


def _int(node: ir.Node, name: str, default: int) -> int:
    attr = node.attributes.get(name)
    return default if attr is None else int(attr.as_int())


def _name(node: ir.Node) -> str:
    return f"{node.op_type} {node.name!r}" if node.name else node.op_type


def _scatter_elements_rule(node: ir.Node, index: int) -> ValueHint | None:
    data = declared_shape(node.inputs[0])
    if index != 1 or not data:
        return None
    extent = data[_int(node, "axis", 0) % len(data)]
    if extent <= 0:
        return None
    return ValueHint(low=0, high=extent, reasons=[f"indices of {_name(node)} ({extent} rows)"])


def _scatter_nd_rule(node: ir.Node, index: int) -> ValueHint | None:
    data, indices = declared_shape(node.inputs[0]), declared_shape(node.inputs[1])
    if index != 1 or not data or not indices or not 0 < indices[-1] <= len(data):
        return None
    extent = min(data[: indices[-1]])
    if extent <= 0:
        return None
    return ValueHint(low=0, high=extent, reasons=[f"indices of {_name(node)} (extent {extent})"])


def _tensor_scatter_rule(node: ir.Node, index: int) -> ValueHint | None:
    cache, update = declared_shape(node.inputs[0]), declared_shape(node.inputs[1])
    if index != 2 or not cache or update is None or len(cache) != len(update):
        return None
    axis = _int(node, "axis", -2) % len(cache)
    room = cache[axis] - update[axis]
    if room < 0:
        return None
    return ValueHint(low=0, high=room + 1, reasons=[f"write_indices of {_name(node)}"])


def _sequence_lens_rule(node: ir.Node, index: int) -> ValueHint | None:
    x = declared_shape(node.inputs[0])
    if index != 4 or not x or len(x) < 2:
        return None
    steps = x[1] if _int(node, "layout", 0) else x[0]
    if steps <= 0:
        return None
    return ValueHint(low=1, high=steps + 1, reasons=[f"sequence_lens of {_name(node)}"])


def _one_hot_depth_rule(node: ir.Node, index: int) -> ValueHint | None:
    if index != 1:
        return None
    out, operand = declared_shape(node.outputs[0]), declared_shape(node.inputs[1])
    hint = ValueHint(low=1, high=8, reasons=[f"depth of {_name(node)} (positive)"])
    if out and operand is not None:
        depth = out[_int(node, "axis", -1) % len(out)]
        hint.value = np.full(operand, depth)
        hint.reasons = [f"depth of {_name(node)} (its declared output has {depth})"]
    return hint


def _dropout_rule(node: ir.Node, index: int) -> ValueHint | None:
    if index == 1:
        return ValueHint(low=0.0, high=0.9, reasons=[f"ratio of {_name(node)}"])
    if index == 2:
        return ValueHint(choices=(False,), reasons=[f"training_mode of {_name(node)} (inference)"])
    return None


def _nms_rule(node: ir.Node, index: int) -> ValueHint | None:
    if index != 3:
        return None
    return ValueHint(low=0.0, high=1.0, reasons=[f"iou_threshold of {_name(node)}"])


register_value_rule("ScatterElements", _scatter_elements_rule)
register_value_rule("Scatter", _scatter_elements_rule)
register_value_rule("ScatterND", _scatter_nd_rule)
register_value_rule("TensorScatter", _tensor_scatter_rule)
for _op in ("LSTM", "GRU", "RNN"):
    register_value_rule(_op, _sequence_lens_rule)
register_value_rule("OneHot", _one_hot_depth_rule)
register_value_rule("Dropout", _dropout_rule)
register_value_rule("NonMaxSuppression", _nms_rule)
