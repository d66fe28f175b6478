"""Android NNAPI through ONNX Runtime's NNAPI execution provider.

Writes ``model.onnx`` and the ORT-format ``model.with_runtime_opt.ort`` (runtime optimization
style, ARM platform: what ORT Mobile loads and what lets the NNAPI EP claim nodes before the CPU
EP's fusions take them). Checks, in the report's "target checks":

- the partitioning ONNX Runtime's own mobile usability checker computes for NNAPI: partitions,
  nodes covered, and for every op it rejects the reason irpass could not legalize it;
- fixed input shapes (NNAPI takes none dynamic);
- the caveats of NNAPI's operator list that the checker prints but does not check (2-D
  Conv/pools, constant weights, Gather indices, ...), node by node;
- operator coverage against the same list, and the opset.
"""

from __future__ import annotations

import pathlib
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import onnx_ir as ir
import onnxruntime as ort

from irpass.backends.base import BackendResult, EmitRequest, TargetCheck
from irpass.backends.caveats import CaveatRule, const_inputs, input_rank_in, violations
from irpass.backends.checks import (
    op_support_check,
    opset_check,
    ort_load_check,
    qdq_rules_check,
)
from irpass.backends.mobile import (
    MobileEp,
    PartitionReport,
    check_partitions,
    mobile_op_support,
)
from irpass.backends.onnxruntime import check_options, save_checked, write_ort
from irpass.backends.registry import register_backend
from irpass.ir import save_model
from irpass.passes.fusion._rules import attr_int, attr_str, const_array
from irpass.passes.fusion.decompose_ops import DECOMPOSABLE
from irpass.targets.profile import OpSupport, Target

__all__ = [
    "NNAPI_CAVEATS",
    "NnapiBackend",
    "caveat_check",
    "dynamic_inputs",
    "generic_reason",
    "mobile_checks",
    "mobile_files",
    "partition_check",
    "shapes_check",
    "unsupported_reason",
]

_POOLS = ("AveragePool", "MaxPool", "GlobalAveragePool", "GlobalMaxPool")


def _gemm_b(node: ir.Node) -> bool:
    return const_array(node.inputs[1]) is not None or attr_int(node, "transB", 0) == 1


def _pad(node: ir.Node) -> bool:
    if attr_str(node, "mode", "constant") != "constant" or not const_inputs(1, 2)(node):
        return False
    pads = const_array(node.inputs[1]) if len(node.inputs) > 1 else None
    return pads is None or bool((pads >= 0).all())


def _gather(node: ir.Node) -> bool:
    indices = node.inputs[1]
    return indices is not None and (
        indices.dtype == ir.DataType.INT32 or const_array(indices) is not None
    )


def _split(node: ir.Node) -> bool:
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        return const_array(node.inputs[1]) is not None
    data = node.inputs[0]
    axis = attr_int(node, "axis", 0)
    if data is None or data.shape is None:
        return False
    size = data.shape[axis]
    return isinstance(size, int) and size % len(node.outputs) == 0


#: The NNAPI list's caveats (ORT's nnapi_supported_ops.md), as checkable rules.
NNAPI_CAVEATS: tuple[CaveatRule, ...] = (
    CaveatRule(("Conv",), input_rank_in(4), "only 2-D Conv (4-D input)"),
    CaveatRule(("Conv",), const_inputs(1, 2), "constant weights and bias"),
    CaveatRule(_POOLS, input_rank_in(4), "only 2-D pooling (4-D input)"),
    CaveatRule(("Resize",), input_rank_in(4), "only 2-D Resize (4-D input)"),
    CaveatRule(("Gemm",), _gemm_b, "constant B or transB=1"),
    CaveatRule(("Pad",), _pad, "constant mode, constant non-negative pads and value"),
    CaveatRule(("Gather",), _gather, "constant indices unless they are int32"),
    CaveatRule(("Split",), _split, "constant split sizes, or an evenly divisible axis"),
    CaveatRule(("Squeeze", "Unsqueeze"), const_inputs(1), "constant axes"),
    CaveatRule(
        ("DepthToSpace",), lambda n: attr_str(n, "mode", "DCR") == "DCR", "DCR mode only"
    ),
    CaveatRule(
        ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul"),
        lambda n: const_inputs(*range(1, len(n.inputs)))(n)
        if n.op_type in ("QuantizeLinear", "DequantizeLinear")
        else const_inputs(1, 2, 4, 5, 6, 7)(n),
        "constant scales and zero points",
    ),
)

