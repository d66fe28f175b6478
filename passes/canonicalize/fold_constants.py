"""Evaluate constant subgraphs once and store their results as initializers.

    w = ConstantOfShape <value=float {0.02}> (int64[4] {64,3,7,7}); y = Conv(x, w)
    -> y = Conv(x, w)            with w: float[64,3,7,7] initializer (a weight)
    a = Unsqueeze(b: const, [1,2]); y = Mul(x, a)
    -> y = Mul(x, a)             with a: float[C,1,1] initializer
    s = Shape(x: float[1,3,8,8]); n = Gather(s, 1)
    -> n = int64 {3}             (shape known statically)

Built on onnxscript's constant folder (``FoldConstantsPass``: evaluation with ONNX's reference
implementation, partial evaluation of Shape/Size/Reshape/Cast/If on known shapes, folding in
If/Loop/Scan bodies and in functions). What irpass adds is the decision *whether* a constant
node is worth materializing, taken per node by its consumers and sizes:

1. its output feeds a weight slot (Conv/ConvTranspose W and B, Gemm B and C, MatMul, the
   BatchNormalization / LayerNormalization parameters, PRelu slope, RNN weights, Gather's
   table, ...), directly or through other constant nodes: always folded, however large, so that
   later passes (fusion, pruning, quantization) see an initializer they can rewrite;
2. otherwise its output is at most ``max_output_bytes``: folded;
3. otherwise the output is no larger than the constant inputs it frees (inputs used only by
   this node): folded, the model does not grow;
4. otherwise (e.g. a 100 MB ``Expand``/``Tile``/``ConstantOfShape`` that only feeds an ``Add``)
   the node stays: storing its result would inflate the file and buy nothing at run time.

Constant nodes, the model's own and those the folder writes for values it derives from static
shapes (``Shape``, ``Size`` of a known tensor), become initializers too, except a Constant that
is a graph output (an output stays produced by a node).

onnxscript writes the shapes it resolves as ``Constant <value_ints=...>``, an attribute form
that exists from opset 12 on; in older models the Constants left as nodes are rewritten to the
``value`` tensor form every opset accepts.

Never folded: ``QuantizeLinear``/``DequantizeLinear`` (they *are* the quantized weight format),
random ops, custom-domain ops (passed through untouched). Nodes whose inputs are graph inputs
are not folded either; run ``inputs_to_initializers`` first on IR < 4 models.

When one of onnxscript's per-op evaluators raises on a node (e.g. its ``SplitToSequence``
rewrite on a split size that is a graph input, ONNX backend case ``test_split_to_sequence_1``),
that node is left as it is and counted in ``evaluator_failed``; the rest of the model is
still folded. Nothing of the failed node has been changed at that point: evaluators build
their replacement aside and the folder only splices it in on success.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx_ir as ir
from onnx_ir.passes.common import LiftConstantsToInitializersPass

# Private to onnxscript, used on purpose: the public fold_constants_ir aborts the whole folding
# when one op's evaluator raises; only a subclass of its pass can skip that node (_TolerantFolder).
# Nothing is vendored: an onnxscript change that breaks this fails tests/passes/canonicalize.
from onnxscript.optimizer._constant_folding import FoldConstantsPass as _OnnxscriptFolder

from irpass.ir import default_opset
from irpass.pass_base import IrpassPass, option
from irpass.registry import register

from ._common import WEIGHT_SLOTS, count_nodes, is_onnx_domain

__all__ = ["FoldConstantsPass", "weight_bound_values"]

logger = logging.getLogger(__name__)

#: Ops whose constant inputs are a deliberate representation, not something to evaluate away.
_NEVER_FOLD = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})


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


def _const_array(value: ir.Value | None) -> np.ndarray | None:
    if value is None or value.const_value is None:
        return None
    return value.const_value.numpy()


def _numel(shape: Sequence[int]) -> int:
    return int(math.prod(int(d) for d in shape))


def _const_shape(value: ir.Value) -> tuple[int, ...]:
    """The (always static) shape of a constant value's tensor."""
    assert value.const_value is not None
    return tuple(int(d) for d in value.const_value.shape.numpy())


def _estimate_output_elements(node: ir.Node) -> int | None:
    """Number of elements of the node's first output, from its constant inputs and shape."""
    op = node.op_type
    shapes = [_const_shape(v) for v in node.inputs if v is not None and v.const_value is not None]
    try:
        if op == "ConstantOfShape":
            dims = _const_array(node.inputs[0])
            return _numel(dims.tolist()) if dims is not None else None
        if op == "Expand":
            target = _const_array(node.inputs[1])
            if target is None or node.inputs[0] is None or node.inputs[0].const_value is None:
                return None
            data_shape = _const_shape(node.inputs[0])
            return _numel(np.broadcast_shapes(data_shape, tuple(int(d) for d in target)))
        if op == "Tile":
            repeats = _const_array(node.inputs[1])
            if repeats is None or node.inputs[0] is None or node.inputs[0].const_value is None:
                return None
            data_shape = _const_shape(node.inputs[0])
            return _numel([d * int(r) for d, r in zip(data_shape, repeats.tolist(), strict=True)])
        if op == "Range":
            start, limit, delta = (_const_array(v) for v in node.inputs[:3])
            if start is None or limit is None or delta is None or float(delta) == 0:
                return None
            return max(0, math.ceil((float(limit) - float(start)) / float(delta)))
    except (ValueError, TypeError, IndexError):
        return None
    out = node.outputs[0]
    if out.shape is not None and out.shape.is_static():
        return _numel(out.shape.numpy())
    if shapes:
        try:
            return _numel(np.broadcast_shapes(*shapes))
        except ValueError:
            return max(_numel(s) for s in shapes)
    return None


