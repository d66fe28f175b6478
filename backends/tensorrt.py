"""NVIDIA TensorRT (Jetson Orin: TensorRT 10; Jetson Nano: TensorRT 8.2).

Writes a TensorRT-ready ``model.onnx`` and ``build_engine.sh``, the ``trtexec`` command that
builds the engine on the device (engines are specific to the GPU and the TensorRT release, so
they are built where they run). The command follows the model and the release:

- TensorRT 10: a model whose types say the precision (FP16 tensors, or an FP32 model asked for
  FP32) builds ``--stronglyTyped``, so TensorRT runs exactly the types ONNX Runtime verified;
  an FP32 model asked for FP16/INT8 builds weakly typed with ``--fp16`` (and ``--int8`` when it
  holds Q/DQ); workspace ``--memPoolSize=workspace:N``; ``--skipInference``.
- TensorRT 8.x: ``--fp16`` / ``--int8`` flags (there is no strong typing), ``--workspace=N``,
  ``--buildOnly``.
- Dynamic inputs get an optimization profile ``--minShapes/--optShapes/--maxShapes``; every
  build reads and updates ``timing.cache`` so rebuilds are fast.

When the ``tensorrt`` Python package imports and a GPU is present, :func:`build_engine` builds
the engine here through the Python API (strongly typed network or precision flags, the same
profile, the timing cache); otherwise the result says so and the script is the way.

Checks against onnx-tensorrt's operator matrix for the profile's release
(``backends/data/tensorrt-<release>.json``, facts from onnx-tensorrt's docs/operators.md at the
release tag): every op supported, its data type listed, the restrictions irpass can check
(2-D/3-D pooling, constant weights/axes, zero Q/DQ zero points, single LayerNormalization
output, no pooling dilations, Resize modes), ops with restrictions it cannot check named as a
warning; the opset range; the Q/DQ placement through the quantization package's TensorRT
validator (symmetric INT8, per-channel weights on the right axis); uint8 only at the network
boundary.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import logging
import pathlib
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx_ir as ir

from irpass import __version__
from irpass.backends.base import (
    Artifact,
    BackendResult,
    EmitRequest,
    ShapeProfile,
    TargetCheck,
)
from irpass.backends.checks import (
    has_qdq,
    op_support_check,
    opset_check,
    ort_load_check,
    qdq_rules_check,
)
from irpass.backends.onnxruntime import check_options, save_checked
from irpass.backends.registry import register_backend
from irpass.errors import TargetError
from irpass.ir import atomic_output_path
from irpass.passes.fusion._rules import attr_ints, attr_str, const_array
from irpass.targets.profile import OpSupport, Target

__all__ = [
    "BuildPlan",
    "TensorRtBackend",
    "TrtOpTable",
    "build_engine",
    "build_script",
    "load_table",
    "plan_build",
    "table_checks",
    "tensorrt_available",
]

logger = logging.getLogger(__name__)

DATA_DIR = pathlib.Path(__file__).resolve().parent / "data"
PROVIDER = "onnx-tensorrt"
_OPTIONS = {"trt_major": int, "workspace_mib": int}
#: ONNX element types as onnx-tensorrt's matrix names them.
_TYPE_NAMES = {
    ir.DataType.FLOAT: "FP32",
    ir.DataType.FLOAT16: "FP16",
    ir.DataType.BFLOAT16: "BF16",
    ir.DataType.INT32: "INT32",
    ir.DataType.INT64: "INT64",
    ir.DataType.INT8: "INT8",
    ir.DataType.UINT8: "UINT8",
    ir.DataType.BOOL: "BOOL",
    ir.DataType.DOUBLE: "DOUBLE",
    ir.DataType.FLOAT8E4M3FN: "FP8",
    ir.DataType.INT4: "INT4",
}
_RESIZE_COORDINATES = frozenset(
    {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
)
_RESIZE_NEAREST = frozenset({"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"})


@dataclasses.dataclass(frozen=True)
class TrtOpTable:
    """onnx-tensorrt's operator matrix for one release (loaded from the data file)."""

    release: str
    source: str
    opset: tuple[int, int]
    ops: Mapping[str, Mapping[str, Any]]

    def supported(self) -> frozenset[str]:
        """Op types the release's parser imports."""
        return frozenset(op for op, entry in self.ops.items() if entry.get("supported"))


