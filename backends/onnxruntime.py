"""ONNX Runtime CPU backend (x86, Raspberry-Pi-class ARM64, generic): model, .ort, offline model.

Writes the optimized ``model.onnx``; with the profile's ``backend_options``:

- ``ort_format``: ``model.ort`` (+ ``model.required_operators.config`` for a minimal build)
  through ONNX Runtime's converter, ``fixed`` optimization style;
- ``ort_platform``: ``arm`` keeps int8 Q/DQ in the ORT file as ARM kernels want it, ``null``
  writes a portable file (no x86-only NCHWc layout);
- ``offline_optimized``: ``model.basic.onnx``, the graph after ORT's portable ``basic``
  optimizations (saves load time; tied to the ORT release that wrote it);
- ``cpu_arch``: the device's architecture (``x86_64``, ``aarch64``): the checks then say
  whether this machine's INT8 instructions (VNNI, dot product) match the device's, since a
  ``never_slower`` target keeps INT8 only where it was faster here.

Checks: every op has a kernel in the CPU execution provider of the installed ONNX Runtime (the
operator list comes from ORT's own kernel registry), the opset is one ORT parses, and ORT loads
what was written.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import onnx
import onnx_ir as ir
import onnxruntime as ort

from irpass.backends.base import Artifact, BackendResult, EmitRequest, TargetCheck
from irpass.backends.checks import (
    op_support_check,
    opset_check,
    ort_load_check,
    qdq_rules_check,
)
from irpass.backends.cpu_features import INT8_FLAGS, host_int8_check
from irpass.backends.ort_format import OrtStyle, convert_to_ort, offline_optimize
from irpass.backends.registry import register_backend
from irpass.errors import OutputError, TargetError
from irpass.ir import save_model
from irpass.targets.profile import OpSupport, Target

__all__ = [
    "OnnxRuntimeBackend",
    "check_options",
    "cpu_op_support",
    "save_checked",
    "write_ort",
]

CPU_PROVIDER = "onnxruntime-cpu"
_OPTIONS = {"ort_format": bool, "ort_platform": (str, type(None)), "offline_optimized": bool,
            "cpu_arch": str}


def cpu_op_support() -> OpSupport:
    """Op types the installed ONNX Runtime runs on the CPU.

    Its kernel registry, plus the ONNX ops defined by a function body (HardSwish, Mish, ...):
    ONNX Runtime inlines those when no kernel exists.
    """
    from onnxruntime.capi import onnxruntime_pybind11_state as C

    kernels = {
        d.op_name if d.domain in ("", "ai.onnx") else f"{d.domain}:{d.op_name}"
        for d in C.get_all_opkernel_def()
        if d.provider == "CPUExecutionProvider"
    }
    functions = {
        schema.name
        for schema in onnx.defs.get_all_schemas()
        if schema.domain == ""
        # attributes of OpSchema that onnx's type stubs do not declare
        and (getattr(schema, "has_function", False)
             or getattr(schema, "has_context_dependent_function", False))
    }
    return OpSupport(
        provider=CPU_PROVIDER,
        release=ort.__version__,
        source=f"ONNX Runtime {ort.__version__} CPU kernel registry and ONNX function ops",
        ops=frozenset(kernels | functions),
    )


def check_options(options: Mapping[str, Any], known: Mapping[str, Any], backend: str) -> None:
    """Raise TargetError for an unknown backend option or one of the wrong JSON type."""
    for key, value in options.items():
        if key not in known:
            raise TargetError(
                f"unknown {backend} backend option {key!r}",
                hint="valid options: " + ", ".join(sorted(known)),
            )
        if not isinstance(value, known[key]):
            raise TargetError(
                f"{backend} backend option {key!r} has the wrong type",
                hint=f"it must be a JSON {getattr(known[key], '__name__', 'value')}",
            )


def save_checked(model: ir.Model, request: EmitRequest) -> tuple[pathlib.Path, Artifact]:
    """Write the final ONNX model into the output folder."""
    path = request.out_dir / request.model_name
    save_model(model, path)
    return path, Artifact(request.model_name, "model", "optimized ONNX model")


def write_ort(
    path: pathlib.Path,
    request: EmitRequest,
    result: BackendResult,
    style: OrtStyle,
    platform: Literal["arm", "amd64"] | None,
) -> pathlib.Path | None:
    """Convert ``path`` to ORT format next to it; record artifacts and a check in ``result``."""
    try:
        written = convert_to_ort(path, request.out_dir, style, platform)
    except OutputError as exc:
        result.checks.append(TargetCheck("ORT format conversion", "fail", exc.message))
        return None
    ort_file = None
    for item in written:
        if item.suffix == ".ort":
            ort_file = item
            what = f"ORT format model ({style} optimization style)"
            result.artifacts.append(Artifact(item.name, "ort-model", what))
        else:
            what = "operators a minimal ONNX Runtime build must include"
            result.artifacts.append(Artifact(item.name, "ort-build-config", what))
    result.checks.append(
        TargetCheck("ORT format conversion", "pass", f"converted by ONNX Runtime {ort.__version__}")
    )
    return ort_file


class OnnxRuntimeBackend:
    """ONNX Runtime on the CPU: the model as ORT runs it, optional .ort and offline model."""

    name = "onnxruntime"
    build_time_precisions: tuple[str, ...] = ()

    def op_providers(self) -> Sequence[str]:
        """Operator lists this backend resolves."""
        return (CPU_PROVIDER,)

    def op_support(self, provider: str, release: str) -> OpSupport:
        """The CPU EP's kernels; ``release`` must be ``installed`` (the registry is live)."""
        if provider != CPU_PROVIDER or release != "installed":
            raise TargetError(
                f"{provider} {release}: the CPU operator list is read from the installed "
                "ONNX Runtime",
                hint='write release "installed" in the profile',
            )
        return cpu_op_support()

    def validate_options(self, options: Mapping[str, Any]) -> None:
        """Check the profile's ``backend_options``."""
        check_options(options, _OPTIONS, self.name)
        if options.get("ort_platform") not in (None, "arm", "amd64"):
            raise TargetError(
                "onnxruntime backend option 'ort_platform' must be arm, amd64 or null",
                hint="arm keeps int8 Q/DQ for ARM kernels; null writes a portable file",
            )
        if "cpu_arch" in options and options["cpu_arch"] not in INT8_FLAGS:
            raise TargetError(
                f"onnxruntime backend option 'cpu_arch' must be one of {', '.join(INT8_FLAGS)}",
                hint="the architecture of the device (uname -m)",
            )

    def planned_files(self, target: Target, model_name: str) -> list[str]:
        """The model (+ weights file), the offline model and the ORT files the profile asks for."""
        stem = pathlib.Path(model_name).stem
        files = [model_name, model_name + ".data"]
        if target.backend_options.get("offline_optimized"):
            files.append(f"{stem}.basic.onnx")
        if target.backend_options.get("ort_format"):
            files += [f"{stem}.ort", f"{stem}.required_operators.config"]
        return files

    def check(self, model: ir.Model, target: Target) -> list[TargetCheck]:
        """Operator coverage, opset range, Q/DQ placement, host INT8 instructions (cpu_arch)."""
        checks = [
            op_support_check(model, target),
            opset_check(model, target),
            qdq_rules_check(model, target.quantization_rules or "ort"),
        ]
        if "cpu_arch" in target.backend_options:
            checks.append(host_int8_check(target.backend_options["cpu_arch"]))
        return checks

    def emit(self, model: ir.Model, target: Target, request: EmitRequest) -> BackendResult:
        """Write model.onnx (+ .ort and model.basic.onnx as the profile asks)."""
        result = BackendResult(self.name, checks=self.check(model, target))
        path, artifact = save_checked(model, request)
        result.artifacts.append(artifact)
        result.checks.append(ort_load_check(path, request.model_name))
        options = target.backend_options
        if options.get("offline_optimized"):
            name = path.stem + ".basic.onnx"
            try:
                offline_optimize(path, request.out_dir / name)
                result.artifacts.append(
                    Artifact(name, "offline-optimized-model",
                             f"after ORT basic optimizations (ONNX Runtime {ort.__version__})")
                )
            except OutputError as exc:
                result.gaps.append(f"no offline-optimized model: {exc.message}")
        if options.get("ort_format"):
            write_ort(path, request, result, "fixed", options.get("ort_platform"))
        result.device_steps += [
            f"pip install onnxruntime (a release >= {ort.__version__} parses this model's opset)",
            "python -c \"import onnxruntime as ort; "
            f"s = ort.InferenceSession('{request.model_name}', "
            "providers=['CPUExecutionProvider'])\"",
            f"measure on the device: irpass bench {request.model_name} --threads <cores>",
        ]
        return result


register_backend(OnnxRuntimeBackend())
