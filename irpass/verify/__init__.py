"""Verification of a model: structure, ONNX Runtime sessions, feeds and numeric equivalence.

Comparing outputs (tolerances, cosine, SQNR) lives in :mod:`irpass.metrics`.

- :mod:`irpass.verify.session`: the ONNX checker, ONNX Runtime sessions and running them;
- :mod:`irpass.verify.feeds`: inputs the model accepts, derived from the graph;
- :mod:`irpass.verify.shape_operands`, :mod:`irpass.verify.index_operands`: the value rules
  for inputs used as shapes, axes, sizes, indices, lengths and thresholds (imported here so
  that they are registered whenever feeds are derived).
"""

from __future__ import annotations

from irpass.verify import index_operands, shape_operands  # noqa: F401  (register rules)
from irpass.verify.session import (
    check_structure,
    checked_session,
    make_session,
    random_feeds,
    run_model,
)

__all__ = [
    "check_structure",
    "checked_session",
    "make_session",
    "random_feeds",
    "run_model",
]
