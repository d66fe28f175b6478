"""Machine-checkable validation of a QDQ model against a rule set (tests and backends use it).

:func:`validate` reads the same :class:`~.rules.RuleSet` data the insertion pass reads and
returns every :class:`Violation` it finds:

- opset at least ``min_opset``; no op the runtime rejects (TensorRT: QLinearConv, ...);
- every QuantizeLinear / DequantizeLinear has a constant, positive, finite scale and a constant
  zero point; a Q is read by DequantizeLinear only (no integer tensor reaches a float op);
- activation grids have the rule set's type (int8 / uint8) and, when it is symmetric, zero
  point 0; weight grids are ``weights``-typed with zero point 0;
- each quantized linear op (weight from a DequantizeLinear) reads its data input through a
  DequantizeLinear, its weight per channel on the layout's output axis or per tensor as its
  rule says, and an int32 bias whose scale is ``s_input * s_weight`` where the rule wants one;
- a rule with ``output="always"`` (ONNX Runtime's QLinearConv, NNAPI) has the op's output read
  by exactly one QuantizeLinear; a fixed output grid (NNAPI Softmax: 1/256, 0) is respected;
- with ``runtime=True`` and a rule set whose ``fusion_check`` is set, ONNX Runtime loads the
  model with its optimizations on and no quantized Conv / Gemm / MatMul may be left unfused
  (a DequantizeLinear still feeding its weight), nor a dynamic int8 layer's MatMulInteger
  (:mod:`.layer_forms`) outside DynamicQuantizeMatMul / MatMulIntegerToFloat. The check needs
  a host of the rule set's kind: x86 ORT builds rewrite S8S8 activations to U8 at load time,
  so ``ort_s8s8`` (ARM) is judged structurally only on x86, and ``ort_u8s8`` structurally
  only on ARM.
"""

from __future__ import annotations

import dataclasses
import pathlib
import tempfile
from collections.abc import Iterable

import numpy as np
import onnx
import onnx_ir as ir

from irpass.analysis.layout import weight_layout
from irpass.ir import default_opset, to_ir

from .rules import RuleSet, host_ort_rules

__all__ = ["Violation", "validate"]

_FLOAT_LINEAR = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclasses.dataclass(frozen=True)
class Violation:
    """One broken rule: where (node name) and what."""

    node: str
    message: str

    def __str__(self) -> str:
        return f"{self.node}: {self.message}"


def _const(value: ir.Value | None) -> np.ndarray | None:
    if value is None:
        return None
    tensor = ir.convenience.get_const_tensor(value)
    return None if tensor is None else tensor.numpy()


def _producer(value: ir.Value | None, op_type: str) -> ir.Node | None:
    if value is None:
        return None
    node = value.producer()
    return node if node is not None and node.op_type == op_type else None


def _is_weight_dq(node: ir.Node) -> bool:
    return node.op_type == "DequantizeLinear" and _const(node.inputs[0]) is not None


def _zero_type(node: ir.Node) -> ir.DataType | None:
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        return node.inputs[2].dtype
    if node.op_type == "DequantizeLinear" and node.inputs[0] is not None:
        return node.inputs[0].dtype
    return None


