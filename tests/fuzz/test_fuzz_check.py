"""The fuzz harness catches each kind of broken promise (and passes honest passes)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from irpass import registry
from irpass.fuzz.check import PRESETS, Case, Reference, cases, check_case
from irpass.pass_base import IrpassPass

MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 3] y) <float[4, 3] w = {1,2,3,4,5,6,7,8,9,10,11,12}> {
    a = Identity (x)
    y = MatMul (a, w)
}
"""


class _SilentChange(IrpassPass):
    """Removes the Identity but reports no change."""

    name = "t_fuzz_silent_change"
    lossless = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        node = next(n for n in model.graph if n.op_type == "Identity")
        node.outputs[0].replace_all_uses_with(node.inputs[0])
        model.graph.remove(node, safe=True)
        return ir.passes.PassResult(model, False)


class _Warns(IrpassPass):
    """Lets a numpy RuntimeWarning escape."""

    name = "t_fuzz_warns"
    lossless = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        np.log(np.zeros(1))
        return ir.passes.PassResult(model, False)


class _Breaks(IrpassPass):
    """Leaves the graph output 'y' produced by no node (the checker rejects it)."""

    name = "t_fuzz_breaks"
    lossless = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        produced = model.graph.outputs[0]
        produced.name = "y_orphan"
        model.graph.outputs[0] = ir.Value(name="y", type=produced.type, shape=produced.shape)
        return ir.passes.PassResult(model, True)


class _Untyped(IrpassPass):
    """Gives a value a shape but no type (onnx-ir warns when serializing it)."""

    name = "t_fuzz_untyped"
    lossless = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        value = next(n for n in model.graph if n.op_type == "Identity").outputs[0]
        value.type = None
        value.shape = ir.Shape([2, 4])
        return ir.passes.PassResult(model, True)


@pytest.fixture
def fuzz_passes(test_passes: None) -> Iterator[None]:
    """The t_* test passes and the broken passes above, registered for one test."""
    with registry.registered(_SilentChange, _Warns, _Breaks, _Untyped):
        yield


@pytest.fixture(scope="module")
def reference() -> Reference:
    return Reference(onnx.parser.parse_model(MODEL))


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("t_lying_lossless", "mismatch"),
        ("t_raise", "raised"),
        ("t_fuzz_silent_change", "unreported"),
        ("t_fuzz_warns", "warning"),
        ("t_fuzz_untyped", "warning"),
        ("t_fuzz_breaks", "invalid"),
    ],
)
@pytest.mark.usefixtures("fuzz_passes")
def test_each_broken_promise_is_found(reference: Reference, name: str, kind: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the harness must capture, not leak, the warning
        _, finding = check_case(reference, Case(name, lossless=True))
    assert finding is not None and finding.kind == kind and finding.case == name


@pytest.mark.usefixtures("test_passes")
def test_honest_passes_have_no_findings(reference: Reference) -> None:
    assert check_case(reference, Case("eliminate_identity", lossless=True)) == (True, None)
    assert check_case(reference, Case("fold_pad", lossless=True)) == (False, None)
    # a lossy pass changes the numbers, not the outputs' names, shapes or finiteness
    assert check_case(reference, Case("t_scale_weight", lossless=False)) == (True, None)
    assert check_case(reference, Case("canonicalize,fuse", True, pipeline=True)) == (True, None)


def test_reference_runs_the_symbolic_batch_at_two(reference: Reference) -> None:
    assert [feed["x"].shape for feed in reference.feeds] == [(2, 4), (2, 4)]
    assert not np.array_equal(reference.feeds[0]["x"], reference.feeds[1]["x"])


def test_cases_cover_every_built_in_pass_and_preset() -> None:
    found = cases()
    built_in = {c.name for c in registry.list_passes() if c.__module__.startswith("irpass.passes.")}
    assert built_in <= {c.text for c in found}
    assert not any(c.text.startswith("t_") for c in found)  # test passes are not fuzzed
    assert {c.text for c in found if c.pipeline} == set(PRESETS)
    lossy = {c.name for c in registry.list_passes() if not c.lossless} & built_in
    assert {c.text for c in found if not c.lossless} >= lossy
