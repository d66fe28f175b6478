"""Annotate values with the types and shapes ONNX shape inference derives.

    y = Relu(x: float[1,3,224,224])          -> y: float[1,3,224,224]
    s = Shape(x); n = Gather(s, 0)           -> n: int64[] (data propagation: value known too)

Runs ``onnx.shape_inference.infer_shapes`` with ``data_prop`` on a protobuf made *without*
the weights above 1 KB (``irpass.analysis.shapes.infer_shapes_proto``, over onnx-ir's
``call_onnx_api``), so it works on > 2 GB models. Unlike onnx-ir's ``ShapeInferencePass``,
which deserializes the whole inferred model again (most of its run time on DenseNet), only the
inferred value infos are read back and applied to the values, node by node. Shape inference
never fails a pipeline: with ``strict=false`` (the default) ops it cannot infer (custom
domains, malformed nodes) are skipped; when the ONNX shape inference raises anyway the pass
logs a warning, records ``failed`` in its stats and leaves the model unchanged
(``modified=False``).
Subgraphs (If/Loop/Scan bodies) are inferred by ONNX itself.

Declared graph output types are hints, not facts: exporters get them wrong (an OCR model
declares ``float[1, seqlen]`` for a ``float[seqlen, 1, 8210]`` result). Inference runs with the
main graph's output shapes cleared; a declaration compatible with what the computation gives
(same rank, equal static dims) is kept, a contradicting one is replaced by the inferred shape,
logged as a warning and counted as ``output_declarations_corrected``, so that shape-dependent
passes (``resolve_reshape_shapes``) never act on it.
"""

from __future__ import annotations

import dataclasses
import logging

import onnx
import onnx_ir as ir
from onnx_ir.passes.common import ShapeInferencePass

from irpass.analysis.shapes import infer_shapes_proto
from irpass.pass_base import IrpassPass, option
from irpass.registry import register

__all__ = ["InferShapesPass"]

logger = logging.getLogger(__name__)


def _signature(model: ir.Model) -> list[tuple[object, object]]:
    return [
        (value.type, tuple(value.shape) if value.shape is not None else None)
        for graph in model.graphs()
        for node in graph
        for value in node.outputs
    ]


def _merge_graph(graph: ir.Graph, proto: onnx.GraphProto) -> bool:
    """Copy inferred types/shapes from ``proto`` onto ``graph``'s values; False on mismatch.

    Nodes are paired by position (serialization keeps the order), so only value infos are
    deserialized, never the nodes or weights again.
    """
    if len(graph) != len(proto.node):
        return False
    infos = {info.name: info for info in proto.value_info}
    infos.update({info.name: info for info in proto.output})
    for node, node_proto in zip(graph, proto.node, strict=True):
        for value in node.outputs:
            info = infos.get(value.name or "")
            if info is None or not info.type.WhichOneof("value"):
                continue
            inferred_type = ir.serde.deserialize_type_proto_for_type(info.type)
            inferred_shape = ir.serde.deserialize_type_proto_for_shape(info.type)
            if inferred_type is not None and value.type != inferred_type:
                value.type = inferred_type
            if inferred_shape is not None and value.shape != inferred_shape:
                value.shape = inferred_shape
        for attr_proto in node_proto.attribute:
            attr = node.attributes.get(attr_proto.name)
            if attr is None or attr.is_ref():
                continue
            if attr_proto.type == onnx.AttributeProto.GRAPH:
                if not _merge_graph(attr.as_graph(), attr_proto.g):
                    return False
            elif attr_proto.type == onnx.AttributeProto.GRAPHS:
                for sub, sub_proto in zip(attr.as_graphs(), attr_proto.graphs, strict=True):
                    if not _merge_graph(sub, sub_proto):
                        return False
    return True


def _compatible(declared: ir.Shape, inferred: ir.Shape) -> bool:
    """Same rank, and static dims agree wherever both are static."""
    if len(declared) != len(inferred):
        return False
    return all(
        not (isinstance(a, int) and isinstance(b, int)) or a == b
        for a, b in zip(declared, inferred, strict=True)
    )


@register
class InferShapesPass(IrpassPass):
    """Run ONNX shape inference (with data propagation); never fails on inference errors."""

    @dataclasses.dataclass(frozen=True)
    class Options:
        """Options of infer_shapes."""

        strict: bool = option(False, "stop at the first op inference cannot handle")
        data_prop: bool = option(True, "propagate constant shape values (Shape->Gather->...)")

    name = "infer_shapes"
    lossless = True
    recurses_into_subgraphs = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Infer shapes; on failure log and leave the model as it is."""
        before = _signature(model)
        declared = [(value, value.shape) for value in model.graph.outputs]
        for value, _ in declared:
            value.shape = None  # infer what the computation gives, not what was declared
        try:
            inferred = infer_shapes_proto(
                model, strict=self.options.strict, data_prop=self.options.data_prop
            )
        except Exception as exc:  # inference must never take the pipeline down
            for value, shape in declared:
                value.shape = shape
            logger.warning("shape inference failed, model left unchanged: %s", exc)
            self.stats["failed"] += 1
            return ir.passes.PassResult(model, modified=False)
        if not _merge_graph(model.graph, inferred.graph):
            # Should not happen (inference adds no nodes); fall back to onnx-ir's full merge.
            logger.debug("inferred graph does not pair up with the model; full merge")
            ShapeInferencePass(
                check_type=False, strict_mode=self.options.strict, data_prop=self.options.data_prop
            )(model)
        for value, shape in declared:
            if shape is None or value.shape is None or _compatible(shape, value.shape):
                value.shape = shape if shape is not None else value.shape
                continue
            logger.warning(
                "graph output %r is declared %s but the graph computes %s; declaration corrected",
                value.name,
                list(shape),
                list(value.shape),
            )
            self.stats["output_declarations_corrected"] += 1
        after = _signature(model)
        changed = sum(1 for a, b in zip(before, after, strict=False) if a != b)
        self.stats["values_annotated"] += changed
        return ir.passes.PassResult(model, modified=changed > 0)
