"""Scan-8 -> Scan-9 for ``upgrade_opset``: the batch axis the ONNX converter forgets.

Scan-8 runs its body once per batch entry: every state and scan input has a leading batch
axis (scan inputs are ``[batch, sequence, ...]``) and an optional first input
``sequence_lens``. Scan-9 has no batch axis. ONNX's version converter (``Scan_8_9``) only drops
``sequence_lens`` and strips the leading dimension from the *declared* shapes of the Scan's
inputs and outputs, graph inputs included, so the converted model declares ``x: float[3,2]``
while the data is ``float[1,3,2]`` and ONNX Runtime rejects it (ONNX backend case
``test_scan_sum``). For a batch of one the exact rewrite is::

    y, z = Scan-8 ("", s: [1,2], x: [1,3,2])
    -> s0 = Squeeze(s, [0]); x0 = Squeeze(x, [0])
       y0, z0 = Scan-9 (s0, x0)                     same body, directions -> scan_input_directions
       y = Unsqueeze(y0, [0]); z = Unsqueeze(z0, [0])

:func:`prepare` runs before the converter: it refuses what has no exact Scan-9 form (a
``sequence_lens`` input, a batch other than 1 or unknown: that would need a Loop over the batch)
and records each Scan's node name and the true shapes of its inputs and outputs. :func:`finish`
runs on the converted model: it restores those shapes and adds the Squeeze/Unsqueeze pairs.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

from ._common import is_onnx_domain

__all__ = ["Scan8Refusal", "ScanPlan", "finish", "prepare"]


class Scan8Refusal(Exception):
    """A Scan-8 node has no exact opset-9 equivalent; the message says why."""


@dataclasses.dataclass
class ScanPlan:
    """What :func:`finish` needs to repair one Scan after conversion."""

    node_name: str
    restore_name: str | None
    input_shapes: list[ir.Shape | None]
    output_shapes: list[ir.Shape | None]


def _batch_size(node: ir.Node) -> int | None:
    """The batch size shared by every input and output of a Scan-8 node, if declared."""
    for value in [*node.inputs[1:], *node.outputs]:
        if value is None or value.shape is None or len(value.shape) == 0:
            continue
        leading = value.shape[0]
        if isinstance(leading, int):
            return leading
    return None


def _scan8_nodes(model: ir.Model) -> list[ir.Node]:
    return [
        node
        for graph in model.graphs()
        for node in graph
        if node.op_type == "Scan" and is_onnx_domain(node.domain)
    ]


def prepare(model: ir.Model) -> list[ScanPlan]:
    """Check every Scan of an opset-8 model (functions already inlined) and name it uniquely.

    Raises:
        Scan8Refusal: a Scan has ``sequence_lens`` or a batch size that is not statically 1.
    """
    nodes = _scan8_nodes(model)
    taken = {node.name for graph in model.graphs() for node in graph if node.name}
    plans = []
    for index, node in enumerate(nodes):
        if node.inputs and node.inputs[0] is not None:
            raise Scan8Refusal(
                f"Scan {node.name!r} has a sequence_lens input, which opset 9 cannot express"
            )
        batch = _batch_size(node)
        if batch != 1:
            raise Scan8Refusal(
                f"Scan {node.name!r} has batch size {batch if batch is not None else 'unknown'}; "
                "only a static batch of 1 maps exactly onto the batchless Scan-9"
            )
        restore = node.name
        if not node.name or sum(1 for other in nodes if other.name == node.name) > 1:
            name = f"irpass_scan8_{index}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)
        plans.append(
            ScanPlan(
                node_name=node.name,
                restore_name=restore,
                input_shapes=[v.shape if v is not None else None for v in node.inputs[1:]],
                output_shapes=[v.shape for v in node.outputs],
            )
        )
    return plans


def _axes_operand(graph: ir.Graph, before: ir.Node, target: int) -> ir.Value | None:
    """``axes=[0]`` as the input opset >= 13 wants (a Constant), else None (an attribute)."""
    if target < 13:
        return None
    constant = ir.node("Constant", [], attributes={"value": ir.tensor(np.array([0], np.int64))})
    graph.insert_before(before, constant)
    return constant.outputs[0]


def _unique_names(model: ir.Model) -> set[str]:
    names: set[str] = set()
    for graph in model.graphs():
        names.update(v.name for v in graph.inputs if v.name)
        names.update(graph.initializers)
        for node in graph:
            names.update(v.name for v in node.outputs if v.name)
    return names


def _fresh(base: str, taken: set[str]) -> str:
    name = f"{base}_batchless"
    while name in taken:
        name += "_"
    taken.add(name)
    return name


def finish(model: ir.Model, plans: list[ScanPlan], target: int) -> None:
    """Turn each converted Scan back into a batch-of-one computation (see the module doc)."""
    if not plans:
        return
    by_name = {p.node_name: p for p in plans}
    taken = _unique_names(model)
    for node in _scan8_nodes(model):
        plan = by_name.get(node.name or "")
        if plan is None:
            continue
        graph = node.graph
        assert isinstance(graph, ir.Graph)
        axes = _axes_operand(graph, node, target)
        attributes = {"axes": [0]} if axes is None else {}
        for index, (value, shape) in enumerate(zip(node.inputs, plan.input_shapes, strict=True)):
            if value is None:
                continue
            value.shape = shape
            inputs = [value] if axes is None else [value, axes]
            squeeze = ir.node("Squeeze", inputs, attributes=attributes)
            squeeze.outputs[0].type = value.type
            if shape is not None:
                squeeze.outputs[0].shape = ir.Shape(list(shape)[1:])
            graph.insert_before(node, squeeze)
            node.replace_input_with(index, squeeze.outputs[0])
        for value, shape in zip(node.outputs, plan.output_shapes, strict=True):
            uses = value.uses()
            if not uses and not value.is_graph_output():
                continue
            inputs = [value] if axes is None else [value, axes]
            unsqueeze = ir.node("Unsqueeze", inputs, attributes=attributes)
            restored = unsqueeze.outputs[0]
            restored.type = value.type
            restored.shape = shape
            for user, position in uses:
                user.replace_input_with(position, restored)
            for position, output in enumerate(graph.outputs):
                if output is value:
                    graph.outputs[position] = restored
            graph.insert_after(node, unsqueeze)
            name = value.name
            value.name = _fresh(name or "scan_out", taken)
            restored.name = name
            if shape is not None:
                value.shape = ir.Shape(list(shape)[1:])
        node.name = plan.restore_name
