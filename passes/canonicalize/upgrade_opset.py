"""Upgrade the default-domain opset (7..target-1) to ``target`` (default 17).

Per-channel QDQ, ``axes`` as inputs and most modern fusions need opset >= 13; legacy exports
(the light model zoo is opset 9) get there through ONNX's version converter::

    opset 9:  y = Dropout <ratio=0.5> (x)           opset 17:  y = Dropout (x, ratio)
              u = Unsqueeze <axes=[1,2]> (b)                   u = Unsqueeze (b, axes)
              z = BatchNormalization <spatial=1> ...           z = BatchNormalization ...
              r = Upsample <mode> (x, scales)                  r = Resize (x, roi, scales)

The converter (``onnx.version_converter``, C++) only takes a ``ModelProto``. We use onnxscript's
``ConvertVersionPass(fallback=True)``: it serializes the model *without* the initializers larger
than 1 KB (they become typed graph inputs for the converter's benefit), converts, and re-attaches
the original weight tensors by name, so weights are never copied into a protobuf and > 2 GB
models convert too. Model-local functions are inlined first (the converter needs that). The
IR version is raised to what the target opset requires.

Softmax, LogSoftmax and Hardmax changed meaning at opset 13 (from "coerce to 2-D at ``axis``"
to "along ``axis``"); the converter preserves the old meaning with a wrapper, which this pass
removes again where both meanings coincide (every dimension after ``axis`` is statically 1, or
``axis`` is the last one)::

    s = Shape(x); f = Flatten<axis=k>(x); y = Reshape(Softmax<axis=-1>(f), s)
    -> y = Softmax<axis=k>(x)

Left alone: models already at or above ``target`` (never downgraded), custom-domain opsets.
When the converter fails (an op without an adapter, a broken graph) the pass logs a warning,
records ``failed`` in its stats and leaves the model unchanged. Subgraphs are converted by the
converter together with their parent.
"""

from __future__ import annotations

import dataclasses
import logging

import onnx
import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass
from onnxscript.version_converter import ConvertVersionPass

from irpass.ir import default_opset
from irpass.pass_base import IrpassPass, all_graphs, option
from irpass.registry import register

from ._common import is_onnx_domain
from .infer_shapes import InferShapesPass

__all__ = ["UpgradeOpsetPass"]

logger = logging.getLogger(__name__)


