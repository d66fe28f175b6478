import pytest
from fusion_testlib import assert_rewrites, assert_unchanged, build, clone, op_types, run

from irpass.passes.fusion.fuse_activations import FuseActivationsPass
from irpass.testing import assert_equivalent

HEADER = '<ir_version: 9, opset_import: ["" : {opset}]>'
CONSTS = (
    "<float three = {3.0}, float zero = {0.0}, float six = {6.0}, float half = {0.5},"
    " float one = {1.0}, float two = {2.0}, float sqrt2 = {1.4142135}, float rsqrt2 = {0.70710677},"
    " float c = {0.044715}, float k = {0.7978846}, float p3 = {3.0}>"
)


def model(body: str, opset: int = 20):
    text = f"""
    {HEADER.format(opset=opset)}
    g (float[2,3,4] x) => (float[2,3,4] y) {CONSTS} {{
      {body}
    }}"""
    return build(text)


HARDSWISH_BODIES = [
    "a = Add(x, three)\n r = Clip(a, zero, six)\n m = Mul(x, r)\n y = Div(m, six)",
    "a = Add(three, x)\n r = Clip(a, zero, six)\n m = Mul(r, x)\n y = Div(m, six)",
    "a = Add(x, three)\n r = Clip(a, zero, six)\n h = Div(r, six)\n y = Mul(x, h)",
    "h = HardSigmoid<alpha=0.16666667, beta=0.5>(x)\n y = Mul(h, x)",
]


@pytest.mark.parametrize("body", HARDSWISH_BODIES)
def test_hardswish_forms_fuse(body):
    m = model(body, 14)
    reference = clone(m)
    modified, instance = run(FuseActivationsPass, m)
    assert modified and instance.stats["HardSwish"] == 1
    assert op_types(m) == ["HardSwish"]
    assert_equivalent(reference, m)


def test_relu6_over_six_becomes_hardsigmoid_below_opset_14():
    body = "a = Add(x, three)\n r = Clip(a, zero, six)\n y = Div(r, six)"
    assert_rewrites(FuseActivationsPass, model(body, 13), {"HardSigmoid": 1}, ["HardSigmoid"])


def test_opset_10_clip_attributes_are_read():
    body = "a = Add(x, three)\n r = Clip<min=0.0, max=6.0>(a)\n y = Div(r, six)"
    assert_rewrites(FuseActivationsPass, model(body, 10), {"HardSigmoid": 1}, ["HardSigmoid"])


ERF_BODIES = [
    "d = Div(x, sqrt2)\n e = Erf(d)\n o = Add(e, one)\n h = Mul(x, half)\n y = Mul(h, o)",
    "d = Mul(x, rsqrt2)\n e = Erf(d)\n o = Add(one, e)\n h = Mul(half, x)\n y = Mul(o, h)",
    "d = Div(x, sqrt2)\n e = Erf(d)\n o = Add(e, one)\n m = Mul(x, o)\n y = Mul(m, half)",
    "d = Div(x, sqrt2)\n e = Erf(d)\n o = Add(e, one)\n m = Mul(o, half)\n y = Mul(x, m)",
    "d = Div(x, sqrt2)\n e = Erf(d)\n o = Add(e, one)\n m = Mul(x, o)\n y = Div(m, two)",
]
TANH_BODIES = [
    "p = Pow(x, p3)\n q = Mul(p, c)\n s = Add(x, q)\n t = Mul(s, k)\n e = Tanh(t)\n"
    " o = Add(e, one)\n h = Mul(x, half)\n y = Mul(h, o)",
    "x2 = Mul(x, x)\n p = Mul(x2, x)\n q = Mul(c, p)\n s = Add(q, x)\n t = Mul(k, s)\n"
    " e = Tanh(t)\n o = Add(one, e)\n m = Mul(x, o)\n y = Mul(half, m)",
]


@pytest.mark.parametrize("body", ERF_BODIES)
def test_erf_gelu_forms_fuse(body):
    assert_rewrites(FuseActivationsPass, model(body), {"Gelu": 1}, ["Gelu"])


@pytest.mark.parametrize("body", TANH_BODIES)
def test_tanh_gelu_forms_fuse(body):
    m = model(body)
    assert_rewrites(FuseActivationsPass, m, {"Gelu": 1}, ["Gelu"])
    assert m.graph.node(0).attributes["approximate"].as_string() == "tanh"


def test_gelu_needs_opset_20():
    assert_unchanged(FuseActivationsPass, model(ERF_BODIES[0], 17))


def test_wrong_constants_are_not_fused():
    body = "a = Add(x, three)\n r = Clip(a, zero, three)\n m = Mul(x, r)\n y = Div(m, six)"
    assert_unchanged(FuseActivationsPass, model(body, 14))
    gelu = ERF_BODIES[0].replace("Mul(x, half)", "Mul(x, two)")
    assert_unchanged(FuseActivationsPass, model(gelu))
    other_x = "h = HardSigmoid<alpha=0.2, beta=0.5>(x)\n y = Mul(h, x)"
    assert_unchanged(FuseActivationsPass, model(other_x, 14))


def test_shape_1_constants_match_too():
    one_d = CONSTS.replace("float three", "float[1] three").replace("float six", "float[1] six")
    one_d = one_d.replace("float half", "float[1] half").replace("float sqrt2", "float[1] sqrt2")
    for body, opset, op in [(HARDSWISH_BODIES[0], 14, "HardSwish"), (ERF_BODIES[0], 20, "Gelu")]:
        text = f"""
        {HEADER.format(opset=opset)}
        g (float[2,3,4] x) => (float[2,3,4] y) {one_d} {{
          {body}
        }}"""
        assert_rewrites(FuseActivationsPass, build(text), {op: 1}, [op])


def test_shape_1_constants_are_refused_for_a_scalar_input():
    text = f"""
    {HEADER.format(opset=20)}
    g (float x) => (float[1] y) {CONSTS.replace("float half", "float[1] half")} {{
      {ERF_BODIES[0]}
    }}"""
    assert_unchanged(FuseActivationsPass, build(text))
