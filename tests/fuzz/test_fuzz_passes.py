"""Every built-in pass and preset keeps its promises on random valid models.

A few dozen examples, derandomized so CI is stable and kept to seconds; ``benchmarks/fuzz.py``
runs thousands with fresh seeds and records what it finds. Each finding fixed so far has a
regression test next to the pass it concerns.
"""

from __future__ import annotations

import onnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from irpass.fuzz.check import Case, Reference, cases, check_case
from irpass.fuzz.graphs import models

#: Cases that take about a second per model (latency probes, onnxsim, the pipeline runner
#: verifying every pass): each example runs one of them instead of all.
_SLOW = {"quantize", "onnxsim"}
CASES = cases()
FAST = [c for c in CASES if not c.pipeline and c.text not in _SLOW]
SLOW = [c for c in CASES if c.pipeline or c.text in _SLOW]


def _assert_kept(model: onnx.ModelProto, chosen: list[Case]) -> None:
    reference = Reference(model)
    findings = [f for f in (check_case(reference, case)[1] for case in chosen) if f is not None]
    assert not findings, "\n".join(f"{f.case}: {f.kind}: {f.message}" for f in findings)


def test_the_split_covers_every_case() -> None:
    assert len(FAST) + len(SLOW) == len(CASES)
    assert {"quantize", "onnxsim", "canonicalize,fuse"} <= {c.text for c in SLOW}


@settings(
    max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(models())
def test_passes_keep_their_promises(model: onnx.ModelProto) -> None:
    _assert_kept(model, FAST)


@settings(
    max_examples=6, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(models(), st.sampled_from(SLOW))
def test_slow_passes_and_presets_keep_their_promises(model: onnx.ModelProto, case: Case) -> None:
    _assert_kept(model, [case])