@functools.cache
def load_table(release: str) -> TrtOpTable:
    """The operator matrix of TensorRT ``release`` (``8.2``, ``10.1``)."""
    path = DATA_DIR / f"tensorrt-{release}.json"
    if not path.is_file():
        known = sorted(p.stem.removeprefix("tensorrt-") for p in DATA_DIR.glob("tensorrt-*.json"))
        raise TargetError(
            f"no onnx-tensorrt operator table for release {release!r}",
            hint="tables: " + ", ".join(known),
        )
    data = json.loads(path.read_text())
    return TrtOpTable(data["release"], data["source"], tuple(data["opset"]), data["ops"])


# ------------------------------------------------------------------------------ checks
def _restriction_holds(check: str, node: ir.Node) -> str | None:
    """None when the node meets the table restriction ``check``, else what it breaks."""
    kind, _, arg = check.partition(":")
    data = node.inputs[0] if node.inputs else None
    if kind == "spatial_2d_3d":
        rank = None if data is None or data.shape is None else len(data.shape)
        return None if rank in (4, 5) else f"only 2-D/3-D (input rank {rank})"
    if kind == "constant_input":
        index = int(arg)
        value = node.inputs[index] if index < len(node.inputs) else None
        if value is None or const_array(value) is not None:
            return None
        return f"input {index} must be an initializer"
    if kind == "zero_point_zero":
        zero = node.inputs[2] if len(node.inputs) > 2 else None
        array = const_array(zero) if zero is not None else np.zeros(1)
        if array is None:
            return "the zero point must be a constant 0"
        return None if not array.any() else "the zero point must be 0 (symmetric)"
    if kind == "first_output_only":
        if any(v.uses() or v.is_graph_output() for v in node.outputs[1:]):
            return "only the first output is supported"
        return None
    if kind == "no_dilations":
        dilations = attr_ints(node, "dilations")
        return None if not dilations or all(d == 1 for d in dilations) else "dilations must be 1"
    if kind == "resize_modes":
        mode = attr_str(node, "mode", "nearest")
        coordinates = attr_str(node, "coordinate_transformation_mode", "half_pixel")
        nearest = attr_str(node, "nearest_mode", "round_prefer_floor")
        if mode not in ("nearest", "linear"):
            return f"Resize mode {mode!r}"
        if coordinates not in _RESIZE_COORDINATES:
            return f"Resize coordinate_transformation_mode {coordinates!r}"
        if mode == "nearest" and nearest not in _RESIZE_NEAREST:
            return f"Resize nearest_mode {nearest!r}"
        return None
    raise ValueError(f"unknown restriction {check!r} in the operator table")


def table_checks(model: ir.Model, table: TrtOpTable) -> list[TargetCheck]:
    """Types, checkable restrictions and uncheckable-restriction warnings from the matrix."""
    type_errors: list[str] = []
    broken: list[str] = []
    unchecked: set[str] = set()
    for graph in model.graphs():
        for node in graph:
            if node.domain not in ("", "ai.onnx"):
                continue
            entry = table.ops.get(node.op_type)
            if not entry or not entry.get("supported"):
                continue  # op_support_check names it
            value = node.inputs[0] if node.inputs else None
            dtype = value.dtype if value is not None else None
            name = _TYPE_NAMES.get(dtype) if dtype is not None else None
            types = set(entry.get("types", ()))
            if table.release.startswith("8.") and name == "INT64":
                name = "INT32"  # TensorRT 8 casts INT64 down to INT32 (matrix note)
            if name is not None and types and name not in types:
                type_errors.append(f"{node.name} ({node.op_type}): {name} not in {sorted(types)}")
            for check in entry.get("checks", ()):
                reason = _restriction_holds(check, node)
                if reason is not None:
                    broken.append(f"{node.name} ({node.op_type}): {reason}")
            if entry.get("unchecked_restrictions"):
                unchecked.add(node.op_type)
    checks = [
        _listed("operator data types", type_errors, "every op's input type is in its row"),
        _listed("operator restrictions", broken, "every checkable restriction holds"),
    ]
    if unchecked:
        checks.append(
            TargetCheck(
                "restrictions irpass cannot check",
                "warn",
                f"{', '.join(sorted(unchecked))}: see {table.source}",
                {"ops": sorted(unchecked)},
            )
        )
    return checks


