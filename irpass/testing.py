"""Shared test helpers: numeric equivalence of two models through ONNX Runtime.

Every pass test uses :func:`assert_equivalent` so that "numerically equivalent" means the same
thing everywhere: same seeded random inputs, ONNX Runtime with its own optimizations disabled,
and the manager's dtype-aware tolerance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir

from irpass.metrics import compare_outputs
from irpass.verify import (
    check_structure,
    make_session,
    random_feeds,
    run_model,
)

__all__ = ["assert_equivalent", "inputs_to_random_initializers", "model_from_text", "run_ir"]


def model_from_text(text: str) -> ir.Model:
    """Parse ONNX textual syntax (``onnx.parser``) into an ir.Model and check it."""
    proto = onnx.parser.parse_model(text)
    onnx.checker.check_model(proto)
    return ir.from_proto(proto)


def inputs_to_random_initializers(
    model: ir.Model, names: Sequence[str], seed: int = 0, scale: float = 1.0
) -> ir.Model:
    """Turn the named graph inputs into initializers holding seeded random data.

    ONNX text cannot declare an initializer without writing out its values, so tests declare
    weights as inputs with a static shape and convert them here.
    """
    rng = np.random.default_rng(seed)
    by_name = {v.name: v for v in model.graph.inputs}
    for name in names:
        value = by_name[name]
        assert value.shape is not None and value.dtype is not None, name
        dims = [int(d) for d in value.shape]  # type: ignore[arg-type]
        data = (rng.standard_normal(dims) * scale).astype(value.dtype.numpy())
        model.graph.inputs.remove(value)
        value.const_value = ir.tensor(data, name=name)
        model.graph.register_initializer(value)
    return model


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
    feed_sets = (
        [dict(feeds)]
        if feeds is not None
        else [random_feeds(ref_session, seed=s, dim_values=dim_values) for s in seeds]
    )
    for feed in feed_sets:
        expected = run_model(ref_session, feed)
        actual = run_model(cand_session, feed)
        mismatches = compare_outputs(expected, actual, tolerance_scale=tolerance_scale)
        assert not mismatches, "; ".join(str(m) for m in mismatches)
