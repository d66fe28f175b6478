from __future__ import annotations

import math
import threading

import numpy as np
import onnx_ir as ir
import pytest

from irpass.errors import UnsupportedModelError
from irpass.manager import PipelineRunner
from irpass.testing import model_from_text
from irpass.verify.session import make_session, run_model
from irpass.verify.verifier import Verifier, drift_metrics, max_abs_error_all


def _drift(reference: object, actual: object) -> dict[str, float]:
    return drift_metrics([{"y": reference}], [{"y": actual}])


@pytest.mark.parametrize(
    "value",
    [
        np.float32(2.5),
        np.array(3.0, dtype=np.float32),
        [np.ones(3, np.float32), np.zeros((2, 2), np.float32)],
        None,
        np.array(["a", "b"], dtype=object),
    ],
    ids=["numpy_scalar", "0d", "sequence_of_shapes", "empty_optional", "strings"],
)
def test_equal_outputs_of_every_kind_have_no_drift(value: object) -> None:
    drift = _drift(value, value)
    assert drift["max_abs_error"] == 0.0 and drift["cosine"] == 1.0


def test_sequence_elements_are_compared_one_by_one() -> None:
    reference = [np.ones(3, np.float32), np.full((2, 2), 2.0, np.float32)]
    actual = [np.ones(3, np.float32), np.full((2, 2), 2.5, np.float32)]
    drift = _drift(reference, actual)
    assert drift["max_abs_error"] == pytest.approx(0.5)
    assert math.isfinite(drift["sqnr_db"])


@pytest.mark.parametrize(
    ("reference", "actual"),
    [
        ([np.ones(2)], [np.ones(2), np.ones(2)]),
        (None, np.ones(2)),
        ([np.ones(2)], np.ones((1, 2))),
        (np.ones(2), np.ones(3)),
    ],
    ids=["sequence_length", "optional_emptiness", "sequence_vs_tensor", "shape"],
)
def test_structural_differences_diverge(reference: object, actual: object) -> None:
    drift = _drift(reference, actual)
    assert drift["max_abs_error"] == float("inf") and drift["cosine"] == 0.0


def test_max_abs_error_over_sequences_and_optionals() -> None:
    reference = [{"s": [np.ones(3, np.float32), np.ones((2, 2), np.float32)], "o": None}]
    actual = [{"s": [np.ones(3, np.float32), np.full((2, 2), 1.25, np.float32)], "o": None}]
    assert max_abs_error_all(reference, actual) == pytest.approx(0.25)
    assert max_abs_error_all(reference, [{"s": reference[0]["s"][:1], "o": None}]) == math.inf


# -- the reference runs beside the passes ------------------------------------------------

_WEIGHTED = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[batch, 4] x) => (float[batch, 3] y)
    <float[4, 3] w = {1., 2., 3., 4., 5., 6., 7., 8., 9., 1., 2., 3.}> {
    h = Relu (x)
    y = MatMul (h, w)
}
"""

_LARGE_WEIGHT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[batch, 64] x, float[64, 16] w) => (float[batch, 16] y) { y = MatMul (x, w) }
"""

#: Reshape to a fixed 7 elements: no generated size of ``len`` works.
_RUNS_ON_NOTHING = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[len] x) => (float[7] y) <int64[1] s = {7}> { y = Reshape (x, s) }
"""


def _reference_threads() -> list[threading.Thread]:
    """Reference threads still alive once they had time to end (they end with their work)."""
    threads = [t for t in threading.enumerate() if t.name.startswith("irpass-reference")]
    for thread in threads:
        thread.join(timeout=10)
    return [t for t in threads if t.is_alive()]


def test_reference_is_of_the_input_model_even_when_passes_rewrite_it_meanwhile() -> None:
    model = model_from_text(_WEIGHTED)
    session = make_session(model)
    verifier = Verifier(model)
    # a pass rewrites the model before the reference is asked for
    matmul = next(node for node in model.graph if node.op_type == "MatMul")
    weight = matmul.inputs[1]
    assert weight is not None and weight.const_value is not None
    weight.const_value = ir.tensor(np.zeros((4, 3), np.float32), name=weight.name)
    plan = verifier.plan
    assert plan is not None and len(plan.feeds) == 2
    assert {shapes["x"][0] for shapes in plan.shapes} == {1, 2}  # batch 1 and batch > 1
    for feed, outputs in zip(plan.feeds, plan.outputs, strict=True):
        expected = run_model(session, feed)["y"]
        assert np.abs(expected).max() > 0
        np.testing.assert_array_equal(outputs["y"], expected)
    assert not _reference_threads()


@pytest.mark.usefixtures("test_passes")  # the t_* passes
def test_reference_is_of_the_input_weights_even_when_a_pass_changes_them_in_place() -> None:
    model = model_from_text(_LARGE_WEIGHT)
    array = np.arange(64 * 16, dtype=np.float32).reshape(64, 16) + 1
    weight = ir.Value(name="w", shape=ir.Shape([64, 16]), type=ir.TensorType(ir.DataType.FLOAT))
    weight.const_value = ir.Tensor(array, name="w")  # writeable, above the size shared by reference
    model.graph.initializers.add(weight)
    matmul = next(iter(model.graph))
    matmul.replace_input_with(1, weight)
    model.graph.inputs.pop()
    session = make_session(model, private=True)
    verifier = Verifier(model)
    array *= 0  # in place, before the reference is asked for
    plan = verifier.plan
    assert plan is not None
    for feed, outputs in zip(plan.feeds, plan.outputs, strict=True):
        expected = run_model(session, feed)["y"]
        assert np.abs(expected).max() > 0
        np.testing.assert_array_equal(outputs["y"], expected)


@pytest.mark.usefixtures("test_passes")  # the t_* passes
def test_input_model_that_runs_on_nothing_fails_the_run_and_leaves_no_thread() -> None:
    with pytest.raises(UnsupportedModelError) as info:
        PipelineRunner("t_remove_one_identity").run(model_from_text(_RUNS_ON_NOTHING))
    assert "input 'x' [len]" in info.value.message
    assert "--input-shapes" in (info.value.hint or "")
    assert not _reference_threads()


def test_closing_drops_the_reference_error_and_waits_for_the_thread() -> None:
    verifier = Verifier(model_from_text(_RUNS_ON_NOTHING))
    verifier.close()  # a run that ended early: its own error is the one to report
    assert not _reference_threads()
    assert verifier.plan is None


def test_structural_only_verifier_runs_nothing() -> None:
    verifier = Verifier(model_from_text(_WEIGHTED), numeric=False)
    assert verifier.plan is None and verifier.describe() == "structural checks only"
