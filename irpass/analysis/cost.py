"""Cost analysis: parameters, weight bytes, MACs and a peak activation-memory estimate.

- Params and weight bytes count initializers and the tensors that Constant / ConstantOfShape
  nodes materialize from constants (weights of old exporters), so they compare before and
  after constant folding.
- MACs are counted for the heavy ops (Conv, ConvTranspose, Gemm, MatMul and their integer /
  QLinear forms) from inferred shapes. With ``input_shapes`` (what reports use: the
  verification shapes or ``--input-shapes``) the graph inputs are bound to those sizes and the
  shapes propagated through shape arithmetic (:mod:`irpass.analysis.bound_shapes`); a dim that
  stays symbolic there makes its node uncounted, never 1. Without ``input_shapes``, named
  symbolic dimensions (a dynamic batch ``N``, a sequence length) count as 1, a per-sample
  guess that is wrong wherever shape arithmetic hides the batch. A node whose shapes are
  unknown counts 0 and is counted in ``Cost.unknown_macs_nodes``.
- Peak activation memory follows the graph's (topological) node order: a value is live from
  its producer to its last consumer; graph inputs and outputs are included, weights are not.
  Values whose size is unknown count 0 and are counted in ``Cost.unknown_activation_values``.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import onnx_ir as ir

from irpass.analysis.bound_shapes import values_at
from irpass.analysis.shapes import ValueInfo, inferred_values, static_numel

__all__ = [
    "Cost",
    "LayerCost",
    "cost_shapes_note",
    "format_input_shapes",
    "model_cost",
    "node_macs",
    "shapes_to_count",
]


@dataclasses.dataclass
class LayerCost:
    """Parameters and MACs of one node."""

    node: str
    op_type: str
    params: int
    macs: int


@dataclasses.dataclass
class Cost:
    """Size and work of a model (main graph plus subgraphs)."""

    nodes: int
    params: int
    weight_bytes: int
    macs: int
    peak_activation_bytes: int
    ops: dict[str, int]
    layers: list[LayerCost] = dataclasses.field(default_factory=list)
    unknown_macs_nodes: int = 0
    unknown_activation_values: int = 0
    #: the input shapes MACs and activation memory are counted at (None: symbolic dims as 1)
    input_shapes: dict[str, list[int]] | None = None

    def summary(self) -> dict[str, Any]:
        """The scalar fields plus the op histogram (what reports store per pass)."""
        return {
            "nodes": self.nodes,
            "params": self.params,
            "weight_bytes": self.weight_bytes,
            "macs": self.macs,
            "peak_activation_bytes": self.peak_activation_bytes,
            "unknown_macs_nodes": self.unknown_macs_nodes,
            "unknown_activation_values": self.unknown_activation_values,
            "ops": dict(self.ops),
        }

    def largest_layers(self, count: int = 10) -> list[LayerCost]:
        """The ``count`` layers with most MACs (ties broken by params)."""
        return sorted(self.layers, key=lambda c: (c.macs, c.params), reverse=True)[:count]


#: The value a named symbolic dimension takes in cost numbers (costs are per sample).
SYMBOLIC_DIM_VALUE = 1

_CONV_LIKE = {"Conv", "ConvInteger", "QLinearConv"}
_MATMUL_LIKE = {"MatMul", "MatMulInteger", "QLinearMatMul"}


def _bind(shape: ir.Shape | None, symbolic_as_one: bool) -> list[int] | None:
    """Static dims as they are; named symbolic dims as 1 if ``symbolic_as_one``; else None."""
    if shape is None:
        return None
    dims = []
    for dim in shape:
        if isinstance(dim, int):
            dims.append(dim)
        elif symbolic_as_one and getattr(dim, "value", None) is not None:
            dims.append(SYMBOLIC_DIM_VALUE)
        else:
            return None
    return dims


def _value_shape(
    values: dict[str, ValueInfo], value: ir.Value | None, symbolic_as_one: bool = True
) -> list[int] | None:
    if value is None:
        return None
    own = _bind(value.shape, symbolic_as_one)
    if own is not None and static_numel(value.shape) is not None:
        return own
    inferred = _bind(values.get(value.name or "", (None, None))[0], symbolic_as_one)
    if inferred is not None or not symbolic_as_one:
        return inferred
    return own


def node_macs(
    node: ir.Node, values: dict[str, ValueInfo], *, symbolic_as_one: bool = True
) -> int | None:
    """Multiply-accumulates of one node; 0 for ops that are not counted, None when unknown.

    With ``symbolic_as_one=False`` (``values`` at bound input shapes) a symbolic dim makes the
    count unknown instead of counting as 1.
    """
    shape_of = functools.partial(_value_shape, values, symbolic_as_one=symbolic_as_one)
    op = node.op_type
    if node.domain not in ("", "ai.onnx", "com.microsoft"):
        return 0
    if op in _CONV_LIKE:
        weight_index = 3 if op == "QLinearConv" else 1
        weight = shape_of(node.inputs[weight_index] if len(node.inputs) > weight_index else None)
        out = shape_of(node.outputs[0])
        if weight is None or out is None:
            return None
        return math.prod(out) * math.prod(weight[1:])
    if op == "ConvTranspose":
        weight = shape_of(node.inputs[1])
        inp = shape_of(node.inputs[0])
        if weight is None or inp is None:
            return None
        return math.prod(inp) * math.prod(weight[1:])
    if op == "Gemm":
        a = shape_of(node.inputs[0])
        out = shape_of(node.outputs[0])
        if a is None or out is None or len(a) != 2:
            return None
        trans_a = node.attributes.get_int("transA", 0)
        k = a[0] if trans_a else a[1]
        return math.prod(out) * k
    if op in _MATMUL_LIKE:
        b_index = 3 if op == "QLinearMatMul" else 1
        a = shape_of(node.inputs[0])
        b = shape_of(node.inputs[b_index])
        out = shape_of(node.outputs[0])
        if a is None or b is None or out is None:
            return None
        k = a[-1] if a else 1
        return math.prod(out) * k
    return 0


def _value_bytes(
    values: dict[str, ValueInfo], value: ir.Value, symbolic_as_one: bool
) -> int | None:
    shape = _value_shape(values, value, symbolic_as_one)
    dtype = value.dtype or values.get(value.name or "", (None, None))[1]
    if shape is None or dtype is None:
        return None
    try:
        itemsize = dtype.itemsize
    except (AttributeError, ValueError, TypeError):
        return None
    return math.ceil(math.prod(shape) * itemsize)


def _peak_activation_bytes(
    graph: ir.Graph, values: dict[str, ValueInfo], symbolic_as_one: bool
) -> tuple[int, int]:
    """(peak bytes, number of values whose size is unknown and counted 0)."""
    unknown = 0

    def size(value: ir.Value) -> int:
        nonlocal unknown
        count = _value_bytes(values, value, symbolic_as_one)
        unknown += count is None
        return count or 0

    initializer_names = set(graph.initializers)
    last_use: dict[ir.Value, int] = {}
    nodes = list(graph)
    for index, node in enumerate(nodes):
        for value in node.inputs:
            if value is not None:
                last_use[value] = index
    outputs = set(graph.outputs)
    live: dict[ir.Value, int] = {}
    for value in graph.inputs:
        if value.name not in initializer_names:
            live[value] = size(value)
    peak = sum(live.values())
    for index, node in enumerate(nodes):
        if _constant_weight(node) is not None:
            continue  # a weight (counted in params), not an activation: see _constant_weight
        for value in node.outputs:
            if value.name or value.uses():  # an omitted optional output is not produced
                live[value] = size(value)
        peak = max(peak, sum(live.values()))
        for value in list(node.inputs) + list(node.outputs):
            if value in live and value not in outputs and last_use.get(value, -1) <= index:
                del live[value]
    return peak, unknown


def _constant_weight(node: ir.Node) -> tuple[int, int] | None:
    """(elements, bytes) a Constant or constant-shaped ConstantOfShape node materializes.

    Old exporters (the light model zoo) build weights this way; counting them keeps params
    comparable before and after constant folding turns them into initializers.
    """
    if node.domain not in ("", "ai.onnx"):
        return None
    if node.op_type == "Constant":
        attr = node.attributes.get("value")
        if attr is None or attr.type != ir.AttributeType.TENSOR:
            return None
        tensor = attr.value  # as_tensor() checks a Protocol: slow on big graphs
        return math.prod(tensor.shape.numpy()), tensor.nbytes
    if node.op_type == "ConstantOfShape" and node.inputs and node.inputs[0] is not None:
        shape_value = node.inputs[0].const_value
        if shape_value is None:
            return None
        count = math.prod(int(d) for d in shape_value.numpy().reshape(-1))
        attr = node.attributes.get("value")
        itemsize = attr.value.dtype.itemsize if attr is not None else 4
        return count, int(count * itemsize)
    return None


def model_cost(
    model: ir.Model,
    values: dict[str, ValueInfo] | None = None,
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> Cost:
    """Compute the :class:`Cost` of ``model`` without modifying it.

    With ``input_shapes`` (``{input name: shape}``) MACs and activation memory are counted at
    those shapes, and ``values`` (if given) must come from
    :func:`irpass.analysis.bound_shapes.values_at` at the same shapes.
    """
    symbolic_as_one = input_shapes is None
    if values is None:
        values = inferred_values(model) if input_shapes is None else values_at(model, input_shapes)
    ops: collections.Counter[str] = collections.Counter()
    params = weight_bytes = macs = unknown = 0
    layers: list[LayerCost] = []
    node_count = 0
    for graph in model.graphs():
        for initializer in graph.initializers.values():
            tensor = initializer.const_value
            if tensor is not None:
                params += math.prod(tensor.shape.numpy()) if tensor.shape.rank() else 1
                weight_bytes += tensor.nbytes
        for node in graph:
            produced = _constant_weight(node)
            if produced is not None:
                params += produced[0]
                weight_bytes += produced[1]
            node_count += 1
            key = (
                node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
            )
            ops[key] += 1
            node_params = 0
            for v in node.inputs:
                if v is not None and v.is_initializer() and v.const_value is not None:
                    node_params += math.prod(v.const_value.shape.numpy())
            count = node_macs(node, values, symbolic_as_one=symbolic_as_one)
            if count is None:
                unknown += 1
                count = 0
            macs += count
            if count or node_params:
                layers.append(LayerCost(node.name or "", node.op_type, node_params, count))
    peak, unknown_values = _peak_activation_bytes(model.graph, values, symbolic_as_one)
    return Cost(
        nodes=node_count,
        params=int(params),
        weight_bytes=int(weight_bytes),
        macs=int(macs),
        peak_activation_bytes=int(peak),
        ops=dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        layers=layers,
        unknown_macs_nodes=unknown,
        unknown_activation_values=unknown_values,
        input_shapes=None
        if input_shapes is None
        else {name: [int(d) for d in dims] for name, dims in input_shapes.items()},
    )


def shapes_to_count(
    model: ir.Model, given: Mapping[str, Sequence[int]] | None = None
) -> tuple[dict[str, list[int]], list[str]]:
    """Input shapes to count MACs at, and the inputs whose symbolic dims were set to 1.

    An input named in ``given`` (``--input-shapes``) takes that shape, any other its declared
    one with symbolic dims set to 1 (one sample). Inputs without a declared shape are left
    out (their costs are then unknown, and counted as such).
    """
    given = given or {}
    shapes: dict[str, list[int]] = {}
    defaulted = []
    for value in model.graph.inputs:
        name = value.name or ""
        if name in model.graph.initializers:
            continue
        if name in given:
            shapes[name] = [int(d) for d in given[name]]
            continue
        if value.shape is None:
            continue
        shapes[name] = [d if isinstance(d, int) else 1 for d in value.shape]
        if any(not isinstance(d, int) for d in value.shape):
            defaulted.append(name)
    return shapes, defaulted


def format_input_shapes(shapes: Mapping[str, Sequence[int]] | None) -> str:
    """{'images': [1, 3, 320, 320]} -> 'images:1x3x320x320' (``--input-shapes`` syntax)."""
    if not shapes:
        return "-"
    return ", ".join(
        f"{name}:{'x'.join(str(d) for d in dims) or 'scalar'}" for name, dims in shapes.items()
    )


def cost_shapes_note(
    shapes: Mapping[str, Sequence[int]] | None, unknown_macs: int = 0, unknown_values: int = 0
) -> str:
    """Which input shapes MACs and activation memory are for, and what could not be counted."""
    if shapes:
        note = f"MACs and activations at inputs {format_input_shapes(shapes)}"
    else:
        note = "MACs and activations with symbolic dims counted as 1 (per sample)"
    gaps = []
    if unknown_macs:
        gaps.append(f"{unknown_macs} nodes' MACs")
    if unknown_values:
        gaps.append(f"{unknown_values} activations")
    if gaps:
        where = "at these shapes" if shapes else "(sizes unknown)"
        note += f"; {' and '.join(gaps)} could not be counted {where} and are left out"
    return note