class _Checker:
    def __init__(self, model: ir.Model, rules: RuleSet) -> None:
        self.model = model
        self.rules = rules
        self.found: list[Violation] = []

    def fail(self, node: ir.Node | str, message: str) -> None:
        name = node if isinstance(node, str) else (node.name or node.op_type)
        self.found.append(Violation(name, message))

    def run(self) -> list[Violation]:
        opset = default_opset(self.model) or 0
        if opset < self.rules.min_opset:
            self.fail("model", f"opset {opset} < {self.rules.min_opset}")
        for node in self.model.graph:
            if node.op_type in self.rules.forbidden_ops:
                self.fail(node, f"{node.op_type} is rejected by {self.rules.name}")
            if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
                self.check_grid(node)
            if node.op_type == "QuantizeLinear":
                self.check_q_readers(node)
        for node in self.model.graph:
            rule = self.rules.rule(node.op_type)
            if rule is None or node.domain not in ("", "ai.onnx"):
                continue
            if rule.role == "linear":
                self.check_linear(node)
            if rule.fixed_output is not None:
                self.check_fixed_output(node, rule.fixed_output)
        return self.found

    # -- grids ---------------------------------------------------------------------------
    def check_grid(self, node: ir.Node) -> None:
        scale = _const(node.inputs[1]) if len(node.inputs) > 1 else None
        if scale is None:
            self.fail(node, "scale is not a constant")
        elif not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
            self.fail(node, "scale is not positive and finite")
        if len(node.inputs) < 3 or node.inputs[2] is None:
            zero = None
            if node.op_type == "QuantizeLinear":
                self.fail(node, "no zero point (the output type would default to uint8)")
        else:
            zero = _const(node.inputs[2])
            if zero is None:
                self.fail(node, "zero point is not a constant")
        dtype = _zero_type(node)
        weight = _is_weight_dq(node)
        if weight:
            self.check_weight_grid(node, dtype, zero)
            return
        expected = self.rules.activations.ir_type
        if dtype is not None and dtype != expected:
            self.fail(
                node,
                f"activation type {dtype.name.lower()}, {self.rules.name} wants "
                f"{self.rules.activations.name}",
            )
        if self.rules.symmetric_activations and zero is not None and np.any(zero != 0):
            self.fail(node, f"zero point {zero.tolist()} != 0 ({self.rules.name} is symmetric)")

    def check_weight_grid(
        self, node: ir.Node, dtype: ir.DataType | None, zero: np.ndarray | None
    ) -> None:
        if dtype == ir.DataType.INT32:
            if zero is not None and np.any(zero != 0):
                self.fail(node, "int32 bias with a non-zero zero point")
            return
        allowed = {self.rules.weights.ir_type, ir.DataType.INT4}
        if dtype is not None and dtype not in allowed:
            self.fail(
                node,
                f"weight type {dtype.name.lower()}, {self.rules.name} wants "
                f"{self.rules.weights.name}",
            )
        if zero is not None and np.any(zero != 0):
            self.fail(node, "weights must be symmetric (zero point 0)")

    def check_q_readers(self, node: ir.Node) -> None:
        for reader, _slot in node.outputs[0].uses():
            if reader.op_type != "DequantizeLinear":
                self.fail(
                    node, f"quantized tensor read by {reader.op_type} {reader.name}, not a DQ"
                )
        if node.outputs[0].is_graph_output():
            self.fail(node, "a quantized tensor is a graph output")

    # -- linear ops ------------------------------------------------------------------------
    def check_linear(self, node: ir.Node) -> None:
        rule = self.rules.rule(node.op_type)
        assert rule is not None
        weight_dq = None
        layout = None
        for index in (1, 0):
            candidate = _producer(
                node.inputs[index] if index < len(node.inputs) else None, "DequantizeLinear"
            )
            if candidate is not None and _is_weight_dq(candidate):
                weight_dq, layout = candidate, weight_layout(node, index)
                break
        if weight_dq is None:
            return  # a float layer (fallback) or an activation x activation MatMul
        assert layout is not None
        data = node.inputs[layout.data_input]
        if _producer(data, "DequantizeLinear") is None:
            self.fail(node, "quantized weight but float data input (no Q/DQ on the activation)")
        scale = _const(weight_dq.inputs[1])
        if scale is not None:
            per_channel = scale.ndim == 1 and scale.size > 1
            if rule.weights == "per_tensor" and per_channel:
                self.fail(node, f"{self.rules.name} wants per-tensor {node.op_type} weights")
            if per_channel:
                axis_attr = weight_dq.attributes.get("axis")
                axis = 1 if axis_attr is None else int(axis_attr.as_int())
                rank = layout.weight_rank
                if axis % rank != layout.out_axis:
                    self.fail(
                        node,
                        f"per-channel weight axis {axis}, the output channels are on "
                        f"axis {layout.out_axis}",
                    )
        if rule.output == "always":
            readers = node.outputs[0].uses()
            if len(readers) != 1 or next(iter(readers))[0].op_type != "QuantizeLinear":
                self.fail(
                    node,
                    "output not read by exactly one QuantizeLinear (the runtime "
                    "cannot fuse the node unit)",
                )
        if rule.bias == "int32" and layout.bias_input is not None:
            self.check_bias(node, layout.bias_input, layout.data_input, weight_dq)

    def check_bias(
        self, node: ir.Node, bias_input: int, data_input: int, weight_dq: ir.Node
    ) -> None:
        bias_dq = _producer(node.inputs[bias_input], "DequantizeLinear")
        if bias_dq is None or _zero_type(bias_dq) != ir.DataType.INT32:
            self.fail(node, "bias is not int32 through a DequantizeLinear")
            return
        data_dq = _producer(node.inputs[data_input], "DequantizeLinear")
        scales = [_const(n.inputs[1]) for n in (bias_dq, data_dq, weight_dq) if n is not None]
        if len(scales) != 3 or any(s is None for s in scales):
            return
        bias_scale, data_scale, weight_scale = (np.asarray(s) for s in scales)
        expected = np.float32(data_scale) * np.asarray(weight_scale, np.float32)
        if not np.allclose(
            np.broadcast_to(bias_scale, expected.shape), expected, rtol=1e-5, atol=0
        ):
            self.fail(node, "bias scale != input scale * weight scale")

    def check_fixed_output(self, node: ir.Node, fixed: tuple[float, int]) -> None:
        for reader, _slot in node.outputs[0].uses():
            if reader.op_type != "QuantizeLinear":
                continue
            scale = _const(reader.inputs[1])
            zero = _const(reader.inputs[2]) if len(reader.inputs) > 2 else np.zeros(())
            if (
                scale is None
                or not np.isclose(float(scale), fixed[0])
                or int(np.asarray(zero)) != fixed[1]
            ):
                self.fail(
                    node,
                    f"{node.op_type} output grid must be scale {fixed[0]:g}, zero point {fixed[1]}",
                )


