"""The default pipeline over every ONNX backend node test case ONNX Runtime can run.

Mode ``alone``: the passes with verification off, then the optimized model and the original
run in ONNX Runtime on the case's own inputs and must agree (dtype-aware tolerance; bfloat16,
float8, int4 and int2 tensors go through ONNX Runtime as raw buffers). A case whose original
ONNX Runtime cannot load (ops or types it has no kernel for) is still optimized and must pass
the checker; it is then skipped with ONNX Runtime's message, because nothing numeric could be
compared. A case ONNX Runtime loads but fails to run on its own inputs is an error unless it is
in the allow-list under ``ort`` (with the reason, checked to be ONNX Runtime's limitation).

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


def _why_not_runnable(name: str) -> str | None:
    """None when ONNX Runtime runs the original on its inputs, else why (a skip reason).

    Only two reasons are accepted: the original does not load (ONNX Runtime lacks the kernel
    or type), or it loads but fails on its own inputs and the case is allow-listed as ``ort``.
    Anything else (e.g. inputs our runner cannot hand to ONNX Runtime) fails the test.
    """
    ref = reference(name)
    if ref.outputs is not None:
        return None
    if not ref.loads:
        return ref.reason  # "ONNX Runtime cannot load the model: <its message>"
    listed = allowed("ort").get(name)
    if listed is None:
        pytest.fail(
            f"ONNX Runtime loads the original but fails on the case's own inputs: {ref.reason}. "
            "If that is ONNX Runtime's limitation, list the case in allowlist.txt under 'ort'."
        )
    return f"ONNX Runtime fails on the original's own inputs ({listed})"


def test_ort_allowlist_names_only_cases_onnx_runtime_fails_on() -> None:
    stale = [name for name in allowed("ort") if reference(name).outputs is not None]
    not_loading = [name for name in allowed("ort") if not reference(name).loads]
    assert not stale, f"ONNX Runtime runs these now; remove them from allowlist.txt: {stale}"
    assert not not_loading, f"these do not load at all (skipped anyway): {not_loading}"


@pytest.mark.parametrize("name", _params("alone"))
def test_passes_alone_keep_outputs(name: str) -> None:
    result = _optimize(name, RunOptions(verify="none"))
    why = _why_not_runnable(name)
    if why is not None:
        check_structure(result.model)
        if reference(name).loads:
            make_session(result.model, threads=1)
        pytest.skip(why)
    _assert_same_outputs(name, result.model)


@pytest.mark.parametrize("name", _params("verify"))
def test_manager_verifies_every_pass(name: str) -> None:
    why = _why_not_runnable(name)
    if why is not None:
        pytest.skip(why)
    result = _optimize(name, RunOptions())
    _assert_same_outputs(name, result.model)
