"""The backend protocol: turn the final IR into what a target runtime runs, and say what is missing.

A backend receives the optimized model, the target profile and an :class:`EmitRequest` (output
folder, effective precision, shape profile) and returns a :class:`BackendResult`: the files it
wrote, the checks it ran against the target's rules (``target checks`` in the report), what it
could not do here and why (``gaps``), and the steps left for the device. A backend whose runtime
or hardware is absent (TensorRT, a GPU, a phone) still writes everything it can.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import onnx_ir as ir

from irpass.targets.profile import OpSupport, Target

__all__ = [
    "Artifact",
    "Backend",
    "BackendResult",
    "CheckStatus",
    "EmitRequest",
    "ShapeProfile",
    "TargetCheck",
]

CheckStatus = Literal["pass", "fail", "warn", "skipped"]

#: Per input: (min, opt, max) shapes. Static inputs have min == opt == max.
ShapeProfile = Mapping[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]


@dataclasses.dataclass(frozen=True)
class Artifact:
    """A file a backend wrote, relative to the output folder."""

    path: str
    kind: str
    description: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form (``manifest.json``)."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class TargetCheck:
    """One check of the output against the target's rules.

    ``status`` is ``pass`` or ``fail`` only when the check ran; ``warn`` flags something the
    user should look at; ``skipped`` says the check could not run here (``detail`` says why).
    """

    name: str
    status: CheckStatus
    detail: str
    data: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``report.json`` ``target_checks``)."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class EmitRequest:
    """What a backend needs besides the model and the target.

    Attributes:
        out_dir: Folder receiving the artifacts (created by the caller).
        precision: The precision the pipeline realized (``int8``, ``fp16``, ``fp32``).
        shape_profile: Min/opt/max shapes of every input (for build scripts and profiles).
        model_name: File name of the model written into ``out_dir``.
        build_engine: ``auto`` builds device binaries when the runtime and hardware are here,
            ``never`` only writes the scripts.
    """

    out_dir: pathlib.Path
    precision: str
    shape_profile: ShapeProfile
    model_name: str = "model.onnx"
    build_engine: Literal["auto", "never"] = "auto"


@dataclasses.dataclass
class BackendResult:
    """What a backend did: artifacts, checks, what it could not do, what the device must do."""

    backend: str
    artifacts: list[Artifact] = dataclasses.field(default_factory=list)
    checks: list[TargetCheck] = dataclasses.field(default_factory=list)
    gaps: list[str] = dataclasses.field(default_factory=list)
    device_steps: list[str] = dataclasses.field(default_factory=list)

    @property
    def failed(self) -> list[TargetCheck]:
        """Checks that ran and failed."""
        return [c for c in self.checks if c.status == "fail"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "backend": self.backend,
            "artifacts": [a.to_dict() for a in self.artifacts],
            "checks": [c.to_dict() for c in self.checks],
            "gaps": list(self.gaps),
            "device_steps": list(self.device_steps),
        }


@runtime_checkable
class Backend(Protocol):
    """What every backend implements (see :mod:`irpass.backends.registry`)."""

    #: Registry name, as profiles spell it in ``"backend"``.
    name: str
    #: Precisions the backend's own builder sets on an FP32 model (TensorRT: ``fp16``).
    build_time_precisions: tuple[str, ...]

    def op_support(self, provider: str, release: str) -> OpSupport:
        """The operator list ``provider`` at ``release`` (raises TargetError when unknown)."""
        ...

    def op_providers(self) -> Sequence[str]:
        """Names of the operator-list providers this backend knows."""
        ...

    def validate_options(self, options: Mapping[str, Any]) -> None:
        """Raise TargetError when a profile's ``backend_options`` are wrong for this backend."""
        ...

    def planned_files(self, target: Target, model_name: str) -> list[str]:
        """Every file :meth:`emit` may write into the output folder (declared before the run)."""
        ...

    def check(self, model: ir.Model, target: Target) -> list[TargetCheck]:
        """Check the model against the target's rules without writing anything."""
        ...

    def emit(self, model: ir.Model, target: Target, request: EmitRequest) -> BackendResult:
        """Write the artifacts into ``request.out_dir``; include :meth:`check`'s results."""
        ...
