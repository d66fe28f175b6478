"""Insert QuantizeLinear / DequantizeLinear pairs as a :class:`~.plan.QuantPlan` says.

For rule sets that quantize outputs (ONNX Runtime, NNAPI) a planned Conv followed by a Relu
becomes the node unit ONNX Runtime fuses into QLinearConv::

    y = Relu(Conv(x, W, b))            xq = QuantizeLinear(x, sx, zx)
                                ->     y0 = Conv(DQ(xq, sx, zx), DQ(Wq, sW, axis=0), DQ(bq, sx*sW))
                                       yq = QuantizeLinear(y0, sy, zy = qmin)     (Relu absorbed)
                                       every reader of y reads its own DQ(yq, sy, zy)

For TensorRT only the inputs of the planned ops get Q/DQ and outputs stay float::

    y = Conv(x, W, b)           ->     y = Conv(DQ(Q(x, sx, 0)), DQ(Wq, sW, axis=0), b)

Weights become int8 initializers (``<w>_quantized``) read by a DequantizeLinear per node;
bias becomes int32 with ``scale = sx * sW`` where the rule set wants it. A graph output that
gets quantized keeps its name (the DQ that feeds the output takes it; the float tensor before
the Q is renamed ``<name>_float``). Float weights no node reads any more are removed.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Mapping

import numpy as np
import onnx_ir as ir

from .plan import NodePlan, QuantPlan
from .qparams import QuantParams, activation_params, bias_params, quantize, weight_params
from .rules import RuleSet

__all__ = [
    "QdqWriter",
    "QuantizedWeight",
    "insert_qdq",
    "quantize_weight",
    "resolve_tensor_params",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class QuantizedWeight:
    """A weight in integer form with its parameters (rounded by nearest or by AdaRound)."""

    values: np.ndarray
    params: QuantParams


#: int32 bias codes are kept below 2**30 (half the range) by raising the weight scale.
_BIAS_LIMIT = float(2**30)


def quantize_weight(
    weight: np.ndarray,
    rules: RuleSet,
    axis: int | None,
    *,
    bias: np.ndarray | None = None,
    input_scale: float | None = None,
) -> QuantizedWeight:
    """Symmetric, round-to-nearest quantization of a weight (per-channel when ``axis``).

    With an int32 ``bias`` and the data input's scale, channels whose bias would overflow
    int32 (``|b| / (s_in * s_w) >= 2**30``) get a larger weight scale.
    """
    floor: np.ndarray | float = 0.0
    if bias is not None and input_scale is not None:
        floor = np.abs(bias.astype(np.float64)) / (float(input_scale) * _BIAS_LIMIT)
        if axis is None:
            floor = float(np.max(floor)) if np.size(floor) else 0.0
    params = weight_params(weight, rules.weights, axis, min_scale=floor)
    return QuantizedWeight(quantize(weight, params), params)


def _const(value: ir.Value | None) -> np.ndarray | None:
    if value is None or value.is_graph_input():  # a default the user may override
        return None
    tensor = ir.convenience.get_const_tensor(value)
    return None if tensor is None else tensor.numpy()


def resolve_tensor_params(
    model: ir.Model, plan: QuantPlan, ranges: Mapping[str, tuple[float, float]]
) -> dict[str, QuantParams]:
    """Grid of every planned tensor from calibrated ranges, shared grids, fixed grids, constants."""
    rules = plan.rules
    values = {v.name: v for v in model.graph.initializers.values()}
    for node in model.graph:
        for out in node.outputs:
            values[out.name or ""] = out
    params: dict[str, QuantParams] = {}

    def grid(lo: float, hi: float) -> QuantParams:
        return activation_params(lo, hi, rules.activations, rules.symmetric_activations)

    pending = list(plan.tensors.values())
    while pending:
        progressed = False
        for tensor in list(pending):
            if tensor.source == "calibrated":
                if tensor.name not in ranges:
                    raise KeyError(f"no calibrated range for {tensor.name!r}")
                params[tensor.name] = grid(*ranges[tensor.name])
            elif tensor.source == "fixed":
                assert tensor.fixed is not None
                scale, zero = tensor.fixed
                params[tensor.name] = QuantParams(
                    np.array(scale, dtype=np.float32),
                    np.array(zero, dtype=rules.activations.numpy),
                    rules.activations,
                )
            elif tensor.source == "constant":
                array = _const(values.get(tensor.name))
                assert array is not None, tensor.name
                params[tensor.name] = grid(float(array.min()), float(array.max()))
            else:
                source = tensor.shared_with or ""
                if source not in params:
                    continue
                params[tensor.name] = params[source]
            pending.remove(tensor)
            progressed = True
        if not progressed:
            raise ValueError(
                "circular shared quantization grids: " + ", ".join(t.name for t in pending)
            )
    return params


class _Names:
    """Unique value and node names for everything the rewrite adds."""

    def __init__(self, model: ir.Model) -> None:
        graph = model.graph
        self.taken: set[str] = {v.name for v in graph.inputs if v.name}
        self.taken.update(graph.initializers)
        for node in graph:
            if node.name:
                self.taken.add(node.name)
            self.taken.update(v.name for v in node.outputs if v.name)

    def __call__(self, base: str) -> str:
        name, index = base, 1
        while name in self.taken:
            name, index = f"{base}_{index}", index + 1
        self.taken.add(name)
        return name


class QdqWriter:
    """Adds Q/DQ nodes, quantized weights and biases to one model as a plan says."""

    def __init__(self, model: ir.Model, plan: QuantPlan) -> None:
        self.model = model
        self.graph = model.graph
        self.plan = plan
        self.names = _Names(model)
        self.stats: collections.Counter[str] = collections.Counter()
        self.by_name = {node.name: node for node in self.graph}
        self.values: dict[str, ir.Value] = {v.name: v for v in self.graph.inputs if v.name}
        self.values.update(self.graph.initializers)
        for node in self.graph:
            self.values.update((out.name, out) for out in node.outputs if out.name)
        self.producer_plan = {p.output: p for p in plan.nodes.values() if p.output}
        self.readers: dict[str, set[tuple[str, int]]] = collections.defaultdict(set)
        for node_plan in plan.nodes.values():
            node = self.by_name[node_plan.name]
            for slot in node_plan.inputs:
                value = node.inputs[slot]
                if value is not None and value.name:
                    self.readers[value.name].add((node_plan.name, slot))
        self._grids: dict[str, tuple[ir.Value, ir.Value]] = {}
        self._stored: dict[tuple[str, int | None], tuple[ir.Value, QuantizedWeight]] = {}

    # -- small builders ------------------------------------------------------------------
    def initializer(self, base: str, array: np.ndarray) -> ir.Value:
        """A new initializer holding ``array`` under a unique name derived from ``base``."""
        name = self.names(base)
        tensor = ir.tensor(array, name=name)
        value = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(tensor.dtype))
        value.const_value = tensor
        self.graph.register_initializer(value)
        return value

    def grid_values(self, key: str, params: QuantParams) -> tuple[ir.Value, ir.Value]:
        """Scale and zero-point initializers of a grid (shared by its Q and DQs).

        ``key`` caches the grid; its part before ``#`` names the initializers.
        """
        if key not in self._grids:
            label = key.split("#")[0]
            scale = self.initializer(f"{label}_scale", np.asarray(params.scale, dtype=np.float32))
            zero = self.initializer(
                f"{label}_zero_point", np.asarray(params.zero_point, dtype=params.qtype.numpy)
            )
            self._grids[key] = (scale, zero)
        return self._grids[key]

    def scale_value(self, key: str, params: QuantParams) -> ir.Value:
        """The scale initializer of a grid whose zero point is implied (0 of the input type)."""
        if key not in self._grids:
            label = key.split("#")[0]
            scale = self.initializer(f"{label}_scale", np.asarray(params.scale, dtype=np.float32))
            self._grids[key] = (scale, scale)
        return self._grids[key][0]

    def qdq_node(
        self, op: str, source: ir.Value, key: str, params: QuantParams, *, zero_point: bool = True
    ) -> ir.Node:
        """A QuantizeLinear or DequantizeLinear of ``source`` on the grid named ``key``.

        ``zero_point=False`` (a DequantizeLinear of a symmetric weight or an int32 bias) leaves
        the zero point out: it defaults to 0 of the stored type, which saves a byte per channel
        for weights and four for biases.
        """
        if zero_point:
            scale, zero = self.grid_values(key, params)
            inputs: list[ir.Value | None] = [source, scale, zero]
        else:
            inputs = [source, self.scale_value(key, params)]
        attributes: dict[str, int] = {}
        if params.axis is not None and not params.per_tensor:
            attributes["axis"] = int(params.axis)
        if params.block_size is not None:
            attributes["block_size"] = int(params.block_size)
        suffix = "quantized" if op == "QuantizeLinear" else "dequantized"
        label = key.split("#")[0]
        node = ir.node(op, inputs, attributes, name=self.names(f"{label}_{op}"))
        output = node.outputs[0]
        output.name = self.names(f"{label}_{suffix}")
        dtype = params.qtype.ir_type if op == "QuantizeLinear" else ir.DataType.FLOAT
        output.type = ir.TensorType(dtype)
        output.shape = source.shape
        return node

    # -- activations ---------------------------------------------------------------------
    def quantize_tensor(self, name: str, params: QuantParams) -> None:
        """Q after the tensor's producer; DQs before its readers as the rule set says."""
        value = self.values[name]
        producer_plan = self.producer_plan.get(name)
        absorbed = (
            self.by_name[producer_plan.absorbed]
            if producer_plan and producer_plan.absorbed
            else None
        )
        source = absorbed.inputs[0] if absorbed is not None else value
        assert source is not None
        q = self.qdq_node("QuantizeLinear", source, name, params)
        producer = source.producer()
        if producer is not None:
            self.graph.insert_after(producer, q)
        else:
            self.graph.insert_before(self.graph.node(0), q)
        quantized_readers = self.readers.get(name, set())
        # A quantized output feeds everyone through DQ, so the producer's only reader is its Q
        # (what lets the runtime fuse the node unit); TensorRT-style plans DQ planned readers only.
        everyone = producer_plan is not None
        shared_dq: ir.Value | None = None
        for node, slot in list(value.uses()):
            if node is q:
                continue
            if (node.name, slot) in quantized_readers:
                dq = self.qdq_node("DequantizeLinear", q.outputs[0], name, params)
                self.graph.insert_before(node, dq)
                node.replace_input_with(slot, dq.outputs[0])
                self.stats["dq_activation"] += 1
            elif everyone:
                if shared_dq is None:
                    dq = self.qdq_node("DequantizeLinear", q.outputs[0], name, params)
                    self.graph.insert_after(q, dq)
                    shared_dq = dq.outputs[0]
                node.replace_input_with(slot, shared_dq)
        if everyone and value.is_graph_output():
            self._move_graph_output(value, q, params, name)
        if absorbed is not None:
            self.graph.remove(absorbed, safe=True)
            self.stats[f"absorbed_{absorbed.op_type.lower()}"] += 1
        self.stats["q_activation"] += 1

    def _move_graph_output(
        self, value: ir.Value, q: ir.Node, params: QuantParams, name: str
    ) -> None:
        dq = self.qdq_node("DequantizeLinear", q.outputs[0], name, params)
        self.graph.insert_after(q, dq)
        original = value.name or ""
        self.names.taken.discard(original)
        value.name = self.names(f"{original}_float")
        dq.outputs[0].name = original
        dq.outputs[0].shape = value.shape
        outputs = self.graph.outputs
        for index, out in enumerate(outputs):
            if out is value:
                outputs[index] = dq.outputs[0]

    def quantize_constant(self, name: str, params: QuantParams) -> None:
        """A constant operand of a quantized binary/variadic op: int8 copy + DQ per reader."""
        value = self.values[name]
        array = _const(value)
        assert array is not None
        stored = self.initializer(f"{name}_quantized", quantize(array, params))
        for node_name, slot in sorted(self.readers.get(name, set())):
            node = self.by_name[node_name]
            dq = self.qdq_node("DequantizeLinear", stored, name, params)
            self.graph.insert_before(node, dq)
            node.replace_input_with(slot, dq.outputs[0])
        self.stats["q_constant"] += 1

    # -- weights ---------------------------------------------------------------------------
    def quantize_weights(
        self,
        plan: NodePlan,
        tensor_params: Mapping[str, QuantParams],
        weights: Mapping[str, QuantizedWeight],
        bias_delta: Mapping[str, np.ndarray],
    ) -> None:
        """Integer weight (+ int32 bias) of one planned node, each behind its own DQ."""
        node = self.by_name[plan.name]
        assert plan.weight_input is not None
        weight_value = node.inputs[plan.weight_input]
        array = _const(weight_value)
        assert weight_value is not None and array is not None
        delta = bias_delta.get(plan.name)
        slot = 2  # Conv, ConvTranspose and Gemm all take the bias third
        bias_value = node.inputs[slot] if len(node.inputs) > slot else None
        current = _const(bias_value)
        if bias_value is not None and current is None:
            delta = None  # a bias computed or fed at run time stays as it is
        bias: np.ndarray | None = None
        if current is not None:
            if plan.bias_input is not None:
                current = current.reshape(-1)  # [1, N] Gemm bias: one value per channel
            bias = current.astype(np.float32) + (0.0 if delta is None else delta)
        elif delta is not None:
            bias = delta.astype(np.float32)
        int32_bias = plan.rule.bias == "int32" and (
            plan.bias_input is not None or (current is None and delta is not None)
        )
        data = node.inputs[plan.inputs[0]]
        input_scale = tensor_params[data.name or ""].scale if data is not None else None
        base = weight_value.name or f"{plan.name}_weight"
        cache_key = (base, plan.weight_axis)
        quantized = weights.get(plan.name)
        if quantized is None:
            quantized = quantize_weight(
                array,
                self.plan.rules,
                plan.weight_axis,
                bias=bias if int32_bias else None,
                input_scale=float(input_scale) if int32_bias and input_scale is not None else None,
            )
        cached = self._stored.get(cache_key)
        if cached is not None and cached[1].params.same_as(quantized.params):
            stored = cached[0]
        else:
            stored = self.initializer(f"{base}_quantized", quantized.values)
            if cached is None:
                self._stored[cache_key] = (stored, quantized)
                self.stats["weight_bytes_saved"] += int(array.nbytes - quantized.values.nbytes)
        key = f"{base}#{stored.name}"
        # ORT fuses Conv without the (implied) zero point, but its QGemm/QLinearMatMul
        # selectors want it spelled out
        implicit = node.op_type in ("Conv", "ConvTranspose")
        dq = self.qdq_node(
            "DequantizeLinear", stored, key, quantized.params, zero_point=not implicit
        )
        dq.outputs[0].shape = weight_value.shape
        self.graph.insert_before(node, dq)
        node.replace_input_with(plan.weight_input, dq.outputs[0])
        self.stats["weights_quantized"] += 1
        if int32_bias:
            assert bias is not None
            self._quantize_bias(node, plan, slot, bias, tensor_params, quantized.params)
        elif delta is not None:
            assert bias is not None
            self._set_bias(node, slot, self.initializer(f"{plan.name}_bias_corrected", bias))
            self.stats["bias_corrected"] += 1

    def _set_bias(self, node: ir.Node, slot: int, value: ir.Value) -> None:
        if len(node.inputs) <= slot:
            node.resize_inputs(slot + 1)
        node.replace_input_with(slot, value)

    def _quantize_bias(
        self,
        node: ir.Node,
        plan: NodePlan,
        slot: int,
        bias: np.ndarray,
        tensor_params: Mapping[str, QuantParams],
        weight: QuantParams,
    ) -> None:
        data = node.inputs[plan.inputs[0]]
        assert data is not None
        params = bias_params(tensor_params[data.name or ""].scale, weight.scale)
        exact = np.rint(bias / np.broadcast_to(params.scale, bias.shape))
        if np.any(np.abs(exact) > 2**31 - 1):
            self.stats["bias_saturated"] += 1
            logger.warning("bias of %s saturates int32; its tiny input scale clips it", plan.name)
        stored = self.initializer(f"{plan.name}_bias_quantized", quantize(bias, params))
        dq = self.qdq_node(
            "DequantizeLinear", stored, f"{plan.name}_bias", params, zero_point=False
        )
        dq.outputs[0].shape = ir.Shape(bias.shape)
        self.graph.insert_before(node, dq)
        self._set_bias(node, slot, dq.outputs[0])
        self.stats["bias_int32"] += 1

    def remove_unused(self, before: set[str]) -> None:
        """Drop float weights and Constant nodes that nothing reads any more."""
        used = {v.name for node in self.graph.all_nodes() for v in node.inputs if v is not None}
        used.update(v.name for v in self.graph.outputs)
        for name in list(self.graph.initializers):
            if name in before and name not in used:
                del self.graph.initializers[name]
        for node in list(self.graph):
            if node.op_type == "Constant" and not any(
                out.uses() or out.is_graph_output() for out in node.outputs
            ):
                self.graph.remove(node, safe=True)


def insert_qdq(
    model: ir.Model,
    plan: QuantPlan,
    tensor_params: Mapping[str, QuantParams],
    *,
    weights: Mapping[str, QuantizedWeight] | None = None,
    bias_delta: Mapping[str, np.ndarray] | None = None,
) -> collections.Counter[str]:
    """Rewrite ``model`` in place as ``plan`` says; returns counts of what was inserted.

    ``weights`` overrides the rounding of planned weights (AdaRound), ``bias_delta`` adds a
    per-output-channel correction to the bias of a planned node (bias correction).
    """
    rewriter = QdqWriter(model, plan)
    before = set(model.graph.initializers)
    for node_plan in plan.nodes.values():
        if node_plan.weight_input is not None:
            rewriter.quantize_weights(node_plan, tensor_params, weights or {}, bias_delta or {})
    for name, tensor in plan.tensors.items():
        if tensor.source == "constant":
            rewriter.quantize_constant(name, tensor_params[name])
        else:
            rewriter.quantize_tensor(name, tensor_params[name])
    rewriter.remove_unused(before)
    rewriter.stats["nodes_quantized"] = len(plan.nodes)
    return rewriter.stats
