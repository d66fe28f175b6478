"""Shared test helpers: numeric equivalence of two models through ONNX Runtime.

Every pass test uses :func:`assert_equivalent` so that "numerically equivalent" means the same
thing everywhere: same seeded random inputs, ONNX Runtime with its own optimizations disabled,
and the manager's dtype-aware tolerance.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
import onnx_ir as ir

from irpass.verify import (
    check_structure,
    compare_outputs,
    make_session,
    random_feeds,
    run_model,
)

__all__ = ["assert_equivalent", "model_from_text", "run_ir"]


def model_from_text(text: str) -> ir.Model:
    """Parse ONNX textual syntax (``onnx.parser``) into an ir.Model and check it."""
    proto = onnx.parser.parse_model(text)
    onnx.checker.check_model(proto)
    return ir.from_proto(proto)


def run_ir(
    model: ir.Model | onnx.ModelProto, feeds: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Run a model once on CPU (ORT optimizations off) and return its outputs by name."""
    return run_model(make_session(model), feeds)


def assert_equivalent(
    reference: ir.Model | onnx.ModelProto,
    candidate: ir.Model | onnx.ModelProto,
    *,
    seeds: tuple[int, ...] = (0, 1),
    feeds: Mapping[str, np.ndarray] | None = None,
    dim_values: Mapping[str, int] | None = None,
    tolerance_scale: float = 1.0,
) -> None:
    """Assert ``candidate`` passes the checker and matches ``reference`` on seeded inputs.

    ``reference`` should be a copy taken before the pass ran (``ir.from_proto(proto)`` or
    ``model.clone()``), because in-place passes mutate their input.
    """
    check_structure(candidate)
    ref_session = make_session(reference)
    cand_session = make_session(candidate)
    feed_sets = [dict(feeds)] if feeds is not None else [
        random_feeds(ref_session, seed=s, dim_values=dim_values) for s in seeds
    ]
    for feed in feed_sets:
        expected = run_model(ref_session, feed)
        actual = run_model(cand_session, feed)
        mismatches = compare_outputs(expected, actual, tolerance_scale=tolerance_scale)
        assert not mismatches, "; ".join(str(m) for m in mismatches)
