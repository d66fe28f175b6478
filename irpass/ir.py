"""Loading and saving models through onnx-ir, with the input checks users rely on.

- :func:`load_model` reads a path into an ``ir.Model`` (external data stays lazy and
  memory-mapped, resolved against the model's own folder whatever the working folder is),
  validates the graph (:mod:`irpass.validate`) before onnx-ir deserializes it, and turns every
  way a file can be unusable into one clear ``ModelLoadError`` / ``UnsupportedModelError``.
- :func:`save_model` writes atomically (a staging folder in the destination folder, then
  rename) and moves weights to an external data file when the model would not fit in a 2 GB
  protobuf or already kept its weights outside.
- :func:`to_ir` / :func:`to_proto` adapt between ``onnx.ModelProto``, paths and ``ir.Model``;
  :func:`to_proto` inlines external weights so the result does not depend on any folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import shutil
from collections.abc import Iterator

import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError

from irpass.errors import ModelLoadError, OutputError, UnsupportedModelError
from irpass.outputs import make_staging_dir
from irpass.validate import validate_model, validate_model_proto

__all__ = [
    "KNOWN_DOMAINS",
    "MIN_OPSET",
    "PROTOBUF_LIMIT",
    "atomic_output_path",
    "default_opset",
    "external_data_files",
    "external_data_paths",
    "graph_protos",
    "has_external_data",
    "initializer_bytes",
    "inlined_external_data",
    "load_model",
    "save_model",
    "to_ir",
    "to_proto",
]

_LOG = logging.getLogger(__name__)

#: Above this many bytes of weights a model is saved with external data.
#: Operator domains that ONNX or ONNX Runtime define; an op of any other domain is a custom op
#: (irpass cannot run it: it passes through untouched and checks are structural).
KNOWN_DOMAINS = frozenset(
    {"", "ai.onnx", "ai.onnx.ml", "com.microsoft", "ai.onnx.preview", "ai.onnx.preview.training"}
)
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


def _proto_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor of ``graph`` and its subgraphs: initializers and tensor attributes."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t
            elif attr.type == onnx.AttributeProto.TENSORS:
                yield from attr.tensors
            elif attr.type == onnx.AttributeProto.GRAPH:
                yield from _proto_tensors(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _proto_tensors(sub)


def _check_external_data(proto: onnx.ModelProto, path: pathlib.Path) -> list[pathlib.Path]:
    """Check every external-data reference of ``proto`` (loaded from ``path``); return the files.

    Locations are resolved against the model's own folder; one that points outside it
    (absolute, ``..``, or a symlink leading out) is refused before the file is opened or even
    looked at, so no fact about a foreign file reaches a message.
    """
    folder = path.resolve().parent
    files: dict[pathlib.Path, int] = {}
    for tensor in _proto_tensors(proto.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entries = {e.key: e.value for e in tensor.external_data}
        location = entries.get("location", "")
        where = f"{path}: weight {tensor.name!r}"
        inside = pathlib.Path(os.path.normpath(folder / location))
        if (
            not location
            or os.path.isabs(location)
            or folder not in inside.parents
            or folder not in pathlib.Path(os.path.realpath(inside)).parents
        ):
            raise ModelLoadError(
                f"{where} refers to external data {location!r} outside the model's folder",
                hint="irpass reads weights only from files in the model's folder; move the "
                "data file next to the model and re-save it with a relative location",
            )
        if not inside.is_file():
            raise ModelLoadError(
                f"{where} lives in external data file {location!r}, which is missing",
                hint=f"put {location} next to {path.name}",
            )
        try:
            offset = int(entries.get("offset", 0) or 0)
            length = int(entries.get("length", 0) or 0)
        except ValueError as exc:
            raise ModelLoadError(
                f"{where}: external data offset/length are not numbers", hint="re-export it"
            ) from exc
        files[inside] = max(files.get(inside, 0), offset + length)
    for file, needed in files.items():
        stat = file.stat()
        if stat.st_size < needed:
            raise ModelLoadError(
                f"{path}: external data file {file.name!r} is truncated "
                f"({stat.st_size} bytes, its weights need {needed})",
                hint="copy the complete data file",
            )
        if stat.st_nlink > 1:
            raise ModelLoadError(
                f"{path}: external data file {file.name!r} has {stat.st_nlink} hard links",
                hint="onnx-ir refuses hard-linked weight files (a way to smuggle in other "
                "files); copy it instead of linking it",
            )
    return sorted(files)


def external_data_files(path: str | os.PathLike[str]) -> list[pathlib.Path]:
    """The external-data files the model at ``path`` reads (checked as :func:`load_model` does).

    Returns an empty list when the file cannot be parsed (loading it reports why).
    """
    path = pathlib.Path(path)
    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception:  # an unreadable model has no data files; load_model reports the error
        return []
    return _check_external_data(proto, path)


def _initializer_tensors(model: ir.Model) -> Iterator[ir.TensorProtocol]:
    
    for graph in model.graphs():
        for value in graph.initializers.values():
            if value.const_value is not None:
                yield value.const_value


def default_opset(model: ir.Model) -> int | None:
    """The default-domain ("" / ai.onnx) opset version, or None when the model imports none."""
    version = model.opset_imports.get("")
    if version is None:
        version = model.opset_imports.get("ai.onnx")
    return version


def _check_opset(model: ir.Model | onnx.ModelProto, path: pathlib.Path | str) -> None:
    if isinstance(model, onnx.ModelProto):
        imports = {o.domain: o.version for o in model.opset_import}
        version = imports.get("", imports.get("ai.onnx"))
    else:
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


def graph_protos(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """``graph`` and every subgraph (If/Loop/Scan bodies) inside it, depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from graph_protos(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from graph_protos(sub)


def _value_infos(graph: onnx.GraphProto) -> Iterator[tuple[str, onnx.ValueInfoProto]]:
    for each in graph_protos(graph):
        for kind, values in (
            ("graph input", each.input),
            ("graph output", each.output),
            ("value", each.value_info),
        ):
            for value in values:
                yield kind, value


def _relax_negative_dims(proto: onnx.ModelProto, where: str | os.PathLike[str]) -> None:
    """Declared dims below zero (Paddle and old converters write -1 for "any") become unknown.

    ONNX Runtime runs such models with any size on those axes, so refusing them would refuse
    working models; the declaration is treated as a dynamic dim and a warning names it.
    Negative dims of weights are real damage and are still refused by validation.
    """
    for kind, value in _value_infos(proto.graph):
        if not value.type.HasField("tensor_type"):
            continue
        tensor_type = value.type.tensor_type
        if not tensor_type.HasField("shape"):
            continue
        for axis, dim in enumerate(tensor_type.shape.dim):
            if dim.HasField("dim_value") and dim.dim_value < 0:
                if kind != "value":
                    _LOG.warning(
                        "%s: %s %r declares dimension %d on axis %d; treated as a dynamic "
                        "dimension",
                        where,
                        kind,
                        value.name,
                        dim.dim_value,
                        axis,
                    )
                dim.Clear()


def _deserialize(proto: onnx.ModelProto, where: str | os.PathLike[str]) -> ir.Model:
    _relax_negative_dims(proto, where)
    unsorted = validate_model_proto(proto, str(where))
    try:
        model = ir.serde.deserialize_model(proto)
    except Exception as exc:  # onnx-ir's own checks; validation caught the graph errors
        raise ModelLoadError(
            f"{where} is not a valid ONNX model ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''})",
            hint="the file may be damaged; re-export it",
        ) from exc
    if unsorted:
        model.graph.sort()
    return model


def load_model(path: str | os.PathLike[str]) -> ir.Model:
    """Load an ONNX file into onnx-ir, raising ModelLoadError on anything unusable."""
    path = pathlib.Path(path)
    _check_path(path)
    try:
        proto = onnx.load(path, load_external_data=False)
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
    if not proto.opset_import and not proto.graph.node and not proto.graph.output:
        raise ModelLoadError(
            f"{path} does not contain an ONNX model (no graph, no opset imports)",
            hint="is this really a .onnx file? text and other protobufs parse as empty models",
        )
    if not proto.graph.output:
        raise ModelLoadError(f"{path}: the graph has no outputs", hint="re-export the model")
    _check_opset(proto, path)
    _check_external_data(proto, path)
    model = _deserialize(proto, path)
    # Absolute, so that weights resolve against the model's folder from any working folder.
    ir.external_data.set_base_dir(model.graph, path.resolve().parent)
    return model


def initializer_bytes(model: ir.Model) -> int:
    """Total bytes of all initializers (main graph and subgraphs)."""
    return sum(t.nbytes for t in _initializer_tensors(model))


def has_external_data(model: ir.Model) -> bool:
    """Whether any initializer still reads its data from an external file."""
    return any(isinstance(t, ir.ExternalTensor) for t in _initializer_tensors(model))


@contextlib.contextmanager
def inlined_external_data(model: ir.Model) -> Iterator[ir.Model]:
    """Within the block, initializers that live in external files are in-memory tensors.

    The arrays are views of the memory-mapped files (no copy until serialized); the model's
    original tensors are put back afterwards, so serializing inside the block gives a
    protobuf that holds every weight and no file location.
    """
    swapped: list[tuple[ir.Value, ir.TensorProtocol]] = []
    try:
        
        for graph in model.graphs():
            for value in graph.initializers.values():
                tensor = value.const_value
                if isinstance(tensor, ir.ExternalTensor):
                    swapped.append((value, tensor))
                    value.const_value = ir.Tensor(tensor.numpy(), name=tensor.name)
        yield model
    finally:
        for value, tensor in swapped:
            value.const_value = tensor


@contextlib.contextmanager
def atomic_output_path(path: str | os.PathLike[str]) -> Iterator[pathlib.Path]:
    """Yield a staging folder; files written there are renamed into ``path``'s folder on success.

    Every file in the staging folder replaces the file of the same name next to ``path``
    only when the block finishes without error; on error (or SIGTERM, see
    :func:`irpass.outputs.handle_sigterm`) nothing is left behind, and a folder left by a
    killed run is removed by the next one.
    """
    path = pathlib.Path(path)
    parent = path.parent if str(path.parent) else pathlib.Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot write to {parent}: {exc.strerror}",
            hint="choose an output location you can write to",
        ) from exc
    tmp = make_staging_dir(parent)
    try:
        yield tmp
        for item in sorted(tmp.iterdir()):
            os.replace(item, parent / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_model(
    model: ir.Model,
    path: str | os.PathLike[str],
    *,
    external_data: bool | None = None,
    size_threshold_bytes: int = 1024,
) -> list[pathlib.Path]:
    """Save ``model`` to ``path`` atomically; returns the files written.

    ``external_data=None`` decides: weights above :data:`PROTOBUF_LIMIT`, or a model whose
    weights were loaded from external data, go to ``<name>.data`` beside the model (tensors
    smaller than ``size_threshold_bytes`` stay inline). Without external data every weight is
    written into the protobuf, including those loaded from the input's data file: the output
    never refers to a file it did not write.
    """
    path = pathlib.Path(path)
    if external_data is None:
        external_data = has_external_data(model) or initializer_bytes(model) > PROTOBUF_LIMIT
    data_name = path.name + ".data" if external_data else None
    with atomic_output_path(path) as tmp:
        try:
            if data_name is None:
                with inlined_external_data(model):
                    ir.save(model, tmp / path.name)
            else:
                ir.save(
                    model,
                    tmp / path.name,
                    external_data=data_name,
                    size_threshold_bytes=size_threshold_bytes,
                )
        except OSError as exc:
            raise OutputError(
                f"cannot write {path}: {exc.strerror}",
                hint="check free space and permissions of the output location",
            ) from exc
        written = [path.parent / p.name for p in tmp.iterdir()]
    return written


def to_ir(model: ir.Model | onnx.ModelProto | str | os.PathLike[str]) -> ir.Model:
    """Accept a path, a ModelProto or an ir.Model and return an ir.Model (validated)."""
    if isinstance(model, ir.Model):
        if validate_model(model):
            model.graph.sort()
        return model
    if isinstance(model, onnx.ModelProto):
        return _deserialize(model, "the model")
    return load_model(model)


def to_proto(model: ir.Model) -> onnx.ModelProto:
    """Serialize an ir.Model to a self-contained ModelProto (only below the protobuf limit).

    Weights the model reads from external files are copied into the protobuf, so the checker
    and ONNX Runtime see them whatever the working folder is.
    """
    with inlined_external_data(model):
        return ir.to_proto(model)


def external_data_paths(model: ir.Model) -> list[pathlib.Path]:
    """The files the model's external tensors (initializers, in subgraphs too) read from."""
    paths = {
        pathlib.Path(os.path.realpath(t.path))
        for t in _initializer_tensors(model)
        if isinstance(t, ir.ExternalTensor)
    }
    return sorted(paths)
