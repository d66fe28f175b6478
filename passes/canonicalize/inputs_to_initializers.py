"""Make graph inputs that carry an initializer pure initializers (constants).

Models written for IR version < 4 (the light model zoo, old Caffe2 exports) list every weight
as a graph input *and* an initializer: that format had no other way to store a weight, so the
"input" is an artifact, and while they stay inputs no constant folder may touch them. This pass
always turns those into initializers::

    graph (float[1,3,224,224] data, int64[4] w_shape) <int64[4] w_shape = {64,3,7,7}> {
        w = ConstantOfShape <value = float {0.02}> (w_shape)
        y = Conv (data, w)
    }
    ->
    graph (float[1,3,224,224] data) <int64[4] w_shape = {64,3,7,7}> {  # same body
    }

From IR version 4 on, an input with an initializer is a deliberate *overridable* default (a
temperature, a threshold, a bias the caller may replace): those stay graph inputs unless
``freeze_overridable=true`` (``irpass optimize --freeze-inputs``) says to freeze them, and the
verifier feeds them random values so no pass can freeze one silently. The model's IR version is
raised to 4 when needed (IR < 4 requires every initializer to be an input).

With ``lift_constants=true`` the pass also turns ``Constant`` nodes (every size, every
``value*`` attribute, in subgraphs too) into initializers; by default Constant nodes are left
alone. Subgraph inputs never carry initializers, so only the main graph's signature changes.
"""

from __future__ import annotations

import dataclasses
import logging

import onnx_ir as ir
from onnx_ir.passes.common import LiftConstantsToInitializersPass

from irpass.pass_base import IrpassPass, option
from irpass.registry import register

__all__ = ["ConvertInputsToInitializersPass"]

logger = logging.getLogger(__name__)

#: IR version 4 allows initializers that are not graph inputs.
_MIN_IR_VERSION = 4


@register
class ConvertInputsToInitializersPass(IrpassPass):
    """Turn graph inputs that have initializers (IR < 4 style) into pure initializers."""

    @dataclasses.dataclass(frozen=True)
    class Options:
        """Options of inputs_to_initializers."""

        lift_constants: bool = option(False, "also turn Constant nodes into initializers")
        freeze_overridable: bool = option(
            False, "also freeze overridable inputs of IR >= 4 models (inputs with defaults)"
        )

    name = "inputs_to_initializers"
    lossless = True
    recurses_into_subgraphs = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Drop initializer-backed inputs from the main graph's signature."""
        graph = model.graph
        if model.ir_version >= _MIN_IR_VERSION and not self.options.freeze_overridable:
            kept = list(graph.inputs)
            overridable = sum(1 for v in graph.inputs if v.name in graph.initializers)
            if overridable:
                logger.debug("kept %d overridable inputs (freeze_overridable=false)", overridable)
        else:
            kept = [v for v in graph.inputs if v.name not in graph.initializers]
        removed = len(graph.inputs) - len(kept)
        if removed:
            graph.inputs.clear()
            graph.inputs.extend(kept)
            self.stats["inputs_made_initializers"] += removed
            if model.ir_version < _MIN_IR_VERSION:
                model.ir_version = _MIN_IR_VERSION
                self.stats["ir_version_raised"] += 1
            logger.debug("made %d graph inputs pure initializers", removed)
        lifted = False
        if self.options.lift_constants:
            before = sum(len(g.initializers) for g in model.graphs())
            lifted = LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(
                model
            ).modified
            self.stats["constants_lifted"] += (
                sum(len(g.initializers) for g in model.graphs()) - before
            )
            if lifted:  # value_ints/value_floats Constants were not counted as weights before
                self.growth_reasons.append("Constant nodes became initializers")
        return ir.passes.PassResult(model, modified=bool(removed) or lifted)
