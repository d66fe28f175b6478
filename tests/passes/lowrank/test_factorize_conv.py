import itertools

import numpy as np
import pytest
from lowrank_testlib import (
    build,
    clone,
    macs,
    op_types,
    params,
    relative_error,
    rewrite_at_full_rank,
    run_pass,
    single_blas_thread,  # noqa: F401  (autouse fixture)
)

from irpass.passes.lowrank.factorize_conv import FactorizeConvPass, find_conv_candidates
from irpass.testing import assert_equivalent, run_ir

OPSET = '<ir_version: 8, opset_import: ["" : 17]>'


def conv_text(spatial=(9, 8), kernel=(3, 3), c_in=4, c_out=6, group=1, bias=True,
              attrs="pads=[1,1,1,1]", batch="2", out="float") -> str:
    b_decl, b_arg = (f", float[{c_out}] B", ", B") if bias else ("", "")
    x_shape = f"[{batch},{','.join(str(d) for d in (c_in, *spatial))}]"
    w_shape = [c_out, c_in // group, *kernel]
    attrs = ", ".join(a for a in (f"group={group}", attrs) if a)
    return f"""{OPSET}
    g (float{x_shape} x, float{w_shape} W{b_decl}) => ({out} y) {{
      y = Conv<{attrs}>(x, W{b_arg})
    }}"""


CONVS = {
    "3x3_pad1": {},
    "no_bias": {"bias": False},
    "grouped": {"group": 2, "c_out": 6},
    "strided_dilated": {"attrs": "strides=[2,1], dilations=[1,2], pads=[0,2,1,0]"},
    "same_upper": {"attrs": "auto_pad=\"SAME_UPPER\", strides=[2,2]"},
    "valid": {"attrs": "auto_pad=\"VALID\""},
    "1x1": {"kernel": (1, 1), "attrs": ""},
    "conv1d": {"spatial": (11,), "kernel": (5,), "attrs": "pads=[2,2]"},
    "conv3d": {"spatial": (4, 5, 6), "kernel": (3, 1, 2), "attrs": ""},
    "rect_kernel": {"kernel": (3, 5), "attrs": "pads=[1,2,1,2], strides=[1,2]"},
}


def conv_model(case: str, **extra):
    kwargs = {**CONVS[case], **extra}
    return build(conv_text(**kwargs), ["W"] + (["B"] if kwargs.get("bias", True) else []))


@pytest.mark.parametrize("case", list(CONVS))
@pytest.mark.parametrize("spatial_svd", [False, True])
def test_full_rank_is_exact(case, spatial_svd):
    model = conv_model(case)
    reference = clone(model)
    (cand,), _ = find_conv_candidates(model.graph, spatial=spatial_svd)
    two_d = len(CONVS[case].get("kernel", (3, 3))) == 2
    expect_spatial = spatial_svd and two_d and min(CONVS[case].get("kernel", (3, 3))) > 1 and \
        CONVS[case].get("group", 1) == 1
    assert cand.kind == ("conv_spatial" if expect_spatial else "conv")
    rewrite_at_full_rank(cand)
    assert op_types(model) == ["Conv", "Conv"]
    assert_equivalent(reference, model)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("spatial_svd", [False, True])
def test_correction_goes_into_the_bias(bias, spatial_svd):
    model = conv_model("3x3_pad1", bias=bias)
    reference = clone(model)
    (cand,), _ = find_conv_candidates(model.graph, spatial=spatial_svd)
    rows = cand.shape[1]
    correction = np.arange(rows, dtype=np.float64)[None] / 10
    rewrite_at_full_rank(cand, correction)
    assert op_types(model) == ["Conv", "Conv"]
    x = {"x": np.zeros((2, 4, 9, 8), np.float32)}
    shift = run_ir(model, x)["y"] - run_ir(reference, x)["y"]
    # Spatial SVD rows are (output channel, horizontal tap): a channel gets its taps' sum.
    per_channel = correction[0].reshape(6, -1).sum(axis=1)
    np.testing.assert_allclose(shift, np.broadcast_to(per_channel[None, :, None, None],
                                                      shift.shape), atol=1e-5)


def test_channel_split_shapes_params_and_macs_are_as_predicted():
    model = build(conv_text(spatial=(8, 8), c_in=16, c_out=32, out="float[2,32,8,8]"),
                  ["W", "B"])
    before_params, before_macs = params(model), macs(model)
    modified, p = run_pass(FactorizeConvPass, model, rank=8)
    assert modified and p.stats["factorized_conv"] == 1
    first, second = model.graph
    assert list(first.inputs[1].const_value.shape) == [8, 16, 3, 3]
    assert list(second.inputs[1].const_value.shape) == [32, 8, 1, 1]
    k = 16 * 9
    assert before_params - params(model) == 32 * k - 8 * (k + 32)
    positions = 2 * 8 * 8
    assert before_macs == positions * 32 * k
    assert macs(model) == positions * 8 * (k + 32)


def test_spatial_split_shapes_params_and_macs_are_as_predicted():
    model = build(conv_text(spatial=(8, 8), c_in=16, c_out=32, out="float[2,32,8,8]"),
                  ["W", "B"])
    before_params, before_macs = params(model), macs(model)
    modified, p = run_pass(FactorizeConvPass, model, rank=8, spatial=True)
    assert modified and p.stats["factorized_conv_spatial"] == 1
    first, second = model.graph
    assert list(first.inputs[1].const_value.shape) == [8, 16, 3, 1]
    assert list(second.inputs[1].const_value.shape) == [32, 8, 1, 3]
    assert before_params - params(model) == 32 * 16 * 9 - 8 * (16 * 3 + 32 * 3)
    # kx1 runs on all 8 input columns (no horizontal padding), 1xk on the 8 output columns.
    assert macs(model) == 2 * 8 * 8 * 8 * 16 * 3 + 2 * 8 * 8 * 32 * 8 * 3
    (layer,) = p.details["layers"]
    assert layer["mac_ratio"] == pytest.approx(macs(model) / before_macs, abs=1e-4)


def test_grouped_conv_is_factorized_per_group():
    model = build(conv_text(spatial=(6, 6), c_in=32, c_out=64, group=2), ["W", "B"])
    reference = clone(model)
    modified, p = run_pass(FactorizeConvPass, model, rank=8)
    assert modified
    first, second = model.graph
    assert first.attributes["group"].as_int() == 2 and second.attributes["group"].as_int() == 2
    assert list(first.inputs[1].const_value.shape) == [16, 16, 3, 3]
    assert list(second.inputs[1].const_value.shape) == [64, 8, 1, 1]
    assert p.details["layers"][0]["shape"] == [2, 32, 144]
    x = {"x": np.random.default_rng(0).standard_normal((2, 32, 6, 6)).astype(np.float32)}
    assert relative_error(reference, model, x) < 1


def test_error_decreases_with_rank():
    model = build(conv_text(spatial=(8, 8), c_in=16, c_out=32), ["W", "B"])
    x = {"x": np.random.default_rng(1).standard_normal((2, 16, 8, 8)).astype(np.float32)}
    errors = []
    for rank in (4, 8, 16, 24):
        candidate = clone(model)
        run_pass(FactorizeConvPass, candidate, rank=rank, round_to=4)
        errors.append(relative_error(model, candidate, x))
    assert all(e1 > e2 for e1, e2 in itertools.pairwise(errors))


@pytest.mark.parametrize(
    ("text", "weights", "reason"),
    [
        (conv_text(c_in=8, c_out=8, group=8), ["W", "B"], "depthwise"),
        (f"""{OPSET}
         g (float[1,8,5,5] x, float[8,16,3,3] W) => (float y) {{ y = ConvTranspose(x, W) }}""",
         ["W"], "ConvTranspose"),
        (conv_text(c_in=16, c_out=32), ["B"], "graph input"),
        (conv_text(c_in=16, c_out=32), ["W"], "bias 'B' is a graph input"),
        (f"""{OPSET}
         g (float[1,16,5,5] x, float[32,16,3,3] W) => (float y, float z) {{
           y = Conv(x, W)
           z = Conv(x, W)
         }}""", ["W"], "shared"),
    ],
)
def test_refusals_leave_the_model_unmodified(text, weights, reason):
    model = build(text, weights)
    before = op_types(model)
    modified, p = run_pass(FactorizeConvPass, model, rank=8)
    assert not modified and op_types(model) == before
    assert any(reason in r for r in p.details["skipped"].values()), p.details["skipped"]


def test_data_aware_beats_plain_on_smooth_images():
    rng = np.random.default_rng(2)
    # Smooth, correlated images: neighbouring pixels and channels move together.
    base = rng.standard_normal((96, 2, 10, 10))
    base = (base + np.roll(base, 1, 2) + np.roll(base, 1, 3) + np.roll(base, (1, 1), (2, 3)))
    x = np.concatenate([base] * 8, axis=1)[:, :16].astype(np.float32) + 0.5
    model = build(conv_text(spatial=(10, 10), c_in=16, c_out=32, batch="N"), ["W", "B"])
    errors = {}
    for mode in (True, False):
        candidate = clone(model)
        run_pass(FactorizeConvPass, candidate, calib={"x": x[:64]}, rank=8,
                        data_aware=mode)
        errors[mode] = relative_error(model, candidate, {"x": x[64:66]})
    assert errors[True] < 0.5 * errors[False]
