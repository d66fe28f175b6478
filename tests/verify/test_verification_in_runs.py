"""What the pipeline runner's verification catches (tests/verify mirrors irpass/verify and the
verification half of irpass/manager.py)."""

from __future__ import annotations

import pathlib
from collections.abc import Callable

import numpy as np
import onnx_ir as ir
import pytest

from irpass.errors import PassFailedError
from irpass.manager import PipelineRunner, RunOptions
from irpass.run_report import Verification
from irpass.testing import inputs_to_random_initializers, model_from_text
from irpass.verify.verifier import DeferredCheck, Verifier

pytestmark = pytest.mark.usefixtures("test_passes")  # the t_* passes

# y = Reshape(x, [N, 8]) with the shape computed from x: right at every batch size
DYNAMIC_RESHAPE = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 2, 4] x) => (float[N, 8] y) <int64[1] zero = {0}, int64[1] one = {1},
                                          int64[1] eight = {8}> {
    s = Shape (x)
    n = Slice (s, zero, one)
    shape = Concat <axis = 0> (n, eight)
    y = Reshape (x, shape)
}
"""

WEIGHTED = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 3] y) <float[4, 3] w = {1,2,3,4,5,6,7,8,9,10,11,12}> {
    a = Identity (x)
    y = MatMul (a, w)
}
"""

# one output element is ~1000x the others; the pass changes a small one by 0.08
MIXED_RANGE = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 64] x, float[64] w) => (float[1, 64] y) { y = Mul (x, w) }
"""


def _mixed_range_model() -> ir.Model:
    model = inputs_to_random_initializers(model_from_text(MIXED_RANGE), ["w"], seed=3)
    array = model.graph.initializers["w"].const_value.numpy().copy()
    array[0], array[1] = 1000.0, 0.01
    model.graph.initializers["w"].const_value = ir.tensor(array, name="w")
    return model


def test_batch_dependent_lying_pass_is_caught_and_rolled_back(tmp_path: pathlib.Path) -> None:
    # at batch 1 the hard-coded [1, 8] is right; the second configuration (batch 2) exposes it
    model = model_from_text(DYNAMIC_RESHAPE)
    options = RunOptions(reproducer_dir=tmp_path / "repro")
    result = PipelineRunner("t_batch_liar", options=options).run(model)
    record = result.report.passes[0]
    assert record.rolled_back and record.verification.status == "failed"
    assert "t_batch_liar" in result.report.warnings[0]
    assert "reproducer" in result.report.warnings[0]
    assert (tmp_path / "repro" / "pipeline.txt").read_text().strip() == "t_batch_liar"
    reshape = next(n for n in model.graph if n.op_type == "Reshape")
    assert reshape.inputs[1].const_value is None  # the rewrite was undone
    shapes = result.report.verification["shapes"]
    assert shapes[0]["x"][0] == 1 and shapes[1]["x"][0] > 1


# a stride-2 stem, then a 3x3 Conv: at 1x1 and 2x2 images it sees its kernels' centre only
STRIDED = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 3, H, W] x, float[4, 3, 3, 3] a, float[4, 4, 3, 3] b) => (float[N, 4, ?, ?] y) {
    h = Conv <strides = [2, 2], pads = [1, 1, 1, 1]> (x, a)
    r = Relu (h)
    y = Conv <pads = [1, 1, 1, 1]> (r, b)
}
"""


def test_a_rewrite_visible_only_on_larger_images_is_caught(tmp_path: pathlib.Path) -> None:
    # config A runs the smallest image (1x1); config B must use a size the strides leave
    # room in, or a pass that scrambles off-centre kernel taps passes as "equal"
    model = inputs_to_random_initializers(model_from_text(STRIDED), ["a", "b"], seed=5)
    options = RunOptions(reproducer_dir=tmp_path / "repro")
    result = PipelineRunner("t_kernel_flip", options=options).run(model)
    record = result.report.passes[0]
    assert record.rolled_back and record.verification.status == "failed"
    shapes = result.report.verification["shapes"]
    assert shapes[1]["x"][2] >= 8 and shapes[1]["x"][0] > 1


def test_strict_stops_with_the_failing_pass_named() -> None:
    options = RunOptions(on_failure="error")
    with pytest.raises(PassFailedError) as info:
        PipelineRunner("t_batch_liar", options=options).run(model_from_text(DYNAMIC_RESHAPE))
    assert info.value.pass_name == "t_batch_liar"


def test_under_reporting_pass_is_verified_and_blamed() -> None:
    # it changes the outputs but says modified=False: the fingerprint notices, the pass (not
    # the innocent one after it) is verified, fails and is rolled back
    model = model_from_text(WEIGHTED)
    result = PipelineRunner("t_underreport,t_remove_one_identity").run(model)
    first, second = result.report.passes
    assert first.underreported and first.rolled_back
    assert "reported modified=False" in " ".join(result.report.warnings)
    assert second.modified and second.verification.status == "equal"
    assert np.array_equal(
        model.graph.initializers["w"].const_value.numpy(),
        np.arange(1, 13, dtype=np.float32).reshape(4, 3),
    )


