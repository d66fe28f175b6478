import pytest
from fusion_testlib import assert_rewrites, assert_unchanged, build

from irpass.passes.fusion.matmul_add_to_gemm import MatMulAddToGemmPass


@pytest.mark.parametrize("bias_shape", ["[5]", "[1,5]", "[2,5]", "[2,1]"])
@pytest.mark.parametrize("bias_first", [False, True])
def test_2d_matmul_add_becomes_gemm(bias_shape, bias_first):
    add = "Add(b, h)" if bias_first else "Add(h, b)"
    text = f"""
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[2,3] x, float[3,5] W, float{bias_shape} b) => (float[2,5] y) {{
      h = MatMul(x, W)
      y = {add}
    }}"""
    model = build(text, ["W", "b"])
    assert_rewrites(MatMulAddToGemmPass, model, {"matmul_add_to_gemm": 1}, ["Gemm"])


def test_non_constant_bias_is_fine():
    text = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[2,3] x, float[3,5] W, float[5] b) => (float[2,5] y) {
      h = MatMul(x, W)
      y = Add(h, b)
    }"""
    assert_rewrites(MatMulAddToGemmPass, build(text, ["W"]), {"matmul_add_to_gemm": 1}, ["Gemm"])


def test_batched_matmul_is_left_alone():
    text = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[4,2,3] x, float[3,5] W, float[5] b) => (float[4,2,5] y) {
      h = MatMul(x, W)
      y = Add(h, b)
    }"""
    assert_unchanged(MatMulAddToGemmPass, build(text, ["W", "b"]))


def test_bias_that_enlarges_the_result_is_left_alone():
    text = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[2,3] x, float[3,5] W, float[3,2,5] b) => (float[3,2,5] y) {
      h = MatMul(x, W)
      y = Add(h, b)
    }"""
    assert_unchanged(MatMulAddToGemmPass, build(text, ["W", "b"]))


def test_unknown_rank_and_integers_are_left_alone():
    text = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[2,3] x, float[3,5] W, float[5] b) => (float[2,5] y) {
      r = Relu(x)
      h = MatMul(r, W)
      y = Add(h, b)
    }"""
    assert_unchanged(MatMulAddToGemmPass, build(text, ["W", "b"]))
    ints = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (int32[2,3] x, int32[3,5] W, int32[5] b) => (int32[2,5] y) {
      h = MatMul(x, W)
      y = Add(h, b)
    }"""
    assert_unchanged(MatMulAddToGemmPass, build(ints, ["W", "b"]))
