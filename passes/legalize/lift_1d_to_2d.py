"""Run 1-D convolutions and pools as 2-D ones with a unit height (NNAPI, Core ML, TensorRT pools).

NNAPI's execution provider takes only 2-D Conv and pools, Core ML's only 2-D pools, and
onnx-tensorrt lists pooling as "2D or 3D only"; 1-D signal models (audio, power traces, ECG) are
made of exactly these ops::

    y = Conv<kernel_shape=[k], pads=[b,e], strides=[s], dilations=[d]>(x[N,C,L], W[O,I,k], B)
    ->
    x4 = Unsqueeze(x, [2])                                   # [N, C, 1, L]
    y4 = Conv<kernel_shape=[1,k], pads=[0,b,0,e], strides=[1,s], dilations=[1,d]>(x4, W4, B)
    y  = Squeeze(y4, [2])                                    # W4 = W[:, :, None, :]

and the same for ConvTranspose (``output_padding``/``output_shape`` get a leading 0/1),
MaxPool, AveragePool, LpPool, GlobalAveragePool, GlobalMaxPool. The 2-D op computes exactly the
1-D result (the unit height adds no terms). Afterwards the Squeeze -> Unsqueeze pairs between
lifted ops are removed, moving each Squeeze past elementwise unary ops (Relu, Clip, Sigmoid,
...) first, so a Conv1d/ReLU/MaxPool1d stack stays 4-D end to end.

Left alone: ops whose input rank is unknown or not 3, MaxPool whose Indices output is used
(its indices would count over the 4-D layout), auto_pad other than NOTSET/VALID/SAME_* (none
exist), and a non-constant Conv weight is unsqueezed at run time instead of reshaped.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np
import onnx_ir as ir

from irpass.ir import default_opset
from irpass.pass_base import IrpassPass
from irpass.passes.fusion._rules import const_array, unique_name
from irpass.registry import register

__all__ = ["Lift1dTo2dPass"]

logger = logging.getLogger(__name__)

_LIFTABLE = ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool")
_GLOBAL = ("GlobalAveragePool", "GlobalMaxPool")
#: Elementwise ops of one input whose output shape is their input shape: a Squeeze commutes.
_UNARY = frozenset(
    {
        "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu",
        "Selu", "Gelu", "Softplus", "Softsign", "Abs", "Neg", "Exp", "Sqrt", "Erf", "Identity",
        "Mish", "Celu", "ThresholdedRelu", "Floor", "Ceil", "Round",
    }
)  # fmt: skip
_ATTR_PAD_FIRST = {
    # attribute -> the value the unit height gets
    "kernel_shape": 1,
    "strides": 1,
    "dilations": 1,
    "output_padding": 0,
    "output_shape": 1,
}
_AXIS = 2  # the inserted unit-height axis (after N, C)


def _rank(value: ir.Value | None) -> int | None:
    return None if value is None or value.shape is None else len(value.shape)


def _refusal(node: ir.Node) -> str | None:
    """Why ``node`` cannot be lifted, or None when it can."""
    if _rank(node.inputs[0]) != 3:
        return "input rank is not known to be 3"
    if node.op_type == "MaxPool" and len(node.outputs) > 1:
        indices = node.outputs[1]
        if indices.uses() or indices.is_graph_output():
            return "the Indices output is used"
    return None


class _Builder:
    """Creates the Unsqueeze/Squeeze axes and reshaped weights of one graph."""

    def __init__(self, graph: ir.Graph, opset: int) -> None:
        self.graph = graph
        self.opset = opset
        self._axes: ir.Value | None = None

    def axes(self) -> ir.Value:
        if self._axes is None:
            name = unique_name(self.graph, "lift_1d_axes")
            self._axes = ir.Value(name=name, const_value=ir.tensor(np.array([_AXIS], np.int64)))
            self.graph.register_initializer(self._axes)
        return self._axes

    def unsqueeze(self, x: ir.Value) -> ir.Node:
        if self.opset >= 13:
            return ir.node("Unsqueeze", [x, self.axes()])
        return ir.node("Unsqueeze", [x], {"axes": [_AXIS]})

    def squeeze(self, x: ir.Value) -> ir.Node:
        if self.opset >= 13:
            return ir.node("Squeeze", [x, self.axes()])
        return ir.node("Squeeze", [x], {"axes": [_AXIS]})

    def weight(self, w: ir.Value) -> tuple[ir.Value, list[ir.Node]]:
        """W[O, I, k] as W[O, I, 1, k]: a new initializer, or an Unsqueeze when not constant."""
        array = const_array(w)
        if array is None:
            node = self.unsqueeze(w)
            return node.outputs[0], [node]
        name = unique_name(self.graph, (w.name or "weight") + "_2d")
        value = ir.Value(name=name, const_value=ir.tensor(np.ascontiguousarray(array[:, :, None])))
        value.shape = ir.Shape(array[:, :, None].shape)
        if w.dtype is not None:
            value.dtype = w.dtype
        self.graph.register_initializer(value)
        return value, []


def _lifted_attributes(node: ir.Node) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for name, attr in node.attributes.items():
        if name in _ATTR_PAD_FIRST:
            attrs[name] = [_ATTR_PAD_FIRST[name], *attr.as_ints()]
        elif name == "pads":
            begin, end = attr.as_ints()
            attrs[name] = [0, begin, 0, end]
        else:
            attrs[name] = attr
    return attrs


def _lift(graph: ir.Graph, node: ir.Node, build: _Builder) -> None:
    x = node.inputs[0]
    assert x is not None
    new_nodes: list[ir.Node] = []
    up = build.unsqueeze(x)
    new_nodes.append(up)
    inputs: list[ir.Value | None] = [up.outputs[0]]
    w: ir.Value | None = None
    if node.op_type in ("Conv", "ConvTranspose"):
        w = node.inputs[1]
        assert w is not None
        w2d, extra = build.weight(w)
        new_nodes += extra
        inputs += [w2d, *node.inputs[2:]]
    lifted = ir.Node(
        node.domain,
        node.op_type,
        inputs,
        [ir.convenience.convert_attribute(k, v) for k, v in _lifted_attributes(node).items()],
        num_outputs=1,
        name=(node.name or node.op_type) + "_2d",
    )
    down = build.squeeze(lifted.outputs[0])
    new_nodes += [lifted, down]
    old = node.outputs[0]
    out = down.outputs[0]
    if old.dtype is not None:
        out.dtype = lifted.outputs[0].dtype = old.dtype
    ir.convenience.replace_nodes_and_values(graph, node, [node], new_nodes, [old], [out])
    if node.op_type in ("Conv", "ConvTranspose"):
        _drop_if_unused(w)


def _drop_if_unused(weight: ir.Value | None) -> None:
    """Remove the 1-D weight its 2-D copy replaced, from whichever graph holds it.

    A weight of a Conv inside an If branch may live in the branch or in an enclosing graph;
    the manager's hygiene check (no unused initializers) caught the copies left behind.
    """
    if weight is None or weight.uses() or not weight.is_initializer():
        return
    if weight.is_graph_input() or weight.is_graph_output():
        return
    owner = weight.graph
    if owner is not None and owner.initializers.get(weight.name or "") is weight:
        del owner.initializers[weight.name or ""]


def _is_axis_op(node: ir.Node, op_type: str) -> bool:
    """``node`` is Squeeze/Unsqueeze on exactly the lifted axis."""
    if node.op_type != op_type or node.domain not in ("", "ai.onnx"):
        return False
    if len(node.inputs) > 1:
        axes = const_array(node.inputs[1])
        return axes is not None and axes.reshape(-1).tolist() == [_AXIS]
    attr = node.attributes.get("axes")
    return attr is not None and list(attr.as_ints()) == [_AXIS]


def _sink_squeezes(graph: ir.Graph, build: _Builder) -> int:
    """Squeeze -> unary -> ... becomes unary -> Squeeze; Squeeze -> Unsqueeze pairs vanish."""
    removed = 0
    changed = True
    while changed:
        changed = False
        for node in list(graph):
            if not _is_axis_op(node, "Squeeze") or node.outputs[0].is_graph_output():
                continue
            squeezed = node.outputs[0]
            uses = list(squeezed.uses())
            if not uses:
                continue
            user = uses[0][0]
            if len(uses) == 1 and _is_axis_op(user, "Unsqueeze"):
                if user.outputs[0].is_graph_output():
                    continue
                source = node.inputs[0]
                assert source is not None
                ir.convenience.replace_all_uses_with(user.outputs[0], source)
                graph.remove([user, node], safe=True)
                removed += 1
                changed = True
                break
            if (
                len(uses) == 1
                and user.op_type in _UNARY
                and user.domain in ("", "ai.onnx")
                and uses[0][1] == 0
                and not user.outputs[0].is_graph_output()
                and all(i is None or i is squeezed or const_array(i) is not None
                        for i in user.inputs)
            ):
                # unary(Squeeze(x)) -> Squeeze(unary(x)): rewire the unary op onto x
                source = node.inputs[0]
                assert source is not None
                unary_out = user.outputs[0]
                consumers = list(unary_out.uses())
                user.replace_input_with(0, source)
                graph.remove(node, safe=True)
                moved = build.squeeze(unary_out)
                if unary_out.dtype is not None:
                    moved.outputs[0].dtype = unary_out.dtype
                moved.outputs[0].shape = unary_out.shape
                unary_out.shape = None  # now 4-D; shape inference fills it in again
                for consumer, index in consumers:
                    consumer.replace_input_with(index, moved.outputs[0])
                graph.insert_after(user, moved)
                changed = True
                break
    return removed


@register
class Lift1dTo2dPass(IrpassPass):
    """Run 1-D Conv/ConvTranspose/pools as 2-D ops of unit height (exact)."""

    name = "lift_1d_to_2d"
    lossless = True
    recurses_into_subgraphs = True
    _ops: ClassVar[tuple[str, ...]] = _LIFTABLE + _GLOBAL

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Lift every liftable rank-3 op, then cancel the Squeeze/Unsqueeze pairs."""
        opset = default_opset(model) or 0
        lifted = 0
        for graph in model.graphs():
            build = _Builder(graph, opset)
            in_graph = 0
            for node in list(graph):
                if node.op_type not in self._ops or node.domain not in ("", "ai.onnx"):
                    continue
                reason = _refusal(node)
                if reason is not None:
                    logger.debug(
                        "lift_1d_to_2d: leaving %s %r: %s", node.op_type, node.name, reason
                    )
                    continue
                _lift(graph, node, build)
                self.stats[node.op_type] += 1
                in_graph += 1
            lifted += in_graph
            if in_graph:
                self.stats["squeeze_pairs_removed"] += _sink_squeezes(graph, build)
        return ir.passes.PassResult(model, modified=lifted > 0)