_REASONS = {
    "Shape": "reads a run-time shape: some dim is still dynamic after fixing the inputs",
    "ReduceMax": "NNAPI has no max-reduction over arbitrary axes (MaxPool covers only the "
    "spatial axes of a 4-D tensor) and no exact rewrite into NNAPI ops exists",
    "ReduceMin": "NNAPI has no min-reduction and no exact rewrite into NNAPI ops exists",
    "ConvTranspose": "the NNAPI EP has no transposed-convolution kernel",
    "Equal": "the NNAPI EP has no comparison ops (Equal/Less/Greater) and no exact rewrite "
    "into NNAPI ops exists",
    "Expand": "the NNAPI EP has no Expand; it usually broadcasts to a run-time shape "
    "(fixed shapes let constant folding remove it)",
    "Where": "the NNAPI EP has no Where (select)",
    "Erf": "the A&S decomposition needs float32/float64 input",
}


def unsupported_reason(op: str) -> str:
    """Why an op the NNAPI EP lacks is still in the model after legalization."""
    if op in _REASONS:
        return _REASONS[op]
    return generic_reason(op, "NNAPI")


def generic_reason(op: str, ep: str) -> str:
    """The reason for an op no specific note explains."""
    if op in DECOMPOSABLE:
        return (
            "decompose_ops refused it (its conditions: known dtype, static dims or constant "
            "axes; --debug logs the refusal)"
        )
    return f"the {ep} EP has no kernel for it and irpass knows no exact rewrite into its ops"


def dynamic_inputs(model: ir.Model) -> list[str]:
    """``name[dims]`` of graph inputs with a dim that is not a number."""
    found = []
    for value in model.graph.inputs:
        shape = value.shape
        if shape is None or not all(isinstance(d, int) for d in shape):
            found.append(f"{value.name}{list(shape) if shape is not None else '[?]'}")
    return found


def partition_check(report: PartitionReport, reason: Any = unsupported_reason) -> TargetCheck:
    """The checker's verdict as a target check (pass: one partition holding every node)."""
    data = report.to_dict()
    summary = (
        f"{report.partitions} partition(s), {report.supported_nodes}/{report.nodes} nodes "
        f"({100 * report.coverage:.1f}%) on {report.ep}"
    )
    if report.single_partition:
        return TargetCheck(f"{report.ep} partitions (ORT usability checker)", "pass", summary, data)
    why = {op: reason(op) for op in report.unsupported_ops}
    data["not_legalized"] = why
    parts = [f"{op} x{n}: {why[op]}" for op, n in report.unsupported_ops.items()]
    if report.dynamic_shape_nodes:
        parts.append(f"{report.dynamic_shape_nodes} node(s) with dynamic input shapes")
    if report.unsupported_rank_ops:
        parts.append("rank too high for " + ", ".join(report.unsupported_rank_ops))
    return TargetCheck(
        f"{report.ep} partitions (ORT usability checker)",
        "fail",
        summary + "; not legalized: " + "; ".join(parts),
        data,
    )


def caveat_check(model: ir.Model, rules: Sequence[CaveatRule], ep: str) -> TargetCheck:
    """Nodes breaking a documented per-node caveat of the EP's operator list."""
    found = violations((n for g in model.graphs() for n in g), rules)
    if not found:
        return TargetCheck(f"{ep} operator caveats", "pass", "every node meets its op's caveats")
    listed = "; ".join(f"{v['node']} ({v['op']}): {v['requirement']}" for v in found[:8])
    more = f" (+{len(found) - 8} more)" if len(found) > 8 else ""
    return TargetCheck(
        f"{ep} operator caveats",
        "fail",
        f"{len(found)} node(s) the EP would reject on the device: {listed}{more}",
        {"violations": found},
    )


