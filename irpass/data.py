"""Calibration and evaluation data: readers that stream feeds matched to a model's inputs.

A :class:`DataSource` is callable and returns a fresh iterator of feeds (``dict`` input name ->
array) every time, holding at most one batch in memory. :func:`open_data` turns the text a user
types after ``--eval-data`` / ``--calib`` / ``--data`` into a source:

=====================================  ==================================================
spec                                   what it reads
=====================================  ==================================================
``x.npy``                              one array, samples along axis 0 (single-input
                                       models); memory-mapped, read a batch at a time
``x.npz``                              arrays named after the inputs, samples along axis 0;
                                       other keys (e.g. ``labels``) are ignored; members
                                       are streamed batch by batch, even when compressed
``folder/`` of .npy / .npz files       one feed per file, in sorted order; a file may hold
                                       one sample (rank - 1, a batch axis is added) or a
                                       batch; shapes may differ from file to file
``folder/`` of images                  PNG/JPEG/BMP/... (Pillow) or PGM/PPM (built in),
                                       preprocessed as given by ``?size=HxW&mean=..&std=..
                                       &layout=nchw|nhwc&channels=rgb|bgr|gray&scale=255``
                                       or by a ``preprocess.json`` in the folder
``package.module:function``            the function is called (no arguments) for each pass
                                       over the data and yields feeds (dicts, or arrays /
                                       tuples of arrays in input order)
``random`` / ``random:N``              N (default 8) batches of seeded random inputs:
                                       fidelity numbers are then only indicative;
                                       ``?seed=S`` and ``?<dim>=K`` set the seed and the
                                       size of a named dynamic dimension
=====================================  ==================================================

Any spec takes ``?batch=N`` (samples per feed for .npy/.npz/images; default: the model's fixed
batch size, else 32). With a model, every feed is validated as it streams: a missing input, a
dtype of another kind (float vs integer vs bool), a wrong rank or a wrong fixed dimension is a
:class:`~irpass.errors.DataError` naming the input and what the model expects. Floats of another
width are cast to the input's width, integers likewise when the values fit. An empty data set is
an error too.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import inspect
import json
import logging
import os
import pathlib
import urllib.parse
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import IO, Any

import numpy as np
import onnx_ir as ir

from irpass import importing
from irpass.errors import DataError

__all__ = [
    "DEFAULT_BATCH",
    "IMAGE_SUFFIXES",
    "ArrayFolderSource",
    "ArraySource",
    "CallableSource",
    "DataSource",
    "ImageFolderSource",
    "ImagePreprocess",
    "InputSpec",
    "NpyFileSource",
    "NpzFileSource",
    "RandomSource",
    "ValidatedSource",
    "import_callable",
    "folder_labels",
    "input_specs",
    "load_labels",
    "open_data",
    "resize_bilinear",
]

logger = logging.getLogger(__name__)

#: Samples per feed when neither the spec nor the model fixes it.
DEFAULT_BATCH = 32
#: File suffixes read as images.
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pnm"}
)
_ARRAY_SUFFIXES = frozenset({".npy", ".npz"})


# ------------------------------------------------------------------------------ model inputs
@dataclasses.dataclass(frozen=True)
class InputSpec:
    """What a model expects on one input: name, numpy dtype and shape (None = unknown dim)."""

    name: str
    dtype: np.dtype | None
    shape: tuple[int | str | None, ...] | None

    @property
    def rank(self) -> int | None:
        """Number of dimensions, or None when the model does not say."""
        return None if self.shape is None else len(self.shape)

    @property
    def batch(self) -> int | None:
        """The fixed size of axis 0, or None when it is dynamic or unknown."""
        if self.shape and isinstance(self.shape[0], int):
            return self.shape[0]
        return None

    def describe(self) -> str:
        """E.g. ``float32 [batch, 1, 16, 16]``."""
        dtype = self.dtype.name if self.dtype is not None else "any type"
        if self.shape is None:
            return f"{dtype} (any shape)"
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{dtype} [{dims}]"


def input_specs(model: ir.Model) -> list[InputSpec]:
    """The model's real inputs (graph inputs that are not initializers) in graph order."""
    specs = []
    for value in model.graph.inputs:
        if value.name in model.graph.initializers:
            continue
        dtype = None
        if value.dtype is not None:
            with contextlib.suppress(TypeError, ValueError):
                dtype = np.dtype(value.dtype.numpy())
        shape = None
        if value.shape is not None:
            shape = tuple(
                d if isinstance(d, int) else (d.value if isinstance(d, ir.SymbolicDim) else None)
                for d in value.shape
            )
        specs.append(InputSpec(str(value.name), dtype, shape))
    return specs


