"""The data spec a user types (``x.npz?batch=8``, ``imgs/?size=..``, ``random:4``) -> a source."""

from __future__ import annotations

import inspect
import json
import logging
import os
import pathlib
import urllib.parse
from collections.abc import Iterable, Sequence
from typing import Any

import onnx_ir as ir

from irpass.data.images import IMAGE_SUFFIXES, ImageFolderSource, ImagePreprocess
from irpass.data.inputs import InputSpec, input_specs
from irpass.data.sources import (
    DEFAULT_BATCH,
    ArrayFolderSource,
    CallableSource,
    DataSource,
    NpyFileSource,
    NpzFileSource,
    RandomSource,
    import_callable,
)
from irpass.data.validate import ValidatedSource
from irpass.errors import DataError

__all__ = ["CALLABLE_PREFIX", "open_data"]

#: Data produced by Python code are named explicitly: ``py:package.module:function``. A path
#: that merely contains ``:`` is never imported.
CALLABLE_PREFIX = "py:"

logger = logging.getLogger(__name__)

_ARRAY_SUFFIXES = frozenset({".npy", ".npz"})


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
        raise DataError(
            f"data option {key} must be an integer",
            hint='e.g. ?batch=8',
        ) from None
    if value <= 0:
        raise DataError(
            f"data option {key} must be positive, got {value}",
            hint='e.g. ?batch=8',
        )
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
            raise DataError(
                f"{config}: not valid JSON ({exc.msg}, line {exc.lineno})",
                hint='fix preprocess.json in the image folder',
            ) from exc
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
                    f"{path}: a folder of images feeds one input, the model has {names}",
                    hint='give .npz files with arrays named after the inputs instead',
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
        hint="use .npy, .npz, a folder of arrays or images, py:module:function or random",
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
            raise DataError(
                "random data need the model (to know its inputs)",
                hint="random data are made for a model's inputs; use them with a model",
            )
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
    elif base.startswith(CALLABLE_PREFIX):
        source = _open_callable(base, model, specs)
    elif path.exists():
        source = _open_path(path, options, specs, batch)
    else:
        hint = "give a .npy/.npz file, a folder of arrays or images, py:module:function, or random"
        if ":" in base:
            hint += f" (a Python function is written py:{base})"
        raise DataError(f"data {text!r}: no such file or folder", hint=hint)
    if options:
        raise DataError(
            f"data {text!r}: unknown option(s) {', '.join(sorted(options))}",
            hint="data options: batch (and size, mean, std, layout, channels, scale for images)",
        )
    if specs is not None:
        source = ValidatedSource(source, specs)
    _check_not_empty(source)
    return source


def _open_callable(
    base: str, model: ir.Model | None, specs: Sequence[InputSpec] | None
) -> DataSource:
    """``py:package.module:function`` or ``py:path/file.py:function``, imported on purpose."""
    target = base[len(CALLABLE_PREFIX) :]
    function = import_callable(target)
    names = [s.name for s in specs or []]
    if len(inspect.signature(function).parameters) and model is not None:
        bound = model

        def call() -> Iterable[Any]:
            return function(bound)

        return CallableSource(call, names, base)
    return CallableSource(function, names, base)


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