def mobile_checks(
    model: ir.Model,
    target: Target,
    path: pathlib.Path | None,
    static: Callable[[ir.Model, Target], list[TargetCheck]],
) -> list[TargetCheck]:
    """``static`` checks plus ORT's partitioning of the model file (a temporary one if None)."""
    ep: MobileEp = "coreml" if target.backend == "coreml" else "nnapi"
    reason = unsupported_reason if ep == "nnapi" else (lambda op: generic_reason(op, "Core ML"))
    checks = static(model, target)
    if path is not None:
        return [*checks, partition_check(check_partitions(path, ep), reason)]
    with tempfile.TemporaryDirectory(prefix="irpass-check-") as tmp:
        saved = pathlib.Path(tmp) / "model.onnx"
        save_model(model, saved)
        return [*checks, partition_check(check_partitions(saved, ep), reason)]


def mobile_files(model_name: str) -> list[str]:
    """What the NNAPI and Core ML backends write: the model and ORT's runtime-style files."""
    stem = pathlib.Path(model_name).stem
    return [
        model_name,
        model_name + ".data",
        f"{stem}.with_runtime_opt.ort",
        f"{stem}.required_operators.with_runtime_opt.config",
    ]


def shapes_check(model: ir.Model, ep: str, required: bool) -> TargetCheck:
    """Every graph input has fixed dims."""
    dynamic = dynamic_inputs(model)
    if not dynamic:
        return TargetCheck("fixed input shapes", "pass", "every input dim is a number")
    detail = f"dynamic inputs: {', '.join(dynamic)} (give --input-shapes)"
    return TargetCheck("fixed input shapes", "fail" if required else "warn", detail)


class NnapiBackend:
    """Android NNAPI through ONNX Runtime Mobile."""

    name = "nnapi"
    build_time_precisions: tuple[str, ...] = ()
    ep = "nnapi"

    def op_providers(self) -> Sequence[str]:
        """Operator lists this backend resolves."""
        return ("onnxruntime-nnapi",)

    def op_support(self, provider: str, release: str) -> OpSupport:
        """NNAPI's list from the installed onnxruntime (what the checker reads)."""
        return mobile_op_support(self.ep, release)

    def validate_options(self, options: Mapping[str, Any]) -> None:
        """NNAPI takes no options yet."""
        check_options(options, {}, self.name)

    def planned_files(self, target: Target, model_name: str) -> list[str]:
        """The model (+ weights file) and the runtime-optimization ORT files."""
        return mobile_files(model_name)

    def check(self, model: ir.Model, target: Target) -> list[TargetCheck]:
        """Shapes, caveats, operator coverage, opset and ORT's partitioning (via a temp file)."""
        return mobile_checks(model, target, None, self._static_checks)

    def _static_checks(self, model: ir.Model, target: Target) -> list[TargetCheck]:
        return [
            shapes_check(model, "NNAPI", required=True),
            caveat_check(model, NNAPI_CAVEATS, "NNAPI"),
            op_support_check(model, target),
            opset_check(model, target),
            qdq_rules_check(model, target.quantization_rules or "nnapi"),
        ]

    def emit(self, model: ir.Model, target: Target, request: EmitRequest) -> BackendResult:
        """model.onnx, the ORT-format model and the checker's partitioning."""
        path, artifact = save_checked(model, request)
        result = BackendResult(
            self.name, checks=mobile_checks(model, target, path, self._static_checks)
        )
        result.artifacts.append(artifact)
        result.checks.append(ort_load_check(path, request.model_name))
        ort_file = write_ort(path, request, result, "runtime", "arm")
        name = ort_file.name if ort_file else request.model_name
        result.device_steps += [
            f"Android app: implementation 'com.microsoft.onnxruntime:onnxruntime-android:"
            f"{ort.__version__}' (or newer) in build.gradle; copy {name} into the app's assets",
            "Java/Kotlin: SessionOptions().apply { addNnapi(); "
            "addConfigEntry(\"session.enable_saved_runtime_optimizations\", \"1\") }, then "
            f"OrtEnvironment.getEnvironment().createSession(<bytes of {name}>, options)",
            "C/C++: OrtSessionOptionsAppendExecutionProvider_Nnapi(options, 0) before "
            "creating the session (NNAPI_FLAG_USE_FP16 lets NNAPI run an fp32 model in fp16)",
            "check on the phone: adb logcat | grep -i nnapi shows the partitions the EP took",
        ]
        return result


register_backend(NnapiBackend())
