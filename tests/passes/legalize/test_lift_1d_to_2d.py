from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from irpass.passes.canonicalize.infer_shapes import InferShapesPass
from irpass.passes.legalize.lift_1d_to_2d import Lift1dTo2dPass
from irpass.testing import assert_equivalent, inputs_to_random_initializers, model_from_text
from irpass.verify.hygiene import unused_initializers


def _clone(model: ir.Model) -> ir.Model:
    return ir.from_proto(ir.to_proto(model))


def _ops(model: ir.Model) -> list[str]:
    return [n.op_type for n in model.graph]


def _run(model: ir.Model) -> tuple[bool, dict[str, int]]:
    InferShapesPass()(model)  # as in the target pipelines: ranks come from shape inference
    p = Lift1dTo2dPass()
    return p(model).modified, dict(p.stats)


@pytest.mark.parametrize(
    "attrs",
    [
        "",
        "<pads=[2,1], strides=[2]>",
        "<pads=[1,1], dilations=[2], group=2>",
        '<auto_pad="SAME_UPPER", strides=[3]>',
    ],
)
def test_conv1d_becomes_conv2d_and_stays_equal(attrs):
    group_in = 2 if "group" in attrs else 4
    m = model_from_text(f"""
    <ir_version: 9, opset_import: ["" : 17]>
    g (float[N,4,19] x, float[6,{group_in},3] w, float[6] b) => (float[N,6,?] y) {{
      y = Conv{attrs}(x, w, b)
    }}""")
    m = inputs_to_random_initializers(m, ["w", "b"])
    reference = _clone(m)
    modified, stats = _run(m)
    assert modified and stats["Conv"] == 1
    assert _ops(m) == ["Unsqueeze", "Conv", "Squeeze"]
    conv = m.graph.node(1)
    for name in ("strides", "dilations"):
        if name in conv.attributes:
            assert conv.attributes[name].as_ints()[0] == 1
    assert conv.inputs[1].const_value.shape == (6, group_in, 1, 3)
    assert_equivalent(reference, m, dim_values={"N": 3})


def test_conv_relu_pool_stack_stays_four_dimensional():
    m = model_from_text("""
    <ir_version: 9, opset_import: ["" : 17]>
    g (float[N,1,32] x, float[4,1,5] w) => (float[N,4,8] y) {
      c = Conv<pads=[2,2]>(x, w)
      r = Relu(c)
      p = MaxPool<kernel_shape=[2], strides=[2]>(r)
      q = AveragePool<kernel_shape=[2], strides=[2]>(p)
      y = Clip(q)
    }""")
    m = inputs_to_random_initializers(m, ["w"])
    reference = _clone(m)
    modified, stats = _run(m)
    assert modified
    assert stats == {"Conv": 1, "MaxPool": 1, "AveragePool": 1, "squeeze_pairs_removed": 2}
    # the Squeeze stops before the op producing the graph output (its name must stay)
    assert _ops(m) == ["Unsqueeze", "Conv", "Relu", "MaxPool", "AveragePool", "Squeeze", "Clip"]
    assert_equivalent(reference, m, dim_values={"N": 2})


def test_global_pool_and_runtime_weight_are_lifted():
    m = model_from_text("""
    <ir_version: 9, opset_import: ["" : 17]>
    g (float[2,3,10] x, float[5,3,3] w) => (float[2,5,1] y) {
      c = Conv(x, w)
      y = GlobalAveragePool(c)
    }""")
    reference = _clone(m)
    modified, stats = _run(m)
    assert modified and stats["GlobalAveragePool"] == 1 and stats["Conv"] == 1
    assert _ops(m).count("Unsqueeze") == 2  # data and the non-constant weight
    assert_equivalent(reference, m)


