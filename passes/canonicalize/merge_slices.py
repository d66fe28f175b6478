"""Merge a Slice that feeds only another Slice into it.

    a = Slice(x, [0], [8], [1]); b = Slice(a, [2], [5], [2])  -> Slice(x, [0,2], [8,5], [1,2])
    a = Slice(x, [2], [10], [1]); b = Slice(a, [1], [4], [1]) -> Slice(x, [3], [6], [1])

Exporters emit chains of Slices (one per indexed axis of ``x[:, 2:5, ::2]``, or STFT framing
in audio front ends). Slicing different axes commutes, so the parameters concatenate. Slicing
one axis twice composes when both steps are 1 and every start and end is non-negative: the
inner slice keeps ``[s1, min(e1, D))``, the outer one takes ``[s2, e2)`` of that, which is
``[s1 + s2, min(e1, s1 + e2))`` of ``x`` (clamping at ``D`` gives the same, empty results
included). Left alone: non-constant parameters, an inner Slice with another consumer or that
is a graph output, negative axes of unknown rank, other steps or negative bounds on a shared
axis, opset < 10 (attribute Slices) and custom domains. Works in If/Loop/Scan bodies (the merged
parameters are Constant nodes there, initializers in the main graph).
"""

from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir

from irpass.pass_base import IrpassPass
from irpass.registry import register

from ._common import is_onnx_domain

__all__ = ["MergeSlicesPass"]

logger = logging.getLogger(__name__)

_INT64_MAX = np.iinfo(np.int64).max

#: (starts, ends, axes, steps) of one Slice as python ints, axes normalized to >= 0
Params = tuple[list[int], list[int], list[int], list[int]]


def _const(value: ir.Value | None) -> np.ndarray | None:
    if value is None:
        return None
    tensor = value.const_value if not value.is_graph_input() else None
    if tensor is None:
        tensor = ir.convenience.get_const_tensor(value)
    return None if tensor is None else np.asarray(tensor.numpy()).reshape(-1)


def _params(node: ir.Node, rank: int | None) -> Params | None:
    if len(node.inputs) < 3:
        return None
    starts, ends = _const(node.inputs[1]), _const(node.inputs[2])
    if starts is None or ends is None or starts.size != ends.size:
        return None
    count = starts.size
    axes_value = node.inputs[3] if len(node.inputs) > 3 else None
    steps_value = node.inputs[4] if len(node.inputs) > 4 else None
    axes = _const(axes_value) if axes_value is not None else np.arange(count)
    steps = _const(steps_value) if steps_value is not None else np.ones(count, dtype=np.int64)
    if axes is None or steps is None or axes.size != count or steps.size != count:
        return None
    normalized = []
    for axis in axes.tolist():
        if axis < 0:
            if rank is None:
                return None
            axis += rank
        normalized.append(int(axis))
    if len(set(normalized)) != count:
        return None
    return starts.tolist(), ends.tolist(), normalized, steps.tolist()


def _compose(inner: Params, outer: Params) -> Params | None:
    """The parameters of one Slice doing ``outer`` after ``inner`` (None when not exact)."""
    merged = {a: (s, e, t) for s, e, a, t in zip(*inner, strict=True)}
    for s2, e2, axis, t2 in zip(*outer, strict=True):
        if axis not in merged:
            merged[axis] = (s2, e2, t2)
            continue
        s1, e1, t1 = merged[axis]
        if t1 != 1 or t2 != 1 or min(s1, e1, s2, e2) < 0:
            return None
        merged[axis] = (s1 + s2, min(e1, min(s1 + e2, _INT64_MAX)), 1)
    axes = sorted(merged)
    return (
        [merged[a][0] for a in axes],
        [merged[a][1] for a in axes],
        axes,
        [merged[a][2] for a in axes],
    )


def _rank(value: ir.Value | None) -> int | None:
    return None if value is None or value.shape is None else len(value.shape)


def _constant(
    graph: ir.Graph, model: ir.Model, node: ir.Node, data: list[int], name: str
) -> ir.Value:
    tensor = ir.tensor(np.array(data, dtype=np.int64), name=name)
    if graph is model.graph:
        taken, base, n = set(graph.initializers), name, 1
        while name in taken:
            name, n = f"{base}_{n}", n + 1
        tensor.name = name
        value = ir.Value(
            name=name,
            type=ir.TensorType(ir.DataType.INT64),
            shape=ir.Shape([len(data)]),
            const_value=tensor,
        )
        graph.register_initializer(value)
        return value
    constant = ir.node("Constant", inputs=[], attributes={"value": tensor})
    graph.insert_before(node, constant)
    out = constant.outputs[0]
    out.name, out.const_value = name, tensor
    return out


@register
class MergeSlicesPass(IrpassPass):
    """Merge a single-use Slice into the Slice that consumes it (different axes or step 1)."""

    name = "merge_slices"
    lossless = True
    recurses_into_subgraphs = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Merge every mergeable Slice pair, innermost first."""
        opset = model.opset_imports.get("", model.opset_imports.get("ai.onnx", 0))
        if opset < 10:
            return ir.passes.PassResult(model, modified=False)
        count = 0
        for graph in list(model.graphs()):
            for node in list(graph):
                if node.op_type != "Slice" or not is_onnx_domain(node.domain) or not node.inputs:
                    continue
                data = node.inputs[0]
                inner = data.producer() if data is not None else None
                if (
                    data is None
                    or inner is None
                    or inner.op_type != "Slice"
                    or not is_onnx_domain(inner.domain)
                    or inner.graph is not graph
                    or data.is_graph_output()
                    or len(data.uses()) != 1
                ):
                    continue
                rank = _rank(inner.inputs[0]) or _rank(data) or _rank(node.outputs[0])
                first, second = _params(inner, rank), _params(node, rank)
                merged = _compose(first, second) if first and second else None
                if merged is None:
                    logger.debug("Slice %s: not merged with %s", node.name, inner.name)
                    continue
                base = node.outputs[0].name or "slice"
                values = [
                    _constant(graph, model, node, part, f"{base}_{what}")
                    for part, what in zip(merged, ("starts", "ends", "axes", "steps"), strict=True)
                ]
                source = inner.inputs[0]
                node.replace_input_with(0, source)
                if len(node.inputs) < 5:
                    node.resize_inputs(5)
                for index, value in enumerate(values, start=1):
                    node.replace_input_with(index, value)
                if not any(out.uses() or out.is_graph_output() for out in inner.outputs):
                    graph.remove(inner, safe=True)
                count += 1
        if count:
            self.stats["slices_merged"] += count
            self.growth_reasons.append("merged Slice parameters (the old ones go with dead code)")
        return ir.passes.PassResult(model, modified=count > 0)