def _listed(name: str, problems: list[str], ok: str) -> TargetCheck:
    if not problems:
        return TargetCheck(name, "pass", ok)
    more = f" (+{len(problems) - 6} more)" if len(problems) > 6 else ""
    return TargetCheck(
        name, "fail", "; ".join(problems[:6]) + more, {"problems": problems}
    )


def uint8_boundary_check(model: ir.Model) -> TargetCheck:
    """TensorRT takes uint8 only as a network input or output."""
    inner = []
    boundary = {id(v) for v in (*model.graph.inputs, *model.graph.outputs)}
    for graph in model.graphs():
        for node in graph:
            if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
                continue  # the Q/DQ validator reports uint8 quantization
            for value in node.outputs:
                if value.dtype == ir.DataType.UINT8 and id(value) not in boundary:
                    inner.append(f"{value.name} ({node.op_type})")
    return _listed("uint8 only at the boundary", inner, "no uint8 tensor inside the network")


# ------------------------------------------------------------------------- build plan
@dataclasses.dataclass(frozen=True)
class BuildPlan:
    """How the engine is built: release, typing, precision flags, profile, workspace."""

    trt_major: int
    strongly_typed: bool
    fp16: bool
    int8: bool
    workspace_mib: int
    profile: ShapeProfile
    model: str = "model.onnx"
    engine: str = "model.plan"
    timing_cache: str = "timing.cache"

    def reason(self) -> str:
        """One line on why these flags."""
        if self.strongly_typed:
            return "strongly typed: the ONNX types decide each layer's precision"
        flags = [f for f, on in (("--fp16", self.fp16), ("--int8", self.int8)) if on]
        return "weakly typed with " + (" ".join(flags) if flags else "FP32 only")


def _has_fp16(model: ir.Model) -> bool:
    for graph in model.graphs():
        for value in graph.initializers.values():
            if value.dtype == ir.DataType.FLOAT16:
                return True
        for node in graph:
            if any(v.dtype == ir.DataType.FLOAT16 for v in node.outputs):
                return True
    return False


def plan_build(
    model: ir.Model, target: Target, precision: str, profile: ShapeProfile
) -> BuildPlan:
    """Choose the trtexec/builder settings for ``model`` on ``target`` at ``precision``."""
    major = int(target.backend_options.get("trt_major", 10))
    qdq = has_qdq(model)
    typed = _has_fp16(model) or precision == "fp32"
    strongly = major >= 10 and typed
    dynamic = [
        str(v.name)
        for v in model.graph.inputs
        if v.shape is None or not all(isinstance(d, int) for d in v.shape)
    ]
    missing = [name for name in dynamic if name not in profile]
    if missing:
        raise TargetError(
            f"dynamic input(s) {', '.join(missing)} need an optimization profile",
            hint="give their shapes with --input-shapes (and --max-shapes for a range)",
        )
    return BuildPlan(
        trt_major=major,
        strongly_typed=strongly,
        fp16=not strongly and precision in ("fp16", "int8"),
        int8=not strongly and qdq,
        workspace_mib=int(target.backend_options.get("workspace_mib", 1024)),
        profile={name: profile[name] for name in dynamic},
    )


def _shape_arg(profile: ShapeProfile, which: int) -> str:
    parts = []
    for name, shapes in profile.items():
        quoted = f"'{name}'" if any(c in name for c in ":,' ") else name
        parts.append(f"{quoted}:{'x'.join(str(d) for d in shapes[which])}")
    return ",".join(parts)


