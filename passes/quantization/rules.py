"""Per-target QDQ rule sets, as data: which ops get Q/DQ, on which tensors, with which types.

A :class:`RuleSet` says, for one runtime, how activations and weights are typed and what each
op type does in a quantized graph (its :class:`OpRule`, one line of spec each). The insertion
pass (:mod:`.insert_qdq`) reads nothing else, and :mod:`.validate` checks a model against the
same data, so placement and validation cannot drift apart. Roles:

``linear``       Conv / ConvTranspose / Gemm / MatMul: Q/DQ on the data input, DQ on the
                 constant weight (per-channel on the layout's output axis or per-tensor), bias
                 int32 (``s_in * s_w``) or float; both operands quantized when MatMul has two
                 activations
``binary``       Add / Mul: every input quantized (TensorRT: only the residual input of an Add
                 fed by a quantized linear op, so Conv+Add fuses)
``variadic``     Concat: every input quantized
``unary``        pooling, Sigmoid, Softmax, ...: data input and output quantized
``passthrough``  data movement (MaxPool, Reshape, Transpose, ...): the output reuses the input's
                 scale and zero point, so a runtime drops the Q/DQ pair and moves int8 values
``absorb``       Relu / Clip directly after a quantized op: removed, the following Q (zero point
                 at the type's minimum, range inside the clip bounds) saturates exactly as they
                 would

Outputs: ``always`` (the runtime's fused kernel needs a Q after the op: QLinearConv),
``if_consumed`` (only when a quantized op reads it: QGemm / MatMulIntegerToFloat can return
float), ``never`` (TensorRT: outputs stay float).

The registry (:func:`get_rules`, :func:`rule_set_names`, :func:`register_rules`) is what target
profiles name in their ``quantization`` field.
"""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Literal

from irpass.errors import PassOptionError

from .qparams import INT8, UINT8, QType

__all__ = [
    "NNAPI",
    "ORT",
    "ORT_S8S8",
    "ORT_U8S8",
    "TENSORRT",
    "OpRule",
    "Output",
    "Role",
    "RuleSet",
    "get_rules",
    "host_ort_rules",
    "register_rules",
    "rule_set_names",
]

Role = Literal["linear", "binary", "variadic", "unary", "passthrough", "absorb"]
Output = Literal["always", "if_consumed", "never"]
Granularity = Literal["per_channel", "per_tensor"]


@dataclasses.dataclass(frozen=True)
class OpRule:
    """How one op type is quantized under a rule set; ``spec`` is the one-line rule."""

    op_type: str
    role: Role
    spec: str
    output: Output = "always"
    weights: Granularity = "per_channel"
    bias: Literal["int32", "float"] = "int32"
    #: Input indices that carry activations (None: input 0 for unary / passthrough ops, all
    #: inputs for binary / variadic ops).
    inputs: tuple[int, ...] | None = None
    #: A fixed output grid ``(scale, zero_point)`` the runtime requires (NNAPI Softmax).
    fixed_output: tuple[float, int] | None = None
    #: Whether both operands may be activations (attention's Q @ K^T).
    two_activations: bool = False

    def __post_init__(self) -> None:
        if self.role == "passthrough" and self.output != "always":
            raise ValueError(f"{self.op_type}: a passthrough op always carries its input grid")

    def activation_inputs(self, arity: int) -> tuple[int, ...]:
        """Indices of the inputs that carry activations for a node with ``arity`` inputs."""
        if self.inputs is not None:
            return tuple(i for i in self.inputs if i < arity)
        if self.role in ("binary", "variadic"):
            return tuple(range(arity))
        return (0,)


@dataclasses.dataclass(frozen=True)
class RuleSet:
    """A runtime's quantization rules.

    Attributes:
        name: Registry key (``tensorrt``, ``ort``, ``nnapi``).
        summary: One line for ``irpass passes`` and reports.
        activations: Integer type of activations.
        symmetric_activations: Zero point fixed at 0 (TensorRT) or free (asymmetric).
        weights: Integer type of weights (always symmetric, zero point 0).
        ops: Op type -> rule.
        residual_add: Quantize only the residual input of an Add fed by a quantized linear op
            (TensorRT), instead of treating Add as a fully quantized binary op.
        forbidden_ops: Op types the runtime rejects in a quantized graph.
        min_opset: Lowest opset the QDQ form needs (per-channel DequantizeLinear: 13).
        fusion_check: The validator also loads the model in ONNX Runtime (CPU) and checks that
            every quantized Conv / Gemm / MatMul became an integer kernel.
    """

    name: str
    summary: str
    activations: QType
    symmetric_activations: bool
    weights: QType
    ops: Mapping[str, OpRule]
    residual_add: bool = False
    forbidden_ops: frozenset[str] = frozenset()
    min_opset: int = 13
    fusion_check: bool = False

    def __post_init__(self) -> None:
        for key, rule in self.ops.items():
            if key != rule.op_type:
                raise ValueError(
                    f"rule set {self.name}: key {key!r} holds a rule for {rule.op_type}"
                )
        if self.symmetric_activations and not self.activations.signed:
            raise ValueError(f"rule set {self.name}: symmetric activations need a signed type")

    def rule(self, op_type: str) -> OpRule | None:
        """The rule for ``op_type``, or None when the op stays float."""
        return self.ops.get(op_type)

    def ops_with_role(self, *roles: Role) -> frozenset[str]:
        """Op types whose rule has one of ``roles``."""
        return frozenset(k for k, r in self.ops.items() if r.role in roles)

    def __add__(self, extra: Iterable[OpRule]) -> RuleSet:
        """A copy with ``extra`` rules added or replacing same-type rules."""
        ops = dict(self.ops)
        ops.update({r.op_type: r for r in extra})
        return dataclasses.replace(self, ops=MappingProxyType(ops))


