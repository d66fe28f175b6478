"""Lossy passes over the ONNX backend node cases they touch: the result must be valid and run.

Lossy passes rewrite constant weights, but the node cases feed every weight as a graph input.
So each runnable case with a Conv / ConvTranspose / Gemm / MatMul gets that weight (and bias)
frozen into initializers holding the case's own values; its other inputs stay inputs, fed
with the case's data, which are also the calibration data. Pipelines (see ``LOSSY``):

- ``int8``: static QDQ quantization (ORT rules, minmax ranges; the per-layer speed check is
  off because it times kernels, tests/passes/quantization covers it);
- ``fp16``: half precision, over the frozen cases and over one case per op type (it touches
  any float graph, and a runtime missing a half kernel is what it can break);
- ``svd``: rank-1 factorization wherever it applies (small node-case weights save nothing at
  the default thresholds).

Each result must come out of the runner with no error or rollback, pass the ONNX checker, load
in ONNX Runtime and run on the case's inputs, with the original's output names, shapes and
dtypes. Numbers are not compared: the passes are lossy, and their fidelity is measured by their
own tests and benchmarks. A pass that leaves a case unchanged is reported as skipped with why.

Not run here, because no node case gives them anything to do: ``prune`` (a single op's channels
all reach graph inputs or outputs, which keep their shapes) and weight-only ``int8w``/``int4w``
(ONNX Runtime's MatMulNBits wants at least 16 input features; node-case weights have at most 5).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np
import onnx_ir as ir
import pytest
from onnx_node_cases import case_feeds, node_cases, reference

from irpass.context import PassContext
from irpass.errors import VerificationError
from irpass.manager import PipelineRunner, RunOptions
from irpass.verify import check_structure, make_session, run_model

#: Pipeline per lossy mode.
LOSSY = {
    "int8": "quantize(mode=int8,method=minmax,never_slower=false)",
    "fp16": "quantize(mode=fp16)",
    "svd": "svd(rank=1,round_to=1,min_saving=0)",
}

#: Weight (and bias) input slots frozen into initializers, by op type.
WEIGHT_SLOTS = {"Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (1, 2), "MatMul": (1,)}


def _weight_inputs(name: str) -> set[str]:
    """Graph inputs of case ``name`` that feed a weight slot of a main-graph node."""
    graph = node_cases()[name].model.graph
    inputs = {v.name for v in graph.input}
    return {
        node.input[i]
        for node in graph.node
        if node.domain in ("", "ai.onnx")
        for i in WEIGHT_SLOTS.get(node.op_type, ())
        if i < len(node.input) and node.input[i] in inputs
    }


@functools.cache
def weighted_cases() -> list[str]:
    """Runnable cases with a Conv / ConvTranspose / Gemm / MatMul weight fed as an input."""
    return [n for n in node_cases() if _weight_inputs(n) and reference(n).outputs is not None]


@functools.cache
def one_case_per_op() -> list[str]:
    """For each op type, the first runnable case whose model uses it (expanded ones last)."""
    chosen: dict[str, str] = {}
    names = sorted(node_cases(), key=lambda n: (n.endswith("_expanded"), n))
    for name in names:
        if reference(name).outputs is None:
            continue
        for node in node_cases()[name].model.graph.node:
            chosen.setdefault(node.op_type, name)
    return sorted(set(chosen.values()))


def _frozen(name: str) -> tuple[ir.Model, dict[str, Any]]:
    """The case's model with its weight inputs as initializers, and the remaining feeds."""
    model = ir.from_proto(node_cases()[name].model)
    feeds = case_feeds(node_cases()[name])
    weights = _weight_inputs(name)
    for value in list(model.graph.inputs):
        if value.name in weights and isinstance(feeds.get(value.name), np.ndarray):
            model.graph.inputs.remove(value)
            value.const_value = ir.tensor(feeds.pop(value.name), name=value.name)
            model.graph.register_initializer(value)
    return model, feeds


def _params() -> list[Any]:
    params = [pytest.param(mode, name, id=f"{mode}-{name}") for mode in LOSSY
              for name in weighted_cases()]
    frozen = set(weighted_cases())
    params += [pytest.param("fp16", name, id=f"fp16-{name}") for name in one_case_per_op()
               if name not in frozen]
    return params


@pytest.fixture(autouse=True)
def _quiet_passes() -> Any:
    logging.disable(logging.WARNING)  # per-layer decisions of ~300 runs are noise here
    yield
    logging.disable(logging.NOTSET)


def test_the_corpus_gives_each_lossy_pass_cases() -> None:
    ops = {node.op_type for n in weighted_cases() for node in node_cases()[n].model.graph.node}
    assert {"Conv", "ConvTranspose", "Gemm", "MatMul"} <= ops
    assert len(one_case_per_op()) > 150  # every op of the corpus, not a handful


@pytest.mark.parametrize(("mode", "name"), _params())
def test_lossy_pass_result_is_valid_and_runs(mode: str, name: str) -> None:
    model, feeds = _frozen(name)
    context = PassContext(calibration_data=lambda: iter([feeds]))
    result = PipelineRunner(LOSSY[mode], context, RunOptions()).run(model)
    (record,) = result.report.passes
    assert not record.error and not record.rolled_back, record.error or record.verification
    assert record.verification.status != "failed", record.verification.detail
    if not record.modified:
        pytest.skip(f"{mode} left the case unchanged")
    check_structure(result.model)
    try:
        outputs = run_model(make_session(result.model, threads=1), feeds)
    except VerificationError as exc:
        pytest.fail(f"the {mode} model does not run: {exc.message}")
    expected = reference(name).outputs
    assert expected is not None
    assert {k: _signature(v) for k, v in outputs.items()} == {
        k: _signature(v) for k, v in expected.items()
    }


def _signature(value: Any) -> Any:
    """Shape and dtype of an output; element by element for a sequence, None when empty."""
    if value is None:
        return None
    if isinstance(value, list):
        return [_signature(item) for item in value]
    return (np.shape(value), str(np.asarray(value).dtype))