def trtexec_args(plan: BuildPlan) -> list[str]:
    """The trtexec arguments that build ``plan`` (without the executable)."""
    args = [f"--onnx={plan.model}", f"--saveEngine={plan.engine}"]
    if plan.strongly_typed:
        args.append("--stronglyTyped")
    if plan.fp16:
        args.append("--fp16")
    if plan.int8:
        args.append("--int8")
    if plan.profile:
        for flag, which in (("--minShapes", 0), ("--optShapes", 1), ("--maxShapes", 2)):
            args.append(f"{flag}={_shape_arg(plan.profile, which)}")
    if plan.trt_major >= 10:
        args += [f"--memPoolSize=workspace:{plan.workspace_mib}", "--skipInference"]
    else:
        args += [f"--workspace={plan.workspace_mib}", "--buildOnly"]
    args.append(f"--timingCacheFile={plan.timing_cache}")
    return args


def build_script(plan: BuildPlan, target: Target) -> str:
    """``build_engine.sh``: finds trtexec, checks its major version, builds the engine."""
    command = " ".join(shlex.quote(a) for a in trtexec_args(plan))
    return f"""#!/bin/sh
# Build the TensorRT engine for target {target.name} ON THE DEVICE: an engine is specific to
# the GPU and the TensorRT release that built it. Written by irpass {__version__} for
#   {target.runtime.name} {target.runtime.version}: {target.runtime.platform}
# Precision: {plan.reason()}.
# Extra trtexec options are passed through, e.g. ./build_engine.sh --verbose
set -eu
cd "$(dirname "$0")"
TRTEXEC="${{TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}}"
if [ ! -x "$TRTEXEC" ]; then
    echo "trtexec not found: install TensorRT (JetPack ships it in /usr/src/tensorrt/bin)" \\
         "or set TRTEXEC=/path/to/trtexec" >&2
    exit 1
fi
found=$("$TRTEXEC" --help 2>&1 | sed -n 's/.*\\[TensorRT v\\([0-9]*\\)\\].*/\\1/p' | head -n 1)
case "$found" in
    {plan.trt_major}[0-9][0-9][0-9]*) ;;
    *) echo "warning: this script is for TensorRT {plan.trt_major}.x; trtexec reports" \\
            "v$found (flags may differ)" >&2 ;;
esac
"$TRTEXEC" {command} "$@"
echo "engine written: $(pwd)/{plan.engine}"
"""


# -------------------------------------------------------------------- engine building
def tensorrt_available() -> str | None:
    """None when the tensorrt package imports and sees a GPU, else why not."""
    if importlib.util.find_spec("tensorrt") is None:
        return "the tensorrt Python package is not installed (pip install irpass[tensorrt])"
    try:
        import tensorrt as trt

        builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
    except Exception as exc:  # no CUDA driver or GPU: TensorRT raises from the builder
        return f"TensorRT cannot create a builder here (no GPU/CUDA?): {exc}"
    if builder is None:
        return "TensorRT cannot create a builder here (no GPU/CUDA)"
    return None


