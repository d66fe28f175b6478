from __future__ import annotations

import logging

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from irpass.passes.canonicalize.upgrade_opset import UpgradeOpsetPass
from irpass.testing import assert_equivalent, assert_unchanged, model_from_text, serialized

LEGACY = """
<ir_version: {ir}, opset_import: ["" : {opset}]>
g (float[1,4,3,3] x) => (float[1,4,1,1] y) <float[4] b = {{0.1, 0.2, 0.3, 0.4}}> {{
  d = Dropout {dropout_attrs}(x)
  s = Sum (d, x)
  u = Unsqueeze <axes = [1, 2]> (b)
  a = Add (s, u)
  p = GlobalAveragePool (a)
  y = Softmax <axis = 1> (p)
}}
"""

IF_LEGACY = """
<ir_version: 4, opset_import: ["" : 9]>
g (float[2,3] x, bool c) => (float[2,3] y) {
  y = If (c) <then_branch = t () => (float[2,3] ty) {
        ty = Softmax <axis = 1> (x)
     }, else_branch = e () => (float[2,3] ey) {
        ey = Relu (x)
     }>
}
"""


def _opset(model: ir.Model) -> int:
    return model.opset_imports[""]


@pytest.mark.parametrize("opset", [7, 9, 11, 12])
def test_legacy_opsets_reach_the_target_and_stay_equivalent(opset: int) -> None:
    text = LEGACY.format(
        ir=4 if opset < 11 else 6,
        opset=opset,
        dropout_attrs="" if opset >= 12 else "<ratio = 0.5> ",
    )
    model, reference = model_from_text(text), model_from_text(text)
    pass_ = UpgradeOpsetPass()
    assert pass_(model).modified is True
    assert _opset(model) == 17
    assert model.ir_version >= 8
    assert pass_.stats[f"opset_{opset}_to_17"] == 1
    # Unsqueeze's axes attribute becomes a constant input: the weights may grow, with a reason
    assert pass_.growth_reasons
    assert_equivalent(reference, model)


@pytest.mark.parametrize("target", [13, 17])
def test_target_option(target: int) -> None:
    model = model_from_text(LEGACY.format(ir=4, opset=9, dropout_attrs=""))
    UpgradeOpsetPass(UpgradeOpsetPass.Options(target=target))(model)
    assert _opset(model) == target


@pytest.mark.parametrize("opset", [17, 18])
def test_never_downgrades(opset: int) -> None:
    model = model_from_text(
        LEGACY.format(ir=8, opset=opset, dropout_attrs="")
        .replace("u = Unsqueeze <axes = [1, 2]> (b)", "u = Reshape (b, shape)")
        .replace("<float[4] b", "<int64[3] shape = {4, 1, 1}, float[4] b")
        .replace("d = Dropout (x)", "d = Relu (x)")
    )
    before = serialized(model)
    assert UpgradeOpsetPass()(model).modified is False
    assert_unchanged(before, model)


def test_bad_target_is_rejected() -> None:
    with pytest.raises(ValueError, match="target"):
        UpgradeOpsetPass.Options(target=3)


def test_converts_if_branches() -> None:
    model, reference = model_from_text(IF_LEGACY), model_from_text(IF_LEGACY)
    assert UpgradeOpsetPass()(model).modified is True
    assert _opset(model) == 17
    for cond in (True, False):
        feeds = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "c": np.array(cond)}
        assert_equivalent(reference, model, feeds=feeds)


FAILING = """
<ir_version: 8, opset_import: ["" : 9, "local" : 1]>
g (float[2] x) => (float[2] y) {
  c = NotAnOp (x)
  y = local.Twice (c)
}
<domain: "local", opset_import: ["" : 9]>
Twice (a) => (b) {
  b = Add (a, a)
}
"""


@pytest.mark.parametrize("with_function", [False, True])
def test_failure_leaves_model_byte_identical(
    with_function: bool, caplog: pytest.LogCaptureFixture
) -> None:
    text = FAILING if with_function else FAILING.replace("local.Twice (c)", "Relu (c)")
    # Unchecked: NotAnOp has no schema, which is what makes the converter fail.
    model = ir.from_proto(onnx.parser.parse_model(text))
    before = serialized(model)
    pass_ = UpgradeOpsetPass()
    with caplog.at_level(logging.WARNING):
        result = pass_(model)
    assert result.modified is False
    assert pass_.stats["failed"] == 1
    assert_unchanged(before, model)
    assert len(model.functions) == 1
    assert "NotAnOp" in caplog.text


