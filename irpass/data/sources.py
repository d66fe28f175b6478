"""The :class:`DataSource` protocol and the array, callable and random sources."""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import pathlib
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import IO, Any

import numpy as np

from irpass import importing
from irpass.data.inputs import InputSpec
from irpass.errors import DataError

__all__ = [
    "DEFAULT_BATCH",
    "ArrayFolderSource",
    "ArraySource",
    "CallableSource",
    "DataSource",
    "NpyFileSource",
    "NpzFileSource",
    "RandomSource",
    "import_callable",
]


#: Samples per feed when neither the spec nor the model fixes it.
DEFAULT_BATCH = 32


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
            raise DataError(
                "no arrays given",
                hint='give at least one array',
            )
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        lengths = {k: (len(v) if v.ndim else 1) for k, v in self.arrays.items()}
        if len(set(lengths.values())) > 1:
            raise DataError(
                f"arrays have different numbers of samples: {lengths}",
                hint='every input needs the same number of samples (axis 0)',
            )
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
        raise DataError(
            f"{path}: cannot read it as a .npy array ({exc})",
            hint='the file may be damaged or not a .npy array; save it again with numpy.save',
        ) from exc


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
            raise DataError(
                f"{path}: cannot read it as a .npz archive ({exc})",
                hint="the file may be damaged or not a .npz archive; save it again with "
                "numpy.savez",
            ) from exc
        lengths = {n: (h.shape[0] if h.shape else 1) for n, h in self._headers.items()}
        if len(set(lengths.values())) > 1:
            raise DataError(
                f"{path}: arrays have different numbers of samples: {lengths}",
                hint="every input array needs the same length along axis 0",
            )
        for name, header in self._headers.items():
            if header.dtype.hasobject:
                raise DataError(
                    f"{path}: array {name!r} holds Python objects, not numbers",
                    hint='save numeric arrays (allow_pickle is never used)',
                )
        self._length = next(iter(lengths.values()), 0)

    @staticmethod
    def keys(path: pathlib.Path) -> list[str]:
        """Array names stored in a .npz archive."""
        try:
            with zipfile.ZipFile(path) as archive:
                return [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(
                f"{path}: cannot read it as a .npz archive ({exc})",
                hint="the file may be damaged or not a .npz archive; save it again with "
                "numpy.savez",
            ) from exc

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
                    raise DataError(
                        f"{path}: cannot read it as a .npz archive ({exc})",
                        hint="the file may be damaged or not a .npz archive; save it again with "
                        "numpy.savez",
                    ) from exc


def import_callable(spec: str) -> Callable[..., Any]:
    """Import ``package.module:function`` or ``file.py:function`` (never the current folder)."""
    return importing.import_callable(
        spec,
        DataError,
        hint="name an installed module (py:package.module:function) or a file "
        "(py:path/to/file.py:function)",
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
                f"has {len(self.names)} inputs {self.names}",
                hint="yield one array per model input, in input order, or a dict keyed by input "
                "name",
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