def _itemsize(node: ir.Node) -> int:
    if node.op_type == "ConstantOfShape":
        attr = node.attributes.get("value")
        return max(1, math.ceil(attr.as_tensor().dtype.itemsize)) if attr is not None else 4
    dtype = node.outputs[0].dtype
    if dtype is None:
        known = [v.dtype for v in node.inputs if v is not None and v.dtype is not None]
        dtype = known[0] if known else ir.DataType.FLOAT
    assert dtype is not None
    return max(1, math.ceil(dtype.itemsize))


def _freed_bytes(node: ir.Node) -> int:
    """Bytes of constant inputs that disappear when the node is folded (their only use)."""
    total = 0
    for value in node.inputs:
        if value is None or value.const_value is None:
            continue
        if all(user is node for user, _ in value.uses()):
            total += value.const_value.nbytes
    return total


def _annotations(model: ir.Model) -> dict[int, tuple[str, str]]:
    """Type and shape of every graph input and node output, by content."""
    found: dict[int, tuple[str, str]] = {}
    for graph in model.graphs():
        values = [*graph.inputs, *(out for node in graph for out in node.outputs)]
        for value in values:
            found[id(value)] = (str(value.type), str(value.shape))
    return found


def _count_constant_nodes(model: ir.Model) -> int:
    return sum(
        1
        for graph in model.graphs()
        for node in graph
        if node.op_type == "Constant" and is_onnx_domain(node.domain)
    )


class _TolerantFolder(_OnnxscriptFolder):
    """onnxscript's folder, skipping a node whose evaluator raises instead of aborting."""

    def __init__(self, on_failure: Callable[[ir.Node, Exception], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_failure = on_failure

    def process_node(self, node: ir.Node, is_function: bool) -> Any:
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
            if (
                not shape_value.uses()
                and shape_value.is_initializer()
                and not shape_value.is_graph_output()
                and shape_value.name is not None
                and shape_value.name in graph.initializers
            ):
                del graph.initializers[shape_value.name]
            folded += 1
    return folded


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
    """Fold constant subgraphs into initializers, by consumer and size (weights always)."""

    @dataclasses.dataclass(frozen=True)
    class Options:
        """Options of fold_constants."""

        max_output_bytes: int = option(
            1 << 20, "fold a non-weight constant whose result is at most this many bytes"
        )
        fold_weights: bool = option(True, "always fold constants that feed weight slots")
        shape_inference: bool = option(False, "run ONNX shape inference on each folded node")

        def __post_init__(self) -> None:
            if self.max_output_bytes < 0:
                raise ValueError("max_output_bytes must be >= 0")

    name = "fold_constants"
    lossless = True
    recurses_into_subgraphs = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Fold what the size/consumer policy allows; report what was kept and why."""
        bound = weight_bound_values(model) if self.options.fold_weights else set()
        nodes_before = count_nodes(model)
        kept: set[ir.Node] = set()

        def should_fold(node: ir.Node) -> bool:
            if not is_onnx_domain(node.domain) or node.op_type in _NEVER_FOLD:
                return False
            if any(out in bound for out in node.outputs):
                self.stats["weights_folded"] += 1
                return True
            elements = _estimate_output_elements(node)
            if elements is None:
                logger.debug("folding %s: output size unknown, bounded by its inputs", node)
                return True
            size = elements * _itemsize(node)
            if size <= self.options.max_output_bytes or size <= _freed_bytes(node):
                return True
            logger.debug(
                "not folding %s (%s): its %d-byte result feeds no weight and exceeds "
                "max_output_bytes=%d",
                node.name,
                node.op_type,
                size,
                self.options.max_output_bytes,
            )
            kept.add(node)
            return False

        direct = _fold_constant_of_shape(model, should_fold)
        annotations = _annotations(model)

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
        # The folder writes values it derives from shapes as Constant nodes; canonical form
        # holds constants as initializers (a Constant that is a graph output stays a node).
        constants = _count_constant_nodes(model)
        lifted = LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(model)
        if lifted.modified:
            self.stats["constants_lifted"] += constants - _count_constant_nodes(model)
        opset = default_opset(model)
        if result.modified and opset is not None and opset < 12:
            _constants_as_tensors(model)
        if kept:
            self.stats["kept_large"] += len(kept)
        removed = nodes_before - count_nodes(model)
        if removed > 0:
            self.stats["nodes_removed"] += removed
        # onnxscript's folder also types values it infers (a Loop body's untyped carried
        # input, say) without reporting it; that is a change to the model all the same.
        annotated = not result.modified and _annotations(model) != annotations
        modified = bool(result.modified) or direct > 0 or lifted.modified or annotated
        if modified:
            # results are stored before their producers die (eliminate_dead removes those)
            self.growth_reasons.append(
                "constant subgraphs stored as initializers (weights built at run time by "
                "ConstantOfShape/Expand/..., folded shapes); their dead producers go next"
            )
        return ir.passes.PassResult(model, modified=modified)