def test_local_functions_are_inlined_on_success() -> None:
    text = FAILING.replace("NotAnOp (x)", "Relu (x)")
    model, reference = model_from_text(text), model_from_text(text)
    assert UpgradeOpsetPass()(model).modified is True
    assert _opset(model) == 17
    assert not model.functions
    assert [n.op_type for n in model.graph] == ["Relu", "Add"]
    assert_equivalent(reference, model)


SCAN8 = """
<ir_version: 3, opset_import: ["" : 8]>
g (float[{batch},2] initial, float[{batch},3,2] x) => (float[{batch},2] y, float[{batch},3,2] z) {{
  y, z = Scan ({lens}, initial, x) <num_scan_inputs = 1{directions}, body = body (
      float[2] sum_in, float[2] next) => (float[2] sum_out, float[2] scan_out) {{
    sum_out = Add (sum_in, next)
    scan_out = Identity (sum_out)
  }}>
}}
"""


@pytest.mark.parametrize("target", [9, 12, 17])
@pytest.mark.parametrize("directions", ["", ", directions = [1]"])
def test_scan8_with_a_batch_of_one_converts_exactly(directions: str, target: int) -> None:
    text = SCAN8.format(batch=1, lens='""', directions=directions)
    model, reference = model_from_text(text), model_from_text(text)
    assert UpgradeOpsetPass(UpgradeOpsetPass.Options(target=target))(model).modified is True
    assert _opset(model) == target
    ops = [n.op_type for n in model.graph if n.op_type != "Constant"]
    assert ops == ["Squeeze", "Squeeze", "Scan", "Unsqueeze", "Unsqueeze"]
    scan = next(n for n in model.graph if n.op_type == "Scan")
    assert "directions" not in scan.attributes
    assert ("scan_input_directions" in scan.attributes) == bool(directions)
    # The signature keeps its batch axis (the converter alone strips it from the inputs).
    assert [list(v.shape) for v in model.graph.inputs] == [[1, 2], [1, 3, 2]]
    assert [v.name for v in model.graph.outputs] == ["y", "z"]
    assert_equivalent(reference, model)


@pytest.mark.parametrize(
    ("batch", "lens", "reason"),
    [
        (2, '""', "batch size 2"),
        ("N", '""', "batch size unknown"),
        (1, "lens", "sequence_lens"),
    ],
)
def test_scan8_without_an_exact_scan9_form_is_refused(
    batch: object, lens: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    text = SCAN8.format(batch=batch, lens=lens, directions="")
    if lens != '""':
        text = text.replace("float[1,2] initial,", "int32[1] lens, float[1,2] initial,")
    model = model_from_text(text)
    before = serialized(model)
    pass_ = UpgradeOpsetPass()
    with caplog.at_level(logging.WARNING):
        assert pass_(model).modified is False
    assert pass_.stats["failed"] == 1
    assert_unchanged(before, model)
    assert reason in caplog.text


def test_custom_domain_ops_pass_through() -> None:
    text = """
    <ir_version: 4, opset_import: ["" : 9, "com.example" : 1]>
    g (float[2] x) => (float[2] y) {
      c = com.example.Magic <alpha = 2.0> (x)
      y = Relu (c)
    }
    """
    model = model_from_text(text)
    assert UpgradeOpsetPass()(model).modified is True
    magic = next(n for n in model.graph if n.domain == "com.example")
    assert magic.op_type == "Magic" and magic.attributes["alpha"].as_float() == 2.0
    assert model.opset_imports["com.example"] == 1


def test_runs_inside_onnx_ir_pass_manager() -> None:
    model = model_from_text(LEGACY.format(ir=4, opset=9, dropout_attrs=""))
    result = ir.passes.PassManager([UpgradeOpsetPass()])(model)
    assert result.modified is True and _opset(result.model) == 17
