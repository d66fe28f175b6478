"""Make graph inputs that carry an initializer pure initializers (constants).

Models written for IR version < 4 (the light model zoo, old Caffe2 exports) list every weight
as a graph input *and* an initializer, meaning "a default value the caller may override". No
edge runtime overrides weights, and while they stay inputs no constant folder may touch them::

    graph (float[1,3,224,224] data, int64[4] w_shape) <int64[4] w_shape = {64,3,7,7}> {
        w = ConstantOfShape <value = float {0.02}> (w_shape)
        y = Conv (data, w)
    }
    ->
    graph (float[1,3,224,224] data) <int64[4] w_shape = {64,3,7,7}> {  # same body
    }

The model's IR version is raised to 4 when needed (IR < 4 requires every initializer to be an
input). With ``lift_constants=true`` the pass also turns ``Constant`` nodes (every size, every
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

    name = "inputs_to_initializers"
    lossless = True
    recurses_into_subgraphs = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Drop initializer-backed inputs from the main graph's signature."""
        graph = model.graph
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
        return ir.passes.PassResult(model, modified=bool(removed) or lifted)
