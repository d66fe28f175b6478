"""Training-free repair: im2col matches ONNX Runtime's Conv, the fold and the refit reduce the
reconstruction error they report, layers that cannot be refitted say why."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from pruning_testlib import build

from irpass.context import PassContext
from irpass.data import ArraySource
from irpass.passes.pruning.prune import PruneOptions, PrunePass
from irpass.passes.pruning.repair import conv_patches
from irpass.testing import model_from_text, run_ir

HEAD = '<ir_version: 8, opset_import: ["" : 17]>\n'


@pytest.mark.parametrize(
    "attrs",
    [
        "pads = [1, 1, 1, 1]",
        "strides = [2, 2]",
        "dilations = [2, 2], pads = [2, 2, 2, 2]",
        'auto_pad = "SAME_UPPER", strides = [2, 2]',
        'auto_pad = "SAME_LOWER"',
        'auto_pad = "VALID", strides = [1, 2]',
        "pads = [0, 1, 2, 0]",
    ],
)
def test_conv_patches_reproduce_the_convolution(attrs: str) -> None:
    text = (
        HEAD
        + f"""
    g (float[2, 3, 7, 6] x, float[4, 3, 3, 3] w) => (float[2, 4, A, B] y) {{
        y = Conv <{attrs}> (x, w)
    }}
    """
    )
    model = model_from_text(text)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    expected = run_ir(model, {"x": x, "w": w})["y"]
    node = next(iter(model.graph))
    rows = conv_patches(x.astype(np.float64), node, (3, 3))
    got = (rows @ w.reshape(4, -1).T.astype(np.float64)).reshape(
        2, expected.shape[2], expected.shape[3], 4
    )
    np.testing.assert_allclose(got.transpose(0, 3, 1, 2), expected, rtol=1e-4, atol=1e-4)


def test_conv_patches_in_one_dimension() -> None:
    text = (
        HEAD
        + """
    g (float[2, 3, 9] x, float[4, 3, 5] w) => (float[2, 4, L] y) {
        y = Conv <pads = [2, 2], strides = [2]> (x, w)
    }
    """
    )
    model = model_from_text(text)
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 3, 9)), rng.standard_normal((4, 3, 5))
    expected = run_ir(model, {"x": x.astype(np.float32), "w": w.astype(np.float32)})["y"]
    rows = conv_patches(x, next(iter(model.graph)), (5,))
    got = (rows @ w.reshape(4, -1).T).reshape(2, -1, 4).transpose(0, 2, 1)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


CNN = (
    HEAD
    + """
g (float[N, 3, 8, 8] x, float[16, 3, 3, 3] w1, float[16] b1, float[8, 16, 3, 3] w2, float[8] b2,
   float[8, 128] wf) => (float[N, 8] y) {
    a = Conv <pads = [1, 1, 1, 1]> (x, w1, b1)
    r = Relu (a)
    c = Conv <pads = [1, 1, 1, 1], strides = [2, 2]> (r, w2, b2)
    s = Relu (c)
    f = Flatten (s)
    y = Gemm <transB = 1> (f, wf)
}
"""
)


def _calibration(count: int = 64) -> ArraySource:
    rng = np.random.default_rng(3)
    return ArraySource({"x": rng.standard_normal((count, 3, 8, 8)).astype(np.float32)})


def test_repair_reports_smaller_errors_after_each_step() -> None:
    model = build(CNN, ["w1", "b1", "w2", "b2", "wf"])
    pass_ = PrunePass(
        PruneOptions(ratio=0.5, scope="local", round_to=1),
        PassContext(calibration_data=_calibration()),
    )
    assert pass_(model).modified
    report = {entry["node"].split()[0]: entry for entry in pass_.details["repair"]}
    assert set(report) == {"Conv", "Gemm"}
    for entry in report.values():
        assert entry["status"] == "refit"
        assert entry["error_refit"] <= entry["error_bias_fold"] <= entry["error_pruned"]
        assert entry["error_refit"] < entry["error_pruned"]
        assert entry["samples"] > 0
    assert model.graph.initializers["wf"].const_value.shape == (8, 64)
    assert len(next(n for n in model.graph if n.op_type == "Gemm").inputs) == 3  # bias added


def test_repair_brings_outputs_closer_to_the_original() -> None:
    reference = build(CNN, ["w1", "b1", "w2", "b2", "wf"])
    errors = []
    for repair in (False, True):
        model = reference.clone()
        PrunePass(
            PruneOptions(ratio=0.5, scope="local", round_to=1, repair=repair),
            PassContext(calibration_data=_calibration(256)),
        )(model)
        feeds = {"x": np.random.default_rng(9).standard_normal((32, 3, 8, 8)).astype(np.float32)}
        expected = run_ir(reference, feeds)["y"]
        errors.append(float(np.mean((run_ir(model, feeds)["y"] - expected) ** 2)))
    assert errors[1] < 0.7 * errors[0]


def test_bias_fold_recovers_a_removed_constant_channel_exactly() -> None:
    text = (
        HEAD
        + """
    g (float[N, 4] x, float[4, 6] w1, float[6] b1, float[6, 3] w2, float[3] b2)
       => (float[N, 3] y) {
        h = Gemm (x, w1, b1)
        y = Gemm (h, w2, b2)
    }
    """
    )
    model = build(text, ["w1", "b1", "w2", "b2"])
    w1 = model.graph.initializers["w1"].const_value.numpy().copy()
    w1[:, :3] = 0.0  # hidden units 0-2 are constant (their bias): the smallest ones
    model.graph.initializers["w1"].const_value = ir.tensor(w1, name="w1")
    reference = model.clone()
    PrunePass(
        PruneOptions(ratio=0.5, scope="local", round_to=1, ridge=0.0),
        PassContext(
            calibration_data=ArraySource(
                {"x": np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)}
            )
        ),
    )(model)
    assert model.graph.initializers["w2"].const_value.shape == (3, 3)
    feeds = {"x": np.random.default_rng(5).standard_normal((16, 4)).astype(np.float32)}
    np.testing.assert_allclose(run_ir(model, feeds)["y"], run_ir(reference, feeds)["y"], atol=1e-4)


def test_layers_that_cannot_be_refitted_say_why() -> None:
    text = (
        HEAD
        + """
    g (float[N, 3, 8, 8] x, float[16, 3, 3, 3] w1, float[4, 16, 1, 1] w2) => (float[N, 4, 8, 8] y) {
        a = Conv <pads = [1, 1, 1, 1]> (x, w1)
        r = Relu (a)
        c1 = Conv (r, w2)
        c2 = Conv (r, w2)
        y = Add (c1, c2)
    }
    """
    )
    model = build(text, ["w1", "w2"])
    pass_ = PrunePass(
        PruneOptions(ratio=0.5, scope="local", round_to=1),
        PassContext(calibration_data=_calibration(16)),
    )
    assert pass_(model).modified
    statuses = [e["status"] for e in pass_.details["repair"]]
    assert statuses == ["skipped: weight shared with another node"] * 2
    assert pass_.stats["layers_not_refit"] == 2
    run_ir(model, {"x": np.zeros((2, 3, 8, 8), np.float32)})
