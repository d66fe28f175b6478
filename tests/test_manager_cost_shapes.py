"""The run report's MACs and activation memory: one set of real input shapes, said which."""

from __future__ import annotations

from shape_models_for_tests import batch_view, upsample

from irpass.manager import PipelineRunner, RunOptions
from irpass.testing import inputs_to_random_initializers, model_from_text


def test_lossless_run_counts_the_same_macs_before_and_after_at_the_verification_shapes() -> None:
    result = PipelineRunner("canonicalize,fuse").run(batch_view())
    report = result.report
    # the pipeline rewrote the batch-reading Reshape (else the equality below proves nothing)
    assert any(r.modified and r.name == "resolve_reshape_shapes" for r in report.passes)
    assert [n.op_type for n in result.model.graph] == ["Reshape", "MatMul"]
    assert report.cost_shapes == {
        name: list(dims) for name, dims in report.verification["shapes"][0].items()
    }
    assert report.cost_shapes_source == "verification"
    batch = report.cost_shapes["x"][0]
    assert report.before["macs"] == report.after["macs"] == batch * 8 * 16 * 8
    assert report.before["unknown_macs_nodes"] == report.after["unknown_macs_nodes"] == 0
    # every pass is measured at the same shapes: no MAC delta anywhere in a lossless run
    for record in report.passes:
        assert record.before["macs"] == record.after["macs"] == report.before["macs"]


def test_given_input_shapes_are_the_ones_counted() -> None:
    options = RunOptions(input_shapes=[{"x": (6, 64)}, {"x": (2, 64)}])
    report = PipelineRunner("canonicalize", options=options).run(batch_view()).report
    assert report.cost_shapes == {"x": [6, 64]} and report.cost_shapes_source == "--input-shapes"
    assert report.before["macs"] == report.after["macs"] == 6 * 8 * 16 * 8


def test_detector_macs_follow_the_given_spatial_size() -> None:
    def macs(shape: tuple[int, ...]) -> int:
        model = upsample()
        options = RunOptions(input_shapes=[{"images": shape}])
        report = PipelineRunner("canonicalize", options=options).run(model).report
        assert report.cost_shapes == {"images": list(shape)}
        assert report.before["macs"] == report.after["macs"]
        return int(report.after["macs"])

    assert macs((1, 3, 64, 96)) == 4 * macs((1, 3, 32, 48))


def test_without_verification_shapes_symbolic_dims_count_as_one_and_the_report_says_so() -> None:
    report = (
        PipelineRunner("canonicalize", options=RunOptions(verify="none")).run(batch_view()).report
    )
    assert report.cost_shapes is None
    assert report.cost_shapes_source == "no verification shapes"
    assert report.before["macs"] == 8 * 16 * 8  # one sample


def test_static_model_is_counted_at_its_declared_shapes() -> None:
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2, 8] x, float[8, 3] w) => (float[2, 3] y) {
        y = MatMul(x, w)
    }
    """
    model = inputs_to_random_initializers(model_from_text(text), ["w"])
    report = PipelineRunner("canonicalize").run(model).report
    assert report.cost_shapes == {"x": [2, 8]} and report.cost_shapes_source == "declared"
    assert report.after["macs"] == 2 * 8 * 3
