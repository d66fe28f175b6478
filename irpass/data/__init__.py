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
``py:package.module:function``,        the function is called (no arguments, or the model)
``py:path/to/file.py:function``        for each pass over the data and yields feeds (dicts,
                                       or arrays / tuples of arrays in input order); only
                                       this explicit form imports code, and the current
                                       folder is never put on the import path
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

from irpass.data.images import (
    IMAGE_SUFFIXES,
    ImageFolderSource,
    ImagePreprocess,
    resize_bilinear,
)
from irpass.data.inputs import (
    InputSpec,
    input_specs,
)
from irpass.data.labels import (
    folder_labels,
    load_labels,
)
from irpass.data.sources import (
    DEFAULT_BATCH,
    ArrayFolderSource,
    ArraySource,
    CallableSource,
    DataSource,
    NpyFileSource,
    NpzFileSource,
    RandomSource,
    import_callable,
)
from irpass.data.spec import (
    open_data,
)
from irpass.data.validate import (
    ValidatedSource,
)

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
    "folder_labels",
    "import_callable",
    "input_specs",
    "load_labels",
    "open_data",
    "resize_bilinear",
]
