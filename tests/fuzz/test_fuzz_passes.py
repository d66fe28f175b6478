"""Every built-in pass and preset keeps its promises on random valid models.

A few dozen examples, derandomized so CI is stable; ``benchmarks/fuzz.py`` runs thousands
with fresh seeds and records what it finds. Each finding fixed so far has a regression test
next to the pass it concerns.
"""

from __future__ import annotations

import onnx
from hypothesis import HealthCheck, given, settings

from irpass.fuzz.check import Reference, cases, check_case
from irpass.fuzz.graphs import models

CASES = cases()


@settings(
    max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(models())
def test_passes_keep_their_promises(model: onnx.ModelProto) -> None:
    reference = Reference(model)
    findings = [f for f in (check_case(reference, case)[1] for case in CASES) if f is not None]
    assert not findings, "\n".join(f"{f.case}: {f.kind}: {f.message}" for f in findings)