def _unfused(model: ir.Model) -> list[Violation]:
    """Quantized Conv/Gemm/MatMul ONNX Runtime (CPU, all optimizations) did not fuse."""
    import onnxruntime as ort

    from irpass.ir import save_model

    with tempfile.TemporaryDirectory() as tmp:
        source = pathlib.Path(tmp) / "model.onnx"
        target = pathlib.Path(tmp) / "optimized.onnx"
        save_model(model, source)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(target)
        options.log_severity_level = 3
        try:
            ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # any load failure is the finding
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return [Violation("model", f"ONNX Runtime cannot load it: {first}")]
        optimized = onnx.load(str(target), load_external_data=False)
    producers = {out: node for node in optimized.graph.node for out in node.output}
    found = []
    for node in optimized.graph.node:
        if node.op_type == "MatMulInteger":  # a dynamic int8 layer: Cast and Mul left apart
            found.append(
                Violation(
                    node.name or node.op_type,
                    "ONNX Runtime did not fuse this dynamic int8 layer into "
                    "DynamicQuantizeMatMul / MatMulIntegerToFloat",
                )
            )
            continue
        if node.op_type not in _FLOAT_LINEAR:
            continue
        feeding = [producers.get(name) for name in node.input[:2]]
        if len(feeding) > 1 and feeding[1] is not None and feeding[1].op_type == "DequantizeLinear":
            found.append(
                Violation(
                    node.name or node.op_type,
                    "ONNX Runtime left this quantized op unfused (it runs in "
                    "float on dequantized inputs)",
                )
            )
    return found


def validate(
    model: ir.Model | onnx.ModelProto | str | pathlib.Path,
    rules: RuleSet,
    *,
    runtime: bool = False,
) -> list[Violation]:
    """Every violation of ``rules`` in ``model`` (empty when it is valid); see the module doc."""
    model = to_ir(model)
    found = _Checker(model, rules).run()
    if runtime and rules.fusion_check and rules.activations == host_ort_rules().activations:
        found += _unfused(model)
    return found


def describe(violations: Iterable[Violation]) -> str:
    """One line per violation."""
    return "\n".join(str(v) for v in violations)


__all__ += ["describe"]
