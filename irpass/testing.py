"""Shared test helpers: numeric equivalence through ONNX Runtime, and "left unchanged".

Every positive pass test uses :func:`assert_equivalent` so that "numerically equivalent" means
the same thing everywhere: same seeded random inputs, ONNX Runtime with its own optimizations
disabled, and the manager's dtype-aware tolerance. Every negative test uses
:func:`assert_unchanged`: a pass that refuses must leave the model byte for byte as it was (an
op-type list would not see a changed attribute, weight, opset or name).
"""

from __future__ import annotations

import difflib
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

__all__ = [
    "assert_equivalent",
    "assert_unchanged",
    "inputs_to_random_initializers",
    "model_from_text",
    "run_ir",
    "serialized",
]


def serialized(model: ir.Model | onnx.ModelProto | bytes) -> bytes:
    """The model's protobuf serialization (a snapshot to compare against after a pass)."""
    if isinstance(model, bytes):
        return model
    proto = ir.to_proto(model) if isinstance(model, ir.Model) else model
    return proto.SerializeToString(deterministic=True)


def assert_unchanged(
    before: onnx.ModelProto | bytes | ir.Model, after: ir.Model | onnx.ModelProto
) -> None:
    """Assert ``after`` serializes to exactly the bytes of ``before``.

    ``before`` is a snapshot taken before the pass ran: serialized bytes
    (:func:`serialized`), a ModelProto, or an independent copy of the model (not the object the
    in-place pass modified). On a difference the message shows the first differing lines of
    both models as ONNX text.
    """
    if before is after:
        raise TypeError("assert_unchanged needs a snapshot taken before the pass, not the model")
    expected, actual = serialized(before), serialized(after)
    if expected == actual:
        return
    old = onnx.printer.to_text(onnx.load_from_string(expected)).splitlines()
    new = onnx.printer.to_text(onnx.load_from_string(actual)).splitlines()
    diff = list(difflib.unified_diff(old, new, "before", "after", lineterm="", n=1))
    shown = "\n".join(diff[:40]) or "(same ONNX text; the serialized bytes differ)"
    raise AssertionError(f"the model changed:\n{shown}")


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
