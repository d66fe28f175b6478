"""Loading and saving models through onnx-ir, with the input checks users rely on.

- :func:`load_model` reads a path into an ``ir.Model`` (external data stays lazy and
  memory-mapped) and turns every way a file can be unusable into one clear ``ModelLoadError``.
- :func:`save_model` writes atomically (temporary names in the destination folder, then
  rename) and moves weights to an external data file when the model would not fit in a
  2 GB protobuf.
- :func:`to_ir` / :func:`to_proto` adapt between ``onnx.ModelProto``, paths and ``ir.Model``.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile
from collections.abc import Iterator

import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError

from irpass.errors import ModelLoadError, OutputError, UnsupportedModelError

__all__ = [
    "PROTOBUF_LIMIT",
    "MIN_OPSET",
    "atomic_output_path",
    "default_opset",
    "initializer_bytes",
    "load_model",
    "save_model",
    "to_ir",
    "to_proto",
]

#: Above this many bytes of weights a model is saved with external data.
PROTOBUF_LIMIT = 1_800_000_000
#: The oldest default-domain opset irpass accepts (ONNX Runtime's own minimum).
MIN_OPSET = 7


def _check_path(path: pathlib.Path) -> None:
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file", hint="check the path to the model")
    if path.is_dir():
        raise ModelLoadError(
            f"{path} is a directory, not an ONNX file", hint="pass the path of a .onnx file"
        )
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{path} is empty (0 bytes)", hint="re-export the model")


def _check_external_data(model: ir.Model, path: pathlib.Path) -> None:
    for tensor in _initializer_tensors(model):
        if isinstance(tensor, ir.ExternalTensor):
            data_path = pathlib.Path(tensor.base_dir) / tensor.location
            if not data_path.is_file():
                raise ModelLoadError(
                    f"{path}: weight {tensor.name!r} lives in external data file "
                    f"{tensor.location!r}, which is missing",
                    hint=f"put {tensor.location} next to {path.name}",
                )
            needed = (tensor.offset or 0) + (tensor.length or 0)
            if data_path.stat().st_size < needed:
                raise ModelLoadError(
                    f"{path}: external data file {tensor.location!r} is truncated "
                    f"({data_path.stat().st_size} bytes, weight {tensor.name!r} needs {needed})",
                    hint="copy the complete data file",
                )


def _initializer_tensors(model: ir.Model) -> Iterator[ir.TensorProtocol]:
    from irpass.pass_base import all_graphs

    for graph in all_graphs(model):
        for value in graph.initializers.values():
            if value.const_value is not None:
                yield value.const_value


def default_opset(model: ir.Model) -> int | None:
    """The default-domain ("" / ai.onnx) opset version, or None when the model imports none."""
    version = model.opset_imports.get("")
    if version is None:
        version = model.opset_imports.get("ai.onnx")
    return version


def _check_opset(model: ir.Model, path: pathlib.Path | str) -> None:
    version = default_opset(model)
    newest = onnx.defs.onnx_opset_version()
    if version is None:
        return
    if version < MIN_OPSET or version > newest:
        raise UnsupportedModelError(
            f"{path}: default-domain opset {version} is outside the supported range "
            f"{MIN_OPSET}..{newest}",
            hint="re-export the model with an opset in that range",
        )


def load_model(path: str | os.PathLike[str]) -> ir.Model:
    """Load an ONNX file into onnx-ir, raising ModelLoadError on anything unusable."""
    path = pathlib.Path(path)
    _check_path(path)
    try:
        model = ir.load(path)
    except (DecodeError, RuntimeError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise ModelLoadError(
            f"{path} is not a valid ONNX model (cannot parse it: {type(exc).__name__})",
            hint="the file may be truncated or not an ONNX protobuf; re-export it",
        ) from exc
    except Exception as exc:
        raise ModelLoadError(
            f"{path} is not a valid ONNX model ({type(exc).__name__}: {exc})",
            hint="the file may be truncated or not an ONNX protobuf; re-export it",
        ) from exc
    if not model.opset_imports and len(model.graph) == 0 and not model.graph.outputs:
        raise ModelLoadError(
            f"{path} does not contain an ONNX model (no graph, no opset imports)",
            hint="is this really a .onnx file? text and other protobufs parse as empty models",
        )
    if not model.graph.outputs:
        raise ModelLoadError(f"{path}: the graph has no outputs", hint="re-export the model")
    _check_opset(model, path)
    _check_external_data(model, path)
    return model


def initializer_bytes(model: ir.Model) -> int:
    """Total bytes of all initializers (main graph and subgraphs)."""
    return sum(t.nbytes for t in _initializer_tensors(model))


@contextlib.contextmanager
def atomic_output_path(path: str | os.PathLike[str]) -> Iterator[pathlib.Path]:
    """Yield a temporary folder; files written there are renamed into ``path``'s folder on success.

    Every file in the temporary folder replaces the file of the same name next to ``path``
    only when the block finishes without error; on error nothing is left behind.
    """
    path = pathlib.Path(path)
    parent = path.parent if str(path.parent) else pathlib.Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = pathlib.Path(tempfile.mkdtemp(prefix=".irpass-tmp-", dir=parent))
    except OSError as exc:
        raise OutputError(f"cannot write to {parent}: {exc.strerror}") from exc
    try:
        yield tmp
        for item in sorted(tmp.iterdir()):
            os.replace(item, parent / item.name)
    finally:
        for item in tmp.iterdir():
            item.unlink()
        tmp.rmdir()


def save_model(
    model: ir.Model,
    path: str | os.PathLike[str],
    *,
    external_data: bool | None = None,
    size_threshold_bytes: int = 1024,
) -> list[pathlib.Path]:
    """Save ``model`` to ``path`` atomically; returns the files written.

    ``external_data=None`` decides by size: weights above :data:`PROTOBUF_LIMIT` go to
    ``<name>.data`` beside the model; tensors smaller than ``size_threshold_bytes`` stay inline.
    """
    path = pathlib.Path(path)
    if external_data is None:
        external_data = initializer_bytes(model) > PROTOBUF_LIMIT
    data_name = path.name + ".data" if external_data else None
    with atomic_output_path(path) as tmp:
        try:
            ir.save(
                model,
                tmp / path.name,
                external_data=data_name,
                size_threshold_bytes=size_threshold_bytes,
            )
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror}") from exc
        written = [path.parent / p.name for p in tmp.iterdir()]
    return written


def to_ir(model: ir.Model | onnx.ModelProto | str | os.PathLike[str]) -> ir.Model:
    """Accept a path, a ModelProto or an ir.Model and return an ir.Model."""
    if isinstance(model, ir.Model):
        return model
    if isinstance(model, onnx.ModelProto):
        return ir.from_proto(model)
    return load_model(model)


def to_proto(model: ir.Model) -> onnx.ModelProto:
    """Serialize an ir.Model to a ModelProto (only for models below the protobuf limit)."""
    return ir.to_proto(model)
