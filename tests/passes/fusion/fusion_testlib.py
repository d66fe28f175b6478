"""Helpers shared by the fusion pass tests (imported by module name: pytest puts this
directory on sys.path, and the basename is unique in tests/)."""

from __future__ import annotations

import pathlib
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from irpass import testing
from irpass.pass_base import IrpassPass
from irpass.testing import assert_equivalent, model_from_text, serialized

LIGHT_DIR = pathlib.Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def build(
    text: str,
    weights: Iterable[str] = (),
    values: Mapping[str, np.ndarray] | None = None,
    seed: int = 0,
    positive: Iterable[str] = (),
    infer_shapes: bool = False,
) -> ir.Model:
    """Parse ONNX text; turn the named inputs into initializers (seeded random data, ``abs``
    for the names in ``positive``, or the arrays given in ``values``)."""
    model = model_from_text(text)
    rng = np.random.default_rng(seed)
    by_name = {v.name: v for v in model.graph.inputs}
    values = dict(values or {})
    positive = set(positive)
    for name in list(weights) + [n for n in values if n not in weights]:
        value = by_name[name]
        if name in values:
            data = np.asarray(values[name])
        else:
            dims = [int(d) for d in value.shape]
            data = rng.standard_normal(dims).astype(value.dtype.numpy())
            if name in positive:
                data = np.abs(data) + 0.1
        model.graph.inputs.remove(value)
        value.const_value = ir.tensor(data, name=name)
        model.graph.register_initializer(value)
    if infer_shapes:
        model = ir.passes.common.ShapeInferencePass()(model).model
    return model


def clone(model: ir.Model) -> ir.Model:
    """An independent copy (reference for equivalence after an in-place pass)."""
    return ir.from_proto(ir.to_proto(model))


def run(pass_cls: type[IrpassPass], model: ir.Model, **options: Any) -> tuple[bool, IrpassPass]:
    """Run the pass in place; return (modified, pass instance with its stats)."""
    instance = pass_cls(pass_cls.Options(**options)) if options else pass_cls()
    result = instance(model)
    return result.modified, instance


def op_types(model: ir.Model) -> list[str]:
    """Op types of the main graph, in order."""
    return [node.op_type for node in model.graph]


def assert_rewrites(
    pass_cls: type[IrpassPass],
    model: ir.Model,
    counts: Mapping[str, int],
    ops: list[str] | None = None,
    **options: Any,
) -> IrpassPass:
    """The pass modifies ``model`` with exactly ``counts`` rewrites, leaves ``ops`` and is
    numerically equivalent (checker + ONNX Runtime, shared helper)."""
    reference = clone(model)
    modified, instance = run(pass_cls, model, **options)
    assert modified, f"{pass_cls.name} did not modify the model"
    assert dict(instance.stats) == dict(counts), dict(instance.stats)
    if ops is not None:
        assert op_types(model) == ops, op_types(model)
    assert_equivalent(reference, model)
    return instance


def assert_unchanged(pass_cls: type[IrpassPass], model: ir.Model, **options: Any) -> None:
    """The pass refuses: ``modified`` is False, no rewrite counted, the model byte-identical."""
    before = serialized(model)
    modified, instance = run(pass_cls, model, **options)
    assert modified is False
    assert not instance.stats, dict(instance.stats)
    testing.assert_unchanged(before, model)
