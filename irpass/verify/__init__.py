"""Verification of a model: structure, ONNX Runtime sessions, feeds and numeric equivalence.

- :mod:`irpass.verify.session`: the ONNX checker, ONNX Runtime sessions and running them;
- :mod:`irpass.verify.feeds`: inputs the model accepts, derived from the graph.
"""

from __future__ import annotations

from irpass.verify.session import (
    OutputMismatch,
    Tolerance,
    check_structure,
    checked_session,
    compare_outputs,
    make_session,
    random_feeds,
    run_model,
    tolerance_for,
)

__all__ = [
    "OutputMismatch",
    "Tolerance",
    "check_structure",
    "checked_session",
    "compare_outputs",
    "make_session",
    "random_feeds",
    "run_model",
    "tolerance_for",
]
