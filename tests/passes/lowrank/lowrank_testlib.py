"""Helpers shared by the low-rank pass tests (imported by module name; unique basename)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import onnx_ir as ir
import pytest

from irpass.analysis.cost import model_cost
from irpass.context import PassContext
from irpass.data import ArraySource
from irpass.passes.lowrank.decompose import decompose
from irpass.passes.lowrank.layer import Candidate
from irpass.passes.lowrank.plan import LowRankPass
from irpass.testing import model_from_text, run_ir


def build(text: str, weights: Mapping[str, np.ndarray] | Iterable[str], seed: int = 0) -> ir.Model:
    """Parse ONNX text; the named inputs become initializers (given arrays or seeded normal)."""
    model = model_from_text(text)
    rng = np.random.default_rng(seed)
    given = dict(weights) if isinstance(weights, Mapping) else {n: None for n in weights}
    by_name = {v.name: v for v in model.graph.inputs}
    for name, data in given.items():
        value = by_name[name]
        if data is None:
            dims = [int(d) for d in value.shape]
            data = rng.standard_normal(dims).astype(value.dtype.numpy())
        model.graph.inputs.remove(value)
        value.const_value = ir.tensor(np.asarray(data), name=name)
        model.graph.register_initializer(value)
    return model


def clone(model: ir.Model) -> ir.Model:
    """An independent copy (reference for comparisons after an in-place pass)."""
    return ir.from_proto(ir.to_proto(model))


def run_pass(
    pass_cls: type[LowRankPass], model: ir.Model,
    calib: Mapping[str, np.ndarray] | None = None, **options: Any,
) -> tuple[bool, LowRankPass]:
    """Run a low-rank pass in place (with calibration arrays if given)."""
    context = PassContext(calibration_data=ArraySource(dict(calib)) if calib else None)
    instance = pass_cls(pass_cls.Options(**options), context)
    return bool(instance(model).modified), instance


def rewrite_at_full_rank(candidate: Candidate, correction: np.ndarray | None = None) -> None:
    """Rewrite a candidate with exact (full-rank) plain SVD factors."""
    factors = []
    for matrix in candidate.matrices:
        d = decompose(matrix)
        factors.append(d.factors(d.full_rank))
    candidate.rewrite(factors, correction, set())


def op_types(model: ir.Model) -> list[str]:
    """Op types of the main graph, in order."""
    return [node.op_type for node in model.graph]


def params(model: ir.Model) -> int:
    """Parameter count from the shared cost analysis."""
    return int(model_cost(model).params)


def macs(model: ir.Model) -> int:
    """MACs from the shared cost analysis."""
    return int(model_cost(model).macs)


def relative_error(reference: ir.Model, candidate: ir.Model,
                   feeds: Mapping[str, np.ndarray]) -> float:
    """RMS of the output difference over RMS of the reference output (first output)."""
    ref = next(iter(run_ir(reference, feeds).values())).astype(np.float64)
    got = next(iter(run_ir(candidate, feeds).values())).astype(np.float64)
    return float(np.sqrt(np.mean((got - ref) ** 2) / np.mean(ref**2)))


@pytest.fixture(autouse=True, scope="module")
def single_blas_thread() -> Iterator[None]:
    """One BLAS thread while a module that imports this fixture runs.

    The low-rank work is many small eigendecompositions and SVDs; on a shared, loaded machine
    OpenBLAS's spinning worker threads made it about three times slower in wall time and CPU
    time alike. threadpoolctl comes with scikit-learn (test extra); without it no limit is set.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield
