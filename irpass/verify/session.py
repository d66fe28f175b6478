"""ONNX checker, ONNX Runtime sessions and runs: the mechanics under verification.

The manager calls these after every pass:

- :func:`check_structure` runs the ONNX checker;
- :func:`make_session` proves ONNX Runtime can load the model;
- :func:`random_feeds` makes seeded inputs for the model's signature (dynamic dims -> 1 unless
  given).

Neither of the first two serializes the weights of an ir.Model: large initializers reach the
checker as typed inputs and ONNX Runtime as the model's own buffers, so checking a model
costs no copy of its weights and models above the 2 GB protobuf limit need no temporary file.

Comparing outputs (tolerances, cosine, SQNR) lives in :mod:`irpass.metrics`.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import pathlib
import tempfile
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
from onnx_ir import _type_casting

from irpass.analysis.shapes import call_without_weights
from irpass.errors import VerificationError

__all__ = [
    "check_structure",
    "checked_session",
    "make_session",
    "random_feeds",
    "run_model",
]

logger = logging.getLogger(__name__)


def check_structure(model: ir.Model | onnx.ModelProto, full_check: bool = False) -> None:
    """Run the ONNX checker; raise VerificationError with the checker's message.

    An ``ir.Model`` is checked without the bytes of its weights above 1 KB (they become typed
    graph inputs for the check; the model is left as it was).
    """
    try:
        if isinstance(model, ir.Model):
            # the weights above 1 KB reach the checker as typed inputs: serializing them
            # would cost as much as writing the model, and the checker only reads their types
            call_without_weights(
                functools.partial(onnx.checker.check_model, full_check=full_check), model
            )
            return
        onnx.checker.check_model(model, full_check=full_check)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        # full_check runs shape inference, whose errors are not ValidationErrors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise VerificationError(
            f"ONNX checker rejects the model: {first}",
            hint="irpass checks every model it writes; run the ONNX checker on the input to see "
            "the full message",
        ) from exc


def checked_session(model: ir.Model, *, optimize: bool = False) -> ort.InferenceSession:
    """Check ``model`` with the ONNX checker and load it in ONNX Runtime (no weight copied)."""
    check_structure(model)
    return make_session(model, optimize=optimize)


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
    private: bool = False,
) -> ort.InferenceSession:
    """Create a CPU ONNX Runtime session; raise VerificationError when ORT cannot load it.

    ``private``: the session copies the weights of an ``ir.Model`` whose arrays can change in
    place (an ``ir.Tensor`` over a writeable numpy array) instead of sharing them, for a session
    that runs while passes may rewrite the model; weights read from the file are shared still
    (their arrays are read-only).
    """
    options = _session_options(optimize, threads)
    providers = ["CPUExecutionProvider"]
    try:
        if isinstance(model, ir.Model):
            return _session_sharing_weights(model, optimize, threads, providers, private)
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


#: Weights above this size are handed over by reference, never serialized.
_SHARED_WEIGHT_BYTES = 1024
#: The empty file every weight handed over by reference points at (ONNX Runtime and the
#: checker insist that an external-data location exists).
_PLACEHOLDER = "irpass-placeholder.bin"


def _by_reference(tensor: ir.TensorProtocol) -> bool:
    """Whether ``tensor`` is worth handing over by reference (large, or in an external file)."""
    if tensor.dtype in (ir.DataType.STRING, ir.DataType.UNDEFINED):
        return False
    return isinstance(tensor, ir.ExternalTensor) or tensor.nbytes > _SHARED_WEIGHT_BYTES


@contextlib.contextmanager
def _weights_by_reference(
    selected: list[tuple[ir.Value, ir.TensorProtocol]],
    inline: Mapping[ir.Value, ir.TensorProtocol],
) -> Iterator[tuple[Callable[[ir.Model], onnx.ModelProto], pathlib.Path]]:
    """Yield a serializer and a folder holding the placeholder file.

    The serializer turns the model into a ModelProto in which every ``selected`` initializer
    is an external-data reference to the placeholder (no bytes copied) and every ``inline``
    one is an in-memory copy of its external data (small or unshareable weights read from
    the input's files, which the folder does not hold). The model's own tensors are put back
    before the serializer returns.
    """

    def serialize(model: ir.Model) -> onnx.ModelProto:
        originals = [(value, tensor) for value, tensor in selected]
        originals += list(inline.items())
        try:
            for value, tensor in selected:
                value.const_value = ir.ExternalTensor(
                    _PLACEHOLDER,
                    0,
                    tensor.nbytes,
                    tensor.dtype,
                    shape=ir.Shape(tensor.shape.numpy()),
                    name=value.name or "",
                )
            for value, tensor in inline.items():
                value.const_value = ir.Tensor(tensor.numpy(), name=tensor.name)
            return ir.to_proto(model)  # onnx-ir's: irpass.ir.to_proto would inline the data
        finally:
            for value, tensor in originals:
                value.const_value = tensor

    with tempfile.TemporaryDirectory(prefix="irpass-weights-") as tmp:
        folder = pathlib.Path(tmp)
        (folder / _PLACEHOLDER).touch()
        yield serialize, folder


def _session_sharing_weights(
    model: ir.Model, optimize: bool, threads: int, providers: list[str], private: bool = False
) -> ort.InferenceSession:
    """A session that reads the model's own weight buffers, without serializing them.

    Each large main-graph initializer is serialized as a reference to a placeholder file and
    its array (for weights loaded from an external file: the memory-mapped file itself) is
    handed to ONNX Runtime:

    - without graph optimizations (verification, calibration) as a shared initializer
      (``SessionOptions.add_initializer``): ONNX Runtime computes on the numpy memory, so a
      session costs no copy of the weights, whatever their size;
    - with them (latency, evaluation), or when ONNX Runtime refuses the shared form, through
      ``add_external_initializers``, which copies each weight into the session: ONNX
      Runtime's optimizers read initializer bytes, which a shared initializer does not have.

    Works for models above the 2 GB protobuf limit. Weight prepacking is off (it would copy
    every weight for a session used a few times).
    """
    shared: list[tuple[ir.Value, ir.TensorProtocol, np.ndarray]] = []
    unused: list[tuple[ir.Value, ir.TensorProtocol]] = []
    inline: dict[ir.Value, ir.TensorProtocol] = {}
    for graph in model.graphs():
        for value in graph.initializers.values():
            tensor = value.const_value
            if tensor is None or not _by_reference(tensor):
                continue
            plain = not value.is_graph_output() and not value.is_graph_input()
            if graph is model.graph and plain and not value.uses():
                unused.append((value, tensor))  # ORT drops it unread (and cannot share it)
                continue
            # ORT shares only main-graph initializers; a graph input's default is fed like an
            # input and a graph output is returned, so those two carry their bytes
            if graph is model.graph and plain:
                array = np.ascontiguousarray(tensor.numpy())
                if private and array.flags.writeable:
                    array = array.copy()
                if array.dtype.kind in "biuf":
                    shared.append((value, tensor, array))
                    continue
            if isinstance(tensor, ir.ExternalTensor):
                inline[value] = tensor
    selected = [(value, tensor) for value, tensor, _ in shared] + unused
    names = [value.name or "" for value, _, _ in shared]
    arrays = [array for _, _, array in shared]
    with _weights_by_reference(selected, inline) as (serialize, folder):
        serialized = serialize(model).SerializeToString()

        def options() -> ort.SessionOptions:
            made = _session_options(optimize, threads)
            made.add_session_config_entry("session.disable_prepacking", "1")
            made.add_session_config_entry(
                "session.model_external_initializers_file_folder_path", str(folder)
            )
            return made

        values = [ort.OrtValue.ortvalue_from_numpy(array) for array in arrays]
        session = None
        if not optimize:
            by_reference = options()
            for name, ort_value in zip(names, values, strict=True):
                by_reference.add_initializer(name, ort_value)
            try:
                session = ort.InferenceSession(serialized, by_reference, providers=providers)
            except Exception:  # the copying form below reports what is really wrong
                logger.debug("ONNX Runtime refused shared weights; handing over copies")
        if session is None:
            copying = options()
            if names:
                copying.add_external_initializers(names, values)
            session = ort.InferenceSession(serialized, copying, providers=providers)
    # ONNX Runtime reads the shared memory for the whole life of the session
    session._irpass_buffers = arrays  # type: ignore[attr-defined]
    session._irpass_ort_values = values  # type: ignore[attr-defined]
    return session


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
    optional is None; :func:`irpass.metrics.compare_outputs` compares all three. Tensors of
    types numpy lacks (bfloat16, float8, int4, ...) are ml_dtypes arrays both ways: ONNX
    Runtime's Python API takes and gives them only as raw buffers (see :func:`_to_ort`).
    """
    names = [o.name for o in session.get_outputs()]
    wanted = {i.name for i in session.get_inputs()}
    wanted |= {i.name for i in session.get_overridable_initializers()}  # defaults fed too
    raw = any(
        o.type.startswith("tensor(") and o.type not in _NUMPY_OUTPUT_TYPES
        for o in session.get_outputs()
    )
    try:
        feed = {k: _to_ort(v) for k, v in feeds.items() if k in wanted}
        if raw:  # all feeds as OrtValues, all outputs kept as OrtValues
            feed = {k: _as_ort_value(v) for k, v in feed.items()}
            values = [_from_ort(v) for v in session.run_with_ort_values(names, feed)]
        else:
            values = session.run(names, feed)
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VerificationError(
            f"ONNX Runtime failed to run the model: {message}",
            hint="check that the inputs fit the model (irpass inspect shows its signature)",
        ) from exc
    return {name: _output(value) for name, value in zip(names, values, strict=True)}


#: Output types ``InferenceSession.run`` converts to numpy itself.
_NUMPY_OUTPUT_TYPES = frozenset(_ORT_TO_NUMPY) | {"tensor(string)"}

#: ONNX element types stored two (4-bit) or four (2-bit) to a byte, with their (un)packers.
_PACKED = {
    ir.DataType.INT4: (_type_casting.pack_4bitx2, _type_casting.unpack_4bitx2),
    ir.DataType.UINT4: (_type_casting.pack_4bitx2, _type_casting.unpack_4bitx2),
    ir.DataType.FLOAT4E2M1: (_type_casting.pack_4bitx2, _type_casting.unpack_4bitx2),
    ir.DataType.INT2: (_type_casting.pack_2bitx4, _type_casting.unpack_2bitx4),
    ir.DataType.UINT2: (_type_casting.pack_2bitx4, _type_casting.unpack_2bitx4),
}

#: ONNX element types that are ml_dtypes (not numpy) types, by their numpy dtype.
_RAW_TYPES = {
    t.numpy(): t
    for t in (
        ir.DataType.BFLOAT16,
        ir.DataType.FLOAT8E4M3FN,
        ir.DataType.FLOAT8E4M3FNUZ,
        ir.DataType.FLOAT8E5M2,
        ir.DataType.FLOAT8E5M2FNUZ,
        ir.DataType.FLOAT8E8M0,
        *_PACKED,
    )
}


def _to_ort(value: Any) -> Any:
    """``value`` as ONNX Runtime's ``run`` takes it: an OrtValue for ml_dtypes arrays.

    ``run`` rejects numpy dtypes it does not know, so such a tensor goes in as an OrtValue
    reinterpreting a same-sized unsigned buffer. Packed types take their packed bytes at the
    start of a buffer of the logical shape (ONNX Runtime reads only the packed size).
    """
    if not isinstance(value, np.ndarray) or value.dtype not in _RAW_TYPES:
        return value
    dtype = _RAW_TYPES[value.dtype]
    if dtype in _PACKED:
        packed = _PACKED[dtype][0](np.ascontiguousarray(value))
        buffer = np.zeros(value.shape, dtype=np.uint8)
        buffer.reshape(-1)[: packed.size] = packed[: buffer.size]
    else:
        buffer = np.ascontiguousarray(value).view(f"u{value.dtype.itemsize}")
    return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(buffer, int(dtype))


def _as_ort_value(value: Any) -> ort.OrtValue:
    if isinstance(value, ort.OrtValue):
        return value
    return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value))


def _from_ort(value: ort.OrtValue) -> Any:
    """An output OrtValue as numpy: ml_dtypes arrays for the types numpy lacks."""
    if not value.has_value():
        return None
    if not value.is_tensor():
        return value.numpy()
    dtype = ir.DataType(value.element_type())
    if dtype not in _RAW_TYPES.values():
        return value.numpy()
    shape = value.shape()
    data = np.frombuffer(
        ctypes.string_at(value.data_ptr(), value.tensor_size_in_bytes()), dtype=np.uint8
    )
    if dtype in _PACKED:
        return _PACKED[dtype][1](data.copy(), shape).view(dtype.numpy())
    return data.view(dtype.numpy()).reshape(shape)


def _output(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, list):
        # A sequence: its tensors may differ in shape, so it must not become one array.
        return [_output(item) for item in value]
    return np.asarray(value)
