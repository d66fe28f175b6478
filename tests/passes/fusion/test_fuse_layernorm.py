import pytest
from fusion_testlib import assert_rewrites, assert_unchanged, build

from irpass.passes.fusion.fuse_layernorm import FuseLayerNormPass


def layernorm_text(
    opset=17, axes="[-1]", square="Pow(d, two)", norm="Div(d, s)", tail="y = Add(m, beta)",
    gamma_shape="[8]",
) -> str:
    if opset >= 18:
        axes_const = f"int64[{axes.count(',') + 1}] ax = {{{axes[1:-1]}}}, "
        rm = "ReduceMean(x, ax)", "ReduceMean(q, ax)"
    else:
        axes_const = ""
        rm = f"ReduceMean<axes={axes}>(x)", f"ReduceMean<axes={axes}>(q)"
    return f"""
    <ir_version: 9, opset_import: ["" : {opset}]>
    g (float[2,4,8] x, float{gamma_shape} gamma, float[8] beta) => (float[2,4,8] y)
      <{axes_const}float two = {{2.0}}, float eps = {{1e-5}}> {{
      mu = {rm[0]}
      d = Sub(x, mu)
      q = {square}
      var = {rm[1]}
      ve = Add(var, eps)
      s = Sqrt(ve)
      {"r = Reciprocal(s)" if "r)" in norm else ""}
      n = {norm}
      m = Mul(n, gamma)
      {tail}
    }}"""


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("square", ["Pow(d, two)", "Mul(d, d)"])
@pytest.mark.parametrize("norm", ["Div(d, s)", "Mul(d, r)"])
def test_layernorm_subgraph_fuses(opset, square, norm):
    model = build(layernorm_text(opset, square=square, norm=norm), ["gamma", "beta"])
    assert_rewrites(FuseLayerNormPass, model, {"LayerNormalization": 1}, ["LayerNormalization"])


def test_bias_first_and_scale_only_forms_fuse():
    model = build(layernorm_text(tail="y = Add(beta, m)"), ["gamma", "beta"])
    assert_rewrites(FuseLayerNormPass, model, {"LayerNormalization": 1}, ["LayerNormalization"])
    text = layernorm_text(tail="y = Identity(m)")
    model = build(text, ["gamma", "beta"])
    assert_rewrites(
        FuseLayerNormPass, model, {"LayerNormalization": 1}, ["LayerNormalization", "Identity"]
    )


def test_scalar_gamma_is_expanded_to_the_normalized_shape():
    model = build(layernorm_text(gamma_shape="[1]"), ["gamma", "beta"])
    assert_rewrites(FuseLayerNormPass, model, {"LayerNormalization": 1}, ["LayerNormalization"])
    assert tuple(model.graph.node(0).inputs[1].shape) == (8,)


def test_old_opset_and_non_trailing_axes_are_left_alone():
    assert_unchanged(FuseLayerNormPass, build(layernorm_text(opset=13), ["gamma", "beta"]))
    assert_unchanged(FuseLayerNormPass, build(layernorm_text(axes="[1]"), ["gamma", "beta"]))


def test_non_constant_gamma_stays_outside_the_fused_op():
    model = build(layernorm_text(), ["beta"])
    assert_rewrites(
        FuseLayerNormPass, model, {"LayerNormalization": 1}, ["LayerNormalization", "Mul", "Add"]
    )
