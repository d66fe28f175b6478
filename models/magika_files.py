"""Real inputs for magika's model: files found on this machine, through magika's own features.

magika's model reads 2048 byte values per file (the first and last 1024 bytes after stripping
whitespace, padded with token 256). :func:`system_files` lists readable regular files under
system directories in a deterministic order; :func:`magika_features` turns them into the
model's ``bytes`` input with magika's feature extraction (files magika answers without its
model, such as tiny ones, are skipped). Calibration and evaluation take disjoint slices of the
list (:func:`split`), so quantization is never judged on the files it was calibrated on.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
from collections.abc import Iterator, Sequence

import numpy as np

__all__ = ["SYSTEM_DIRS", "magika_features", "magika_model_path", "split", "system_files"]

SYSTEM_DIRS = ("/usr/lib", "/usr/share", "/usr/include", "/etc", "/usr/bin", "/usr/local/lib")
#: Files larger than this are skipped while listing (magika reads 4 KB of each anyway).
_MAX_SIZE = 64 * 2**20


def magika_model_path() -> pathlib.Path | None:
    """The ONNX model inside the installed magika wheel, or None without magika."""
    try:
        import magika
    except ImportError:
        return None
    found = sorted(pathlib.Path(magika.__file__).parent.glob("models/*/model.onnx"))
    return found[-1] if found else None


def _walk(root: str) -> Iterator[pathlib.Path]:
    for directory, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            path = pathlib.Path(directory) / name
            try:
                if path.is_symlink() or not path.is_file():
                    continue
                size = path.stat().st_size
            except OSError:
                continue
            if 16 <= size <= _MAX_SIZE and os.access(path, os.R_OK):
                yield path


def system_files(limit: int, roots: Sequence[str] = SYSTEM_DIRS) -> list[pathlib.Path]:
    """Up to ``limit`` regular files, spread over ``roots`` and their file types.

    Files are ordered by a hash of their path (a fixed pseudo-random order, the same on every
    run of the same machine) so that the first ``limit`` do not all come from one directory.
    """
    paths = [p for root in roots if os.path.isdir(root) for p in _walk(root)]
    paths.sort(key=lambda p: hashlib.sha256(str(p).encode()).hexdigest())
    return paths[:limit]


def split(
    paths: Sequence[pathlib.Path], every: int = 4
) -> tuple[list[pathlib.Path], list[pathlib.Path]]:
    """``(calibration, evaluation)``: every ``every``-th file calibrates, the rest evaluate."""
    calibration = [p for i, p in enumerate(paths) if i % every == 0]
    evaluation = [p for i, p in enumerate(paths) if i % every != 0]
    return calibration, evaluation


def magika_features(paths: Sequence[pathlib.Path]) -> tuple[np.ndarray, list[pathlib.Path]]:
    """The model's ``bytes`` input (int32 ``[n, 2048]``) for the files magika runs it on."""
    from magika import Magika

    engine = Magika()
    config = engine._model_config
    rows, kept = [], []
    for path in paths:
        try:
            _result, features = engine._get_result_or_features_from_path(path)
        except OSError:
            continue
        if features is None:
            continue
        row = list(features.beg[: config.beg_size]) + list(features.end[-config.end_size :])
        rows.append(row)
        kept.append(path)
    return np.asarray(rows, dtype=np.int32).reshape(-1, config.beg_size + config.end_size), kept
