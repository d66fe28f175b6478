from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from irpass.ir import load_model
from irpass.manager import PipelineRunner, RunOptions
from irpass.passes.legalize.downgrade_opset import DowngradeOpsetPass, downgrade_blockers
from irpass.testing import assert_equivalent, inputs_to_random_initializers, model_from_text
from models import zoo_paths


def _clone(model: ir.Model) -> ir.Model:
    return ir.from_proto(ir.to_proto(model))


def _downgrade(model: ir.Model, target: int = 13) -> DowngradeOpsetPass:
    p = DowngradeOpsetPass(DowngradeOpsetPass.Options(target=target))
    p(model)
    return p


def test_reduce_axes_input_and_split_num_outputs_become_opset_13_forms():
    m = model_from_text("""
    <ir_version: 10, opset_import: ["" : 20]>
    g (float[2,6,5] x) => (float[2,1,5] m, float[2,3,5] a, float[2,3,5] b, float[2,6,5] r) {
      axes = Constant<value = int64[1] {1}>()
      m = ReduceMean<keepdims=1>(x, axes)
      a, b = Split<axis=1, num_outputs=2>(x)
      r = Relu(x)
    }""")
    reference = _clone(m)
    p = _downgrade(m)
    assert m.opset_imports[""] == 13 and m.ir_version == 7
    assert p.stats["ReduceMean"] == 1 and p.stats["Split"] == 1 and p.stats["Relu"] == 1
    reduce = next(n for n in m.graph if n.op_type == "ReduceMean")
    assert reduce.attributes["axes"].as_ints() == (1,) and len(reduce.inputs) == 1
    onnx.checker.check_model(ir.to_proto(m), full_check=True)
    assert_equivalent(reference, m)


def test_attributes_added_later_are_dropped_at_their_default():
    m = model_from_text("""
    <ir_version: 10, opset_import: ["" : 20]>
    g (float[1,2,4,4] x, float[2] s, float[2] b, float[2] mu, float[2] v)
        => (float[1,2,8,8] y, float[1,2,16] z) {
      n = BatchNormalization<training_mode=0>(x, s, b, mu, v)
      scales = Constant<value = float[4] {1.0, 1.0, 2.0, 2.0}>()
      y = Resize<mode="nearest", antialias=0>(n, , scales)
      shape = Constant<value = int64[3] {1, 2, 16}>()
      z = Reshape<allowzero=0>(x, shape)
    }""")
    m = inputs_to_random_initializers(m, ["s", "b", "mu", "v"])
    m.graph.initializers["v"].const_value = ir.tensor(np.full(2, 0.5, np.float32), name="v")
    reference = _clone(m)
    _downgrade(m)
    assert m.opset_imports[""] == 13
    for node in m.graph:
        assert not {"training_mode", "antialias", "allowzero"} & set(node.attributes)
    onnx.checker.check_model(ir.to_proto(m), full_check=True)
    assert_equivalent(reference, m)


@pytest.mark.parametrize(
    "body, reason",
    [
        ("y = HardSwish(x)", "HardSwish does not exist at opset 13"),
        ("y = Reshape<allowzero=1>(x, shape)", "allowzero"),
        ('y = Pad<mode="wrap">(x, pads)', "wrap"),
    ],
)
def test_what_cannot_be_expressed_blocks_and_changes_nothing(body, reason):
    m = model_from_text(f"""
    <ir_version: 10, opset_import: ["" : 20]>
    g (float[2,4] x, int64[2] shape) => (float[2,4] y) {{
      pads = Constant<value = int64[4] {{0, 0, 0, 0}}>()
      {body}
    }}""")
    before = ir.to_proto(m).SerializeToString()
    assert any(reason in b for b in downgrade_blockers(m, 13))
    p = _downgrade(m)
    assert p.stats["blocked"] >= 1
    assert ir.to_proto(m).SerializeToString() == before


def test_model_at_or_below_the_target_is_left_alone():
    m = model_from_text("""
    <ir_version: 7, opset_import: ["" : 13]>
    g (float[2] x) => (float[2] y) { y = Relu(x) }""")
    assert DowngradeOpsetPass()(m).modified is False


def test_target_below_13_is_refused():
    with pytest.raises(ValueError, match="at least 13"):
        DowngradeOpsetPass.Options(target=11)


@pytest.mark.parametrize("name", ["resnet_cnn", "mobilenet_v2", "power_cnn1d", "unet", "mlp"])
def test_zoo_models_reach_opset_13_after_canonicalize_and_fuse(name):
    model = load_model(zoo_paths()[name])
    reference = _clone(model)
    PipelineRunner(
        "canonicalize,fuse,downgrade_opset(target=13)", options=RunOptions(verify="final")
    ).run(model)
    assert model.opset_imports[""] == 13
    onnx.checker.check_model(ir.to_proto(model), full_check=True)
    assert_equivalent(reference, model, tolerance_scale=2.0)


def test_shape_start_end_becomes_a_slice_of_the_shape():
    m = model_from_text("""
    <ir_version: 10, opset_import: ["" : 20]>
    g (float[N,3,8] x) => (int64[2] s, int64[6] t) {
      s = Shape<start=1>(x)
      full = Shape<start=0, end=-1>(x)
      u = Identity(full)
      t = Concat<axis=0>(u, u, u)
    }""")
    reference = _clone(m)
    _downgrade(m)
    assert m.opset_imports[""] == 13
    assert [n.op_type for n in m.graph].count("Slice") == 2
    assert [o.name for o in m.graph.outputs] == ["s", "t"]
    onnx.checker.check_model(ir.to_proto(m), full_check=True)
    assert_equivalent(reference, m, dim_values={"N": 2})