def _ops(*rules: OpRule) -> Mapping[str, OpRule]:
    return MappingProxyType({r.op_type: r for r in rules})


def _passthrough(*op_types: str) -> list[OpRule]:
    return [
        OpRule(t, "passthrough", f"{t}: int8 in, int8 out on the same grid (Q/DQ pair dropped)")
        for t in op_types
    ]


TENSORRT = RuleSet(
    name="tensorrt",
    summary="TensorRT explicit quantization: int8 symmetric (zero point 0), per-channel "
    "weights, Q/DQ on the inputs of Conv/ConvTranspose/Gemm/MatMul and the residual input of Add",
    activations=INT8,
    symmetric_activations=True,
    weights=INT8,
    ops=_ops(
        OpRule(
            "Conv",
            "linear",
            "Conv: Q/DQ(x), DQ(w per-channel axis 0), float bias, float out",
            output="never",
            bias="float",
        ),
        OpRule(
            "ConvTranspose",
            "linear",
            "ConvTranspose: Q/DQ(x), DQ(w per-channel axis 1), float bias, float out",
            output="never",
            bias="float",
        ),
        OpRule(
            "Gemm",
            "linear",
            "Gemm: Q/DQ(a), DQ(b per output feature, axis by transB), float bias, float out",
            output="never",
            bias="float",
        ),
        OpRule(
            "MatMul",
            "linear",
            "MatMul: Q/DQ on both operands (weights per output column), float out",
            output="never",
            bias="float",
            two_activations=True,
        ),
        OpRule(
            "Add",
            "binary",
            "Add after a quantized linear op: Q/DQ on the residual input (Conv+Add fuses)",
            output="never",
        ),
    ),
    residual_add=True,
    forbidden_ops=frozenset(
        {
            "QLinearConv",
            "QLinearMatMul",
            "ConvInteger",
            "MatMulInteger",
            "QGemm",
            "QLinearAdd",
            "QLinearMul",
            "QLinearConcat",
            "MatMulNBits",
        }
    ),
)

ORT_U8S8 = RuleSet(
    name="ort_u8s8",
    summary="ONNX Runtime CPU on x86: U8S8 QDQ (asymmetric uint8 activations, symmetric "
    "per-channel int8 weights, int32 bias) placed so ORT fuses QLinearConv/QGemm/"
    "QLinearMatMul/QLinearAdd",
    activations=UINT8,
    symmetric_activations=False,
    weights=INT8,
    ops=_ops(
        OpRule(
            "Conv",
            "linear",
            "Conv: DQ(x), DQ(w per-channel), DQ(int32 bias) -> Conv -> Q  => QLinearConv",
        ),
        OpRule(
            "Gemm",
            "linear",
            "Gemm: DQ(a), DQ(b per-channel), DQ(int32 c) -> Gemm [-> Q]  => QGemm",
            output="if_consumed",
        ),
        OpRule(
            "MatMul",
            "linear",
            "MatMul: DQ(a), DQ(b) -> MatMul [-> Q]  => QLinearMatMul / MatMulIntegerToFloat",
            output="if_consumed",
            two_activations=True,
        ),
        OpRule("Add", "binary", "Add: DQ, DQ -> Add -> Q  => QLinearAdd"),
        OpRule("Mul", "binary", "Mul: DQ, DQ -> Mul -> Q  => QLinearMul"),
        OpRule("Concat", "variadic", "Concat: DQ each input -> Concat -> Q  => QLinearConcat"),
        OpRule("AveragePool", "unary", "AveragePool: DQ -> op -> Q  => QLinearAveragePool"),
        OpRule(
            "GlobalAveragePool",
            "unary",
            "GlobalAveragePool: DQ -> op -> Q  => QLinearGlobalAveragePool",
        ),
        OpRule("Sigmoid", "unary", "Sigmoid: DQ -> op -> Q  => QLinearSigmoid (table lookup)"),
        OpRule("LeakyRelu", "unary", "LeakyRelu: DQ -> op -> Q  => QLinearLeakyRelu"),
        *_passthrough(
            "MaxPool",
            "Reshape",
            "Flatten",
            "Squeeze",
            "Unsqueeze",
            "Transpose",
            "Slice",
            "Expand",
            "Tile",
        ),
        OpRule(
            "Relu",
            "absorb",
            "Relu after a quantized op: removed, Q with the lowest zero point saturates at 0",
        ),
        OpRule(
            "Clip",
            "absorb",
            "Clip after a quantized op: removed when the Q grid lies inside the clip bounds",
        ),
    ),
    fusion_check=True,
)

