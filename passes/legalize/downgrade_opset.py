"""Lower the default-domain opset for runtimes whose parser stops early (TensorRT 8.2: opset 13).

ONNX's version converter only goes up in practice (from opset 20 to 13 it stops at the first
Relu: "No Adapter From Version 14"), yet most ops did not change meaning between 13 and 20; they
gained types or attributes. This pass checks every node against the op's schema at the target
opset and rewrites the few changes that matter::

    ReduceMean(x, axes=const [1])   (opset 18: axes is an input)
    -> ReduceMean<axes=[1]>(x)      (opset 13..17: axes is an attribute; also Max/Min/Prod/L1/
                                     L2/LogSum/LogSumExp/SumSquare)
    Split<num_outputs=2>(x)         (opset 18)
    -> Split(x, split=const [a, b]) (static dim along the axis, evenly split as 18 defines)
    Shape<start=s, end=e>(x)        (opset 15)
    -> Slice(Shape(x), [s], [e])    (Slice clamps out-of-range bounds the same way)
    Op<new_attr=default>(...)       (an attribute added later, at its default value, e.g.
    -> Op(...)                       BatchNormalization training_mode=0, Reshape allowzero=0
                                     (or 1 with a constant shape without 0), Resize antialias=0,
                                     Cast saturate=1)

then sets the opset import to the target and the IR version to the minimum that opset needs
(old parsers also check the IR version). Everything is checked before anything is rewritten:
an op that does not exist at the target opset (HardSwish, LayerNormalization, Gelu: decompose
them first), an attribute or input the old schema lacks, an input type the old schema does not
accept, Resize ``half_pixel_symmetric`` or Pad ``wrap`` (new meanings of old attributes) or
model-local functions (they need IR 8) make the pass leave the model unchanged and say which
nodes blocked it. Targets below 13 are refused: Softmax and Squeeze/Unsqueeze change meaning
or form there. Custom domains are untouched.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from irpass.ir import default_opset
from irpass.pass_base import IrpassPass, option
from irpass.passes.fusion._rules import const_array, unique_name
from irpass.registry import register

__all__ = ["DowngradeOpsetPass", "downgrade_blockers"]

logger = logging.getLogger(__name__)

_REDUCE_WITH_AXES_INPUT_SINCE_18 = frozenset(
    {
        "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
        "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare",
    }
)  # fmt: skip
#: Attribute values whose meaning appeared after the opset where the attribute itself exists.
_NEW_VALUES = {
    ("Resize", "coordinate_transformation_mode"): ("half_pixel_symmetric", 19),
    ("Pad", "mode"): ("wrap", 19),
}


def _schema(op_type: str, opset: int) -> Any | None:
    try:
        return onnx.defs.get_schema(op_type, opset, "")
    except onnx.defs.SchemaError:
        return None


def _python_value(attr: Any) -> Any:
    value = attr.value if isinstance(attr, ir.Attr) else onnx.helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, (list, tuple)):
        return [v.decode() if isinstance(v, bytes) else v for v in value]
    return value


def _at_default(node: ir.Node, name: str, schema: Any) -> bool:
    """The node's attribute ``name`` equals the (newer) schema's default value, or means it."""
    if node.op_type == "Reshape" and name == "allowzero" and len(node.inputs) > 1:
        shape = const_array(node.inputs[1])  # without a 0 in the shape allowzero changes nothing
        if shape is not None and not (shape == 0).any():
            return True
    spec = schema.attributes.get(name)
    if spec is None or not spec.default_value.name:
        if node.op_type == "AveragePool" and name == "dilations":
            return all(d == 1 for d in node.attributes[name].as_ints())
        return False
    return bool(_python_value(node.attributes[name]) == _python_value(spec.default_value))


def _type_string(value: ir.Value | None) -> str | None:
    if value is None or value.dtype is None:
        return None
    return f"tensor({onnx.TensorProto.DataType.Name(value.dtype.value).lower()})"


def _allowed_types(schema: Any, formal: Any) -> set[str] | None:
    for constraint in schema.type_constraints:
        if constraint.type_param_str == formal.type_str:
            return set(constraint.allowed_type_strs)
    if formal.type_str.startswith("tensor("):
        return {formal.type_str}
    return None


def _node_blocker(node: ir.Node, target: int, current: int) -> str | None:
    """Why ``node`` cannot be expressed at ``target`` (after this pass's rewrites), or None."""
    new = _schema(node.op_type, current)
    old = _schema(node.op_type, target)
    if old is None:
        return f"{node.op_type} does not exist at opset {target}"
    if new is not None and new.since_version == old.since_version:
        return None
    attrs = set(node.attributes)
    inputs = list(node.inputs)
    if node.op_type in _REDUCE_WITH_AXES_INPUT_SINCE_18 and target < 18 and len(inputs) > 1:
        if inputs[1] is not None and const_array(inputs[1]) is None:
            return f"{node.op_type} axes are not constant"
        if node.attributes.get("noop_with_empty_axes") is not None and _python_value(
            node.attributes["noop_with_empty_axes"]
        ):
            return f"{node.op_type} noop_with_empty_axes=1 has no equivalent at opset {target}"
        inputs = inputs[:1]
        attrs.discard("noop_with_empty_axes")
    if node.op_type == "Shape":
        attrs -= {"start", "end"}
    if node.op_type == "Split" and "num_outputs" in attrs:
        if _split_sizes(node) is None:
            return "Split num_outputs needs a static input dim that splits into that many parts"
        attrs.discard("num_outputs")
    for name in sorted(attrs - set(old.attributes)):
        if new is None or not _at_default(node, name, new):
            return f"{node.op_type} attribute {name!r} does not exist at opset {target}"
    for (op_type, attr), (meaning, since) in _NEW_VALUES.items():
        if node.op_type == op_type and target < since and attr in node.attributes:
            if _python_value(node.attributes[attr]) == meaning:
                return f"{op_type} {attr}={meaning!r} needs opset {since}"
    while inputs and inputs[-1] is None:
        inputs.pop()
    if len(inputs) > old.max_input:
        return f"{node.op_type} has {len(inputs)} inputs, opset {target} takes {old.max_input}"
    for index, value in enumerate(inputs):
        formal = old.inputs[min(index, len(old.inputs) - 1)]
        allowed = _allowed_types(old, formal)
        actual = _type_string(value)
        if allowed is not None and actual is not None and actual not in allowed:
            return f"{node.op_type} input {index} of type {actual} is not allowed at opset {target}"
    return None


def downgrade_blockers(model: ir.Model, target: int) -> list[str]:
    """What keeps ``model`` from being expressed at default-domain opset ``target``."""
    current = default_opset(model) or target
    blockers: list[str] = []
    if model.functions:
        blockers.append("model-local functions need IR version 8 (opset 15)")
    for graph in model.graphs():
        for node in graph:
            if node.domain not in ("", "ai.onnx"):
                continue
            reason = _node_blocker(node, target, current)
            if reason is not None:
                blockers.append(f"node {node.name!r}: {reason}")
    return blockers


def _rewrite_reduce(node: ir.Node) -> None:
    axes_value = node.inputs[1]
    if axes_value is not None:
        axes = const_array(axes_value)
        assert axes is not None  # checked
        node.attributes["axes"] = ir.AttrInt64s("axes", [int(a) for a in axes.reshape(-1)])
    node.resize_inputs(1)
    node.attributes.pop("noop_with_empty_axes", None)


def _rewrite_shape(graph: ir.Graph, node: ir.Node) -> None:
    """Shape<start, end>(x) -> Slice(Shape(x), [start], [end]); the defaults add nothing."""
    start = int(node.attributes.pop("start").as_int()) if "start" in node.attributes else 0
    end = int(node.attributes.pop("end").as_int()) if "end" in node.attributes else None
    if start == 0 and end is None:
        return
    full = node.outputs[0]
    uses = list(full.uses())
    was_output = full.is_graph_output()

    def constant(value: int, base: str) -> ir.Value:
        const = ir.Value(
            name=unique_name(graph, (node.name or "shape") + base),
            const_value=ir.tensor(np.array([value], np.int64)),
        )
        graph.register_initializer(const)
        return const

    limit = end if end is not None else np.iinfo(np.int64).max
    sliced = ir.node("Slice", [full, constant(start, "_start"), constant(limit, "_end")])
    graph.insert_after(node, sliced)
    out = sliced.outputs[0]
    out.dtype = ir.DataType.INT64
    out.shape, full.shape = full.shape, None  # the slice has the declared length now
    for user, index in uses:
        user.replace_input_with(index, out)
    if was_output:
        ir.convenience.replace_all_uses_with(full, out, replace_graph_outputs=True)
        sliced.replace_input_with(0, full)
        out.name, full.name = full.name, f"{full.name}_full"


def _split_sizes(node: ir.Node) -> list[int] | None:
    """The ``split`` input equivalent to opset 18's ``num_outputs`` (None when not static)."""
    parts = int(node.attributes["num_outputs"].as_int())
    data = node.inputs[0]
    if data is None or data.shape is None or parts < 1:
        return None
    axis = int(node.attributes["axis"].as_int()) if "axis" in node.attributes else 0
    size = data.shape[axis]
    if not isinstance(size, int):
        return None
    chunk = -(-size // parts)  # opset 18: ceil(size / n) each, the last part takes the rest
    sizes = [chunk] * (size // chunk) + ([size % chunk] if size % chunk else [])
    return sizes if len(sizes) == parts == len(node.outputs) else None


def _rewrite_split(graph: ir.Graph, node: ir.Node) -> None:
    sizes = _split_sizes(node)
    assert sizes is not None  # checked
    split = ir.Value(
        name=unique_name(graph, (node.name or "split") + "_sizes"),
        const_value=ir.tensor(np.array(sizes, np.int64)),
    )
    graph.register_initializer(split)
    del node.attributes["num_outputs"]
    node.resize_inputs(2)
    node.replace_input_with(1, split)


@register
class DowngradeOpsetPass(IrpassPass):
    """Lower the default-domain opset (e.g. 20 -> 13 for TensorRT 8.2) where nothing changes."""

    @dataclasses.dataclass(frozen=True)
    class Options:
        """Options of downgrade_opset."""

        target: int = option(13, "default-domain opset to lower the model to (>= 13)")

        def __post_init__(self) -> None:
            if not 13 <= self.target <= onnx.defs.onnx_opset_version():
                raise ValueError(f"target must be at least 13, got {self.target}")

    name = "downgrade_opset"
    lossless = True
    recurses_into_subgraphs = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Check every node, then rewrite; leave the model unchanged if anything blocks."""
        target = self.options.target
        current = default_opset(model)
        if current is None or current <= target:
            return ir.passes.PassResult(model, modified=False)
        blockers = downgrade_blockers(model, target)
        if blockers:
            self.stats["blocked"] = len(blockers)
            logger.warning(
                "downgrade_opset: cannot lower opset %d to %d: %s%s",
                current,
                target,
                "; ".join(blockers[:5]),
                f" (+{len(blockers) - 5} more)" if len(blockers) > 5 else "",
            )
            return ir.passes.PassResult(model, modified=False)
        for graph in model.graphs():
            for node in list(graph):
                if node.domain not in ("", "ai.onnx"):
                    continue
                new, old = _schema(node.op_type, current), _schema(node.op_type, target)
                assert old is not None  # checked
                if new is not None and new.since_version == old.since_version:
                    continue
                if node.op_type in _REDUCE_WITH_AXES_INPUT_SINCE_18 and target < 18:
                    _rewrite_reduce(node)
                if node.op_type == "Split" and "num_outputs" in node.attributes:
                    _rewrite_split(graph, node)
                if node.op_type == "Shape":
                    _rewrite_shape(graph, node)
                for name in sorted(set(node.attributes) - set(old.attributes)):
                    del node.attributes[name]  # checked: at the newer schema's default
                self.stats[node.op_type] += 1
        model.opset_imports[""] = target
        model.opset_imports.pop("ai.onnx", None)
        imports = [onnx.helper.make_opsetid(d, v) for d, v in model.opset_imports.items()]
        model.ir_version = int(onnx.helper.find_min_ir_version_for(imports))
        for graph in model.graphs():
            if graph.opset_imports and "" in graph.opset_imports:
                graph.opset_imports[""] = target
        return ir.passes.PassResult(model, modified=True)
