"""The default pipeline over every ONNX backend node test case ONNX Runtime can run.

Mode ``alone``: the passes with verification off, then the optimized model and the original
run in ONNX Runtime on the case's own inputs and must agree (dtype-aware tolerance). A case
ONNX Runtime cannot run (types its Python API cannot feed, ops it lacks) is still optimized and
must pass the checker and load wherever the original loads; it is then reported as skipped,
because nothing numeric could be compared.

Mode ``verify``: the manager with its default verification, on the inputs it derives from the
graph itself (not the case's): it must find inputs the original runs on, verify every pass
without a failure or a rollback, and the result must still agree on the case's own inputs.

Cases that truly cannot pass are listed, with the reason, in ``allowlist.txt``; they run as
strict xfails, so a fixed case fails the suite until its entry is removed.
"""

from __future__ import annotations

import logging
from typing import Any

import onnx_ir as ir
import pytest
from onnx_node_cases import allowed, case_feeds, node_cases, reference

from irpass.errors import VerificationError
from irpass.manager import PipelineRunner, RunOptions, RunResult
from irpass.metrics import compare_outputs
from irpass.verify import check_structure, make_session, run_model

PIPELINE = "canonicalize,fuse"


def _params(mode: str) -> list[Any]:
    allow = allowed(mode)
    unknown = sorted(set(allow) - set(node_cases()))
    assert not unknown, f"allowlist.txt names cases that do not exist: {unknown}"
    return [
        pytest.param(
            name,
            id=name,
            marks=[pytest.mark.xfail(reason=allow[name], strict=True)] if name in allow else [],
        )
        for name in node_cases()
    ]


def _optimize(name: str, options: RunOptions) -> RunResult:
    model = ir.from_proto(node_cases()[name].model)
    result = PipelineRunner(PIPELINE, options=options).run(model)
    failed = [
        f"{r.step}: {r.error or r.verification.detail}"
        for r in result.report.passes
        if r.error or r.rolled_back or r.verification.status == "failed"
    ]
    assert not failed, f"passes failed or were rolled back: {failed}"
    # hygiene left by a pass, a pass that under-reports, a fixpoint that never settles
    assert not result.report.warnings, result.report.warnings
    return result


def _assert_same_outputs(name: str, optimized: ir.Model) -> None:
    expected = reference(name).outputs
    assert expected is not None
    try:
        actual = run_model(make_session(optimized, threads=1), case_feeds(node_cases()[name]))
    except VerificationError as exc:
        pytest.fail(f"the optimized model does not run: {exc.message}")
    mismatches = compare_outputs(expected, actual)
    assert not mismatches, "; ".join(str(m) for m in mismatches)


@pytest.fixture(autouse=True)
def _quiet_passes() -> Any:
    # Passes log each refusal (e.g. opset conversions that cannot be exact); over ~1,900
    # models that is noise, and assertions here say what matters.
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


@pytest.mark.parametrize("name", _params("alone"))
def test_passes_alone_keep_outputs(name: str) -> None:
    result = _optimize(name, RunOptions(verify="none"))
    ref = reference(name)
    if ref.outputs is None:
        check_structure(result.model)
        if ref.loads:
            make_session(result.model, threads=1)
        pytest.skip("ONNX Runtime cannot run the case's inputs (checked structurally only)")
    _assert_same_outputs(name, result.model)


@pytest.mark.parametrize("name", _params("verify"))
def test_manager_verifies_every_pass(name: str) -> None:
    if reference(name).outputs is None:
        pytest.skip("ONNX Runtime cannot run the case's inputs")
    result = _optimize(name, RunOptions())
    _assert_same_outputs(name, result.model)
