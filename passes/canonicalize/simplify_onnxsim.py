"""Run onnx-simplifier (``onnxsim.simplify``) as a pass, for comparison and as a fallback.

    model -> onnxsim.simplify(model)   (constant folding through ONNX Runtime, onnxoptimizer's
                                        fusions and eliminations, shape inference)

onnxsim works on a ``ModelProto``, so this pass serializes the whole model (weights included),
simplifies it and moves the result back into the caller's ``ir.Model`` object. It *fails* on
some graphs: models above the 2 GB protobuf limit (checked before trying), some control-flow
graphs, ops ONNX Runtime cannot run (custom domains). Then the pass logs a warning, records the
reason in ``self.stats`` (``failed_too_large``, ``failed_error``, ``failed_check``), leaves the
model unchanged and returns ``modified=False``; it never raises for a model onnxsim rejects.
Subgraphs are handled by onnxsim itself.

Graph inputs with a default value (an initializer of the same name, IR >= 4: "overridable")
stay inputs that keep their defaults: onnxsim folds such initializers as constants in some
rewrites even with ``mutable_initializer=True`` (a LayerNormalization over a size-1 axis
became its bias value), so it receives them as plain inputs and the defaults are put back on
the inputs it kept.
"""

from __future__ import annotations

import dataclasses
import logging

import onnx
import onnx_ir as ir

from irpass.ir import PROTOBUF_LIMIT, initializer_bytes
from irpass.pass_base import IrpassPass, option
from irpass.registry import register

from ._common import count_nodes

__all__ = ["SimplifyWithOnnxsimPass"]

logger = logging.getLogger(__name__)


@register
class SimplifyWithOnnxsimPass(IrpassPass):
    """Simplify with onnx-simplifier; on failure warn, record it and leave the model as is."""

    @dataclasses.dataclass(frozen=True)
    class Options:
        """Options of onnxsim."""

        check_n: int = option(0, "random-input checks onnxsim runs itself (0: none)")
        skip_fuse_bn: bool = option(False, "do not fuse BatchNormalization into Conv")

    name = "onnxsim"
    lossless = True
    recurses_into_subgraphs = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Round-trip through onnxsim when the model fits in a protobuf."""
        import onnxsim

        size = initializer_bytes(model)
        if size > PROTOBUF_LIMIT:
            logger.warning(
                "onnxsim skipped: %d bytes of weights exceed the 2 GB protobuf limit it needs",
                size,
            )
            self.stats["failed_too_large"] += 1
            return ir.passes.PassResult(model, modified=False)
        before = count_nodes(model)
        proto = ir.to_proto(model)
        defaults = _detach_defaults(proto) if model.ir_version >= 4 else []
        try:
            simplified, ok = onnxsim.simplify(
                proto,
                check_n=self.options.check_n,
                skip_fuse_bn=self.options.skip_fuse_bn,
            )
        except Exception as exc:  # onnxsim raises many types (RuntimeError, ValidationError...)
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            logger.warning("onnxsim failed, model unchanged: %s", reason)
            self.stats["failed_error"] += 1
            return ir.passes.PassResult(model, modified=False)
        if not ok:
            logger.warning("onnxsim's own check rejected its result, model unchanged")
            self.stats["failed_check"] += 1
            return ir.passes.PassResult(model, modified=False)
        _attach_defaults(simplified, defaults)
        result = ir.from_proto(simplified)
        model.graph = result.graph  # the opset imports live on the graph and come along
        model.functions.clear()
        model.functions.update(result.functions)
        model.ir_version = result.ir_version
        after = count_nodes(model)
        self.stats["nodes_removed"] += max(0, before - after)
        return ir.passes.PassResult(model, modified=True)


def _detach_defaults(proto: onnx.ModelProto) -> list[onnx.TensorProto]:
    """Remove the initializers of main-graph inputs (their defaults); return them."""
    inputs = {value.name for value in proto.graph.input}
    kept = [t for t in proto.graph.initializer if t.name not in inputs]
    defaults = [t for t in proto.graph.initializer if t.name in inputs]
    if defaults:
        del proto.graph.initializer[:]
        proto.graph.initializer.extend(kept)
    return defaults


def _attach_defaults(proto: onnx.ModelProto, defaults: list[onnx.TensorProto]) -> None:
    """Give the inputs onnxsim kept their default values back."""
    inputs = {value.name for value in proto.graph.input}
    proto.graph.initializer.extend(t for t in defaults if t.name in inputs)
