"""Give Resize an explicit whole-image ``roi`` instead of an omitted input.

::

    y = Resize(x, "", scales)   ->   y = Resize(x, roi, scales)
                                     roi = [0, ..., 0, 1, ..., 1]   (rank zeros, rank ones)

``roi`` only matters for ``tf_crop_and_resize``, where ``[0..0, 1..1]`` is the whole input, the
same as no crop; every other coordinate mode ignores it. So every runtime computes the same.
ONNX Runtime's mobile usability checker, though, counts an omitted input (and an empty tensor,
whose dim is 0) as a value of unknown shape and splits the NNAPI/Core ML partition at every
such Resize (a U-Net decoder becomes three partitions); with the constant it judges the node by
its op, as the execution providers do. Left alone: Resize before opset 11 (no roi input), an
input of unknown rank, nodes whose roi is given, and Resize by ``sizes`` with an omitted
``scales`` (an empty ``scales`` is the only form ONNX allows there).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from irpass.ir import default_opset
from irpass.pass_base import IrpassPass
from irpass.passes.fusion._rules import rank_of, unique_name
from irpass.registry import register

__all__ = ["ExplicitResizeInputsPass"]


def _whole_image(graph: ir.Graph, rank: int, cache: dict[int, ir.Value]) -> ir.Value:
    if rank not in cache:
        array = np.array([0.0] * rank + [1.0] * rank, np.float32)
        name = unique_name(graph, f"resize_roi_{rank}d")
        value = ir.Value(name=name, const_value=ir.tensor(array))
        value.shape = ir.Shape([2 * rank])
        value.dtype = ir.DataType.FLOAT
        graph.register_initializer(value)
        cache[rank] = value
    return cache[rank]


@register
class ExplicitResizeInputsPass(IrpassPass):
    """Replace an omitted Resize roi by the whole-image roi (same result in every mode)."""

    name = "explicit_resize_inputs"
    lossless = True
    recurses_into_subgraphs = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Fill omitted roi inputs of Resize nodes resized by ``scales``."""
        if (default_opset(model) or 0) < 11:
            return ir.passes.PassResult(model, modified=False)
        for graph in model.graphs():
            cache: dict[int, ir.Value] = {}
            for node in graph:
                if node.op_type != "Resize" or node.domain not in ("", "ai.onnx"):
                    continue
                inputs = list(node.inputs)
                if len(inputs) < 3 or inputs[1] is not None or inputs[2] is None:
                    continue
                rank = rank_of(inputs[0])
                if rank is None:
                    continue
                node.replace_input_with(1, _whole_image(graph, rank, cache))
                self.stats["roi"] += 1
        return ir.passes.PassResult(model, modified=bool(self.stats))