def test_lossy_pass_with_verify_final_still_checks_the_lossless_passes() -> None:
    # before, --verify final with a lossy pass skipped equality entirely and said "ok"
    options = RunOptions(verify="final")
    pipeline = "t_remove_one_identity,t_lying_lossless,t_scale_weight"
    result = PipelineRunner(pipeline, options=options).run(model_from_text(WEIGHTED))
    identity, liar, lossy = result.report.passes
    assert identity.verification.status == "equal"
    assert liar.rolled_back and liar.verification.status == "failed"
    assert lossy.verification.status.startswith("drift sqnr=")
    assert any("t_lying_lossless" in w for w in result.report.warnings)
    final = result.report.final_verification
    assert final is not None and final.status.startswith("drift")


def test_mixed_range_small_change_is_caught() -> None:
    result = PipelineRunner("t_small_change").run(_mixed_range_model())
    record = result.report.passes[0]
    assert record.rolled_back, record.verification


def test_statuses_say_what_ran() -> None:
    runs = {
        mode: PipelineRunner(
            "t_remove_one_identity,t_scale_weight", options=RunOptions(verify=mode)
        ).run(model_from_text(WEIGHTED))
        for mode in ("each", "none")
    }
    each = [r.verification.status for r in runs["each"].report.passes]
    assert each[0] == "equal" and each[1].startswith("drift sqnr=")
    none = [r.verification.status for r in runs["none"].report.passes]
    assert none == ["structural only", "structural only"]
    assert runs["none"].report.final_verification.status == "structural only"
    assert all(s != "ok" for s in each + none)


def test_end_to_end_check_against_the_input_model() -> None:
    result = PipelineRunner("fixpoint(t_remove_one_identity)").run(model_from_text(WEIGHTED))
    final = result.report.final_verification
    assert final is not None and final.status == "equal"
    assert result.report.verification["final"].startswith("equal")


def test_hygiene_violations_are_named_and_strict_fails() -> None:
    result = PipelineRunner("t_dirty").run(model_from_text(WEIGHTED))
    assert result.report.passes[0].hygiene == {
        "unused_initializers": ["junk"],
        "unused_opsets": ["com.example.unused"],
        "weight_growth": ["+16 bytes"],  # and it gave no reason for growing the weights
    }
    left = {(h["invariant"], h["item"], h["pass"]) for h in result.report.hygiene}
    assert left == {
        ("unused_initializers", "junk", "t_dirty"),
        ("unused_opsets", "com.example.unused", "t_dirty"),
        ("weight_growth", "+16 bytes", "t_dirty"),
    }
    assert any("hygiene" in w and "t_dirty" in w for w in result.report.warnings)
    with pytest.raises(PassFailedError) as info:
        PipelineRunner("t_dirty", options=RunOptions(on_failure="error")).run(
            model_from_text(WEIGHTED)
        )
    assert "unused_initializers junk" in info.value.message


def test_hygiene_item_cleaned_up_later_in_the_pipeline_is_not_reported() -> None:
    result = PipelineRunner("t_dirty,eliminate_dead").run(model_from_text(WEIGHTED))
    assert result.report.passes[0].hygiene  # attributed when it appeared ...
    assert not any(h["invariant"] == "unused_initializers" for h in result.report.hygiene)


def test_rollback_replays_the_passes_kept_before_the_failing_one() -> None:
    # no copy is taken before each pass: undoing replays the kept passes on the input copy
    text = WEIGHTED.replace("a = Identity (x)", "a0 = Identity (x)\n    a = Identity (a0)")
    model = model_from_text(text)
    pipeline = "t_remove_one_identity,t_lying_lossless,t_remove_one_identity"
    result = PipelineRunner(pipeline).run(model)
    assert [r.rolled_back for r in result.report.passes] == [False, True, False]
    assert [n.op_type for n in model.graph] == ["MatMul"]
    weight = model.graph.initializers["w"].const_value.numpy()
    assert np.array_equal(weight, np.arange(1, 13, dtype=np.float32).reshape(4, 3))
    assert result.report.final_verification.status == "equal"


def test_differences_that_add_up_past_the_end_to_end_check_are_rolled_back() -> None:
    # each pass scales the weight by 1 + 7e-5: within float32 tolerance of the state before it
    # (SQNR 83 dB), but the two together reach 77 dB against the input, below the 80 dB guard
    model = model_from_text(WEIGHTED)
    reference = model.graph.initializers["w"].const_value.numpy().copy()
    pipeline = "t_lying_lossless(factor=1.00007),t_lying_lossless(factor=1.00007)"
    result = PipelineRunner(pipeline).run(model)
    first, second = result.report.passes
    assert first.verification.status == "equal" and not first.rolled_back
    assert second.rolled_back and second.verification.status == "failed"
    assert "end-to-end" in result.report.warnings[-1]
    assert result.report.final_verification.status == "equal"
    np.testing.assert_allclose(
        model.graph.initializers["w"].const_value.numpy(), reference * np.float32(1.00007)
    )


