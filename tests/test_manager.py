from __future__ import annotations

import json
import pathlib

import onnx
import onnx_ir as ir
import pytest

from irpass import registry
from irpass.errors import PassFailedError, PassOptionError, PipelineError, UnsupportedModelError
from irpass.manager import PipelineRunner, RunOptions, custom_ops, report_json
from irpass.pass_base import IrpassPass
from irpass.testing import model_from_text

pytestmark = pytest.mark.usefixtures("test_passes")  # the t_* passes

MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 4] x) => (float[1, 3] y) <float[4, 3] w = {1,2,3,4,5,6,7,8,9,10,11,12}> {
    a = Identity(x)
    b = Identity(a)
    c = Identity(b)
    y = MatMul(c, w)
}
"""


def _model() -> ir.Model:
    return model_from_text(MODEL)


def test_fixpoint_runs_until_nothing_changes_and_records_each_pass() -> None:
    result = PipelineRunner("fixpoint(t_remove_one_identity)").run(_model())
    ops = [n.op_type for n in result.model.graph]
    assert ops == ["MatMul"]
    records = result.report.passes
    assert [r.modified for r in records] == [True, True, True, False]
    # removing an Identity leaves the computation unchanged: proven equal without running ORT
    assert all(r.verification.status == "equal" for r in records if r.modified)
    assert all(r.verification.status == "skipped" for r in records if not r.modified)
    assert records[0].stats == {"identity_removed": 1}
    assert result.report.before["nodes"] == 4 and result.report.after["nodes"] == 1
    assert records[0].step == "fixpoint#1.1/t_remove_one_identity"


def test_lossless_pass_that_changes_outputs_is_caught_with_reproducer(
    tmp_path: pathlib.Path,
) -> None:
    options = RunOptions(reproducer_dir=tmp_path / "repro", on_failure="error")
    with pytest.raises(PassFailedError) as info:
        PipelineRunner("t_remove_one_identity,t_lying_lossless", options=options).run(_model())
    assert info.value.pass_name == "t_lying_lossless"
    assert "lossless pass changed the outputs" in info.value.message
    repro = tmp_path / "repro"
    # the reproducer is the input model plus every pass run up to and including the failing one
    pipeline = (repro / "pipeline.txt").read_text().strip()
    assert pipeline == "t_remove_one_identity,t_lying_lossless"
    saved = onnx.load(repro / "input.onnx")
    assert [n.op_type for n in saved.graph.node] == ["Identity", "Identity", "Identity", "MatMul"]
    with pytest.raises(PassFailedError) as again:
        PipelineRunner(pipeline, options=RunOptions(on_failure="error")).run(ir.from_proto(saved))
    assert again.value.pass_name == "t_lying_lossless"


def test_rollback_restores_the_model_and_continues() -> None:
    model = _model()
    before = model.graph.initializers["w"].const_value.numpy().copy()
    options = RunOptions(on_failure="rollback")
    result = PipelineRunner("t_lying_lossless,t_raise,t_remove_one_identity", options=options).run(
        model
    )
    assert result.model is model
    assert (model.graph.initializers["w"].const_value.numpy() == before).all()
    assert [r.rolled_back for r in result.report.passes] == [True, True, False]
    assert len(list(model.graph)) == 3
    assert any("t_raise" in w for w in result.report.warnings)


def test_raising_pass_is_named() -> None:
    with pytest.raises(PassFailedError) as info:
        PipelineRunner("t_raise", options=RunOptions(on_failure="error")).run(_model())
    assert "'t_raise'" in info.value.message and "boom" in info.value.message


class _ReturnsACopy(IrpassPass):
    """Claims to work in place but returns a modified copy (onnx-ir's contract catches it)."""

    name = "t_returns_a_copy"
    lossless = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        return ir.passes.PassResult(model.clone(), True)


def test_an_in_place_pass_returning_another_model_is_a_named_failure() -> None:
    with registry.registered(_ReturnsACopy):
        with pytest.raises(PassFailedError) as info:
            PipelineRunner("t_returns_a_copy", options=RunOptions(on_failure="error")).run(_model())
        assert "'t_returns_a_copy'" in info.value.message
        assert "declared in-place" in info.value.message
        result = PipelineRunner("t_returns_a_copy", options=RunOptions(on_failure="rollback")).run(
            _model()
        )
    assert [r.rolled_back for r in result.report.passes] == [True]


def test_lossy_pass_is_measured_not_rejected() -> None:
    seen = []

    def evaluator(model: ir.Model) -> dict[str, float]:
        value = float(model.graph.initializers["w"].const_value.numpy().sum())
        seen.append(value)
        return {"weight_sum": value}

    from irpass.context import PassContext

    context = PassContext()
    context.evaluator = evaluator  # type: ignore[attr-defined]
    result = PipelineRunner("t_scale_weight(factor=0.5)", context=context).run(_model())
    record = result.report.passes[0]
    assert record.modified and not record.lossless
    # SQNR of halving the weights: 20 log10(1 / 0.5) = 6.0 dB
    assert record.verification.status == "drift sqnr=6.0dB"
    assert record.verification.max_abs_error and record.verification.max_abs_error > 0
    assert record.metrics == {"weight_sum": 39.0}
    assert result.report.metrics_before == {"weight_sum": 78.0}


def test_dump_dir_has_model_before_and_after_every_modifying_pass(tmp_path: pathlib.Path) -> None:
    options = RunOptions(dump_dir=tmp_path)
    PipelineRunner("fixpoint(t_remove_one_identity)", options=options).run(_model())
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[0] == "000_input.onnx"
    assert len(names) == 4
    counts = [len(onnx.load(tmp_path / n).graph.node) for n in names]
    assert counts == [4, 3, 2, 1]


def test_option_errors_surface_before_running() -> None:
    with pytest.raises(PassOptionError):
        PipelineRunner("t_remove_one_identity,t_scale_weight(factr=2)")
    with pytest.raises(PipelineError) as info:
        PipelineRunner("no_such_pass")
    assert info.value.hint and "t_raise" in info.value.hint


def test_custom_ops_need_permission_and_pass_through() -> None:
    text = """
    <ir_version: 8, opset_import: ["" : 17, "com.example" : 1]>
    g (float[2] x) => (float[2] y) {
        a = Identity(x)
        y = com.example.Mystery(a)
    }
    """
    model = ir.from_proto(onnx.parser.parse_model(text))
    assert custom_ops(model) == [("com.example", "Mystery")]
    with pytest.raises(UnsupportedModelError) as info:
        PipelineRunner("t_remove_one_identity").run(model)
    assert "com.example::Mystery" in info.value.message
    options = RunOptions(allow_custom_ops=True)
    result = PipelineRunner("t_remove_one_identity", options=options).run(model)
    assert [n.op_type for n in result.model.graph] == ["Mystery"]
    assert result.report.warnings


def test_report_json_is_deterministic() -> None:
    a = json.loads(report_json(PipelineRunner("t_remove_one_identity").run(_model()).report))
    b = json.loads(report_json(PipelineRunner("t_remove_one_identity").run(_model()).report))
    for data in (a, b):
        data.pop("seconds")
        for record in data["passes"]:
            record.pop("seconds")
    assert a == b
    assert a["pipeline"] == "t_remove_one_identity"


def test_irpass_pass_runs_inside_onnx_ir_pass_manager() -> None:
    from passes_for_tests import RemoveIdentityOncePass

    manager = ir.passes.PassManager([RemoveIdentityOncePass()], steps=5)
    result = manager(_model())
    assert result.modified
    assert [n.op_type for n in result.model.graph] == ["MatMul"]


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        ("cycle", "the main graph has a cycle: node 'first'"),
        ("dangling", "node 'last' (MatMul) in the main graph reads 'stray'"),
    ],
)
def test_caller_built_malformed_model_is_refused_naming_the_node(
    damage: str, fragment: str, tmp_path: pathlib.Path
) -> None:
    model = _model()
    nodes = list(model.graph)
    nodes[0].name, nodes[-1].name = "first", "last"
    if damage == "cycle":
        nodes[0].replace_input_with(0, nodes[2].outputs[0])
    else:
        stray = ir.Value(
            name="stray", shape=ir.Shape([1, 4]), type=ir.TensorType(ir.DataType.FLOAT)
        )
        nodes[-1].replace_input_with(0, stray)
    options = RunOptions(reproducer_dir=tmp_path / "repro", dump_dir=tmp_path / "dumps")
    with pytest.raises(UnsupportedModelError) as info:
        PipelineRunner("t_remove_one_identity", options=options).run(model)
    assert fragment in info.value.message and info.value.hint
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_caller_built_model_out_of_order_is_sorted_and_runs() -> None:
    model = _model()
    matmul = list(model.graph)[-1]
    model.graph.remove(matmul)
    model.graph.insert_before(next(iter(model.graph)), matmul)
    result = PipelineRunner("t_remove_one_identity").run(model)
    assert [n.op_type for n in result.model.graph] == ["Identity", "Identity", "MatMul"]
