"""ONNX checker, ONNX Runtime sessions and runs: the mechanics under verification.

The manager calls these after every pass:

- :func:`check_structure` runs the ONNX checker;
- :func:`make_session` proves ONNX Runtime can load the model (serializing through a temporary
  file with external data when the model exceeds the protobuf limit);
- :func:`random_feeds` makes seeded inputs for the model's signature (dynamic dims -> 1 unless
  given);

Comparing outputs (tolerances, cosine, SQNR) lives in :mod:`irpass.metrics`.
"""

from __future__ import annotations

import pathlib
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from irpass.errors import VerificationError
from irpass.ir import PROTOBUF_LIMIT, initializer_bytes, save_model, to_proto

__all__ = [
    "check_structure",
    "checked_session",
    "make_session",
    "random_feeds",
    "run_model",
]


def check_structure(model: ir.Model | onnx.ModelProto, full_check: bool = False) -> None:
    """Run the ONNX checker; raise VerificationError with the checker's message."""
    try:
        if isinstance(model, ir.Model) and initializer_bytes(model) > PROTOBUF_LIMIT:
            with tempfile.TemporaryDirectory() as tmp:
                path = pathlib.Path(tmp) / "model.onnx"
                save_model(model, path, external_data=True)
                onnx.checker.check_model(str(path), full_check=full_check)
            return
        proto = to_proto(model) if isinstance(model, ir.Model) else model
        onnx.checker.check_model(proto, full_check=full_check)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise VerificationError(
            f"ONNX checker rejects the model: {first}",
            hint="irpass checks every model it writes; run the ONNX checker on the input to see "
            "the full message",
        ) from exc


def checked_session(model: ir.Model, *, optimize: bool = False) -> ort.InferenceSession:
    """Check ``model`` with the ONNX checker and load it in ONNX Runtime, serializing once."""
    if initializer_bytes(model) > PROTOBUF_LIMIT:
        check_structure(model)
        return make_session(model, optimize=optimize)
    proto = to_proto(model)
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
            model = to_proto(model)
        if isinstance(model, onnx.ModelProto):
            model = model.SerializeToString()
        if isinstance(model, pathlib.Path):
            model = str(model)
        return ort.InferenceSession(model, options, providers=providers)
    except VerificationError:
        raise
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VerificationError(
            f"ONNX Runtime cannot load the model: {message}",
            hint="the model must load in ONNX Runtime (CPU) for irpass to verify it; --verify "
            "none skips that",
        ) from exc


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
    overridable: bool = False,
) -> dict[str, np.ndarray]:
    """Seeded random inputs for every session input.

    Floats are standard normal, integers uniform in [0, 4), bools uniform. Symbolic or unknown
    dimensions take ``dim_values[name]`` or ``default_dim``. With ``overridable``, float graph
    inputs that have a default value (an initializer of the same name) are fed random values
    too, so that a rewrite which froze such an input into a constant shows up; integer ones
    keep their defaults (they are often shapes).
    """
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    dims = dict(dim_values or {})
    args = list(session.get_inputs())
    if overridable:
        args += [
            a
            for a in session.get_overridable_initializers()
            if np.issubdtype(_ORT_TO_NUMPY.get(a.type, np.int64), np.floating)
        ]
    for arg in args:
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


def run_model(session: ort.InferenceSession, feeds: Mapping[str, Any]) -> dict[str, Any]:
    """Run ``session`` on ``feeds`` (extra feeds are ignored); return outputs by name.

    Tensor outputs are arrays (0-d included), sequence outputs lists of arrays, an empty
    optional is None; :func:`irpass.metrics.compare_outputs` compares all three.
    """
    names = [o.name for o in session.get_outputs()]
    wanted = {i.name for i in session.get_inputs()}
    wanted |= {i.name for i in session.get_overridable_initializers()}  # defaults fed too
    try:
        values = session.run(names, {k: v for k, v in feeds.items() if k in wanted})
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VerificationError(
            f"ONNX Runtime failed to run the model: {message}",
            hint="check that the inputs fit the model (irpass inspect shows its signature)",
        ) from exc
    return {name: _output(value) for name, value in zip(names, values, strict=True)}


def _output(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, list):
        # A sequence: its tensors may differ in shape, so it must not become one array.
        return [_output(item) for item in value]
    return np.asarray(value)
