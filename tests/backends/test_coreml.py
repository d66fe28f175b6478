from __future__ import annotations

import onnx_ir as ir

from irpass.backends.caveats import violations
from irpass.backends.coreml import COREML_CAVEATS
from irpass.backends.registry import get_backend
from irpass.targets import load_target
from irpass.testing import model_from_text


def test_coreml_verdict_names_what_ml_programs_lack():
    model = model_from_text("""
    <ir_version: 9, opset_import: ["" : 17]>
    g (float[1,3,8,8] x, float[3] s, float[3] b, float[3] m, float[3] v) => (float[1,3,8,8] y) {
      y = BatchNormalization(x, s, b, m, v)
    }""")
    checks = {c.name: c for c in get_backend("coreml").check(model, load_target("ios"))}
    partitions = checks["CoreML MLProgram partitions (ORT usability checker)"]
    assert partitions.status == "fail" and "BatchNormalization x1" in partitions.detail
    assert checks["fixed input shapes"].status == "pass"


def test_dynamic_shapes_are_a_warning_for_coreml_and_pools_must_be_2d():
    model = model_from_text("""
    <ir_version: 9, opset_import: ["" : 17]>
    g (float[N,3,8] x) => (float[N,3,4] y) { y = MaxPool<kernel_shape=[2], strides=[2]>(x) }""")
    ir.passes.common.ShapeInferencePass()(model)
    checks = {c.name: c for c in get_backend("coreml").check(model, load_target("ios"))}
    assert checks["fixed input shapes"].status == "warn"
    found = violations(model.graph, COREML_CAVEATS)
    assert [v["requirement"] for v in found] == ["only 2-D pooling (4-D input)"]
