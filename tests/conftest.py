"""Shared fixtures: paths of the third-party models the suite runs on, the test passes."""

from __future__ import annotations

import collections
import importlib.util
import pathlib
from collections.abc import Iterator
from typing import Any

import onnx
import pytest

LIGHT_DIR = pathlib.Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
LIGHT_MODELS = sorted(p.stem.removeprefix("light_") for p in LIGHT_DIR.glob("light_*.onnx"))


def light_model_path(name: str) -> pathlib.Path:
    """Path of a light model-zoo graph shipped in the onnx wheel, e.g. 'resnet50'."""
    return LIGHT_DIR / f"light_{name}.onnx"


def magika_model_path() -> pathlib.Path | None:
    """Path of the trained model inside the magika wheel, or None without magika."""
    spec = importlib.util.find_spec("magika")
    if spec is None or spec.origin is None:
        return None
    candidates = sorted(pathlib.Path(spec.origin).parent.glob("models/*/model.onnx"))
    return candidates[-1] if candidates else None


@pytest.fixture
def magika_model() -> pathlib.Path:
    path = magika_model_path()
    if path is None:
        pytest.skip("magika is not installed (pip install -e '.[test]')")
    return path


@pytest.fixture
def test_passes() -> Iterator[None]:
    """The ``t_*`` test passes, registered for one test; the registry is left as it was."""
    from eval_passes_for_tests import DamageWeightPass
    from passes_for_tests import TEST_PASSES

    from irpass import registry

    with registry.registered(*TEST_PASSES, DamageWeightPass):
        yield


# -- summary of the ONNX node-case corpus (tests/corpus), printed after the run ---------------

_CORPUS = "tests/corpus/"
_corpus_outcomes: dict[str, collections.Counter[str]] = collections.defaultdict(
    collections.Counter
)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count each corpus case's outcome per mode (runs on the xdist controller too)."""
    if not report.nodeid.startswith(_CORPUS) or "[" not in report.nodeid:
        return
    if report.when != "call" and not (report.failed or report.skipped):
        return
    function, case = report.nodeid.split("::", 1)[1].rstrip("]").split("[", 1)
    mode = f"{function} {case.split('-', 1)[0]}" if "lossy" in function else function
    if hasattr(report, "wasxfail"):
        outcome = "allow-listed (xfail)" if report.skipped else "allow-listed but passes"
    elif report.skipped:
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else ""
        if "cannot load" in reason:
            outcome = "skipped: ORT cannot load the original"
        elif "fails on the original" in reason:
            outcome = "skipped: ORT fails on its inputs (allow-listed)"
        else:
            outcome = f"skipped: {reason.removeprefix('Skipped: ')}"
    elif report.failed:
        outcome = "failed"
    else:
        outcome = "valid and runs" if "lossy" in function else "equal"
    _corpus_outcomes[mode][outcome] += 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line per corpus mode: how many cases were equal, skipped (and why), failed."""
    if not _corpus_outcomes:
        return
    terminalreporter.section("ONNX node-case corpus")
    for mode, counts in sorted(_corpus_outcomes.items()):
        parts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
        terminalreporter.write_line(f"{mode}: {sum(counts.values())} cases: {parts}")
