"""ONNX's backend operator test cases as a corpus: the cases, their inputs, the allow-list.

``onnx.backend.test.case.node.collect_testcases()`` builds about 1,900 single-operator models
in process, each with real input data: every op, attribute form, sequence, optional, string,
control-flow body and old opset the onnx package tests. Collecting them takes a few seconds,
so it happens once per process (each pytest-xdist worker collects its own copy).

"Runnable" means ONNX Runtime runs the original model on the case's own inputs through its
Python API; the outputs it gives are the reference (not the case's expected outputs: the
corpus checks that irpass changes nothing, not that ONNX Runtime agrees with ONNX).
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import warnings
from typing import Any

import numpy as np
import onnx
import onnx.backend.test.case.node as onnx_node_cases
from onnx import numpy_helper
from onnx.backend.test.case.test_case import TestCase

from irpass.errors import VerificationError
from irpass.verify import make_session, run_model

__all__ = ["ALLOWLIST", "Reference", "allowed", "case_feeds", "node_cases", "reference"]

#: The one allow-list: ``mode case reason...`` per line (see the file's header).
ALLOWLIST = pathlib.Path(__file__).with_name("allowlist.txt")


@functools.cache
def node_cases() -> dict[str, TestCase]:
    """Every node test case of the installed onnx package, by name (sorted)."""
    with warnings.catch_warnings():
        # The generators compute expected outputs with numpy, overflow and -inf included.
        warnings.simplefilter("ignore")
        cases = onnx_node_cases.collect_testcases(None)
    by_name = {case.name: case for case in cases}
    assert len(by_name) == len(cases), "node test case names are not unique"
    return dict(sorted(by_name.items()))


def _feed(value: Any) -> Any:
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, list):
        return [_feed(item) for item in value]
    if value is None:
        return None
    return np.asarray(value)


def case_feeds(case: TestCase) -> dict[str, Any]:
    """The case's first input set, by graph input name (initializers are not inputs)."""
    graph = case.model.graph
    initializers = {t.name for t in graph.initializer}
    names = [v.name for v in graph.input if v.name not in initializers]
    inputs, _ = case.data_sets[0]
    return {name: _feed(value) for name, value in zip(names, inputs, strict=False)}


@dataclasses.dataclass(frozen=True)
class Reference:
    """What ONNX Runtime does with the original model: outputs, or why it cannot."""

    outputs: dict[str, Any] | None
    loads: bool
    reason: str = ""


@functools.cache
def reference(name: str) -> Reference:
    """Run the original model of case ``name`` on its own inputs in ONNX Runtime."""
    case = node_cases()[name]
    try:
        session = make_session(case.model)
    except VerificationError as exc:
        return Reference(None, loads=False, reason=exc.message)
    try:
        return Reference(run_model(session, case_feeds(case)), loads=True)
    except (VerificationError, RuntimeError, TypeError, ValueError) as exc:
        # Feeds of types its Python API cannot take (bfloat16, float8, int4) end here too.
        message = exc.message if isinstance(exc, VerificationError) else str(exc)
        return Reference(None, loads=True, reason=message.strip().splitlines()[0])


@functools.cache
def _allowlist() -> dict[tuple[str, str], str]:
    entries: dict[tuple[str, str], str] = {}
    for number, line in enumerate(ALLOWLIST.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(maxsplit=2)
        if len(parts) != 3:
            raise ValueError(f"{ALLOWLIST.name}:{number}: expected 'mode case reason'")
        mode, case, reason = parts
        if (mode, case) in entries:
            raise ValueError(f"{ALLOWLIST.name}:{number}: {mode} {case} listed twice")
        entries[(mode, case)] = reason
    return entries


def allowed(mode: str) -> dict[str, str]:
    """Cases of ``mode`` that are allowed to fail, with the reason."""
    return {case: reason for (m, case), reason in _allowlist().items() if m == mode}
