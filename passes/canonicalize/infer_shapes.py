"""Annotate values with the types and shapes ONNX shape inference derives.

    y = Relu(x: float[1,3,224,224])          -> y: float[1,3,224,224]
    s = Shape(x); n = Gather(s, 0)           -> n: int64[] (data propagation: value known too)

Wraps onnx-ir's ``ShapeInferencePass`` (which serializes the model to a protobuf *without* the
weights above 1 KB, so it works on > 2 GB models) with ``data_prop`` on. Shape inference never
fails a pipeline: with ``strict=false`` (the default) ops it cannot infer (custom domains,
malformed nodes) are skipped; when the ONNX shape inference raises anyway the pass logs a
warning, records ``failed`` in its stats and leaves the model unchanged (``modified=False``).
Subgraphs (If/Loop/Scan bodies) are inferred by ONNX itself.
"""

from __future__ import annotations

import dataclasses
import logging

import onnx_ir as ir
from onnx_ir.passes.common import ShapeInferencePass

from irpass.pass_base import IrpassPass, all_graphs, option
from irpass.registry import register

__all__ = ["InferShapesPass"]

logger = logging.getLogger(__name__)


def _signature(model: ir.Model) -> list[tuple[object, object]]:
    return [
        (value.type, tuple(value.shape) if value.shape is not None else None)
        for graph in all_graphs(model)
        for node in graph
        for value in node.outputs
    ]


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
        inner = ShapeInferencePass(
            check_type=False, strict_mode=self.options.strict, data_prop=self.options.data_prop
        )
        try:
            inner(model)
        except Exception as exc:  # inference must never take the pipeline down
            logger.warning("shape inference failed, model left unchanged: %s", exc)
            self.stats["failed"] += 1
            return ir.passes.PassResult(model, modified=False)
        after = _signature(model)
        changed = sum(1 for a, b in zip(before, after, strict=False) if a != b)
        self.stats["values_annotated"] += changed
        return ir.passes.PassResult(model, modified=changed > 0)