def _min_ir_version(opset: int) -> int:
    return int(onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", opset)]))


@register
class UpgradeOpsetPass(IrpassPass):
    """Convert the default ONNX opset up to ``target`` with ONNX's version converter."""

    @dataclasses.dataclass(frozen=True)
    class Options:
        """Options of upgrade_opset."""

        target: int = option(17, "default-domain opset to upgrade to (never downgrades)")

        def __post_init__(self) -> None:
            newest = onnx.defs.onnx_opset_version()
            if not 7 <= self.target <= newest:
                raise ValueError(f"target must be between 7 and {newest}, got {self.target}")

    name = "upgrade_opset"
    lossless = True
    recurses_into_subgraphs = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Upgrade the opset when it is below the target; otherwise do nothing."""
        current = default_opset(model)
        target = self.options.target
        if current is None or current >= target:
            logger.debug("opset %s needs no upgrade to %d", current, target)
            return ir.passes.PassResult(model, modified=False)
        snapshot_graph = model.graph
        snapshot_opsets = dict(model.opset_imports)
        converter_logger = logging.getLogger("onnxscript.version_converter")
        failures = _CountWarnings()
        converter_logger.addFilter(failures)
        try:
            ConvertVersionPass(target_version=target, fallback=True)(model)
        except Exception as exc:  # the C++ converter reports unsupported graphs by raising
            logger.warning(
                "opset upgrade %s -> %d failed, model unchanged: %s", current, target, exc
            )
            self._restore(model, snapshot_graph, snapshot_opsets)
            self.stats["failed"] += 1
            return ir.passes.PassResult(model, modified=False)
        finally:
            converter_logger.removeFilter(failures)
        if default_opset(model) != target:
            logger.warning(
                "opset upgrade %s -> %d failed (%s), model unchanged",
                current,
                target,
                failures.last or "the converter gave no reason",
            )
            self._restore(model, snapshot_graph, snapshot_opsets)
            self.stats["failed"] += 1
            return ir.passes.PassResult(model, modified=False)
        model.ir_version = max(model.ir_version, _min_ir_version(target))
        self.stats[f"opset_{current}_to_{target}"] += 1
        if current < 13 <= target:
            unwrapped = _unwrap_legacy_softmax(model)
            if unwrapped:
                self.stats["softmax_wrappers_removed"] += unwrapped
        return ir.passes.PassResult(model, modified=True)

    @staticmethod
    def _restore(model: ir.Model, graph: ir.Graph, opsets: dict[str, int]) -> None:
        model.graph = graph
        model.opset_imports.clear()
        model.opset_imports.update(opsets)


_SOFTMAX_OPS = frozenset({"Softmax", "LogSoftmax", "Hardmax"})


def _legacy_softmax_match(node: ir.Node) -> tuple[ir.Node, ir.Node, int] | None:
    """Match Reshape(Softmax(Flatten(x, k), -1), Shape(x)); return (flatten, reshape, k)."""
    if node.op_type not in _SOFTMAX_OPS or not is_onnx_domain(node.domain):
        return None
    flatten = node.inputs[0].producer() if node.inputs[0] is not None else None
    if flatten is None or flatten.op_type != "Flatten" or len(node.outputs[0].uses()) != 1:
        return None
    if node.attributes.get_int("axis", -1) not in (-1, 1):
        return None
    reshape, _ = next(iter(node.outputs[0].uses()))
    if reshape.op_type != "Reshape" or reshape.inputs[1] is None:
        return None
    shape_node = reshape.inputs[1].producer()
    x = flatten.inputs[0]
    if shape_node is None or shape_node.op_type != "Shape" or shape_node.inputs[0] is not x:
        return None
    if shape_node.attributes.get("start") is not None or shape_node.attributes.get("end"):
        return None
    if x is None or x.shape is None:
        return None
    rank = len(x.shape)
    k = flatten.attributes.get_int("axis", 1)
    k = k + rank if k < 0 else k
    if not 0 <= k < rank:
        return None
    if k != rank - 1 and any(d != 1 for d in list(x.shape)[k + 1 :]):
        return None
    return flatten, reshape, k


def _unwrap_legacy_softmax(model: ir.Model) -> int:
    """Replace the converter's Flatten/Softmax/Reshape wrappers by one Softmax where exact."""
    candidates = [
        node
        for graph in all_graphs(model)
        for node in graph
        if node.op_type in _SOFTMAX_OPS and is_onnx_domain(node.domain)
    ]
    if not candidates:
        return 0
    InferShapesPass()(model)
    count = 0
    for node in candidates:
        match = _legacy_softmax_match(node)
        if match is None:
            continue
        flatten, reshape, axis = match
        graph = node.graph
        assert graph is not None
        x = flatten.inputs[0]
        replacement = ir.node(node.op_type, inputs=[x], attributes={"axis": axis}, name=node.name)
        out = replacement.outputs[0]
        old = reshape.outputs[0]
        out.type = old.type
        out.shape = x.shape  # type: ignore[union-attr]
        graph.insert_before(reshape, replacement)
        name = old.name
        old.replace_all_uses_with(out, replace_graph_outputs=True)
        graph.remove([reshape, node], safe=True)
        out.name = name
        count += 1
    if count:
        RemoveUnusedNodesPass()(model)
    return count


class _CountWarnings(logging.Filter):
    """Remember the converter's last warning (its reason for not converting).

    Its warnings are swallowed: the notice that onnxscript falls back to the C++ converter is
    the expected path for every opset below 18, and a failure is reported once by the pass
    with the reason kept here.
    """

    def __init__(self) -> None:
        super().__init__()
        self.last: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        message = record.getMessage()
        if "fallback is enabled" in message:
            return False
        if record.exc_info and record.exc_info[1] is not None:
            # One line with the converter's reason instead of a traceback; we log it ourselves.
            reason = str(record.exc_info[1]).strip().splitlines()
            message = f"{message}: {reason[-1] if reason else ''}"
        self.last = message
        return False