def test_strict_stops_when_the_end_to_end_check_fails() -> None:
    model = model_from_text(WEIGHTED)
    pipeline = "t_lying_lossless(factor=1.00007),t_lying_lossless(factor=1.00007)"
    with pytest.raises(PassFailedError, match="final check"):
        PipelineRunner(pipeline, options=RunOptions(on_failure="error")).run(model)


def _weight_writer(calls: list[np.ndarray]) -> Callable[[ir.Model], None]:
    """A ``write`` callback that records the weight of every model it is given."""

    def write(model: ir.Model) -> None:
        calls.append(model.graph.initializers["w"].const_value.numpy().copy())

    return write


@pytest.mark.parametrize("mode", ["each", "final", "none"])
def test_write_gets_the_final_model_once(mode: str) -> None:
    # the lossy pass makes the end-to-end check run the model: the write goes on beside it
    calls: list[np.ndarray] = []
    runner = PipelineRunner("t_remove_one_identity,t_scale_weight", options=RunOptions(verify=mode))
    result = runner.run(model_from_text(WEIGHTED), write=_weight_writer(calls))
    assert len(calls) == 1
    written = result.model.graph.initializers["w"].const_value.numpy()
    np.testing.assert_array_equal(calls[0], written)
    assert result.report.final_verification is not None


def test_write_again_after_the_end_to_end_check_rolled_back() -> None:
    calls: list[np.ndarray] = []
    model = model_from_text(WEIGHTED)
    reference = model.graph.initializers["w"].const_value.numpy().copy()
    pipeline = "t_lying_lossless(factor=1.00007),t_lying_lossless(factor=1.00007)"
    PipelineRunner(pipeline).run(model, write=_weight_writer(calls))
    assert len(calls) == 2  # the model that failed the check, then the one kept
    np.testing.assert_allclose(calls[0], reference * np.float32(1.00007) ** 2, rtol=1e-6)
    np.testing.assert_array_equal(calls[-1], model.graph.initializers["w"].const_value.numpy())
    np.testing.assert_allclose(calls[-1], reference * np.float32(1.00007))


def test_failing_write_fails_the_run() -> None:
    def write(model: ir.Model) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        PipelineRunner("t_scale_weight").run(model_from_text(WEIGHTED), write=write)


def _deferred_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the statuses the deferred checks of a run resolved to, in order."""
    resolved: list[str] = []
    check = Verifier.check

    def spy(self: Verifier, *args: object, **kwargs: object) -> object:
        result = check(self, *args, **kwargs)  # type: ignore[call-overload]
        if isinstance(result, DeferredCheck):
            resolve = result.resolve

            def traced() -> Verification:
                try:
                    verification = resolve()
                except Exception:
                    resolved.append("raised")
                    raise
                resolved.append(verification.status)
                return verification

            result.resolve = traced
        return result

    monkeypatch.setattr(Verifier, "check", spy)
    return resolved


def test_check_runs_beside_the_next_passes_and_resolves_before_the_next_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a scale by 1 + 1e-6 is lossless within tolerance, and needs a run to prove it
    resolved = _deferred_checks(monkeypatch)
    tiny = "t_lying_lossless(factor=1.000001)"
    pipeline = f"{tiny},t_remove_one_identity,{tiny}"
    result = PipelineRunner(pipeline).run(model_from_text(WEIGHTED))
    # the first resolved when the identity removal changed the model, the last at the end
    assert resolved == ["equal", "equal"]
    assert [r.verification.status for r in result.report.passes] == ["equal"] * 3
    assert not any(r.rolled_back for r in result.report.passes)
    assert result.report.final_verification.status == "equal"


def test_deferred_failure_undoes_the_pass_and_reruns_the_one_that_found_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    # the liar's check is still running when the identity removal changes the model: the liar
    # is rolled back, and the identity removal runs again on the restored model
    resolved = _deferred_checks(monkeypatch)
    model = model_from_text(WEIGHTED)
    options = RunOptions(reproducer_dir=tmp_path / "repro")
    result = PipelineRunner("t_lying_lossless,t_remove_one_identity", options=options).run(model)
    assert resolved[0] == "raised"
    liar, identity = result.report.passes
    assert liar.rolled_back and liar.verification.status == "failed"
    assert identity.modified and identity.verification.status == "equal"
    assert [n.op_type for n in model.graph] == ["MatMul"]
    np.testing.assert_array_equal(
        model.graph.initializers["w"].const_value.numpy(),
        np.arange(1, 13, dtype=np.float32).reshape(4, 3),
    )
    # the reproducer ends with the failing pass, not with the one that ran after it
    assert (tmp_path / "repro" / "pipeline.txt").read_text().strip() == "t_lying_lossless"
    assert result.report.final_verification.status == "equal"


def test_strict_checks_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    resolved = _deferred_checks(monkeypatch)
    with pytest.raises(PassFailedError) as info:
        PipelineRunner(
            "t_lying_lossless,t_remove_one_identity", options=RunOptions(on_failure="error")
        ).run(model_from_text(WEIGHTED))
    assert info.value.pass_name == "t_lying_lossless"
    assert resolved == []
