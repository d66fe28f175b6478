"""Shapes of every value with the graph inputs bound to concrete sizes.

ONNX shape inference, even with data propagation, loses a symbolic dimension as soon as it
flows through shape arithmetic it does not propagate (a PyTorch export reads the batch with
``Shape -> Squeeze -> Reshape -> Concat`` and feeds that to a ``Reshape``; detectors compute
``Resize`` sizes with ``Shape -> Gather -> Mul -> Cast``). Binding the inputs to concrete
shapes then leaves ``unk__N`` dims behind every such Reshape, and anything that counted them
as 1 reported a different number for the same computation before and after a pass that
resolved the Reshape.

:func:`values_at` fixes that the way a compiler would: on a protobuf of the model without its
weights (as :func:`irpass.analysis.shapes.infer_shapes_proto`), with the inputs set to the
given shapes, it runs ONNX shape inference once, then walks the nodes in order, evaluating
those whose inputs are now known (``Shape``/``Size`` of a static shape, small constants and
what is computed from them) and inferring again, one node at a time, the outputs whole-graph
inference left unknown, with the values just folded as their data. If/Loop bodies are walked
with what their outer scopes know (a body gets its own copy of each outer constant it reads:
ONNX inference does not see outer values). Only small tensors are evaluated (shape vectors,
scalars), so the cost is about one shape inference of a weightless proto; another whole-graph
round runs only when the walk folded something and still left a value unknown. The model is
never modified. Dims that stay symbolic (data-dependent sizes such as ``NonZero``) are left
symbolic: callers say the count could not be made rather than guess.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import onnx
import onnx_ir as ir
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from irpass.analysis.shapes import ValueInfo, call_without_weights, inferred_values, static_numel

__all__ = ["MAX_FOLDED_ELEMENTS", "values_at"]

logger = logging.getLogger(__name__)

#: Largest tensor (elements) evaluated while folding: shape vectors and scalars, never weights.
MAX_FOLDED_ELEMENTS = 1024
#: Whole-graph inference rounds; one is enough unless a fold lets inference see more.
_MAX_ROUNDS = 8
_RANDOM = {
    "RandomNormal",
    "RandomNormalLike",
    "RandomUniform",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
}


def values_at(model: ir.Model, input_shapes: Mapping[str, Sequence[int]]) -> dict[str, ValueInfo]:
    """Map value names (main graph and subgraphs) to (shape, dtype) at ``input_shapes``.

    Inputs not named in ``input_shapes`` keep their declared shapes. Values whose shape stays
    unknown are absent or keep symbolic dims. The model is left exactly as it was.
    """
    shapes = {name: [int(d) for d in dims] for name, dims in input_shapes.items()}
    if _declared(model) == shapes:
        # the inputs are static already: plain inference (free on an annotated model) is the
        # answer unless it left some size unknown that folding could still find
        values = inferred_values(model)
        if _all_static(model, values):
            return values
    try:
        return call_without_weights(lambda proto: _values_at_proto(proto, shapes), model)
    except Exception as exc:  # a report number must not take a run down: say less instead
        logger.warning("shapes at %s could not be propagated: %s", shapes, exc)
        return inferred_values(model)


def _declared(model: ir.Model) -> dict[str, list[int]] | None:
    declared = {}
    for value in model.graph.inputs:
        if value.name in model.graph.initializers:
            continue
        dims = [d for d in value.shape or () if isinstance(d, int)]
        if value.shape is None or len(dims) != len(value.shape):
            return None
        declared[value.name or ""] = dims
    return declared


def _all_static(model: ir.Model, values: Mapping[str, ValueInfo]) -> bool:
    for graph in model.graphs():
        for node in graph:
            for value in node.outputs:
                if not value.name:
                    continue
                shape = values.get(value.name, (None, None))[0]
                if shape is None or static_numel(shape) is None:
                    return False
    return True


def _values_at_proto(
    proto: onnx.ModelProto, input_shapes: Mapping[str, list[int]]
) -> dict[str, ValueInfo]:
    graph = proto.graph
    for value in graph.input:
        dims = input_shapes.get(value.name)
        if dims is not None and value.type.HasField("tensor_type"):
            shape = value.type.tensor_type.shape
            shape.ClearField("dim")
            for size in dims:
                shape.dim.add().dim_value = size
    for value in graph.output:  # declared output shapes are hints, often symbolic or wrong
        if value.type.HasField("tensor_type"):
            value.type.tensor_type.ClearField("shape")
    opsets = {o.domain or "": o.version for o in proto.opset_import}
    folded: dict[str, np.ndarray] = {}
    inferred: dict[str, tuple[list[int], int]] = {}
    for _ in range(_MAX_ROUNDS):
        _clear_value_info(graph)
        try:
            proto = onnx.shape_inference.infer_shapes(
                proto, check_type=False, strict_mode=False, data_prop=True
            )
        except Exception as exc:  # best effort: report what is known
            logger.debug("shape inference at bound shapes failed: %s", exc)
            break
        graph = proto.graph
        inferred.clear()
        new, changed, complete = _fold_round(graph, opsets, inferred)
        folded.update(new)
        if not changed or complete:
            break
    return _collect(proto, folded, inferred)


def _clear_value_info(graph: onnx.GraphProto) -> None:
    graph.ClearField("value_info")
    for node in graph.node:
        for sub in _subgraphs(node):
            _clear_value_info(sub)


def _static_dims(info: onnx.ValueInfoProto) -> list[int] | None:
    if not info.type.HasField("tensor_type") or not info.type.tensor_type.HasField("shape"):
        return None
    dims = []
    for dim in info.type.tensor_type.shape.dim:
        if not dim.HasField("dim_value") or dim.dim_value < 0:
            return None
        dims.append(dim.dim_value)
    return dims


def _fold_round(
    graph: onnx.GraphProto,
    opsets: Mapping[str, int],
    inferred: dict[str, tuple[list[int], int]],
    outer_static: Mapping[str, list[int]] | None = None,
    outer_elem: Mapping[str, int] | None = None,
    outer_sources: Mapping[str, Any] | None = None,
    static_out: dict[str, list[int]] | None = None,
) -> tuple[dict[str, np.ndarray], bool, bool]:
    """Evaluate the nodes whose inputs are known; replace them by Constant nodes.

    A node whose outputs whole-graph inference left unknown is inferred again on its own
    with what is known now (its inputs' static shapes, the values folded before it), so a
    Shape read behind a Reshape whose shape was just folded resolves in the same pass, however
    deep the chain (an encoder reads the batch again in every layer). The per-node results
    go to ``inferred``. Returns the values folded (here and in subgraphs), whether the graph
    changed, and whether every node output is static now; ``static_out`` receives the static
    shapes of this scope.

    Subgraphs (If branches, Loop bodies) are folded too, with what is known in the scopes
    around them: a branch often reads the batch of an outer value the same way.
    """
    static: dict[str, list[int]] = dict(outer_static or {})
    elem: dict[str, int] = dict(outer_elem or {})
    for info in list(graph.input) + list(graph.value_info) + list(graph.output):
        dims = _static_dims(info)
        if dims is not None:
            static[info.name] = dims
        if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type:
            elem[info.name] = info.type.tensor_type.elem_type
    for init in graph.initializer:
        static.setdefault(init.name, list(init.dims))
        elem.setdefault(init.name, init.data_type)
    sources: dict[str, Any] = dict(outer_sources or {})
    changed = bool(outer_sources) and _localize_outer_constants(
        graph, _Known(sources), static, elem
    )
    for init in graph.initializer:
        if _numel(init.dims) <= MAX_FOLDED_ELEMENTS:
            sources[init.name] = init
    for node in graph.node:  # Constant nodes (ours from earlier rounds too) are known as they are
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.output:
            if _numel(static.get(node.output[0], [MAX_FOLDED_ELEMENTS + 1])) <= MAX_FOLDED_ELEMENTS:
                sources[node.output[0]] = node
    known = _Known(sources)
    new: dict[str, np.ndarray] = {}
    found: dict[str, np.ndarray] = {}  # here and in subgraphs
    complete = True
    for node in graph.node:
        subgraphs = _subgraphs(node)
        if subgraphs:
            branch_static: list[dict[str, list[int]]] = []
            for sub in subgraphs:
                branch_static.append({})
                sub_found, sub_changed, sub_complete = _fold_round(
                    sub, opsets, inferred, static, elem, {**sources, **new}, branch_static[-1]
                )
                found.update(sub_found)
                changed = changed or sub_changed
                complete = complete and sub_complete
            if node.op_type == "If" and node.domain in ("", "ai.onnx"):
                _if_outputs(node, subgraphs, branch_static, static, elem, inferred, known)
        elif not all(name in static for name in node.output if name):
            _infer_node(node, opsets, static, elem, known, inferred)
        complete = complete and all(name in static for name in node.output if name)
        if subgraphs or not _foldable(node, static, known):
            continue
        try:
            outputs = _evaluate(node, static, known, opsets)
        except Exception as exc:  # an op the evaluator cannot run stays in the graph
            logger.debug("cannot fold %s %s: %s", node.op_type, node.name, exc)
            continue
        if any(np.asarray(o).size > MAX_FOLDED_ELEMENTS for o in outputs):
            continue
        for name, array in zip(node.output, outputs, strict=False):
            if name:
                known[name] = new[name] = np.asarray(array)
                static[name] = list(known[name].shape)
                elem[name] = onnx.helper.np_dtype_to_tensor_dtype(new[name].dtype)
    found.update(new)
    if static_out is not None:
        static_out.update(static)
    if not new:
        return found, changed, complete
    # Constant nodes, not initializers: IR < 4 wants every initializer listed as an input too
    nodes = []
    for node in graph.node:
        if node.output and all(o in new or not o for o in node.output):
            nodes += [_constant(name, new[name]) for name in node.output if name]
        else:
            nodes.append(node)
    graph.ClearField("node")
    graph.node.extend(nodes)
    return found, True, complete


def _if_outputs(
    node: onnx.NodeProto,
    branches: list[onnx.GraphProto],
    branch_static: list[dict[str, list[int]]],
    static: dict[str, list[int]],
    elem: dict[str, int],
    inferred: dict[str, tuple[list[int], int]],
    known: _Known,
) -> None:
    """An If output takes its branch's static shape.

    That is the branch its folded condition picks (torch's "squeeze the batch if it is 1"
    reads the batch), or either branch when both agree.
    """
    if len(branches) != 2:
        return
    if node.input and node.input[0] in known:
        pick = 0 if bool(np.asarray(known[node.input[0]]).reshape(-1)[0]) else 1
        branches, branch_static = [branches[pick]] * 2, [branch_static[pick]] * 2
    for index, name in enumerate(node.output):
        if not name or name in static:
            continue
        outs = [b.output[index] if index < len(b.output) else None for b in branches]
        dims = [
            known.get(out.name) if out is not None else None
            for known, out in zip(branch_static, outs, strict=True)
        ]
        first = outs[0]
        if dims[0] is None or dims[0] != dims[1] or first is None:
            continue
        elem_type = first.type.tensor_type.elem_type or elem.get(first.name, 0)
        if not elem_type:
            continue
        static[name] = dims[0]
        elem[name] = elem_type
        inferred[name] = (dims[0], elem_type)


def _infer_node(
    node: onnx.NodeProto,
    opsets: Mapping[str, int],
    static: dict[str, list[int]],
    elem: dict[str, int],
    known: _Known,
    inferred: dict[str, tuple[list[int], int]],
) -> None:
    """ONNX's shape inference of one node from static input shapes and known input values."""
    inputs = [name for name in node.input if name]
    if not all(name in static and name in elem for name in inputs):
        return
    domain = "" if node.domain == "ai.onnx" else node.domain
    try:
        schema = onnx.defs.get_schema(node.op_type, opsets.get(domain, 1), domain)
        types = {n: onnx.helper.make_tensor_type_proto(elem[n], static[n]) for n in inputs}
        data = {n: numpy_helper.from_array(known[n], n) for n in inputs if n in known}
        outputs = onnx.shape_inference.infer_node_outputs(schema, node, types, data)
    except Exception as exc:  # an op ONNX cannot infer alone stays unknown
        logger.debug("cannot infer %s %s alone: %s", node.op_type, node.name, exc)
        return
    for name, type_proto in outputs.items():
        if not type_proto.HasField("tensor_type"):
            continue
        dims = _static_dims(onnx.helper.make_value_info(name, type_proto))
        if dims is not None:
            static[name] = dims
            elem[name] = type_proto.tensor_type.elem_type
            inferred[name] = (dims, elem[name])


def _localize_outer_constants(
    graph: onnx.GraphProto, outer: _Known, static: dict[str, list[int]], elem: dict[str, int]
) -> bool:
    """Give a subgraph its own Constant copy of every small known outer value it reads.

    ONNX shape inference does not see the values of outer-scope constants inside a subgraph,
    so an Unsqueeze or Reshape there whose axes or shape come from outside stays unknown.
    Returns whether it added any.
    """
    local = {name for node in graph.node for name in node.output}
    local |= {value.name for value in graph.input} | {init.name for init in graph.initializer}
    copies: dict[str, str] = {}
    for node in graph.node:
        if _subgraphs(node):
            continue  # nested bodies localize their own reads
        for index, name in enumerate(node.input):
            if not name or name in local or name not in outer:
                continue
            if name not in copies:
                copies[name] = f"{name}__in_{graph.name or 'body'}"
                static[copies[name]] = list(outer[name].shape)
                elem[copies[name]] = onnx.helper.np_dtype_to_tensor_dtype(outer[name].dtype)
            node.input[index] = copies[name]
    if copies:
        constants = [_constant(copy, outer[name]) for name, copy in copies.items()]
        nodes = constants + list(graph.node)
        graph.ClearField("node")
        graph.node.extend(nodes)
    return bool(copies)


def _subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    graphs: list[onnx.GraphProto] = []
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            graphs.append(attr.g)
        elif attr.type == onnx.AttributeProto.GRAPHS:
            graphs.extend(attr.graphs)
    return graphs


def _constant(name: str, array: np.ndarray) -> onnx.NodeProto:
    return onnx.helper.make_node(
        "Constant", [], [name], value=numpy_helper.from_array(array), name=f"{name}__folded"
    )


class _Known(dict[str, np.ndarray]):
    """Known values; small initializers and Constant nodes become arrays when a fold reads them.

    Sources are TensorProtos, Constant NodeProtos or arrays (folded in an outer scope).
    """

    def __init__(self, sources: dict[str, Any]) -> None:
        super().__init__()
        self._sources = sources

    def __contains__(self, name: object) -> bool:
        return super().__contains__(name) or name in self._sources

    def __missing__(self, name: str) -> np.ndarray:
        source = self._sources[name]
        if isinstance(source, np.ndarray):
            array = source
        elif isinstance(source, onnx.TensorProto):
            array = numpy_helper.to_array(source)
        elif _attr(source, "value") is not None:
            array = numpy_helper.to_array(_attr(source, "value"))
        else:  # value_int(s), value_float(s), ...
            outputs = cast(list[Any], ReferenceEvaluator(source).run(None, {}))
            array = np.asarray(outputs[0])
        self[name] = array
        return array


def _numel(dims: Sequence[int]) -> int:
    total = 1
    for dim in dims:
        total *= dim
    return total


def _foldable(node: onnx.NodeProto, static: Mapping[str, list[int]], known: _Known) -> bool:
    if node.domain not in ("", "ai.onnx") or node.op_type in _RANDOM:
        return False
    if _subgraphs(node):
        return False
    if node.op_type in ("Shape", "Size"):
        return bool(node.input) and node.input[0] in static
    if node.op_type == "Constant":
        return False  # known as it is (see _fold_round)
    inputs = [name for name in node.input if name]
    if not inputs or not all(name in known for name in inputs):
        return False
    # outputs whose size inference knows must be small (a ConstantOfShape of a big shape is not)
    return all(
        name not in static or _numel(static[name]) <= MAX_FOLDED_ELEMENTS for name in node.output
    )


def _attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def _evaluate(
    node: onnx.NodeProto,
    static: Mapping[str, list[int]],
    known: _Known,
    opsets: Mapping[str, int],
) -> list[np.ndarray]:
    """Outputs of one node.

    Shape reads and the common shape arithmetic are computed here, the rest through ONNX's
    reference evaluator (about 1 ms per node, so only when needed).
    """
    op = node.op_type
    if op == "Shape":
        dims = static[node.input[0]]
        start, end = int(_attr(node, "start", 0)), _attr(node, "end", None)
        return [np.array(dims[start : None if end is None else int(end)], dtype=np.int64)]
    if op == "Size":
        return [np.array(_numel(static[node.input[0]]), dtype=np.int64)]
    args = [known[name] for name in node.input if name]
    if op == "Identity":
        return [args[0]]
    if op == "ConstantOfShape":
        value = _attr(node, "value")
        fill = (
            numpy_helper.to_array(value).reshape(-1)
            if value is not None
            else np.zeros(1, np.float32)
        )
        return [np.full([int(d) for d in args[0]], fill[0], dtype=fill.dtype)]
    if op == "Concat":
        return [np.concatenate(args, axis=int(_attr(node, "axis", 0)))]
    if op == "Gather":
        return [np.take(args[0], args[1], axis=int(_attr(node, "axis", 0)))]
    if op == "Cast":
        to = onnx.helper.tensor_dtype_to_np_dtype(int(_attr(node, "to")))
        if np.issubdtype(to, np.integer) and not np.issubdtype(args[0].dtype, np.integer):
            args[0] = np.trunc(args[0])  # ONNX Cast from float truncates toward zero
        return [args[0].astype(to)]
    if op in ("Squeeze", "Unsqueeze") and (len(args) > 1 or _attr(node, "axes") is not None):
        axes = args[1] if len(args) > 1 else _attr(node, "axes")
        axes_list = [int(a) for a in np.asarray(axes).reshape(-1)]
        if op == "Squeeze":
            return [np.squeeze(args[0], axis=tuple(axes_list))]
        rank = args[0].ndim + len(axes_list)
        return [np.expand_dims(args[0], axis=tuple(a % rank for a in axes_list))]
    if op in ("Add", "Sub", "Mul") and args[0].dtype == args[1].dtype:
        function = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}[op]
        return [function(args[0], args[1])]
    feeds = {name: known[name] for name in node.input if name}
    evaluator = ReferenceEvaluator(node, opsets={"": opsets.get("", opsets.get("ai.onnx", 21))})
    return [np.asarray(o) for o in evaluator.run(None, feeds)]


