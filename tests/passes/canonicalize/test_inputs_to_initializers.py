from __future__ import annotations

import onnx_ir as ir
import pytest

from irpass.errors import PassFailedError
from irpass.passes.canonicalize.inputs_to_initializers import ConvertInputsToInitializersPass
from irpass.testing import assert_equivalent, assert_unchanged, model_from_text, serialized

pytestmark = pytest.mark.usefixtures("test_passes")  # the t_* passes

IR3 = """
<ir_version: 3, opset_import: ["" : 9]>
g (float[2,3] x, float[3] w) => (float[2,3] y) <float[3] w = {1, 2, 3}> {
  y = Mul (x, w)
}
"""

IR8 = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2,3] x) => (float[2,3] y) <float[3] w = {1, 2, 3}> {
  k = Constant <value_floats = [1.0, 2.0, 3.0]> ()
  m = Mul (x, w)
  y = Add (m, k)
}
"""


def test_initializer_inputs_become_constants() -> None:
    model, reference = model_from_text(IR3), model_from_text(IR3)
    pass_ = ConvertInputsToInitializersPass()
    assert pass_(model).modified is True
    assert [v.name for v in model.graph.inputs] == ["x"]
    assert "w" in model.graph.initializers
    assert model.ir_version == 4
    assert pass_.stats["inputs_made_initializers"] == 1
    assert_equivalent(reference, model)


def test_plain_inputs_and_constants_untouched_by_default() -> None:
    model = model_from_text(IR8)
    before = serialized(model)
    assert ConvertInputsToInitializersPass()(model).modified is False
    assert_unchanged(before, model)


@pytest.mark.parametrize("text", [IR3, IR8])
def test_lift_constants_option(text: str) -> None:
    model, reference = model_from_text(text), model_from_text(text)
    options = ConvertInputsToInitializersPass.Options(lift_constants=True)
    assert ConvertInputsToInitializersPass(options)(model).modified is True
    assert "Constant" not in [n.op_type for n in model.graph]
    assert_equivalent(reference, model)


def test_runs_inside_onnx_ir_pass_manager() -> None:
    model = model_from_text(IR3)
    assert ir.passes.PassManager([ConvertInputsToInitializersPass()])(model).modified is True


OVERRIDABLE = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2,3] x, float[3] scale) => (float[2,3] y) <float[3] scale = {1, 2, 3}> {
  y = Mul (x, scale)
}
"""


def test_overridable_inputs_of_ir4_models_are_kept_unless_frozen() -> None:
    model = model_from_text(OVERRIDABLE)
    before = serialized(model)
    assert ConvertInputsToInitializersPass()(model).modified is False
    assert_unchanged(before, model)
    options = ConvertInputsToInitializersPass.Options(freeze_overridable=True)
    frozen = ConvertInputsToInitializersPass(options)
    assert frozen(model).modified is True
    assert [v.name for v in model.graph.inputs] == ["x"]
    assert frozen.stats["inputs_made_initializers"] == 1


def test_default_pipeline_keeps_overridable_inputs_and_verification_feeds_them(
    tmp_path,
) -> None:
    import json

    import numpy as np
    import onnx
    import onnxruntime as ort

    from irpass.cli import main
    from irpass.manager import PipelineRunner, RunOptions
    from irpass.verify import make_session, random_feeds

    source = tmp_path / "in.onnx"
    onnx.save(onnx.parser.parse_model(OVERRIDABLE), source)
    session = make_session(model_from_text(OVERRIDABLE))
    assert "scale" in random_feeds(session, overridable=True)
    assert "scale" not in random_feeds(session)
    assert main(["optimize", str(source), "-o", str(tmp_path / "o")]) == 0
    out = ort.InferenceSession(str(tmp_path / "o" / "model.onnx"))
    assert [i.name for i in out.get_overridable_initializers()] == ["scale"]
    x = np.ones((2, 3), np.float32)
    (y,) = out.run(None, {"x": x, "scale": np.full(3, 10, np.float32)})
    assert y[0, 0] == 10.0
    assert main(["optimize", str(source), "-o", str(tmp_path / "f"), "--freeze-inputs"]) == 0
    frozen = ort.InferenceSession(str(tmp_path / "f" / "model.onnx"))
    assert frozen.get_overridable_initializers() == []
    report = json.loads((tmp_path / "f" / "report.json").read_text())
    assert report["pipeline"].startswith("inputs_to_initializers(freeze_overridable=true),")
    # Freezing on request verifies; a pass that freezes the input unasked is caught.
    runner = PipelineRunner("inputs_to_initializers(freeze_overridable=true)")
    assert runner.run(model_from_text(OVERRIDABLE)).report.passes[0].modified
    with pytest.raises(PassFailedError, match="changed the outputs"):
        strict = RunOptions(on_failure="error")
        PipelineRunner("t_freeze_inputs", options=strict).run(model_from_text(OVERRIDABLE))
