"""ONNX checker, ONNX Runtime sessions and runs: the mechanics under verification.

The manager calls these after every pass:

- :func:`check_structure` runs the ONNX checker;
- :func:`make_session` proves ONNX Runtime can load the model (serializing through a temporary
  file with external data when the model exceeds the protobuf limit);
- :func:`random_feeds` makes seeded inputs for the model's signature (dynamic dims -> 1 unless
  given);
- :func:`compare_outputs` applies a dtype-aware tolerance and reports the worst mismatch.
"""

from __future__ import annotations

import dataclasses
import pathlib
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from irpass.errors import VerificationError
from irpass.ir import PROTOBUF_LIMIT, initializer_bytes, save_model

__all__ = [
    "Tolerance",
    "OutputMismatch",
    "check_structure",
    "checked_session",
    "compare_outputs",
    "make_session",
    "random_feeds",
    "run_model",
    "tolerance_for",
]


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """``|a - b| <= atol + rtol * |b|`` elementwise, with ``atol`` scaled by the output's range."""

    rtol: float
    atol: float


_TOLERANCES: dict[Any, Tolerance] = {
    np.dtype(np.float64): Tolerance(rtol=1e-7, atol=1e-9),
    np.dtype(np.float32): Tolerance(rtol=1e-3, atol=1e-4),
    np.dtype(np.float16): Tolerance(rtol=1e-2, atol=1e-3),
}


def tolerance_for(dtype: np.dtype) -> Tolerance | None:
    """The tolerance for a float dtype; None means exact comparison (ints, bools, strings)."""
    return _TOLERANCES.get(np.dtype(dtype))


@dataclasses.dataclass(frozen=True)
class OutputMismatch:
    """The worst difference found for one output."""

    output: str
    max_abs_error: float
    allowed: float
    detail: str

    def __str__(self) -> str:
        return f"output {self.output!r}: {self.detail}"


def check_structure(model: ir.Model | onnx.ModelProto, full_check: bool = False) -> None:
    """Run the ONNX checker; raise VerificationError with the checker's message."""
    try:
        if isinstance(model, ir.Model) and initializer_bytes(model) > PROTOBUF_LIMIT:
            with tempfile.TemporaryDirectory() as tmp:
                path = pathlib.Path(tmp) / "model.onnx"
                save_model(model, path, external_data=True)
                onnx.checker.check_model(str(path), full_check=full_check)
            return
        proto = ir.to_proto(model) if isinstance(model, ir.Model) else model
        onnx.checker.check_model(proto, full_check=full_check)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise VerificationError(f"ONNX checker rejects the model: {first}") from exc


def checked_session(model: ir.Model, *, optimize: bool = False) -> ort.InferenceSession:
    """Check ``model`` with the ONNX checker and load it in ONNX Runtime, serializing once."""
    if initializer_bytes(model) > PROTOBUF_LIMIT:
        check_structure(model)
        return make_session(model, optimize=optimize)
    proto = ir.to_proto(model)
    check_structure(proto)
    return make_session(proto, optimize=optimize)


def _session_options(optimize: bool, threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if optimize
        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # failures surface as exceptions with the message; ORT's own log would print them twice
    options.log_severity_level = 4
    return options


def make_session(
    model: ir.Model | onnx.ModelProto | bytes | str | pathlib.Path,
    *,
    optimize: bool = False,
    threads: int = 0,
) -> ort.InferenceSession:
    """Create a CPU ONNX Runtime session; raise VerificationError when ORT cannot load it."""
    options = _session_options(optimize, threads)
    providers = ["CPUExecutionProvider"]
    try:
        if isinstance(model, ir.Model):
            if initializer_bytes(model) > PROTOBUF_LIMIT:
                tmp = tempfile.TemporaryDirectory()
                path = pathlib.Path(tmp.name) / "model.onnx"
                save_model(model, path, external_data=True)
                session = ort.InferenceSession(str(path), options, providers=providers)
                session._irpass_tmp = tmp  # type: ignore[attr-defined]  # keep files alive
                return session
            model = ir.to_proto(model)
        if isinstance(model, onnx.ModelProto):
            model = model.SerializeToString()
        if isinstance(model, pathlib.Path):
            model = str(model)
        return ort.InferenceSession(model, options, providers=providers)
    except VerificationError:
        raise
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VerificationError(f"ONNX Runtime cannot load the model: {message}") from exc


_ORT_TO_NUMPY = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(int16)": np.int16,
    "tensor(uint16)": np.uint16,
    "tensor(int32)": np.int32,
    "tensor(uint32)": np.uint32,
    "tensor(int64)": np.int64,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
}


