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
    "randomize_weights",
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


def randomize_weights(model: ir.Model, seed: int = 0) -> ir.Model:
    """Give every float weight of ``model`` seeded random values (in place; returns it).

    The light model-zoo graphs ship one constant for every weight, which makes every channel
    look alike; this draws weights of rank >= 2 from N(0, 1/fan_in) and 1-D parameters
    (biases, norm scales, running means and variances) from U(0.5, 1.5), positive so that
    variances stay valid. Weights built by ConstantOfShape become initializers (listed as
    graph inputs too in an IR < 4 model, as that IR version requires).
    """
    rng = np.random.default_rng(seed)
    legacy = (model.ir_version or 0) < 4  # IR < 4: every initializer is also a graph input

    def draw(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        if len(shape) >= 2:
            fan_in = max(1, int(np.prod(shape[1:])))
            return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(dtype)
        return rng.uniform(0.5, 1.5, shape).astype(dtype)

    for graph in model.graphs():
        for value in list(graph.initializers.values()):
            tensor = value.const_value
            if tensor is not None and tensor.dtype.is_floating_point() and tensor.size > 1:
                array = draw(tuple(tensor.shape.numpy()), tensor.dtype.numpy())
                value.const_value = ir.tensor(array, name=value.name)
        for node in list(graph):
            if node.op_type != "ConstantOfShape" or node.domain not in ("", "ai.onnx"):
                continue
            shape = ir.convenience.get_const_tensor(node.inputs[0]) if node.inputs[0] else None
            out = node.outputs[0]
            if shape is None or out.is_graph_output():
                continue
            attr = node.attributes.get("value")
            dtype = attr.as_tensor().dtype.numpy() if attr is not None else np.dtype(np.float32)
            dims = tuple(int(d) for d in shape.numpy().reshape(-1))
            if dtype.kind != "f" or int(np.prod(dims)) <= 1:
                continue
            name = out.name or f"randomized_{len(graph.initializers)}"
            value = ir.Value(name=name + "_random", const_value=ir.tensor(draw(dims, dtype)))
            value.shape, value.dtype = ir.Shape(dims), ir.DataType.from_numpy(dtype)
            graph.register_initializer(value)
            if legacy and graph is model.graph:
                graph.inputs.append(value)
            out.replace_all_uses_with(value)
            graph.remove(node, safe=True)
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