# ------------------------------------------------------------------------------- the protocol
class DataSource(abc.ABC):
    """Callable returning a fresh iterator of feeds; subclasses implement :meth:`feeds`.

    Attributes:
        description: Where the data come from, for reports and error messages.
        indicative: True when the data are synthetic (random), so measured numbers are only
            indicative of real accuracy.
    """

    description: str = "data"
    indicative: bool = False

    @abc.abstractmethod
    def feeds(self) -> Iterator[dict[str, np.ndarray]]:
        """Yield feeds; each call starts over from the first sample."""

    def __call__(self) -> Iterator[dict[str, np.ndarray]]:
        """A fresh iterator of feeds (what the manager and the evaluator call)."""
        return self.feeds()

    @property
    def num_samples(self) -> int | None:
        """Total samples along axis 0 over all feeds when known without reading the data."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description})"


def _batch_slices(total: int, batch: int) -> Iterator[slice]:
    for start in range(0, total, batch):
        yield slice(start, min(start + batch, total))


class ArraySource(DataSource):
    """In-memory arrays (input name -> array), split into batches along axis 0."""

    def __init__(self, arrays: Mapping[str, np.ndarray], batch_size: int = DEFAULT_BATCH) -> None:
        if not arrays:
            raise DataError("no arrays given")
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        lengths = {k: (len(v) if v.ndim else 1) for k, v in self.arrays.items()}
        if len(set(lengths.values())) > 1:
            raise DataError(f"arrays have different numbers of samples: {lengths}")
        self.batch_size = batch_size
        self.description = "arrays " + ", ".join(self.arrays)
        self._length = next(iter(lengths.values()))

    @property
    def num_samples(self) -> int | None:  # noqa: D102
        return self._length

    def feeds(self) -> Iterator[dict[str, np.ndarray]]:  # noqa: D102
        for part in _batch_slices(self._length, self.batch_size):
            yield {k: np.ascontiguousarray(v[part]) for k, v in self.arrays.items()}


class NpyFileSource(DataSource):
    """One .npy file for a single input, memory-mapped and read a batch at a time."""

    def __init__(self, path: pathlib.Path, input_name: str, batch_size: int) -> None:
        self.path = path
        self.input_name = input_name
        self.batch_size = batch_size
        self.description = str(path)
        self._array = _open_npy(path)

    @property
    def num_samples(self) -> int | None:  # noqa: D102
        return len(self._array) if self._array.ndim else 1

    def feeds(self) -> Iterator[dict[str, np.ndarray]]:  # noqa: D102
        array = self._array
        if array.ndim == 0:
            yield {self.input_name: np.asarray(array)}
            return
        for part in _batch_slices(len(array), self.batch_size):
            yield {self.input_name: np.ascontiguousarray(array[part])}


def _open_npy(path: pathlib.Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read it as a .npy array ({exc})") from exc


@dataclasses.dataclass(frozen=True)
class _MemberHeader:
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool


def _read_npy_header(stream: IO[bytes]) -> _MemberHeader:
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    return _MemberHeader(tuple(shape), np.dtype(dtype), bool(fortran))


class NpzFileSource(DataSource):
    """A .npz archive whose members are named after the model's inputs, streamed in batches.

    Each member is read from the archive a batch of rows at a time (also when compressed), so
    memory stays at one batch per input whatever the archive's size.
    """

    def __init__(self, path: pathlib.Path, names: Sequence[str], batch_size: int) -> None:
        self.path = path
        self.names = list(names)
        self.batch_size = batch_size
        self.description = str(path)
        self._headers: dict[str, _MemberHeader] = {}
        try:
            with zipfile.ZipFile(path) as archive:
                for name in self.names:
                    with archive.open(name + ".npy") as member:
                        self._headers[name] = _read_npy_header(member)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read it as a .npz archive ({exc})") from exc
        lengths = {n: (h.shape[0] if h.shape else 1) for n, h in self._headers.items()}
        if len(set(lengths.values())) > 1:
            raise DataError(
                f"{path}: arrays have different numbers of samples: {lengths}",
                hint="every input array needs the same length along axis 0",
            )
        for name, header in self._headers.items():
            if header.dtype.hasobject:
                raise DataError(f"{path}: array {name!r} holds Python objects, not numbers")
        self._length = next(iter(lengths.values()), 0)

    @staticmethod
    def keys(path: pathlib.Path) -> list[str]:
        """Array names stored in a .npz archive."""
        try:
            with zipfile.ZipFile(path) as archive:
                return [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"{path}: cannot read it as a .npz archive ({exc})") from exc

    @property
    def num_samples(self) -> int | None:  # noqa: D102
        return self._length

    def feeds(self) -> Iterator[dict[str, np.ndarray]]:  # noqa: D102
        with zipfile.ZipFile(self.path) as archive, contextlib.ExitStack() as stack:
            readers = {}
            for name in self.names:
                member = stack.enter_context(archive.open(name + ".npy"))
                header = _read_npy_header(member)
                readers[name] = (member, header)
            if any(h.fortran or not h.shape for _, h in readers.values()):
                # Fortran-ordered or scalar members cannot be read row by row: load them whole.
                with np.load(self.path, allow_pickle=False) as data:
                    arrays = {n: data[n] for n in self.names}
                yield from ArraySource(arrays, self.batch_size).feeds()
                return
            for part in _batch_slices(self._length, self.batch_size):
                rows = part.stop - part.start
                feed = {}
                for name, (member, header) in readers.items():
                    row_shape = header.shape[1:]
                    count = rows * int(np.prod(row_shape, dtype=np.int64))
                    buffer = member.read(count * header.dtype.itemsize)
                    feed[name] = np.frombuffer(buffer, header.dtype, count).reshape(
                        (rows, *row_shape)
                    ).copy()
                yield feed


class ArrayFolderSource(DataSource):
    """A folder of .npy / .npz files, one feed per file (shapes may vary between files)."""

    def __init__(self, folder: pathlib.Path, files: Sequence[pathlib.Path], names: Sequence[str]):
        self.folder = folder
        self.files = list(files)
        self.names = list(names)
        self.description = f"{folder} ({len(self.files)} files)"

    def feeds(self) -> Iterator[dict[str, np.ndarray]]:  # noqa: D102
        for path in self.files:
            if path.suffix == ".npy":
                if len(self.names) != 1:
                    raise DataError(
                        f"{path}: a .npy file holds one array but the model has inputs "
                        f"{self.names}",
                        hint="store one .npz per sample with arrays named after the inputs",
                    )
                yield {self.names[0]: np.asarray(_open_npy(path))}
            else:
                try:
                    with np.load(path, allow_pickle=False) as data:
                        yield {k: data[k] for k in data.files}
                except (ValueError, OSError, zipfile.BadZipFile) as exc:
                    raise DataError(f"{path}: cannot read it as a .npz archive ({exc})") from exc


# ----------------------------------------------------------------------------------- images
@dataclasses.dataclass(frozen=True)
class ImagePreprocess:
    """How image files become an input tensor.

    Pixels are divided by ``scale``, resized (bilinear, half-pixel centers) to ``size``,
    normalized as ``(x - mean) / std`` per channel, put in ``channels`` order and laid out as
    ``layout`` with a batch axis in front.
    """

    size: tuple[int, int] | None = None
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str = "nchw"
    channels: str | None = None
    scale: float = 255.0

    def __post_init__(self) -> None:
        if self.layout not in ("nchw", "nhwc"):
            raise DataError(f"image layout must be nchw or nhwc, got {self.layout!r}")
        if self.channels not in (None, "rgb", "bgr", "gray"):
            raise DataError(f"image channels must be rgb, bgr or gray, got {self.channels!r}")
        if any(s == 0 for s in self.std):
            raise DataError("image std must not be 0")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ImagePreprocess:
        """Build from ``size=HxW&mean=a,b,c&...`` style values (strings or JSON values)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise DataError(
                f"unknown image preprocessing option(s): {', '.join(sorted(unknown))}",
                hint="valid: " + ", ".join(sorted(known)),
            )
        kwargs: dict[str, Any] = {}
        try:
            for key, value in values.items():
                if key == "size":
                    if isinstance(value, str):
                        parts = value.lower().replace(",", "x").split("x")
                        value = (int(parts[0]), int(parts[-1]))
                    kwargs[key] = tuple(int(v) for v in value)
                elif key in ("mean", "std"):
                    if isinstance(value, str):
                        value = value.split(",")
                    if isinstance(value, (int, float)):
                        value = [value]
                    kwargs[key] = tuple(float(v) for v in value)
                elif key == "scale":
                    kwargs[key] = float(value)
                else:
                    kwargs[key] = str(value).lower()
        except (TypeError, ValueError) as exc:
            raise DataError(f"bad image preprocessing value: {exc}") from exc
        return cls(**kwargs)


