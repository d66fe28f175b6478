import pytest
from fusion_testlib import assert_rewrites, assert_unchanged, build

from irpass.passes.fusion.fold_pad import FoldPadPass


@pytest.mark.parametrize("conv_pads", ["[0,0,0,0]", "[1,0,1,2]"])
def test_zero_pad_folds_into_conv(conv_pads):
    text = f"""
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1,2,5,5] x, float[3,2,3,3] W) => (float[1,3,Y,Z] y)
      <int64[8] p = {{0, 0, 1, 2, 0, 0, 2, 1}}> {{
      t = Pad(x, p)
      y = Conv<pads={conv_pads}>(t, W)
    }}"""
    model = build(text, ["W"])
    assert_rewrites(FoldPadPass, model, {"fold_pad": 1}, ["Conv"])


def test_opset_10_pad_attribute_form_folds_into_average_pool():
    text = """
    <ir_version: 5, opset_import: ["" : 10]>
    g (float[1,2,5,5] x) => (float[1,2,6,6] y) {
      t = Pad<pads=[0, 0, 1, 1, 0, 0, 1, 1]>(x)
      y = AveragePool<kernel_shape=[2,2]>(t)
    }"""
    assert_rewrites(FoldPadPass, build(text), {"fold_pad": 1}, ["AveragePool"])


@pytest.mark.parametrize(
    "pad, consumer",
    [
        ("Pad<mode=\"reflect\">(x, p)", "Conv(t, W)"),
        ("Pad(x, p, v)", "Conv(t, W)"),
        ("Pad(x, pc)", "Conv(t, W)"),
        ("Pad(x, p)", "MaxPool<kernel_shape=[2,2]>(t)"),
        ("Pad(x, p)", "AveragePool<kernel_shape=[2,2], pads=[1,1,1,1]>(t)"),
        ("Pad(x, p)", "AveragePool<kernel_shape=[2,2], ceil_mode=1>(t)"),
        ("Pad(x, p)", "Conv<auto_pad=\"SAME_UPPER\">(t, W)"),
    ],
)
def test_inexact_pad_folds_are_refused(pad, consumer):
    text = f"""
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1,2,5,5] x, float[2,2,3,3] W) => (float[1,2,A,B] y)
      <int64[8] p = {{0, 0, 1, 1, 0, 0, 1, 1}}, int64[8] pc = {{0, 1, 1, 1, 0, 0, 1, 1}},
       float v = {{1.0}}> {{
      t = {pad}
      y = {consumer}
    }}"""
    assert_unchanged(FoldPadPass, build(text, ["W"]))


def test_pad_as_large_as_the_pool_kernel_is_refused():
    # found by the property test: AveragePool requires pads < kernel_shape
    text = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1,1,3,3] x) => (float[1,1,A,B] y) <int64[8] p = {0, 0, 0, 0, 0, 0, 0, 2}> {
      t = Pad(x, p)
      y = AveragePool<kernel_shape=[2,2]>(t)
    }"""
    assert_unchanged(FoldPadPass, build(text))
