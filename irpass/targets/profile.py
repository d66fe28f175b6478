"""The target profile: everything irpass knows about a deployment target, as plain data.

A :class:`Target` is what passes and backends consult instead of branching on target names:
the backend that writes the artifacts, the runtime release it assumes, the precisions it runs,
the operators its runtime supports (with where that list comes from), the quantization rule set,
how it treats dynamic shapes, the channel multiple it prefers and its default pipeline. Profiles
are loaded from one JSON file per target by :mod:`irpass.targets.loader`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

__all__ = [
    "PRECISIONS",
    "SHAPE_POLICIES",
    "ChannelAlignment",
    "OpSupport",
    "Precision",
    "RuntimeRelease",
    "ShapePolicy",
    "Target",
]

Precision = Literal["int8", "fp16", "fp32"]
#: Precisions a profile may name, from the most to the least aggressive.
PRECISIONS: tuple[str, ...] = ("int8", "fp16", "fp32")

ShapePolicy = Literal["dynamic", "profiles", "fixed"]
#: ``dynamic``: any input shape at run time (ONNX Runtime CPU);
#: ``profiles``: dynamic dims need an optimization profile (min/opt/max) at build time (TensorRT);
#: ``fixed``: every input dim must be a number (NNAPI; Core ML runs best with them).
SHAPE_POLICIES: tuple[str, ...] = ("dynamic", "profiles", "fixed")


@dataclasses.dataclass(frozen=True)
class RuntimeRelease:
    """The runtime release a profile assumes on the device, and where that fact comes from."""

    name: str
    version: str
    platform: str
    source: str

    def __str__(self) -> str:
        return f"{self.name} {self.version} ({self.platform})"


@dataclasses.dataclass(frozen=True)
class OpSupport:
    """The operators a target's runtime accepts, with the provenance of the list.

    ``ops`` holds default-domain op types as plain names (``Conv``) and other domains as
    ``domain:op`` (``com.microsoft:QLinearAdd``).
    """

    provider: str
    release: str
    source: str
    ops: frozenset[str]

    def supports(self, op_type: str, domain: str = "") -> bool:
        """Whether the runtime accepts ``domain:op_type`` (caveats are the backend's business)."""
        if domain in ("", "ai.onnx"):
            return op_type in self.ops
        return f"{domain}:{op_type}" in self.ops


@dataclasses.dataclass(frozen=True)
class ChannelAlignment:
    """The channel multiple the target's kernels prefer (pruning rounds kept channels to it)."""

    multiple: int
    why: str


@dataclasses.dataclass(frozen=True)
class Target:
    """A deployment target: backend, runtime, precisions, operators, shapes, pipeline.

    Attributes:
        name: Canonical name (``jetson-orin``); ``aliases`` are other names (``jetson``).
        description: One line for ``irpass targets``.
        device: The hardware the profile is for.
        backend: Name of the backend in :mod:`irpass.backends` that writes the artifacts.
        runtime: Runtime release assumed on the device.
        precisions: Precisions the target runs, most aggressive first.
        default_precision: What ``optimize`` aims for when the user does not say.
        fallback_precision: What a quantizing target uses without calibration data.
        precision_pipelines: Pipeline text realizing each precision ("" = nothing to run; the
            backend realizes it, e.g. TensorRT's ``--fp16`` builder flag).
        op_support: Operators the runtime accepts and the source/release of that list.
        opset: Inclusive (min, max) default-domain opset the runtime parses.
        quantization_rules: QDQ rule set name for ``quantize(rules=...)``, or None.
        shape_policy: How the runtime treats dynamic input dims (see ``SHAPE_POLICIES``).
        channel_alignment: Preferred channel multiple and why.
        pipeline: The default base pipeline (before legalization and precision).
        legalize: Pipeline text that rewrites what the runtime lacks (runs after ``pipeline``).
        backend_options: Backend-specific settings, validated by the backend.
        notes: Facts a user should know (shown by ``irpass targets`` and in the manifest).
        path: The data file the profile was loaded from.
        never_slower: Time the precision stage's result against the model before it on the
            machine running irpass and drop it when slower (CPU targets).
    """

    name: str
    aliases: tuple[str, ...]
    description: str
    device: str
    backend: str
    runtime: RuntimeRelease
    precisions: tuple[str, ...]
    default_precision: str
    fallback_precision: str
    precision_pipelines: Mapping[str, str]
    op_support: OpSupport
    opset: tuple[int, int]
    quantization_rules: str | None
    shape_policy: str
    channel_alignment: ChannelAlignment
    pipeline: str
    legalize: str
    backend_options: Mapping[str, Any]
    notes: tuple[str, ...]
    path: str
    never_slower: bool = False

    @property
    def supported_ops(self) -> frozenset[str]:
        """Op types the runtime accepts (what ``decompose_ops`` consults)."""
        return self.op_support.ops

    def quantizes(self, precision: str) -> bool:
        """Whether ``precision`` needs calibration data on this target."""
        return precision == "int8"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (``irpass targets --json``, ``manifest.json``)."""
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "description": self.description,
            "device": self.device,
            "backend": self.backend,
            "runtime": dataclasses.asdict(self.runtime),
            "precisions": list(self.precisions),
            "default_precision": self.default_precision,
            "fallback_precision": self.fallback_precision,
            "precision_pipelines": dict(self.precision_pipelines),
            "supported_ops": {
                "provider": self.op_support.provider,
                "release": self.op_support.release,
                "source": self.op_support.source,
                "count": len(self.op_support.ops),
            },
            "opset": list(self.opset),
            "quantization_rules": self.quantization_rules,
            "shape_policy": self.shape_policy,
            "channel_alignment": dataclasses.asdict(self.channel_alignment),
            "pipeline": self.pipeline,
            "legalize": self.legalize,
            "backend_options": dict(self.backend_options),
            "notes": list(self.notes),
            "never_slower": self.never_slower,
            "profile": self.path,
        }