def _decode_netpbm(path: pathlib.Path) -> np.ndarray:
    """Binary PGM (P5) / PPM (P6), 8 or 16 bit, without any imaging library."""
    data = path.read_bytes()
    tokens: list[bytes] = []
    pos = 0
    while len(tokens) < 4:
        while pos < len(data) and data[pos : pos + 1].isspace():
            pos += 1
        if data[pos : pos + 1] == b"#":
            pos = data.index(b"\n", pos)
            continue
        end = pos
        while end < len(data) and not data[end : end + 1].isspace():
            end += 1
        tokens.append(data[pos:end])
        pos = end
    magic, width, height, maxval = tokens[0], int(tokens[1]), int(tokens[2]), int(tokens[3])
    if magic not in (b"P5", b"P6"):
        raise DataError(f"{path}: only binary PGM (P5) and PPM (P6) are read without Pillow")
    channels = 3 if magic == b"P6" else 1
    dtype = np.dtype(">u2") if maxval > 255 else np.dtype(np.uint8)
    count = width * height * channels
    pixels = np.frombuffer(data, dtype, count, offset=pos + 1).astype(np.float32)
    pixels *= 255.0 / maxval
    return pixels.reshape(height, width, channels)


def _decode_image(path: pathlib.Path) -> np.ndarray:
    """Decode to float32 HxWxC (C = 1 or 3) with values in 0..255."""
    try:
        from PIL import Image
    except ImportError:
        if path.suffix.lower() in (".pgm", ".ppm", ".pnm"):
            return _decode_netpbm(path)
        raise DataError(
            f"{path}: reading {path.suffix} images needs Pillow",
            hint="pip install pillow (PGM/PPM images are read without it)",
        ) from None
    try:
        with Image.open(path) as image:
            mode = "L" if image.mode in ("1", "L", "I;16", "I", "F") else "RGB"
            array = np.asarray(image.convert(mode), dtype=np.float32)
    except OSError as exc:
        raise DataError(f"{path}: cannot decode the image ({exc})") from exc
    return array[:, :, None] if array.ndim == 2 else array


def resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of HxWxC with half-pixel centers (as ONNX Resize, no antialiasing)."""
    height, width = image.shape[:2]
    out_h, out_w = size
    if (height, width) == (out_h, out_w):
        return image

    def coords(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        x = np.clip(x, 0, n_in - 1)
        lo = np.floor(x).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (x - lo).astype(np.float32)

    y0, y1, wy = coords(height, out_h)
    x0, x1, wx = coords(width, out_w)
    top = image[y0][:, x0] * (1 - wx)[None, :, None] + image[y0][:, x1] * wx[None, :, None]
    bottom = image[y1][:, x0] * (1 - wx)[None, :, None] + image[y1][:, x1] * wx[None, :, None]
    return (top * (1 - wy)[:, None, None] + bottom * wy[:, None, None]).astype(np.float32)


class ImageFolderSource(DataSource):
    """A folder (searched recursively, sorted) of images, preprocessed into one input."""

    def __init__(
        self,
        folder: pathlib.Path,
        files: Sequence[pathlib.Path],
        preprocess: ImagePreprocess,
        input_name: str,
        batch_size: int,
        dtype: np.dtype | None = None,
    ) -> None:
        self.folder = folder
        self.files = list(files)
        self.preprocess = preprocess
        self.input_name = input_name
        self.batch_size = batch_size
        self.dtype = dtype or np.dtype(np.float32)
        self.description = f"{folder} ({len(self.files)} images)"

    @property
    def num_samples(self) -> int | None:  # noqa: D102
        return len(self.files)

    def _load(self, path: pathlib.Path) -> np.ndarray:
        p = self.preprocess
        image = _decode_image(path)
        if p.channels == "gray" and image.shape[2] == 3:
            image = image @ np.array([[0.299], [0.587], [0.114]], np.float32)
        elif p.channels in ("rgb", "bgr") and image.shape[2] == 1:
            image = np.repeat(image, 3, axis=2)
        if p.channels == "bgr":
            image = image[:, :, ::-1]
        image = image / p.scale
        if p.size is not None:
            image = resize_bilinear(image, p.size)
        mean = np.asarray(p.mean, np.float32)
        std = np.asarray(p.std, np.float32)
        if mean.size not in (1, image.shape[2]) or std.size not in (1, image.shape[2]):
            raise DataError(
                f"{path}: mean/std have {mean.size}/{std.size} values for "
                f"{image.shape[2]} channel(s)"
            )
        image = (image - mean) / std
        if p.layout == "nchw":
            image = image.transpose(2, 0, 1)
        return np.ascontiguousarray(image, dtype=self.dtype)

    def feeds(self) -> Iterator[dict[str, np.ndarray]]:  # noqa: D102
        pending: list[np.ndarray] = []
        for path in self.files:
            image = self._load(path)
            if pending and (image.shape != pending[0].shape or len(pending) == self.batch_size):
                yield {self.input_name: np.stack(pending)}
                pending = []
            pending.append(image)
        if pending:
            yield {self.input_name: np.stack(pending)}


# ------------------------------------------------------------------------- callable, random
def import_callable(spec: str) -> Callable[..., Any]:
    """Import ``package.module:function`` (the current folder is importable)."""
    return importing.import_callable(
        spec,
        DataError,
        hint="give a file, a folder, 'random', or module:function importable from here",
    )


class CallableSource(DataSource):
    """A Python callable that returns (or is a generator of) feeds, called once per pass.

    Items may be dicts (input name -> array) or, when ``names`` are known, an array or a
    tuple/list of arrays in input order.
    """

    def __init__(
        self, function: Callable[[], Iterable[Any]], names: Sequence[str] = (), label: str = ""
    ) -> None:
        self.function = function
        self.names = list(names)
        self.description = label or getattr(function, "__qualname__", repr(function))

    def feeds(self) -> Iterator[dict[str, np.ndarray]]:  # noqa: D102
        items = self.function()
        if isinstance(items, (Mapping, np.ndarray)):
            items = [items]
        for index, item in enumerate(items):
            yield self._as_feed(item, index)

    def _as_feed(self, item: Any, index: int) -> dict[str, np.ndarray]:
        if isinstance(item, Mapping):
            return {str(k): np.asarray(v) for k, v in item.items()}
        arrays = [item] if isinstance(item, np.ndarray) else item
        if not isinstance(arrays, (list, tuple)) or not self.names:
            raise DataError(
                f"data {self.description}: item {index} is a {type(item).__name__}",
                hint="yield dicts mapping input names to arrays",
            )
        if len(arrays) != len(self.names):
            raise DataError(
                f"data {self.description}: item {index} has {len(arrays)} arrays, the model "
                f"has {len(self.names)} inputs {self.names}"
            )
        return {n: np.asarray(a) for n, a in zip(self.names, arrays, strict=True)}


class RandomSource(DataSource):
    """Seeded random feeds for a model's inputs (numbers measured on them are only indicative).

    Floats are standard normal, integers uniform in ``[0, int_high)``, bools uniform. Dynamic
    dimensions take ``dim_values[name]``, else the batch size for axis 0, else 1.
    """

    indicative = True

    def __init__(
        self,
        specs: Sequence[InputSpec],
        count: int = 8,
        batch_size: int = 1,
        seed: int = 0,
        dim_values: Mapping[str, int] | None = None,
        int_high: int = 4,
    ) -> None:
        self.specs = list(specs)
        self.count = count
        self.batch_size = batch_size
        self.seed = seed
        self.dim_values = dict(dim_values or {})
        self.int_high = int_high
        self.description = f"random ({count} feeds, seed {seed})"
        for spec in self.specs:
            if spec.shape is None or spec.dtype is None:
                raise DataError(
                    f"cannot make random data for input {spec.name!r}: the model does not "
                    "give its shape and type",
                    hint="give real data (a .npz file, a folder or module:function)",
                )

    @property
    def num_samples(self) -> int | None:  # noqa: D102
        if all(s.batch is not None for s in self.specs):
            return self.count * (self.specs[0].batch or 1)
        return self.count * self.batch_size

    def _shape(self, spec: InputSpec) -> list[int]:
        shape = []
        assert spec.shape is not None
        for axis, dim in enumerate(spec.shape):
            if isinstance(dim, int):
                shape.append(dim)
            elif isinstance(dim, str) and dim in self.dim_values:
                shape.append(self.dim_values[dim])
            else:
                shape.append(self.batch_size if axis == 0 else 1)
        return shape

    def feeds(self) -> Iterator[dict[str, np.ndarray]]:  # noqa: D102
        rng = np.random.default_rng(self.seed)
        for _ in range(self.count):
            feed = {}
            for spec in self.specs:
                assert spec.dtype is not None
                shape = self._shape(spec)
                if spec.dtype.kind == "f":
                    feed[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
                elif spec.dtype.kind == "b":
                    feed[spec.name] = rng.integers(0, 2, size=shape).astype(np.bool_)
                else:
                    feed[spec.name] = rng.integers(0, self.int_high, size=shape).astype(spec.dtype)
            yield feed


# ------------------------------------------------------------------------------- validation
def _convert(value: np.ndarray, spec: InputSpec, where: str) -> np.ndarray:
    expected = spec.dtype
    if expected is None or value.dtype == expected:
        return value
    got = value.dtype
    mismatch = DataError(
        f"{where}: input {spec.name!r} expects {spec.describe()}, the data give {got.name} "
        f"with shape {list(value.shape)}",
        hint=f"store {spec.name!r} as {expected.name}",
    )
    if got.kind == "f" and expected.kind == "f":
        return value.astype(expected)
    if got.kind in "iu" and expected.kind in "iu":
        info = np.iinfo(expected)
        if value.size and (value.min() < info.min or value.max() > info.max):
            raise mismatch
        return value.astype(expected)
    raise mismatch


class ValidatedSource(DataSource):
    """Wraps a source and checks (and, where lossless, adapts) every feed against the model.

    - every model input must be present (extra arrays are ignored);
    - dtypes must be of the same kind; other float / integer widths are cast;
    - ranks must match; data with one axis less get a batch axis in front;
    - fixed dimensions must match.
    """

    def __init__(self, source: DataSource, specs: Sequence[InputSpec]) -> None:
        self.source = source
        self.specs = list(specs)
        self.description = source.description
        self.indicative = source.indicative

    @property
    def num_samples(self) -> int | None:  # noqa: D102
        return self.source.num_samples

    def check(self, feed: Mapping[str, np.ndarray], index: int) -> dict[str, np.ndarray]:
        """Validate feed number ``index``; returns the adapted feed or raises DataError."""
        where = f"{self.description}, feed {index}"
        out: dict[str, np.ndarray] = {}
        missing = [s.name for s in self.specs if s.name not in feed]
        if missing:
            spec = next(s for s in self.specs if s.name == missing[0])
            raise DataError(
                f"{where}: no data for input {spec.name!r} (expects {spec.describe()}); "
                f"the data have {sorted(feed) or 'nothing'}",
                hint="name the arrays after the model's inputs: "
                + ", ".join(s.name for s in self.specs),
            )
        for spec in self.specs:
            value = np.asarray(feed[spec.name])
            if spec.rank is not None:
                if value.ndim == spec.rank - 1:
                    value = value[None]
                elif value.ndim != spec.rank:
                    raise DataError(
                        f"{where}: input {spec.name!r} expects rank {spec.rank} "
                        f"({spec.describe()}), the data have rank {value.ndim} with shape "
                        f"{list(value.shape)}",
                        hint="samples go along axis 0; the other axes must match the model",
                    )
                assert spec.shape is not None
                for axis, (dim, got) in enumerate(zip(spec.shape, value.shape, strict=True)):
                    if isinstance(dim, int) and dim != got:
                        raise DataError(
                            f"{where}: input {spec.name!r} expects {spec.describe()}, the "
                            f"data have shape {list(value.shape)} (axis {axis}: {got} != {dim})"
                        )
            out[spec.name] = _convert(value, spec, where)
        return out

    def feeds(self) -> Iterator[dict[str, np.ndarray]]:  # noqa: D102
        for index, feed in enumerate(self.source()):
            yield self.check(feed, index)


# ------------------------------------------------------------------------------- open_data
def _split_query(spec: str) -> tuple[str, dict[str, str]]:
    base, sep, query = spec.partition("?")
    if not sep:
        return spec, {}
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=False)
    return base, dict(pairs)


def _int_option(options: dict[str, str], key: str, default: int | None) -> int | None:
    if key not in options:
        return default
    try:
        value = int(options.pop(key))
    except ValueError:
        raise DataError(f"data option {key} must be an integer") from None
    if value <= 0:
        raise DataError(f"data option {key} must be positive, got {value}")
    return value


def _default_batch(specs: Sequence[InputSpec]) -> int:
    fixed = [s.batch for s in specs if s.batch is not None]
    return fixed[0] if fixed else DEFAULT_BATCH


def _image_preprocess(
    folder: pathlib.Path, options: dict[str, str], spec: InputSpec | None
) -> ImagePreprocess:
    values: dict[str, Any] = {}
    config = folder / "preprocess.json"
    if config.is_file():
        try:
            values.update(json.loads(config.read_text()))
        except json.JSONDecodeError as exc:
            raise DataError(f"{config}: not valid JSON ({exc.msg}, line {exc.lineno})") from exc
    values.update(options)
    options.clear()
    layout = str(values.get("layout", "nchw")).lower()
    if spec is not None and spec.shape is not None and spec.rank == 4:
        c_axis, h_axis, w_axis = (1, 2, 3) if layout == "nchw" else (3, 1, 2)
        height, width, channels = spec.shape[h_axis], spec.shape[w_axis], spec.shape[c_axis]
        if "size" not in values and isinstance(height, int) and isinstance(width, int):
            values["size"] = (height, width)
        if "channels" not in values and channels in (1, 3):
            values["channels"] = "gray" if channels == 1 else "rgb"
    return ImagePreprocess.from_mapping(values)


def _open_path(
    path: pathlib.Path, options: dict[str, str], specs: Sequence[InputSpec] | None, batch: int
) -> DataSource:
    names = [s.name for s in specs] if specs else []
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        arrays = [p for p in files if p.suffix.lower() in _ARRAY_SUFFIXES]
        if images and arrays:
            raise DataError(
                f"{path} holds both images and arrays",
                hint="keep one kind of data per folder",
            )
        if images:
            if specs is not None and len(specs) != 1:
                raise DataError(
                    f"{path}: a folder of images feeds one input, the model has {names}"
                )
            spec = specs[0] if specs else None
            preprocess = _image_preprocess(path, options, spec)
            return ImageFolderSource(
                path, images, preprocess, spec.name if spec else "input", batch,
                spec.dtype if spec and spec.dtype is not None and spec.dtype.kind == "f"
                else None,
            )
        if arrays:
            return ArrayFolderSource(path, arrays, names or ["input"])
        raise DataError(
            f"{path} holds no data (no .npy, .npz or image files)",
            hint="an empty data set cannot calibrate or evaluate anything",
        )
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if specs is not None and len(specs) != 1:
            raise DataError(
                f"{path}: a .npy file holds one array, the model has inputs {names}",
                hint="use a .npz with arrays named after the inputs",
            )
        return NpyFileSource(path, names[0] if names else "input", batch)
    if suffix == ".npz":
        keys = NpzFileSource.keys(path)
        if specs is None:
            wanted = [k for k in keys if k not in ("labels", "label", "y", "targets")]
        else:
            wanted = names
            missing = [n for n in names if n not in keys]
            if missing == names and len(names) == 1 and len(keys) == 1:
                raise DataError(
                    f"{path}: no array named {names[0]!r} (the model's input; "
                    f"expects {specs[0].describe()}); the archive has {keys}",
                    hint=f"save it as np.savez(..., {names[0]}=array)",
                )
            if missing:
                spec = next(s for s in specs if s.name == missing[0])
                raise DataError(
                    f"{path}: no array for input {spec.name!r} (expects {spec.describe()}); "
                    f"the archive has {keys}",
                    hint="name the arrays after the model's inputs: " + ", ".join(names),
                )
        return NpzFileSource(path, wanted, batch)
    raise DataError(
        f"{path}: unknown data file type {path.suffix!r}",
        hint="use .npy, .npz, a folder of arrays or images, module:function or random",
    )


def open_data(
    spec: str | os.PathLike[str],
    model: ir.Model | None = None,
    *,
    batch_size: int | None = None,
    seed: int = 0,
) -> DataSource:
    """Open the data named by ``spec`` (see the module docstring), validated against ``model``.

    The first feed is read and checked right away so that a mismatch or an empty data set is
    reported before any work is done.

    Raises:
        DataError: unreadable or empty data, or data that do not fit the model's inputs.
    """
    text = os.fspath(spec)
    base, options = _split_query(text)
    specs = input_specs(model) if model is not None else None
    batch = _int_option(options, "batch", batch_size)
    if batch is None:
        batch = _default_batch(specs) if specs else DEFAULT_BATCH
    path = pathlib.Path(base)
    source: DataSource
    if base == "random" or base.startswith("random:"):
        if specs is None:
            raise DataError("random data need the model (to know its inputs)")
        count = 8
        if base.startswith("random:"):
            count = _int_option({"count": base.partition(":")[2]}, "count", 8) or 8
        rnd_seed = _int_option(options, "seed", None)
        dims = {k: int(v) for k, v in options.items() if k not in ("batch",) and v.isdigit()}
        options.clear()
        explicit_batch = batch_size is not None or "batch" in _split_query(text)[1]
        source = RandomSource(
            specs,
            count=count,
            batch_size=batch if explicit_batch else 1,
            seed=seed if rnd_seed is None else rnd_seed,
            dim_values=dims,
        )
        logger.warning(
            "using random inputs: fidelity numbers and calibration statistics are only "
            "indicative of what real data would show, and task metrics need real data with labels"
        )
    elif path.exists():
        source = _open_path(path, options, specs, batch)
    elif ":" in base and os.sep not in base.partition(":")[0] and all(
        part.replace("_", "a").replace(".", "a").isalnum() for part in base.split(":", 1)
    ):
        function = import_callable(base)
        if len(inspect.signature(function).parameters) and model is not None:
            bound = model

            def call() -> Iterable[Any]:
                return function(bound)

            source = CallableSource(call, [s.name for s in specs or []], base)
        else:
            source = CallableSource(function, [s.name for s in specs or []], base)
    else:
        raise DataError(
            f"data {text!r}: no such file or folder",
            hint="give a .npy/.npz file, a folder of arrays or images, module:function, or random",
        )
    if options:
        raise DataError(
            f"data {text!r}: unknown option(s) {', '.join(sorted(options))}",
            hint="data options: batch (and size, mean, std, layout, channels, scale for images)",
        )
    if specs is not None:
        source = ValidatedSource(source, specs)
    _check_not_empty(source)
    return source


def _check_not_empty(source: DataSource) -> None:
    iterator = source()
    try:
        first = next(iter(iterator), None)
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
    if first is None or source.num_samples == 0 or any(
        v.ndim and v.shape[0] == 0 for v in first.values()
    ):
        raise DataError(
            f"data {source.description} are empty",
            hint="an empty data set cannot calibrate or evaluate anything",
        )


# ----------------------------------------------------------------------------------- labels
def folder_labels(folder: pathlib.Path) -> np.ndarray:
    """Class indices of the images in ``folder/<class>/...`` (classes in sorted name order).

    The order matches the order in which an image folder is read, so the labels line up
    with the samples of ``open_data(folder)``.
    """
    images = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not images:
        raise DataError(f"labels {folder}: no images in this folder")
    classes = [p.relative_to(folder).parts[0] if len(p.relative_to(folder).parts) > 1 else None
               for p in images]
    if any(c is None for c in classes):
        raise DataError(
            f"labels {folder}: images must sit in one subfolder per class",
            hint="lay out the data as FOLDER/<class name>/<image>",
        )
    names = sorted(set(classes))  # type: ignore[type-var]
    return np.array([names.index(c) for c in classes], dtype=np.int64)


_LABEL_KEYS = ("labels", "label", "y", "targets", "target")


def load_labels(path: str | os.PathLike[str]) -> np.ndarray:
    """Read labels aligned with the data's samples.

    ``.npy`` arrays; ``.npz`` archives (the member ``labels``/``label``/``y``/``targets``,
    the only member, or the one named by ``file.npz:key``); ``.txt`` / ``.csv`` with one label
    per line (integers become int64, anything else float); a folder of images sorted into one
    subfolder per class (see :func:`folder_labels`).

    Raises:
        DataError: the file is missing, unreadable or empty.
    """
    text = os.fspath(path)
    key = None
    if pathlib.Path(text).is_dir():
        return folder_labels(pathlib.Path(text))
    if not pathlib.Path(text).exists() and ":" in text:
        text, _, key = text.rpartition(":")
    file = pathlib.Path(text)
    if not file.is_file():
        raise DataError(f"labels {text!r}: no such file")
    suffix = file.suffix.lower()
    try:
        if suffix == ".npy":
            labels = np.load(file, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(file, allow_pickle=False) as data:
                names = list(data.files)
                if key is None:
                    found = [k for k in _LABEL_KEYS if k in names]
                    if found:
                        key = found[0]
                    elif len(names) == 1:
                        key = names[0]
                    else:
                        raise DataError(
                            f"{file}: which array holds the labels? it has {names}",
                            hint=f"name it 'labels' or pass {file}:KEY",
                        )
                if key not in names:
                    raise DataError(f"{file}: no array {key!r}; it has {names}")
                labels = data[key]
        elif suffix in (".txt", ".csv", ".tsv", ""):
            lines = [ln.strip() for ln in file.read_text().splitlines() if ln.strip()]
            try:
                labels = np.array([int(v) for v in lines], dtype=np.int64)
            except ValueError:
                delimiter = "," if suffix == ".csv" else None
                labels = np.loadtxt(file, dtype=np.float64, delimiter=delimiter, ndmin=1)
        else:
            raise DataError(
                f"labels {file}: unknown file type {file.suffix!r}",
                hint="use .npy, .npz, .txt or .csv",
            )
    except DataError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"labels {file}: cannot read them ({exc})") from exc
    labels = np.asarray(labels)
    if labels.ndim == 0 or labels.size == 0:
        raise DataError(f"labels {file} are empty", hint="one label per sample is needed")
    return labels