#: The same placement with int8 activations: what ONNX Runtime's ARM kernels prefer (x86 builds
#: convert S8 activations back to U8 at load time, which costs a Q/DQ rewrite per tensor).
ORT_S8S8 = dataclasses.replace(
    ORT_U8S8,
    name="ort_s8s8",
    summary="ONNX Runtime CPU on ARM: S8S8 QDQ (asymmetric int8 activations, symmetric "
    "per-channel int8 weights, int32 bias) placed so ORT fuses its QLinear/integer kernels",
    activations=INT8,
)


def host_ort_rules() -> RuleSet:
    """The ONNX Runtime rule set this machine's CPU prefers (x86: U8S8, ARM and others: S8S8)."""
    machine = platform.machine().lower()
    return ORT_U8S8 if machine in ("x86_64", "amd64", "i386", "i686", "x86") else ORT_S8S8


ORT = dataclasses.replace(
    host_ort_rules(),
    name="ort",
    summary="ONNX Runtime CPU, this machine's preferred form: "
    + host_ort_rules().summary.split(": ", 1)[1],
)

NNAPI = RuleSet(
    name="nnapi",
    summary="Android NNAPI via ONNX Runtime: uint8 asymmetric activations, int8 symmetric "
    "weights (per-channel only for Conv, per-tensor for Gemm/MatMul), Softmax output 1/256",
    activations=UINT8,
    symmetric_activations=False,
    weights=INT8,
    ops=_ops(
        OpRule(
            "Conv",
            "linear",
            "Conv: DQ(u8 x), DQ(s8 w per-channel, API 29+), DQ(int32 bias) -> Conv -> Q(u8)",
        ),
        OpRule(
            "Gemm",
            "linear",
            "Gemm: DQ(u8 a), DQ(s8 b per-tensor), DQ(int32 c) -> Gemm -> Q(u8)",
            weights="per_tensor",
        ),
        OpRule(
            "MatMul",
            "linear",
            "MatMul: DQ(u8 a), DQ(s8 b per-tensor) -> MatMul -> Q(u8)",
            weights="per_tensor",
        ),
        OpRule("Add", "binary", "Add: DQ(u8), DQ(u8) -> Add -> Q(u8)"),
        OpRule("Mul", "binary", "Mul: DQ(u8), DQ(u8) -> Mul -> Q(u8)"),
        OpRule("Concat", "variadic", "Concat: DQ(u8) each input -> Concat -> Q(u8)"),
        OpRule("AveragePool", "unary", "AveragePool: DQ(u8) -> op -> Q(u8)"),
        OpRule("Resize", "unary", "Resize: DQ(u8) -> op -> Q(u8)"),
        OpRule(
            "Softmax",
            "unary",
            "Softmax: DQ(u8) -> op -> Q(u8, scale 1/256, zero point 0)",
            fixed_output=(1.0 / 256.0, 0),
        ),
        *_passthrough("Reshape", "Transpose"),
        OpRule("Relu", "absorb", "Relu after a quantized op: removed, folded into the u8 grid"),
        OpRule(
            "Clip",
            "absorb",
            "Clip after a quantized op: removed when the grid lies inside the clip bounds",
        ),
    ),
)

_REGISTRY: dict[str, RuleSet] = {}


def register_rules(rules: RuleSet) -> RuleSet:
    """Add a rule set to the registry (a name may be registered once)."""
    if rules.name in _REGISTRY and _REGISTRY[rules.name] is not rules:
        raise ValueError(f"rule set {rules.name!r} is already registered")
    _REGISTRY[rules.name] = rules
    return rules


for _rules in (TENSORRT, ORT, ORT_U8S8, ORT_S8S8, NNAPI):
    register_rules(_rules)


def rule_set_names() -> list[str]:
    """Names of every registered rule set."""
    return sorted(_REGISTRY)


def get_rules(name: str) -> RuleSet:
    """The rule set called ``name``; a PassOptionError listing the valid names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise PassOptionError(
            f"unknown quantization rule set {name!r}",
            hint="valid rule sets: " + ", ".join(rule_set_names()),
        ) from None
