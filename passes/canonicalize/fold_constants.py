"""Evaluate constant subgraphs once and store their results as initializers.

    w = ConstantOfShape <value=float {0.02}> (int64[4] {64,3,7,7}); y = Conv(x, w)
    -> y = Conv(x, w)            with w: float[64,3,7,7] initializer (a weight)
    a = Unsqueeze(b: const, [1,2]); y = Mul(x, a)
    -> y = Mul(x, a)             with a: float[C,1,1] initializer (b goes: no growth)
    s = Shape(x: float[1,3,8,8]); n = Gather(s, 1)
    -> n = int64 {3}             (shape known statically)

Built on onnxscript's constant folder (``FoldConstantsPass``: evaluation with ONNX's reference
implementation, partial evaluation of Shape/Size/Reshape/Cast/If on known shapes, folding in
If/Loop/Scan bodies and in functions). What irpass adds is the decision *whether* a constant
subgraph is worth materializing, so that folding never makes the model larger without a reason
it states. The decision is taken per *cone*: a connected set of nodes computable from stored
constants (nodes sharing a stored input belong to one cone), with its results (the values other
nodes read) and the stored constants that die with it (read by nothing else). Its growth is the
bytes of its results minus the bytes that die (result sizes from annotations, else from ONNX's
per-node shape inference through the cone):

1. a cone that does not grow the weights by more than ``64`` bytes per node it removes is
   folded: weight transforms whose source dies with them (Transpose/Unsqueeze/Concat/Slice
   chains of stored weights, e.g. an exporter's LSTM gate reordering) and shape computations;
   the file shrinks since every removed node took more room than that;
2. a cone whose results feed a weight slot (Conv/ConvTranspose W and B, Gemm B and C, MatMul,
   the normalization parameters, PRelu slope, RNN weights, Gather's table, ...) but which is
   built from a handful of numbers only (at most 1 KiB stored: ``ConstantOfShape``, ``Range``,
   ``Expand`` of a scalar; the light model zoo stores every weight that way) is materialized
   when ``fold_weights`` is on (the default): fusion, pruning and quantization can only rewrite
   a stored weight. The growth is reported with its size, as the reason;
3. a cone whose results total at most ``max_output_bytes`` is folded even if it grows the model
   (an explicit opt-in; 0 by default);
4. any other cone stays (``kept_large``): e.g. a 100 MB ``Expand``/``Tile`` that only feeds an
   ``Add``, or a transposed copy of a weight that is also used as it is (tied embeddings).
   Storing such results buys nothing at run time either: ONNX Runtime and TensorRT fold
   constant subgraphs when they load a model.

Constant nodes, the model's own and those the folder writes for values it derives from static
shapes (``Shape``, ``Size`` of a known tensor), become initializers too, except a Constant that
is a graph output (an output stays produced by a node).

onnxscript writes the shapes it resolves as ``Constant <value_ints=...>``, an attribute form
that exists from opset 12 on; in older models the Constants left as nodes are rewritten to the
``value`` tensor form every opset accepts.

Never folded: ``QuantizeLinear``/``DequantizeLinear`` (they *are* the quantized weight format),
random ops, custom-domain ops (passed through untouched). Nodes whose inputs are graph inputs
are not folded either; run ``inputs_to_initializers`` first on IR < 4 models.

The pass removes what folding leaves behind and reports every change:

- stored constants only the folded nodes read are removed with them (folding replaces weights,
  it does not accumulate them), and so are the uses held by If branches the folder discarded
  (a branch that is not taken still named the weights it read, which kept them alive);
- values the folder only annotated (onnxscript's folder sets the shape and type of the Constant
  outputs it reads) count as a modification (``values_annotated``): a change reported as none
  would make a fixpoint run to its bound.

When one of onnxscript's per-op evaluators raises on a node (e.g. its ``SplitToSequence``
rewrite on a split size that is a graph input, ONNX backend case ``test_split_to_sequence_1``),
that node is left as it is and counted in ``evaluator_failed``; the rest of the model is
still folded. A ``CastLike`` with attributes is left alone (onnxscript's rewrite into ``Cast``
drops them). Nothing of the failed node has been changed at that point: evaluators build
their replacement aside and the folder only splices it in on success.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx_ir as ir
from onnx_ir.passes.common import LiftConstantsToInitializersPass

# onnxscript's folding pass, subclassed on purpose: the fold_constants_ir function aborts the
# whole folding when one op's evaluator raises; only a subclass of its pass can skip that node
# (_TolerantFolder). Reached through the public ``optimizer.constant_folding`` name, nothing is
# vendored: an onnxscript change that breaks this fails tests/passes/canonicalize.
from onnxscript.optimizer import constant_folding as _onnxscript_folding

from irpass.ir import default_opset
from irpass.pass_base import IrpassPass, option
from irpass.registry import register

from ._common import WEIGHT_SLOTS, count_nodes, is_onnx_domain
from ._cones import NEVER_FOLD, Cone, constant_cones, stored_bytes

__all__ = ["FoldConstantsPass", "weight_bound_values"]

logger = logging.getLogger(__name__)

#: A cone may grow the weights by this many bytes per node it removes (a node takes more).
_BYTES_PER_NODE = 64
#: A weight slot's cone built from at most this many stored bytes is a fill (rule 2).
_FILL_BYTES = 1024


def weight_bound_values(model: ir.Model) -> set[ir.Value]:
    """Values that reach a weight slot (see ``WEIGHT_SLOTS``) directly or through other nodes."""
    stack: list[ir.Value] = []
    for graph in model.graphs():
        for node in graph:
            if not is_onnx_domain(node.domain):
                continue
            slots = WEIGHT_SLOTS.get(node.op_type)
            if slots:
                stack.extend(v for i, v in enumerate(node.inputs) if i in slots and v is not None)
    bound: set[ir.Value] = set()
    while stack:
        value = stack.pop()
        if value in bound:
            continue
        bound.add(value)
        producer = value.producer()
        if producer is not None:
            stack.extend(v for v in producer.inputs if v is not None and v not in bound)
    return bound


def _count_constant_nodes(model: ir.Model) -> int:
    return sum(
        1
        for graph in model.graphs()
        for node in graph
        if node.op_type == "Constant" and is_onnx_domain(node.domain)
    )


_OnnxscriptFolder = _onnxscript_folding.FoldConstantsPass


class _TolerantFolder(_OnnxscriptFolder):
    """onnxscript's folder, skipping a node whose evaluator raises instead of aborting."""

    def __init__(self, on_failure: Callable[[ir.Node, Exception], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_failure = on_failure

    def process_node(self, node: ir.Node, is_function: bool) -> Any:
        if node.op_type == "CastLike" and node.attributes and is_onnx_domain(node.domain):
            # onnxscript rewrites CastLike into a Cast without its saturate / round_mode
            # (ONNX backend cases test_castlike_no_saturate_*: out-of-range values saturated)
            return None
        try:
            return super().process_node(node, is_function)
        except Exception as exc:  # an evaluator bug must cost one fold, not the whole pass
            self._on_failure(node, exc)
            return None


def _fold_constant_of_shape(model: ir.Model, should_fold: Callable[[ir.Node], bool]) -> int:
    """Fold ConstantOfShape with a constant shape straight into ``np.full`` initializers.

    Same result as the generic folder, but without a reference-evaluator round trip per node
    (which costs about 3 ms each: the light zoo has hundreds of them).
    """
    folded = 0
    for graph in list(model.graphs()):
        for node in list(graph):
            if node.op_type != "ConstantOfShape" or not is_onnx_domain(node.domain):
                continue
            shape_value = node.inputs[0]
            if shape_value is None or shape_value.const_value is None:
                continue
            if shape_value.is_graph_input() or not should_fold(node):
                continue
            attr = node.attributes.get("value")
            fill = attr.as_tensor().numpy().reshape(-1) if attr is not None else None
            dtype = fill.dtype if fill is not None else np.float32
            dims = [int(d) for d in shape_value.const_value.numpy().reshape(-1)]
            array = np.full(dims, fill[0] if fill is not None else 0, dtype=dtype)
            output = node.outputs[0]
            name = output.name
            tensor = ir.Tensor(array, name=name)
            value = ir.Value(
                name=None,
                type=ir.TensorType(tensor.dtype),
                shape=ir.Shape(dims),
                const_value=tensor,
            )
            output.replace_all_uses_with(value, replace_graph_outputs=True)
            graph.remove(node, safe=True)
            value.name = name
            graph.register_initializer(value)
            folded += 1
    return folded


def _annotations(model: ir.Model) -> dict[ir.Value, tuple[Any, Any]]:
    """Shape and type of every value, by value (what the folder may annotate)."""
    found: dict[ir.Value, tuple[Any, Any]] = {}
    for graph in model.graphs():
        for value in [*graph.inputs, *graph.initializers.values()]:
            found[value] = (None if value.shape is None else value.shape.dims, value.type)
        for node in graph:
            for value in node.outputs:
                found[value] = (None if value.shape is None else value.shape.dims, value.type)
    return found


def _detach_dead_users(model: ir.Model) -> None:
    """Drop the uses that nodes no longer in the model (discarded If branches) still hold."""
    graphs = list(model.graphs())
    live = {node for graph in graphs for node in graph}
    for graph in graphs:
        values = list(graph.inputs) + list(graph.initializers.values())
        values += [v for node in graph for v in node.outputs]
        for value in values:
            for user, index in list(value.uses()):
                if user not in live:
                    user.replace_input_with(index, None)


def _remove_orphans(model: ir.Model, used_before: set[ir.Value]) -> int:
    """Remove stored constants the folding left unread; returns how many went."""
    freed = 0
    for graph in model.graphs():
        for name, value in list(graph.initializers.items()):
            if value in used_before and not value.uses() and not value.is_graph_output():
                if not value.is_graph_input():
                    freed += 1
                    del graph.initializers[name]
        for node in list(graph):
            if node.op_type != "Constant" or not is_onnx_domain(node.domain):
                continue
            out = node.outputs[0] if node.outputs else None
            if out is not None and out in used_before and not out.uses():
                if not out.is_graph_output():
                    freed += 1
                    graph.remove(node, safe=True)
    return freed


def _stored_weight_bytes(model: ir.Model) -> int:
    """Bytes of every initializer and Constant node (what the cost report counts as weights)."""
    total = 0
    for graph in model.graphs():
        total += sum(stored_bytes(v) or 0 for v in graph.initializers.values())
        for node in graph:
            if node.op_type == "Constant" and is_onnx_domain(node.domain) and node.outputs:
                total += stored_bytes(node.outputs[0]) or 0
    return total


def _remove_unread_new(model: ir.Model, existing: set[ir.Value]) -> int:
    """Remove initializers this pass created that nothing reads (folded chains' middles)."""
    removed = 0
    for graph in model.graphs():
        for name, value in list(graph.initializers.items()):
            if value in existing or value.uses() or value.is_graph_output():
                continue
            if not value.is_graph_input():
                removed += 1
                del graph.initializers[name]
    return removed


def _stored(model: ir.Model) -> set[ir.Value]:
    """Stored constants some node reads."""
    found: set[ir.Value] = set()
    for graph in model.graphs():
        found.update(v for v in graph.initializers.values() if v.uses())
        for node in graph:
            if node.op_type == "Constant" and node.outputs and node.outputs[0].uses():
                found.add(node.outputs[0])
    return found


#: Constant attributes other than ``value`` (opset 12+), with the numpy dtype they hold.
_CONSTANT_FORMS = {
    "value_int": np.int64,
    "value_ints": np.int64,
    "value_float": np.float32,
    "value_floats": np.float32,
}


def _constants_as_tensors(model: ir.Model) -> None:
    """Rewrite ``Constant <value_ints=...>`` (and the other forms) to ``value=`` tensors."""
    for graph in model.graphs():
        for node in graph:
            if node.op_type != "Constant" or not is_onnx_domain(node.domain):
                continue
            for name, dtype in _CONSTANT_FORMS.items():
                attr = node.attributes.get(name)
                if attr is None:
                    continue
                array = np.array(attr.value, dtype=dtype)
                del node.attributes[name]
                tensor = ir.Tensor(array, name=node.outputs[0].name)
                node.attributes["value"] = ir.AttrTensor("value", tensor)


@register
class FoldConstantsPass(IrpassPass):
    """Fold constant subgraphs into initializers when that does not grow the model."""

    @dataclasses.dataclass(frozen=True)
    class Options:
        """Options of fold_constants."""

        max_output_bytes: int = option(
            0,
            "also fold a constant subgraph that grows the weights if its results are at most "
            "this many bytes",
        )
        fold_weights: bool = option(
            True, "materialize weights the file builds from a fill (ConstantOfShape, Range, ...)"
        )
        shape_inference: bool = option(False, "run ONNX shape inference on each folded node")

        def __post_init__(self) -> None:
            if self.max_output_bytes < 0:
                raise ValueError("max_output_bytes must be >= 0")

    name = "fold_constants"
    lossless = True
    recurses_into_subgraphs = True

    def _decide(self, cone: Cone) -> str | None:
        """Why a cone is folded (``fits``, ``weight_fill``, ``allowed``), None to keep it."""
        growth = cone.growth
        if growth is not None and growth <= _BYTES_PER_NODE * len(cone.nodes):
            return "fits"
        if cone.weight and self.options.fold_weights and cone.source_bytes <= _FILL_BYTES:
            return "weight_fill"
        if cone.result_bytes is not None and cone.result_bytes <= self.options.max_output_bytes:
            return "allowed"
        return None

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Fold what the growth policy allows; report what was kept, grown and why."""
        _detach_dead_users(model)
        cones = constant_cones(model, weight_bound_values(model))
        decisions: dict[int, str | None] = {}
        for cone in cones.values():
            if id(cone) not in decisions:
                decisions[id(cone)] = self._decide(cone)
        annotations = _annotations(model)
        used_before = _stored(model)
        existing = {v for graph in model.graphs() for v in graph.initializers.values()}
        bytes_before = _stored_weight_bytes(model)
        nodes_before = count_nodes(model)
        folded_cones: dict[int, Cone] = {}

        def should_fold(node: ir.Node) -> bool:
            if not is_onnx_domain(node.domain) or node.op_type in NEVER_FOLD:
                return False
            cone = cones.get(node)
            if cone is None:  # computable only once the folder resolved shapes: a tiny result
                return True
            why = decisions[id(cone)]
            if why is None:
                logger.debug(
                    "not folding %s (%s): its cone of %d nodes would store %s bytes and free %d",
                    node.name,
                    node.op_type,
                    len(cone.nodes),
                    cone.result_bytes,
                    cone.dying_bytes,
                )
                return False
            folded_cones[id(cone)] = cone
            return True

        direct = _fold_constant_of_shape(model, should_fold)

        def evaluator_failed(node: ir.Node, exc: Exception) -> None:
            cause = exc.__cause__ or exc
            logger.debug(
                "not folding %s (%s): %s: %s", node.name, node.op_type, type(cause).__name__, cause
            )
            self.stats["evaluator_failed"] += 1

        folder = _TolerantFolder(
            evaluator_failed,
            shape_inference=self.options.shape_inference,
            input_size_limit=sys.maxsize,
            output_size_limit=sys.maxsize,
            should_fold=should_fold,
        )
        result = folder(model)
        _detach_dead_users(model)
        orphans = _remove_orphans(model, used_before)
        kept = {id(c) for c in cones.values() if decisions[id(c)] is None}
        # The folder writes values it derives from shapes as Constant nodes; canonical form
        # holds constants as initializers (a Constant that is a graph output stays a node).
        constants = _count_constant_nodes(model)
        lifted = LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(model)
        if lifted.modified:
            self.stats["constants_lifted"] += constants - _count_constant_nodes(model)
        _remove_unread_new(model, existing)
        opset = default_opset(model)
        if result.modified and opset is not None and opset < 12:
            _constants_as_tensors(model)
        if kept:
            self.stats["kept_large"] += len(kept)
        removed = nodes_before - count_nodes(model)
        if removed > 0:
            self.stats["nodes_removed"] += removed
        for cone in folded_cones.values():
            why = decisions[id(cone)]
            if cone.weight:
                self.stats["weights_folded"] += 1
            if why == "weight_fill":
                self.stats["weights_materialized"] += 1
        annotated = sum(
            1
            for value, before in _annotations(model).items()
            if value in annotations and annotations[value] != before
        )
        if annotated:
            self.stats["values_annotated"] += annotated
        explained = self._explain_growth(folded_cones.values(), decisions)
        self._explain_rest(_stored_weight_bytes(model) - bytes_before, explained)
        modified = (
            bool(result.modified) or direct > 0 or orphans > 0 or lifted.modified or annotated > 0
        )
        return ir.passes.PassResult(model, modified=modified)

    def _explain_rest(self, grown: int, explained: int) -> None:
        """Name the growth the cones do not account for: values derived from static shapes."""
        if grown > explained:
            self.growth_reasons.append(
                f"stored values the folder derived from static shapes (Shape/Size/Range of known "
                f"dims, the folded nodes' inputs go with eliminate_dead), +{grown - explained} "
                "bytes"
            )

    def _explain_growth(self, cones: Any, decisions: dict[int, str | None]) -> int:
        """Say how much each kind of fold grew the weights, when it did; returns the bytes."""
        grown: dict[str, list[int]] = {}
        for cone in cones:
            growth = cone.growth if cone.growth is not None else cone.result_bytes or 0
            if growth > 0:
                entry = grown.setdefault(decisions[id(cone)] or "", [0, 0])
                entry[0] += 1
                entry[1] += growth
        texts = {
            "weight_fill": "materialized {n} weights the file builds from a fill "
            "(ConstantOfShape/Range/Expand of a scalar), +{b} bytes: fusion, pruning and "
            "quantization rewrite stored weights only",
            "fits": "folded {n} constant subgraphs into results of +{b} bytes in total, "
            "smaller than the nodes they replace",
            "allowed": "folded {n} constant subgraphs of +{b} bytes as max_output_bytes allows",
        }
        explained = 0
        for why, (count, size) in sorted(grown.items()):
            if why in texts:
                self.growth_reasons.append(texts[why].format(n=count, b=size))
                explained += size
        return explained
