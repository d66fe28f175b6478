"""iOS Core ML through ONNX Runtime's Core ML execution provider (ML Program format).

Writes ``model.onnx`` and the ORT-format ``model.with_runtime_opt.ort`` for ORT Mobile on iOS.
Checks: the Core ML (ML Program) partitioning from ONNX Runtime's own mobile usability checker,
fixed input shapes (Core ML runs dynamic shapes, but slower and with fewer ops, so they are a
warning, not a failure), the per-node caveats of the ML Program operator list, operator coverage
and opset. FP16 is Core ML's natural precision: on the Neural Engine and the GPU an ML Program
computes in float16; the ``ios`` profile converts the model to FP16 where the quantization
package is present.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import onnx_ir as ir
import onnxruntime as ort

from irpass.backends.base import BackendResult, EmitRequest, TargetCheck
from irpass.backends.caveats import CaveatRule, const_inputs, input_rank_in
from irpass.backends.checks import op_support_check, opset_check, ort_load_check
from irpass.backends.mobile import mobile_op_support
from irpass.backends.nnapi import caveat_check, mobile_checks, mobile_files, shapes_check
from irpass.backends.onnxruntime import check_options, save_checked, write_ort
from irpass.backends.registry import register_backend
from irpass.targets.profile import OpSupport, Target

__all__ = ["COREML_CAVEATS", "CoreMlBackend"]

_POOLS = ("AveragePool", "MaxPool", "GlobalAveragePool", "GlobalMaxPool")


def _float32_inputs(node: ir.Node) -> bool:
    return all(v is not None and v.dtype == ir.DataType.FLOAT for v in node.inputs)


#: The Core ML ML Program list's caveats (ORT's coreml_supported_mlprogram_ops.md), checkable.
COREML_CAVEATS: tuple[CaveatRule, ...] = (
    CaveatRule(("Conv",), input_rank_in(3, 4), "only 1-D or 2-D Conv"),
    CaveatRule(("Conv",), const_inputs(2), "constant bias"),
    CaveatRule(("ConvTranspose",), const_inputs(1, 2), "constant weight and bias"),
    CaveatRule(_POOLS, input_rank_in(4), "only 2-D pooling (4-D input)"),
    CaveatRule(("Gemm",), const_inputs(1), "constant B"),
    CaveatRule(("Slice",), const_inputs(1, 2, 3, 4), "constant starts/ends/axes/steps"),
    CaveatRule(("Split",), const_inputs(1), "constant split sizes"),
    CaveatRule(("Pow",), _float32_inputs, "both inputs float32"),
)


class CoreMlBackend:
    """iOS Core ML (ML Program) through ONNX Runtime Mobile."""

    name = "coreml"
    build_time_precisions: tuple[str, ...] = ()

    def op_providers(self) -> Sequence[str]:
        """Operator lists this backend resolves."""
        return ("onnxruntime-coreml",)

    def op_support(self, provider: str, release: str) -> OpSupport:
        """The ML Program list from the installed onnxruntime (what the checker reads)."""
        return mobile_op_support("coreml", release)

    def validate_options(self, options: Mapping[str, Any]) -> None:
        """Core ML takes no options yet."""
        check_options(options, {}, self.name)

    def planned_files(self, target: Target, model_name: str) -> list[str]:
        """The model (+ weights file) and the runtime-optimization ORT files."""
        return mobile_files(model_name)

    def check(self, model: ir.Model, target: Target) -> list[TargetCheck]:
        """Shapes (a warning), caveats, operators, opset and ORT's Core ML partitioning."""
        return mobile_checks(model, target, None, self._static_checks)

    def _static_checks(self, model: ir.Model, target: Target) -> list[TargetCheck]:
        return [
            shapes_check(model, "Core ML", required=False),
            caveat_check(model, COREML_CAVEATS, "Core ML"),
            op_support_check(model, target),
            opset_check(model, target),
        ]

    def emit(self, model: ir.Model, target: Target, request: EmitRequest) -> BackendResult:
        """model.onnx, the ORT-format model and the checker's Core ML partitioning."""
        path, artifact = save_checked(model, request)
        result = BackendResult(
            self.name, checks=mobile_checks(model, target, path, self._static_checks)
        )
        result.artifacts.append(artifact)
        result.checks.append(ort_load_check(path, request.model_name))
        ort_file = write_ort(path, request, result, "runtime", "arm")
        name = ort_file.name if ort_file else request.model_name
        result.device_steps += [
            f"iOS app: pod 'onnxruntime-objc', '~> {ort.__version__}' (or the Swift package); "
            f"bundle {name}",
            "Swift/Obj-C: let options = try ORTSessionOptions(); "
            "try options.appendCoreMLExecutionProvider(withOptionsV2: "
            "[\"ModelFormat\": \"MLProgram\", \"MLComputeUnits\": \"ALL\"]); "
            "options.addConfigEntry(withKey: \"session.enable_saved_runtime_optimizations\", "
            "value: \"1\")",
            f"create the ORTSession with that path and options; {name} runs on the Neural Engine "
            "or GPU in FP16 where Core ML takes the partition",
        ]
        return result


register_backend(CoreMlBackend())