def random_feeds(
    session: ort.InferenceSession,
    seed: int = 0,
    dim_values: Mapping[str, int] | None = None,
    default_dim: int = 1,
) -> dict[str, np.ndarray]:
    """Seeded random inputs for every session input.

    Floats are standard normal, integers uniform in [0, 4), bools uniform. Symbolic or unknown
    dimensions take ``dim_values[name]`` or ``default_dim``.
    """
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    dims = dict(dim_values or {})
    for arg in session.get_inputs():
        dtype = _ORT_TO_NUMPY.get(arg.type)
        if dtype is None:
            raise VerificationError(
                f"cannot make random data for input {arg.name!r} of type {arg.type}",
                hint="give real inputs with --eval-data",
            )
        shape = []
        for dim in arg.shape:
            if isinstance(dim, int) and dim >= 0:
                shape.append(dim)
            elif isinstance(dim, str) and dim in dims:
                shape.append(dims[dim])
            else:
                shape.append(default_dim)
        if np.issubdtype(dtype, np.floating):
            feeds[arg.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype is np.bool_:
            feeds[arg.name] = rng.integers(0, 2, size=shape).astype(np.bool_)
        else:
            feeds[arg.name] = rng.integers(0, 4, size=shape).astype(dtype)
    return feeds


def run_model(
    session: ort.InferenceSession, feeds: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Run ``session`` on ``feeds`` (extra feeds are ignored); return outputs by name."""
    names = [o.name for o in session.get_outputs()]
    wanted = {i.name for i in session.get_inputs()}
    try:
        values = session.run(names, {k: v for k, v in feeds.items() if k in wanted})
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VerificationError(f"ONNX Runtime failed to run the model: {message}") from exc
    return {name: np.asarray(value) for name, value in zip(names, values, strict=True)}


def compare_outputs(
    reference: Mapping[str, np.ndarray],
    actual: Mapping[str, np.ndarray],
    tolerance_scale: float = 1.0,
) -> list[OutputMismatch]:
    """Compare outputs by position-independent name; returns the mismatches (empty when equal).

    Float outputs use :func:`tolerance_for` with ``atol`` multiplied by ``max(1, max|ref|)``
    so that large-magnitude outputs (deep nets on random inputs) are judged relative to
    their range.
    """
    mismatches: list[OutputMismatch] = []
    if list(reference) != list(actual):
        missing = [n for n in reference if n not in actual]
        if missing or len(reference) != len(actual):
            return [
                OutputMismatch(
                    ",".join(missing) or "?",
                    float("inf"),
                    0.0,
                    f"outputs differ: expected {list(reference)}, got {list(actual)}",
                )
            ]
    for name, ref in reference.items():
        got = actual[name]
        if ref.shape != got.shape:
            mismatches.append(
                OutputMismatch(name, float("inf"), 0.0, f"shape {got.shape} != {ref.shape}")
            )
            continue
        if ref.dtype != got.dtype:
            mismatches.append(
                OutputMismatch(name, float("inf"), 0.0, f"dtype {got.dtype} != {ref.dtype}")
            )
            continue
        tol = tolerance_for(ref.dtype)
        if tol is None:
            if not np.array_equal(ref, got):
                count = int(np.sum(ref != got))
                mismatches.append(
                    OutputMismatch(name, float("inf"), 0.0, f"{count} elements differ exactly")
                )
            continue
        ref64 = ref.astype(np.float64)
        got64 = got.astype(np.float64)
        finite = np.isfinite(ref64)
        if not np.array_equal(finite, np.isfinite(got64)) or not np.array_equal(
            ref64[~finite], got64[~finite], equal_nan=True
        ):
            mismatches.append(OutputMismatch(name, float("inf"), 0.0, "non-finite values differ"))
            continue
        if ref64.size == 0:
            continue
        scale = max(1.0, float(np.max(np.abs(ref64[finite]))) if finite.any() else 1.0)
        allowed = tolerance_scale * (tol.atol * scale + tol.rtol * np.abs(ref64))
        err = np.abs(ref64 - got64)
        err[~finite] = 0.0
        if np.any(err > allowed):
            worst = int(np.argmax(err - allowed))
            mismatches.append(
                OutputMismatch(
                    name,
                    float(err.flat[worst]),
                    float(allowed.flat[worst]),
                    f"max abs error {float(err.max()):.3g} exceeds tolerance "
                    f"(at flat index {worst}: {got64.flat[worst]:.6g} vs {ref64.flat[worst]:.6g})",
                )
            )
    return mismatches