def build_engine(out_dir: pathlib.Path, plan: BuildPlan) -> pathlib.Path:
    """Build ``plan.engine`` from ``plan.model`` with the TensorRT Python API.

    Mirrors the trtexec command: strongly typed network (TensorRT >= 10) or FP16/INT8 builder
    flags, one optimization profile for the dynamic inputs, workspace limit, and the timing
    cache read before and written after the build.
    """
    import tensorrt as trt

    logger_ = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger_)
    flags = 0
    if plan.strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    elif plan.trt_major < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger_)
    if not parser.parse_from_file(str(out_dir / plan.model)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise TargetError(
            "TensorRT's ONNX parser rejected the model: " + "; ".join(errors[:3]),
            hint="the target checks in report.json name unsupported ops and restrictions",
        )
    config = builder.create_builder_config()
    workspace = plan.workspace_mib * 2**20
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    else:  # TensorRT 8.2 and older
        config.max_workspace_size = workspace
    if plan.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if plan.int8:
        config.set_flag(trt.BuilderFlag.INT8)
    cache_path = out_dir / plan.timing_cache
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    if plan.profile:
        profile = builder.create_optimization_profile()
        for name, (low, opt, high) in plan.profile.items():
            profile.set_shape(name, low, opt, high)
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TargetError(
            "TensorRT could not build the engine (see its log above)",
            hint="build_engine.sh with --verbose shows the failing layer; --no-engine skips this",
        )
    engine = out_dir / plan.engine
    with atomic_output_path(engine) as tmp:
        (tmp / engine.name).write_bytes(bytes(serialized))
        (tmp / cache_path.name).write_bytes(bytes(config.get_timing_cache().serialize()))
    return engine


# --------------------------------------------------------------------------- backend
class TensorRtBackend:
    """TensorRT-ready ONNX, op checks against onnx-tensorrt's matrix, build script, engine."""

    name = "tensorrt"
    build_time_precisions: tuple[str, ...] = ("fp16",)

    def op_providers(self) -> Sequence[str]:
        """Operator lists this backend resolves."""
        return (PROVIDER,)

    def op_support(self, provider: str, release: str) -> OpSupport:
        """The ops onnx-tensorrt's matrix marks supported at ``release``."""
        table = load_table(release)
        return OpSupport(PROVIDER, table.release, table.source, table.supported())

    def validate_options(self, options: Mapping[str, Any]) -> None:
        """``trt_major`` (8 or 10) and ``workspace_mib``."""
        check_options(options, _OPTIONS, self.name)
        if options.get("trt_major", 10) not in (8, 10):
            raise TargetError(
                "tensorrt backend option 'trt_major' must be 8 or 10",
                hint="8 for JetPack 4.6 (Nano), 10 for JetPack 6 (Orin)",
            )

    def planned_files(self, target: Target, model_name: str) -> list[str]:
        """The model (+ weights file), the build script, and the engine with its cache."""
        return [model_name, model_name + ".data", "build_engine.sh", "model.plan", "timing.cache"]

    def check(self, model: ir.Model, target: Target) -> list[TargetCheck]:
        """Operators, types, restrictions, opset, Q/DQ rules, uint8 placement."""
        table = load_table(target.op_support.release)
        return [
            op_support_check(model, target),
            *table_checks(model, table),
            opset_check(model, target),
            qdq_rules_check(model, target.quantization_rules or "tensorrt"),
            uint8_boundary_check(model),
        ]

    def emit(self, model: ir.Model, target: Target, request: EmitRequest) -> BackendResult:
        """model.onnx, build_engine.sh, and the engine when TensorRT and a GPU are here."""
        result = BackendResult(self.name, checks=self.check(model, target))
        path, artifact = save_checked(model, request)
        result.artifacts.append(artifact)
        result.checks.append(ort_load_check(path, request.model_name))
        plan = dataclasses.replace(
            plan_build(model, target, request.precision, request.shape_profile),
            model=request.model_name,
        )
        script = request.out_dir / "build_engine.sh"
        with atomic_output_path(script) as tmp:
            (tmp / script.name).write_text(build_script(plan, target))
            (tmp / script.name).chmod(0o755)
        result.artifacts.append(
            Artifact(script.name, "build-script", f"trtexec command for {target.runtime}")
        )
        missing = tensorrt_available() if request.build_engine == "auto" else "not requested"
        if missing is None:
            engine = build_engine(request.out_dir, plan)
            result.artifacts.append(
                Artifact(engine.name, "engine", "built here: valid only on this GPU and release")
            )
            result.artifacts.append(Artifact(plan.timing_cache, "timing-cache", "builder timings"))
        else:
            result.gaps.append(
                f"TensorRT engine not built here ({missing}); build it on the device with "
                "./build_engine.sh"
            )
        shapes = " ".join(
            f"--shapes={n}:{'x'.join(map(str, s[1]))}" for n, s in plan.profile.items()
        )
        result.device_steps += [
            f"copy this folder to the {target.device} ({target.runtime.platform})",
            "./build_engine.sh   # writes model.plan and timing.cache with trtexec",
            f"measure: trtexec --loadEngine={plan.engine} {shapes}".rstrip(),
            "run from Python: tensorrt.Runtime(logger).deserialize_cuda_engine(open("
            f"'{plan.engine}', 'rb').read())",
        ]
        return result


register_backend(TensorRtBackend())
