"""Decide what a rule set quantizes in a model: nodes, their weights, and the tensors between.

The plan is pure analysis (the model is not modified) and is keyed by names, so one plan can be
applied to several copies of a model (the fallback search tries many). It is built in three
steps over the main graph, in topological order:

1. **Anchors**: every ``linear`` op whose weight is a float constant (or a MatMul of two
   activations when the rule allows it) and that is not excluded.
2. **Growth** (rule sets whose linear outputs are quantized, ONNX Runtime and NNAPI): ops with
   an int8 kernel join when all their activation inputs are already quantized (an Add or Mul
   with a constant operand does not: it is arithmetic on one tensor, a bias or a scale, and
   quantizing it only adds rounding); a Relu or a Clip(0, c) that is the only reader of a
   quantized output is absorbed into that output's Q.
   TensorRT instead gets Q/DQ on the residual input of an Add fed by an anchor.
3. **Pruning**: a unary or data-movement op whose output no quantized op reads is dropped
   again (its Q would only be followed by a DQ back to float, and it costs the same in float),
   repeatedly; binary / variadic ops stay (they read integers instead of two DQs), and
   optional outputs (QGemm, MatMulIntegerToFloat) are quantized only when a quantized op
   reads them.

Every tensor that gets a Q has a :class:`TensorPlan` saying where its grid comes from:
calibration, the input's grid (pass-through ops, so the runtime can drop the Q/DQ pair), a fixed
grid (NNAPI Softmax) or a constant's own values. Nodes inside If/Loop/Scan bodies stay float
(their tensors exist once per iteration; calibration sees the main graph only); ops from
custom domains stay float and are never touched.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection, Mapping
from typing import Literal

import numpy as np
import onnx_ir as ir

from irpass.analysis.layout import weight_layout

from .rules import OpRule, RuleSet

__all__ = [
    "NodePlan",
    "QuantPlan",
    "TensorPlan",
    "make_plan",
    "name_nodes",
]

logger = logging.getLogger(__name__)

Source = Literal["calibrated", "shared", "fixed", "constant"]
_ONNX_DOMAINS = ("", "ai.onnx")


@dataclasses.dataclass(frozen=True)
class TensorPlan:
    """One quantized tensor: where its grid comes from.

    ``name`` is the tensor whose *values* the grid describes (for an absorbed Relu: the Relu's
    output); ``shared_with`` names the tensor whose grid a pass-through op reuses.
    """

    name: str
    source: Source
    shared_with: str | None = None
    fixed: tuple[float, int] | None = None


@dataclasses.dataclass(frozen=True)
class NodePlan:
    """One quantized node.

    Attributes:
        name: Node name.
        op_type: Its op type.
        rule: The rule that applies.
        inputs: Input slots whose activations get a DQ.
        weight_input: Input slot of the constant weight (linear ops), else None.
        bias_input: Input slot of the bias, else None.
        weight_axis: Per-channel axis of the weight, None for per-tensor.
        output: The tensor holding this node's quantized output (after an absorbed
            activation), or None when its output stays float.
        absorbed: Name of the Relu/Clip node folded into the output Q, if any.
    """

    name: str
    op_type: str
    rule: OpRule
    inputs: tuple[int, ...]
    weight_input: int | None = None
    bias_input: int | None = None
    weight_axis: int | None = None
    output: str | None = None
    absorbed: str | None = None


@dataclasses.dataclass
class QuantPlan:
    """What to quantize; see the module docstring."""

    rules: RuleSet
    nodes: dict[str, NodePlan]
    tensors: dict[str, TensorPlan]
    skipped: dict[str, str]

    def calibrated(self) -> list[str]:
        """Names of the tensors whose ranges calibration must measure."""
        return [t.name for t in self.tensors.values() if t.source == "calibrated"]

    def activations(self) -> list[str]:
        """Every quantized activation tensor, whatever its grid's source.

        Calibrating all of them lets any plan that keeps more nodes float (the fallback and
        speed searches) find a range for a tensor whose grid it no longer inherits.
        """
        return [t.name for t in self.tensors.values() if t.source != "constant"]

    def linear(self) -> list[NodePlan]:
        """Planned nodes with a quantized weight, in graph order."""
        return [n for n in self.nodes.values() if n.weight_input is not None]


def name_nodes(graph: ir.Graph) -> int:
    """Give every unnamed node of ``graph`` a unique name; returns how many were named."""
    taken = {node.name for node in graph if node.name}
    named = 0
    for index, node in enumerate(graph):
        if node.name:
            continue
        candidate = f"{node.op_type}_{index}"
        while candidate in taken:
            candidate += "_"
        node.name = candidate
        taken.add(candidate)
        named += 1
    return named


def _const_array(value: ir.Value | None) -> np.ndarray | None:
    """A constant's array, or None (activations, and graph inputs with a default value).

    The user may feed a graph input that has a default, so it is never frozen into a
    quantized weight.
    """
    if value is None or value.is_graph_input():
        return None
    tensor = ir.convenience.get_const_tensor(value)
    return None if tensor is None else tensor.numpy()


def _scalar(array: np.ndarray | None) -> float | None:
    """The value of a constant holding exactly one element (any rank), else None."""
    if array is None or np.size(array) != 1:
        return None
    return float(np.asarray(array).reshape(-1)[0])


def _has_default(value: ir.Value | None) -> bool:
    """A graph input with an initializer of the same name (overridable, IR >= 4)."""
    return value is not None and value.is_graph_input() and value.is_initializer()


def _is_float(value: ir.Value | None, dtypes: Mapping[str, ir.DataType | None]) -> bool:
    """Float32, or of unknown type (calibration observes the type and the plan is redone)."""
    if value is None:
        return False
    dtype = value.dtype if value.dtype is not None else dtypes.get(value.name or "")
    return dtype is None or dtype == ir.DataType.FLOAT


def _excluded(node: ir.Node, exclude: Collection[str]) -> bool:
    return node.name in exclude or node.op_type in exclude


class _Planner:
    def __init__(
        self,
        model: ir.Model,
        rules: RuleSet,
        exclude: Collection[str],
        per_channel: bool,
        dtypes: Mapping[str, ir.DataType | None],
        per_tensor: Collection[str] = (),
    ) -> None:
        self.graph = model.graph
        self.rules = rules
        self.exclude = exclude
        self.per_channel = per_channel
        self.per_tensor = per_tensor
        self.dtypes = dtypes
        self.nodes: dict[str, NodePlan] = {}
        self.skipped: dict[str, str] = {}
        self.quantized_out: dict[str, str] = {}  # value name -> producing planned node
        self.outputs = {v.name for v in self.graph.outputs}

    def skip(self, node: ir.Node, reason: str) -> None:
        self.skipped[node.name or ""] = reason
        logger.debug("not quantizing %s (%s): %s", node.name, node.op_type, reason)

    # -- step 1 ------------------------------------------------------------------------
    def anchor(self, node: ir.Node, rule: OpRule) -> NodePlan | None:
        layout = weight_layout(node)
        data = node.inputs[0] if node.inputs else None
        if layout is None or _const_array(node.inputs[layout.weight_input]) is None:
            if (
                rule.two_activations
                and len(node.inputs) >= 2
                and all(
                    _is_float(v, self.dtypes) and _const_array(v) is None for v in node.inputs[:2]
                )
            ):
                return NodePlan(node.name or "", node.op_type, rule, (0, 1))
            self.skip(node, "the weight is not a constant")
            return None
        if layout.weight_input != 1:
            self.skip(node, "the constant operand is on the left")
            return None
        weight = node.inputs[1]
        if not _is_float(weight, self.dtypes) or not _is_float(data, self.dtypes):
            self.skip(node, "not float32")
            return None
        per_channel = (
            self.per_channel and rule.weights == "per_channel" and node.name not in self.per_tensor
        )
        axis = layout.out_axis if per_channel else None
        bias = layout.bias_input
        if bias is not None:
            bias_array = _const_array(node.inputs[bias])
            weight_array = _const_array(weight)
            assert weight_array is not None
            channels = layout.out_channels(weight_array.shape)
            # an int32 bias is one value per output channel; Gemm's C may be [1, N] (the same)
            if (
                bias_array is None
                or bias_array.size != channels
                or max(bias_array.shape[:-1], default=1) != 1
            ):
                bias = None
        return NodePlan(
            node.name or "",
            node.op_type,
            rule,
            (layout.data_input,),
            weight_input=1,
            bias_input=bias if rule.bias == "int32" else None,
            weight_axis=axis,
        )

    # -- steps 1 and 2 -------------------------------------------------------------------
    def forward(self) -> None:
        for node in self.graph:
            rule = self.rules.rule(node.op_type)
            if rule is None or node.domain not in _ONNX_DOMAINS:
                continue
            if _excluded(node, self.exclude):
                self.skip(node, "excluded")
                continue
            if any(_has_default(v) for v in node.inputs):
                # neither a constant (the user may feed it) nor an activation calibration sees
                self.skip(node, "reads a graph input with a default value")
                continue
            if rule.role == "linear":
                planned = self.anchor(node, rule)
            elif rule.role == "absorb":
                planned = None
                self.absorb(node)
            elif self.rules.residual_add and rule.role == "binary":
                planned = self.residual(node, rule)
            else:
                planned = self.grow(node, rule)
            if planned is None:
                continue
            self.nodes[planned.name] = planned
            quantized_output = rule.output != "never" and not self.rules.residual_add
            if quantized_output and node.outputs and _is_float(node.outputs[0], self.dtypes):
                out = node.outputs[0].name or ""
                self.nodes[planned.name] = dataclasses.replace(planned, output=out)
                self.quantized_out[out] = planned.name

    def grow(self, node: ir.Node, rule: OpRule) -> NodePlan | None:
        slots = rule.activation_inputs(len(node.inputs))
        for slot in slots:
            value = node.inputs[slot]
            if value is None:
                continue
            if _const_array(value) is not None:
                # a bias add or a scale by a constant is elementwise arithmetic on one tensor:
                # quantizing it adds a rounding step and saves nothing (activation formulas
                # such as the tanh GELU are chains of them); concatenating a constant is fine
                if rule.role != "variadic" or not _is_float(value, self.dtypes):
                    return None
                continue
            if (value.name or "") not in self.quantized_out:
                return None
        if not node.outputs or not _is_float(node.outputs[0], self.dtypes):
            return None
        return NodePlan(node.name or "", node.op_type, rule, slots)

    def residual(self, node: ir.Node, rule: OpRule) -> NodePlan | None:
        """TensorRT: Add(linear_out, residual) gets Q/DQ on the residual input only."""
        if len(node.inputs) != 2 or not all(_is_float(v, self.dtypes) for v in node.inputs):
            return None
        hosts = [
            i
            for i, v in enumerate(node.inputs)
            if v is not None
            and v.producer() is not None
            and (v.producer().name or "") in self.nodes  # type: ignore[union-attr]
            and self.nodes[v.producer().name or ""].weight_input is not None  # type: ignore[union-attr]
            and len(v.uses()) == 1
        ]
        if not hosts:
            return None
        other = 1 - hosts[-1]
        if _const_array(node.inputs[other]) is not None:
            return None
        return NodePlan(node.name or "", node.op_type, rule, (other,))

    def absorb(self, node: ir.Node) -> None:
        value = node.inputs[0] if node.inputs else None
        if value is None or (value.name or "") not in self.quantized_out:
            return
        if len(value.uses()) != 1 or value.name in self.outputs:
            return
        if node.op_type == "Clip":
            bounds = [_const_array(v) for v in node.inputs[1:3]]
            # exporters write the bounds as scalars or as 1-element tensors
            low, high = (_scalar(b) for b in ([*bounds, None, None])[:2])
            if low != 0.0:
                self.skip(node, "only Clip(0, c) folds into a quantized output")
                return
            if high is not None and high <= 0:
                return
        producer = self.quantized_out.pop(value.name or "")
        out = node.outputs[0].name or ""
        self.nodes[producer] = dataclasses.replace(
            self.nodes[producer], output=out, absorbed=node.name
        )
        self.quantized_out[out] = producer

    # -- step 3 ------------------------------------------------------------------------
    def prune(self) -> None:
        by_name = {node.name: node for node in self.graph}
        changed = True
        while changed:
            changed = False
            readers: dict[str, int] = {}
            for plan in self.nodes.values():
                node = by_name[plan.name]
                for slot in plan.inputs:
                    value = node.inputs[slot]
                    if value is not None and value.name:
                        readers[value.name] = readers.get(value.name, 0) + 1
            for name, plan in list(self.nodes.items()):
                if plan.output is None or readers.get(plan.output, 0):
                    continue
                # unary and data-movement ops cost the same in float; a binary op (or a fixed
                # output grid, NNAPI Softmax) still reads integers and keeps its partition whole
                if plan.rule.role in ("unary", "passthrough") and plan.rule.fixed_output is None:
                    del self.nodes[name]
                    self.quantized_out.pop(plan.output, None)
                    self.skip(by_name[name], "no quantized op reads its output")
                    changed = True
                elif plan.rule.output == "if_consumed":
                    self.nodes[name] = dataclasses.replace(plan, output=None, absorbed=None)
                    self.quantized_out.pop(plan.output, None)
                    changed = True
            # inputs of a removed node may no longer be quantized: drop its dependants
            for name, plan in list(self.nodes.items()):
                if plan.rule.role in ("linear",) or self.rules.residual_add:
                    continue
                node = by_name[name]
                for slot in plan.inputs:
                    value = node.inputs[slot]
                    if value is None or _const_array(value) is not None:
                        continue
                    if (value.name or "") not in self.quantized_out:
                        del self.nodes[name]
                        if plan.output:
                            self.quantized_out.pop(plan.output, None)
                        self.skip(node, "an input is no longer quantized")
                        changed = True
                        break

    # -- tensors -------------------------------------------------------------------------
    def tensors(self) -> dict[str, TensorPlan]:
        by_name = {node.name: node for node in self.graph}
        tensors: dict[str, TensorPlan] = {}
        for plan in self.nodes.values():
            node = by_name[plan.name]
            for slot in plan.inputs:
                value = node.inputs[slot]
                if value is None or not value.name or value.name in tensors:
                    continue
                if _const_array(value) is not None:
                    tensors[value.name] = TensorPlan(value.name, "constant")
                elif value.name not in self.quantized_out:
                    tensors[value.name] = TensorPlan(value.name, "calibrated")
            if plan.output is None:
                continue
            if plan.rule.fixed_output is not None and plan.absorbed is None:
                tensors[plan.output] = TensorPlan(
                    plan.output, "fixed", fixed=plan.rule.fixed_output
                )
            elif plan.rule.role == "passthrough":
                source = node.inputs[plan.inputs[0]]
                tensors[plan.output] = TensorPlan(plan.output, "shared", shared_with=source.name)  # type: ignore[union-attr]
            else:
                tensors[plan.output] = TensorPlan(plan.output, "calibrated")
        return tensors


def make_plan(
    model: ir.Model,
    rules: RuleSet,
    *,
    exclude: Collection[str] = (),
    per_channel: bool = True,
    dtypes: Mapping[str, ir.DataType | None] | None = None,
    per_tensor: Collection[str] = (),
) -> QuantPlan:
    """Plan the quantization of ``model``'s main graph under ``rules`` (nodes must be named).

    ``exclude`` holds node names or op types that stay float; ``dtypes`` supplies element types
    of values the model does not annotate (from shape inference); the weights of the nodes
    named in ``per_tensor`` get one scale even where the rule set allows one per channel.
    """
    planner = _Planner(
        model, rules, frozenset(exclude), per_channel, dtypes or {}, frozenset(per_tensor)
    )
    planner.forward()
    if not rules.residual_add:
        planner.prune()
    tensors = planner.tensors()
    for tensor in tensors.values():  # a shared grid must come from a planned tensor
        if tensor.source == "shared" and tensor.shared_with not in tensors:
            raise AssertionError(f"{tensor.name} shares the grid of unplanned {tensor.shared_with}")
    return QuantPlan(rules, planner.nodes, tensors, planner.skipped)