def test_conv_transpose_1d_gets_unit_height_attributes():
    m = model_from_text("""
    <ir_version: 9, opset_import: ["" : 17]>
    g (float[1,4,7] x, float[4,2,3] w) => (float[1,2,16] y) {
      y = ConvTranspose<strides=[2], output_padding=[1], pads=[0,0]>(x, w)
    }""")
    m = inputs_to_random_initializers(m, ["w"])
    reference = _clone(m)
    assert _run(m)[0]
    assert m.graph.node(1).attributes["output_padding"].as_ints() == (0, 1)
    assert_equivalent(reference, m)


def test_opset_11_uses_axes_attributes():
    m = model_from_text("""
    <ir_version: 7, opset_import: ["" : 11]>
    g (float[1,2,9] x) => (float[1,2,4] y) {
      y = MaxPool<kernel_shape=[2], strides=[2]>(x)
    }""")
    reference = _clone(m)
    assert _run(m)[0]
    assert m.graph.node(0).attributes["axes"].as_ints() == (2,)
    assert_equivalent(reference, m)


@pytest.mark.parametrize(
    "body, outputs",
    [
        ("y = Conv(x, w)", "float[1,2,4,4] y"),  # already 2-D
        ("y, i = MaxPool<kernel_shape=[2]>(x)", "float[1,2,3] y, int64[1,2,3] i"),  # indices used
    ],
)
def test_two_dimensional_ops_and_used_indices_are_left_alone(body, outputs):
    shape = "[1,2,6,6]" if "Conv" in body else "[1,2,4]"
    m = model_from_text(f"""
    <ir_version: 9, opset_import: ["" : 17]>
    g (float{shape} x, float[2,2,3,3] w) => ({outputs}) {{
      {body}
    }}""")
    InferShapesPass()(m)
    before = ir.to_proto(m).SerializeToString()
    assert _run(m) == (False, {})
    assert ir.to_proto(m).SerializeToString() == before


def test_graph_output_name_is_kept():
    m = model_from_text("""
    <ir_version: 9, opset_import: ["" : 17]>
    g (float[1,2,8] x) => (float[1,2,4] y) {
      y = MaxPool<kernel_shape=[2], strides=[2]>(x)
    }""")
    assert _run(m)[0]
    assert [o.name for o in m.graph.outputs] == ["y"]
    feeds = {"x": np.arange(16, dtype=np.float32).reshape(1, 2, 8)}
    from irpass.testing import run_ir

    assert run_ir(m, feeds)["y"].tolist() == [[[1, 3, 5, 7], [9, 11, 13, 15]]]


def test_replaced_weights_do_not_stay_behind_in_branches_or_outer_graphs():
    # silero-vad's OpenVINO export: Conv1d inside If branches reading weights of the branch
    # and of the main graph; the 1-D copies were left as unused initializers.
    m = model_from_text("""
    <ir_version: 9, opset_import: ["" : 17]>
    g (float[1,2,16] x, bool c, float[3,2,3] outer) => (float[1,3,14] y) {
      y = If(c) <then_branch = t () => (float[1,3,14] ty) <float[3,2,3] inner = {
            1.,2.,3.,4.,5.,6.,7.,8.,9.,1.,2.,3.,4.,5.,6.,7.,8.,9.}> {
            ty = Conv(x, inner)
         }, else_branch = e () => (float[1,3,14] ey) {
            ey = Conv(x, outer)
         }>
    }""")
    m = inputs_to_random_initializers(m, ["outer"])
    reference = _clone(m)
    modified, stats = _run(m)
    assert modified and stats["Conv"] == 2
    branches = next(iter(m.graph)).attributes
    then_branch = branches["then_branch"].as_graph()
    assert "inner" not in then_branch.initializers and "inner_2d" in then_branch.initializers
    assert "outer" not in m.graph.initializers
    assert unused_initializers(m) == []
    for cond in (True, False):
        feeds = {"x": np.random.default_rng(0).standard_normal((1, 2, 16), np.float32),
                 "c": np.array(cond)}
        assert_equivalent(reference, m, feeds=feeds)
