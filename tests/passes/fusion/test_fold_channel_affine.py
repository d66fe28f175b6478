import numpy as np
import pytest
from fusion_testlib import assert_rewrites, assert_unchanged, build

from irpass.passes.fusion.fold_channel_affine import FoldChannelAffinePass

CONV = """
<ir_version: 8, opset_import: ["" : 13]>
g (float[1,4,5,5] x, float[6,{cin},3,3] W, float[6] B, float{cshape} c) => (float[1,6,5,5] y) {{
  h = Conv<group={group}, pads=[1,1,1,1]>(x, W, B)
  y = {expr}
}}"""


@pytest.mark.parametrize("arith", ["Mul", "Div", "Add", "Sub"])
@pytest.mark.parametrize("cshape", ["[6,1,1]", "[1,6,1,1]", "[1]"])
@pytest.mark.parametrize("group", [1, 2])
def test_per_channel_constant_after_conv_folds(arith, cshape, group):
    text = CONV.format(cin=4 // group, cshape=cshape, group=group, expr=f"{arith}(h, c)")
    model = build(text, ["W", "B", "c"], positive=["c"])
    assert_rewrites(FoldChannelAffinePass, model, {"after": 1}, ["Conv"])


def test_constant_first_mul_after_conv_folds():
    text = CONV.format(cin=4, cshape="[6,1,1]", group=1, expr="Mul(c, h)")
    assert_rewrites(FoldChannelAffinePass, build(text, ["W", "B", "c"]), {"after": 1}, ["Conv"])


@pytest.mark.parametrize("arith", ["Mul", "Add"])
@pytest.mark.parametrize("trans_b", [0, 1])
def test_per_feature_constant_after_gemm_folds(arith, trans_b):
    w = "[5,3]" if trans_b else "[3,5]"
    text = f"""
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[2,3] x, float{w} W, float[5] C, float[5] c) => (float[2,5] y) {{
      h = Gemm<transB={trans_b}, beta=0.5>(x, W, C)
      y = {arith}(h, c)
    }}"""
    assert_rewrites(FoldChannelAffinePass, build(text, ["W", "C", "c"]), {"after": 1}, ["Gemm"])


def test_scale_after_batched_matmul_folds():
    text = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[2,7,3] x, float[3,5] W, float[5] c) => (float[2,7,5] y) {
      h = MatMul(x, W)
      y = Div(h, c)
    }"""
    model = build(text, ["W", "c"], positive=["c"])
    assert_rewrites(FoldChannelAffinePass, model, {"after": 1}, ["MatMul"])


@pytest.mark.parametrize("group", [1, 2])
def test_per_input_channel_scale_before_padded_conv_folds(group):
    text = f"""
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1,4,5,5] x, float[4,1,1] c, float[6,{4 // group},3,3] W) => (float[1,6,5,5] y) {{
      s = Mul(x, c)
      y = Conv<group={group}, pads=[1,1,1,1]>(s, W)
    }}"""
    assert_rewrites(FoldChannelAffinePass, build(text, ["W", "c"]), {"before": 1}, ["Conv"])


def test_scale_before_matmul_and_gemm_fold():
    text = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[2,3] x, float[3] c, float[3,5] W, float[3] d, float[5,3] V)
      => (float[2,5] y, float[2,5] z) {
      s = Mul(x, c)
      y = MatMul(s, W)
      t = Div(x, d)
      z = Gemm<transB=1>(t, V)
    }"""
    model = build(text, ["W", "c", "d", "V"], positive=["d"])
    assert_rewrites(FoldChannelAffinePass, model, {"before": 2}, ["MatMul", "Gemm"])


def test_constant_varying_along_spatial_axes_is_not_folded():
    text = CONV.format(cin=4, cshape="[6,5,5]", group=1, expr="Mul(h, c)")
    assert_unchanged(FoldChannelAffinePass, build(text, ["W", "B", "c"]))


def test_constant_that_broadcasts_the_output_up_is_not_folded():
    text = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1,4,5,5] x, float[6,4,3,3] W, float[2,6,1,1] c) => (float[2,6,5,5] y) {
      h = Conv<pads=[1,1,1,1]>(x, W)
      y = Mul(h, c)
    }"""
    assert_unchanged(FoldChannelAffinePass, build(text, ["W", "c"]))


def test_add_before_padded_conv_is_not_folded():
    text = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1,4,5,5] x, float[4,1,1] c, float[6,4,3,3] W) => (float[1,6,5,5] y) {
      s = Add(x, c)
      y = Conv<pads=[1,1,1,1]>(s, W)
    }"""
    assert_unchanged(FoldChannelAffinePass, build(text, ["W", "c"]))


def test_division_by_zero_and_non_constant_scale_are_not_folded():
    text = CONV.format(cin=4, cshape="[6,1,1]", group=1, expr="Div(h, c)")
    zeros = build(text, ["W", "B"], values={"c": np.zeros((6, 1, 1), np.float32)})
    assert_unchanged(FoldChannelAffinePass, zeros)
    assert_unchanged(FoldChannelAffinePass, build(text, ["W", "B"]))


def test_weight_that_is_graph_input_or_shared_is_not_folded():
    text = CONV.format(cin=4, cshape="[6,1,1]", group=1, expr="Mul(h, c)")
    assert_unchanged(FoldChannelAffinePass, build(text, ["B", "c"]))
    shared = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1,4,5,5] x, float[6,4,3,3] W, float[6,1,1] c) => (float[1,6,3,3] y, float[1,6,3,3] z) {
      h = Conv(x, W)
      y = Mul(h, c)
      z = Conv(x, W)
    }"""
    assert_unchanged(FoldChannelAffinePass, build(shared, ["W", "c"]))


def test_integer_matmul_is_not_folded():
    text = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (int32[2,3] x, int32[3,5] W, int32[5] c) => (int32[2,5] y) {
      h = MatMul(x, W)
      y = Mul(h, c)
    }"""
    c = np.arange(5, dtype=np.int32)
    assert_unchanged(FoldChannelAffinePass, build(text, ["W"], values={"c": c}))


def test_grouped_conv_whose_weight_does_not_split_into_groups_is_not_folded():
    # malformed: 5 output channels in 2 groups; the per-input-channel scale has no well-defined
    # group per weight row, so the rule refuses instead of indexing past the scale vector
    text = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1,4,5,5] x, float[4,1,1] c, float[5,2,3,3] W) => (float[1,5,3,3] y) {
      s = Mul(x, c)
      y = Conv<group=2>(s, W)
    }"""
    assert_unchanged(FoldChannelAffinePass, build(text, ["W", "c"], positive=["c"]))
