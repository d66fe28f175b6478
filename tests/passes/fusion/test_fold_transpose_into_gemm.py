import pytest
from fusion_testlib import assert_rewrites, assert_unchanged, build

from irpass.passes.fusion.fold_transpose_into_gemm import FoldTransposeIntoGemmPass


@pytest.mark.parametrize("trans_a", [0, 1])
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("perm", ["<perm=[1,0]>", ""])
def test_transposes_fold_into_flags(trans_a, trans_b, perm):
    a_shape = "[2,3]" if trans_a else "[3,2]"  # transposed by the Transpose node
    b_shape = "[3,5]" if trans_b else "[5,3]"
    text = f"""
    <ir_version: 8, opset_import: ["" : 13]>
    g (float{a_shape} a, float{b_shape} b, float[5] c) => (float[2,5] y) {{
      ta = Transpose{perm}(a)
      tb = Transpose{perm}(b)
      y = Gemm<transA={trans_a}, transB={trans_b}>(ta, tb, c)
    }}"""
    model = build(text)
    assert_rewrites(FoldTransposeIntoGemmPass, model, {"fold_transpose_into_gemm": 2}, ["Gemm"])


def test_transpose_with_other_users_is_left_alone():
    text = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[3,2] a, float[3,5] b) => (float[2,5] y, float[2,3] t) {
      t = Transpose<perm=[1,0]>(a)
      y = Gemm(t, b)
    }"""
    assert_unchanged(FoldTransposeIntoGemmPass, build(text))
