"""Labels aligned with the data's samples: arrays, text files, or class subfolders."""

from __future__ import annotations

import os
import pathlib
import zipfile

import numpy as np

from irpass.data.images import IMAGE_SUFFIXES
from irpass.errors import DataError

__all__ = ["folder_labels", "load_labels"]


def folder_labels(folder: pathlib.Path) -> np.ndarray:
    """Class indices of the images in ``folder/<class>/...`` (classes in sorted name order).

    The order matches the order in which an image folder is read, so the labels line up
    with the samples of ``open_data(folder)``.
    """
    images = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not images:
        raise DataError(
            f"labels {folder}: no images in this folder",
            hint='lay out the data as FOLDER/<class name>/<image>',
        )
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
        raise DataError(
            f"labels {text!r}: no such file",
            hint='give a .npy, .npz[:key], .txt or .csv file with one label per sample',
        )
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
                    raise DataError(
                        f"{file}: no array {key!r}; it has {names}",
                        hint='pass FILE.npz:KEY with one of the names listed',
                    )
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
        raise DataError(
            f"labels {file}: cannot read them ({exc})",
            hint='the file may be damaged; save the labels with numpy.save',
        ) from exc
    labels = np.asarray(labels)
    if labels.ndim == 0 or labels.size == 0:
        raise DataError(f"labels {file} are empty", hint="one label per sample is needed")
    return labels
