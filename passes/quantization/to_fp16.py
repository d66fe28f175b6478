"""``quantize(mode=fp16)``: half precision, range-sensitive ops kept in float32, few Casts.

Each node of the main graph is either **fp16** or stays **fp32**; values then take their
producer's precision and a Cast is inserted only where a value crosses between the two (one
Cast per value and direction, shared by its readers)::

    x:f32 -> Conv -> Relu -> ReduceSum -> Div -> y:f32
          =  Cast(f16) -> Conv -> Relu -> Cast(f32) -> ReduceSum -> Div -> y   (keep_io_fp32)

A node runs in fp16 when its ONNX schema lets the type variable of its float data be
``tensor(float16)`` (inputs of fixed type, such as Resize's ``scales``, stay float32) and it is
not kept in fp32 by

- the block list: ops whose float16 result can overflow or lose what a normalisation needs
  (Exp, Pow, Log, the summing / product reductions, CumSum, Range, the normalisation ops, ...),
  plus ``keep_fp32=[op types or node names]``;
- the range check: with calibration data, every float tensor's extremes are measured, and a
  tensor beyond ``+-2**15`` (half of fp16's 65504, room for one more doubling) keeps its
  producer and its readers in fp32;
- If/Loop/Scan (their bodies stay float32, as do values they read from the outer graph) and ops
  of other domains.

Constants are converted, not cast: an initializer read only by fp16 nodes becomes float16, one
read by both gets a float16 copy. With ``keep_io_fp32`` (default) graph inputs and outputs stay
float32; otherwise they become float16 where their first reader / producer is fp16.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import onnx
import onnx_ir as ir

from irpass.context import Feed, FeedSource
from irpass.errors import DataError

from .calibrate import calibrate
from .plan import name_nodes

if TYPE_CHECKING:
    from .quantize import QuantizePass

__all__ = ["FP32_OPS", "RANGE_LIMIT", "convert_fp16", "fp16_decisions"]

logger = logging.getLogger(__name__)

#: Ops kept in float32: large intermediate values or accumulated sums overflow float16.
FP32_OPS = frozenset(
    {
        "Exp", "Pow", "Log", "Softplus", "ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceL2",
        "ReduceLogSum", "ReduceLogSumExp", "ReduceProd", "CumSum", "Range",
        "LayerNormalization", "InstanceNormalization", "GroupNormalization",
        "LpNormalization", "MeanVarianceNormalization", "SoftmaxCrossEntropyLoss",
        "NegativeLogLikelihoodLoss", "RandomNormal", "RandomUniform", "RandomNormalLike",
        "RandomUniformLike", "Multinomial", "If", "Loop", "Scan", "SequenceMap",
    }
)  # fmt: skip
#: Tensors whose observed magnitude exceeds this stay float32 (float16 max is 65504).
RANGE_LIMIT = 2.0**15
#: Calibration samples the range check looks at.
RANGE_SAMPLES = 256

_F32 = ir.DataType.FLOAT
_F16 = ir.DataType.FLOAT16
#: Ops whose output type is an attribute (possibly defaulted: the window ops and
#: MelWeightMatrix default to float32 output): they stay as they are (a float32 Constant read
#: by an fp16 node is copied to float16 instead).
_TYPED_BY_ATTRIBUTE = frozenset(
    {
        "Constant",
        "ConstantOfShape",
        "EyeLike",
        "Cast",
        "CastLike",
        "Bernoulli",
        "RandomNormal",
        "RandomUniform",
        "Multinomial",
        "BlackmanWindow",
        "HammingWindow",
        "HannWindow",
        "MelWeightMatrix",
    }
)
#: Attributes that fix a node's output type (BitCast ``to``, the window ops' and
#: MelWeightMatrix's ``output_datatype``, random ops' ``dtype``): such a node stays as it is.
_TYPE_ATTRIBUTES = ("to", "dtype", "output_datatype")


def _schema(node: ir.Node, opset: int) -> onnx.defs.OpSchema | None:
    try:
        return onnx.defs.get_schema(node.op_type, opset, node.domain or "")
    except onnx.defs.SchemaError:
        return None


def _float_slots(node: ir.Node, schema: onnx.defs.OpSchema) -> tuple[list[int], list[int]] | None:
    """Input / output slots that follow a type variable allowing float16, or None if none."""
    allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}

    variadic = onnx.defs.OpSchema.FormalParameterOption.Variadic

    def slots(formals: list[onnx.defs.OpSchema.FormalParameter], count: int) -> list[int] | None:
        found = []
        for index in range(count):
            if index < len(formals):
                formal = formals[index]
            elif formals and formals[-1].option == variadic:
                formal = formals[-1]
            else:
                return None
            if "tensor(float16)" in allowed.get(formal.type_str, set()):
                found.append(index)
        return found

    inputs = slots(list(schema.inputs), len(node.inputs))
    outputs = slots(list(schema.outputs), len(node.outputs))
    if inputs is None or outputs is None or not outputs:
        return None
    return inputs, outputs


def fp16_decisions(
    model: ir.Model,
    keep_fp32: Iterable[str] = (),
    out_of_range: Iterable[str] = (),
) -> tuple[dict[str, tuple[list[int], list[int]]], collections.Counter[str]]:
    """Which main-graph nodes run in fp16 (name -> float input / output slots) and why not.

    ``out_of_range`` names tensors beyond :data:`RANGE_LIMIT`; their producers and readers stay
    float32.
    """
    opset = model.opset_imports.get("", 17)
    keep = frozenset(keep_fp32)
    hot = frozenset(out_of_range)
    inner = _values_read_by_subgraphs(model.graph)
    decisions: dict[str, tuple[list[int], list[int]]] = {}
    reasons: collections.Counter[str] = collections.Counter()
    for node in model.graph:
        touches = [v for v in (*node.inputs, *node.outputs) if v is not None and v.dtype == _F32]
        if not touches:
            continue
        if node.domain not in ("", "ai.onnx"):
            reasons["fp32_other_domain"] += 1
            continue
        if node.op_type in _TYPED_BY_ATTRIBUTE:
            continue  # constants are converted where they are read; Cast is retargeted below
        if any(name in node.attributes for name in _TYPE_ATTRIBUTES):
            reasons["fp32_typed_by_attribute"] += 1
            continue
        if node.op_type in FP32_OPS or node.op_type in keep or node.name in keep:
            reasons["fp32_blocked"] += 1
            continue
        if any(v.name in hot for v in touches):
            reasons["fp32_range"] += 1
            continue
        if any(v.name in inner for v in node.outputs):
            reasons["fp32_read_by_subgraph"] += 1
            continue
        schema = _schema(node, opset)
        slots = _float_slots(node, schema) if schema is not None else None
        if slots is None:
            reasons["fp32_no_fp16_kernel_type"] += 1
            continue
        decisions[node.name or ""] = slots
    return decisions, reasons


def _values_read_by_subgraphs(graph: ir.Graph) -> set[str]:
    """Names of outer values that If/Loop/Scan bodies read (they must keep their type)."""
    names: set[str] = set()
    for node in graph:
        for attr in node.attributes.values():
            bodies = []
            if attr.type == ir.AttributeType.GRAPH:
                bodies = [attr.as_graph()]
            elif attr.type == ir.AttributeType.GRAPHS:
                bodies = list(attr.as_graphs())
            for body in bodies:
                for inner in body.all_nodes():
                    names.update(v.name for v in inner.inputs if v is not None and v.name)
    return names


def _whole_batches(source: FeedSource, samples: int) -> FeedSource:
    """Whole batches of ``source`` until ``samples`` samples are seen.

    The last batch is not cut: a model whose first axis is static, not a batch axis, accepts
    no shorter tensor (ONNX backend case test_mish: x is float[10000]).
    """

    def feeds() -> Iterator[Feed]:
        seen = 0
        for feed in source():
            yield feed
            first = np.asarray(next(iter(feed.values()), 0))
            seen += int(first.shape[0]) if first.ndim else 1
            if seen >= samples:
                return

    return feeds


def _out_of_range(model: ir.Model, pass_: QuantizePass) -> set[str]:
    source = pass_.context.calibration_data
    if source is None:
        return set()
    names = [
        v.name for node in model.graph for v in node.outputs if v.name and v.dtype in (_F32, None)
    ]
    try:
        measured = calibrate(
            model,
            names,
            _whole_batches(source, RANGE_SAMPLES),
            bins=8,
            progress=pass_.progress("checking fp16 ranges"),
        )
    except DataError:
        raise  # no calibration samples at all: the user's data, said as such
    except Exception as exc:  # data the runtime cannot take (bfloat16, sequences) must not
        # stop the conversion, but the skipped check is reported, not silent
        pass_.stats["range_check_failed"] = 1
        logger.warning("fp16: ranges not checked, the calibration run failed: %s", exc)
        return set()
    pass_.stats["range_checked_tensors"] = len(measured.stats)
    return {
        name
        for name, stats in measured.stats.items()
        if not stats.empty and max(-stats.min, stats.max) > RANGE_LIMIT
    }


class _Converter:
    def __init__(self, model: ir.Model, decisions: dict[str, tuple[list[int], list[int]]]) -> None:
        self.model = model
        self.graph = model.graph
        self.decisions = decisions
        self.casts: dict[tuple[int, ir.DataType], ir.Value] = {}
        self.cast_nodes: set[int] = set()
        self.half_constants: dict[int, ir.Value] = {}
        self.count = 0
        taken = {v.name for n in self.graph for v in (*n.inputs, *n.outputs) if v is not None}
        taken |= set(self.graph.initializers) | {v.name for v in self.graph.inputs}
        self.taken = {n for n in taken if n}

    def unique(self, base: str) -> str:
        name, index = base, 1
        while name in self.taken:
            name, index = f"{base}_{index}", index + 1
        self.taken.add(name)
        return name

    def cast(self, value: ir.Value, to: ir.DataType, before: ir.Node | None) -> ir.Value:
        """A Cast of ``value`` to ``to`` (shared by every reader), placed before ``before``."""
        key = (id(value), to)
        if key not in self.casts:
            suffix = "fp16" if to == _F16 else "fp32"
            node = ir.node(
                "Cast", [value], {"to": int(to)}, name=self.unique(f"{value.name}_to_{suffix}")
            )
            node.outputs[0].name = self.unique(f"{value.name}_{suffix}")
            node.outputs[0].type = ir.TensorType(to)
            node.outputs[0].shape = value.shape
            producer = value.producer()
            if producer is not None:
                self.graph.insert_after(producer, node)
            elif before is not None:
                self.graph.insert_before(before, node)
            else:
                self.graph.append(node)
            self.casts[key] = node.outputs[0]
            self.cast_nodes.add(id(node))
            self.count += 1
        return self.casts[key]

    def half_constant(self, value: ir.Value) -> ir.Value:
        """A float16 copy of a float32 constant (one per constant)."""
        if id(value) not in self.half_constants:
            tensor = ir.convenience.get_const_tensor(value)
            assert tensor is not None
            array = tensor.numpy().astype(np.float16)
            name = self.unique(f"{value.name}_fp16")
            copy = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(_F16))
            copy.const_value = ir.tensor(array, name=name)
            self.graph.register_initializer(copy)
            self.half_constants[id(value)] = copy
        return self.half_constants[id(value)]

    def run(self, keep_io_fp32: bool) -> None:
        half_nodes = {n.name or "": n for n in self.graph if n.name in self.decisions}
        half_ids = {id(n) for n in half_nodes.values()}
        # outputs declared float16 by the model itself stay float16 (not cast "back")
        float_outputs = {id(v) for v in self.graph.outputs if v.dtype == _F32}
        # 1. outputs of fp16 nodes become fp16 values
        for name, node in half_nodes.items():
            for slot in self.decisions[name][1]:
                out = node.outputs[slot]
                if out.dtype == _F32:
                    out.type = ir.TensorType(_F16)
        # 2. every reader gets the precision it needs
        for node in list(self.graph):
            float_inputs = self.decisions[node.name or ""][0] if id(node) in half_ids else []
            for slot, value in enumerate(node.inputs):
                if value is None:
                    continue
                producer = value.producer()
                if slot in float_inputs and value.dtype == _F32:
                    node.replace_input_with(slot, self._as_half(value, node))
                elif slot not in float_inputs and value.dtype == _F16 and id(producer) in half_ids:
                    node.replace_input_with(slot, self.cast(value, _F32, node))
        # 3. graph inputs and outputs
        if not keep_io_fp32:
            for value in self.graph.inputs:
                users = [user for user, _ in value.uses()]
                if value.dtype != _F32 or not users:
                    continue
                if all(id(user) in self.cast_nodes for user in users):
                    cast_node = users[0]
                    value.type = ir.TensorType(_F16)
                    cast_node.outputs[0].replace_all_uses_with(value)
                    self.graph.remove(cast_node, safe=True)
                    self.count -= 1
        for index, value in enumerate(list(self.graph.outputs)):
            if value.dtype != _F16 or not keep_io_fp32 or id(value) not in float_outputs:
                continue
            name = value.name or ""
            self.taken.discard(name)
            value.name = self.unique(f"{name}_fp16")
            back = self.cast(value, _F32, None)
            back.name = name
            self.taken.add(name)
            self.graph.outputs[index] = back
        # 4. constants read only in fp16 are converted in place (no fp32 copy left behind)
        used = {v.name for n in self.graph for v in n.inputs if v is not None}
        for name, value in list(self.graph.initializers.items()):
            if name not in used and id(value) in self.half_constants:
                del self.graph.initializers[name]
        for node in list(self.graph):
            if node.op_type == "Constant" and not any(
                o.uses() or o.is_graph_output() for o in node.outputs
            ):
                self.graph.remove(node, safe=True)

    def _as_half(self, value: ir.Value, reader: ir.Node) -> ir.Value:
        producer = value.producer()
        constant_node = producer is not None and producer.op_type == "Constant"
        # a graph input with a default value is an input the user may feed: cast, not frozen
        if (
            ir.convenience.get_const_tensor(value) is not None
            and not value.is_graph_input()
            and (value.is_initializer() or constant_node)
        ):
            return self.half_constant(value)
        return self.cast(value, _F16, reader)


def convert_fp16(model: ir.Model, pass_: QuantizePass) -> bool:
    """Convert the main graph to fp16 as the module docstring says; returns whether it did."""
    from irpass.passes.canonicalize.infer_shapes import InferShapesPass

    InferShapesPass()(model)  # the decisions need every value's element type
    unnamed = [n for n in model.graph if not n.name]
    name_nodes(model.graph)  # names for keep_fp32= and the logs; given back if nothing changes
    hot = _out_of_range(model, pass_)
    decisions, reasons = fp16_decisions(model, pass_.options.keep_fp32, hot)
    del reasons[""]
    pass_.stats.update(reasons)
    if not decisions:
        for node in unnamed:
            node.name = None
        return False
    converter = _Converter(model, decisions)
    converter.run(pass_.options.keep_io_fp32)
    pass_.stats["fp16_nodes"] = len(decisions)
    pass_.stats["casts"] = converter.count
    if hot:
        logger.info(
            "fp16: %d tensors beyond +-%g keep float32: %s", len(hot), RANGE_LIMIT, sorted(hot)[:5]
        )
    return True