def _value_info(type_proto: onnx.TypeProto) -> ValueInfo:
    """(shape, dtype) of a type proto.

    Tensors are read directly: a full deserialization spends most of its time building types
    this analysis does not need.
    """
    if type_proto.HasField("tensor_type"):
        tensor = type_proto.tensor_type
        shape = None
        if tensor.HasField("shape"):
            shape = ir.Shape(
                [
                    d.dim_value if d.HasField("dim_value") else ir.SymbolicDim(d.dim_param or None)
                    for d in tensor.shape.dim
                ]
            )
        return shape, ir.DataType(tensor.elem_type) if tensor.elem_type else None
    type_ = ir.serde.deserialize_type_proto_for_type(type_proto)
    return ir.serde.deserialize_type_proto_for_shape(type_proto), (
        type_.dtype if type_ is not None else None
    )


def _collect(
    proto: onnx.ModelProto,
    folded: Mapping[str, np.ndarray],
    inferred: Mapping[str, tuple[list[int], int]],
) -> dict[str, ValueInfo]:
    out: dict[str, ValueInfo] = {}
    stack = [proto.graph]
    while stack:
        graph = stack.pop()
        for info in list(graph.input) + list(graph.value_info) + list(graph.output):
            if not info.type.WhichOneof("value") or info.name in out:
                continue
            out[info.name] = _value_info(info.type)
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    stack.append(attr.g)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    stack.extend(attr.graphs)
    for name, (dims, elem_type) in inferred.items():
        out[name] = (ir.Shape(dims), ir.DataType(elem_type))
    for name, array in folded.items():
        out[name] = (ir.Shape(list(array.shape)), ir.DataType.from_numpy(array.dtype))
    return out
