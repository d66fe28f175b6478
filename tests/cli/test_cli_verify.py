"""`irpass optimize` on the failure modes real models showed (issue 8): each as a small model.

Default `irpass optimize` must succeed (exit 0) and the output must equal the input on inputs
the model accepts.
"""

from __future__ import annotations

import json
import pathlib

import onnx
import onnx_ir as ir
import pytest

from irpass.cli import main
from irpass.ir import save_model
from irpass.metrics import compare_outputs
from irpass.testing import inputs_to_random_initializers, model_from_text
from irpass.verify import make_session, run_model
from irpass.verify.feeds import find_feeds

pytestmark = pytest.mark.usefixtures("test_passes")  # the t_* passes

EMBEDDING_2_ROWS = """
<ir_version: 8, opset_import: ["" : 17]>
g (int64[batch, seq] token_type_ids, float[2, 8] table) => (float[batch, seq, 8] y) {
    e = Gather <axis = 0> (table, token_type_ids)
    y = Relu (e)
}
"""

REFLECT_PAD_SAMPLES = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[batch, samples] audio, float[4, 1, 16] w) => (float[batch, 4, frames] y)
  <int64[4] pads = {0, 64, 0, 64}, int64[1] one = {1}> {
    padded = Pad <mode = "reflect"> (audio, pads)
    x = Unsqueeze (padded, one)
    y = Conv <strides = [8]> (x, w)
}
"""

RESIZE_SYMBOLIC_HW = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[batch, 3, height, width] images, float[8, 3, 3, 3] w1, float[8, 8, 3, 3] w2)
  => (float[batch, 16, h, w] y) <float[4] scales = {1, 1, 2, 2}> {
    a = Conv <strides = [2, 2], pads = [1, 1, 1, 1]> (images, w1)
    b = Conv <strides = [2, 2], pads = [1, 1, 1, 1]> (a, w2)
    up = Resize <mode = "nearest"> (b, , scales)
    y = Concat <axis = 1> (a, up)
}
"""

IF_ON_SCALAR = """
<ir_version: 8, opset_import: ["" : 17]>
g (int64 sr, float[batch, 16] x) => (float[batch, 16] y) <int64 k = {16000}> {
    is16k = Equal (sr, k)
    y = If (is16k) <
        then_branch = t () => (float[batch, 16] a) { a = Relu (x) },
        else_branch = e () => (float[batch, 16] b) {
            bad = Constant <value_ints = [7, 7]> ()
            b = Reshape (x, bad)
        }
    >
}
"""

WRONG_OUTPUT_RANK = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 6] x, float[6, 6] w) => (float[1, seqlen] y)
  <int64[1] zero = {0}, int64[1] one = {1}, int64[1] minus = {-1}> {
    h = MatMul (x, w)
    s = Shape (h)
    n = Slice (s, zero, one)
    c = Concat <axis = 0> (n, one, minus)
    y = Reshape (h, c)
}
"""

BN_FOLD = """
<ir_version: 8, opset_import: ["" : 13]>
g (float[N, 4, 8, 8] x, float[6, 4, 3, 3] W, float[6] B, float[6] sc, float[6] bi, float[6] mu,
   float[6] va, float[6, 1, 1] k, float[6, 1, 1] m) => (float[N, 6, 6, 6] y) {
    c = Conv (x, W, B)
    n = BatchNormalization (c, sc, bi, mu, va)
    s = Mul (n, k)
    y = Add (s, m)
}
"""

CASES = {
    "embedding_2_rows": (EMBEDDING_2_ROWS, ["table"]),
    "reflect_pad_samples": (REFLECT_PAD_SAMPLES, ["w"]),
    "resize_symbolic_hw": (RESIZE_SYMBOLIC_HW, ["w1", "w2"]),
    "if_on_scalar": (IF_ON_SCALAR, []),
    "wrong_output_rank": (WRONG_OUTPUT_RANK, ["w"]),
    "bn_fold": (BN_FOLD, ["W", "B", "sc", "bi", "mu", "va", "k", "m"]),
}


def _build(name: str) -> ir.Model:
    text, weights = CASES[name]
    model = inputs_to_random_initializers(model_from_text(text), weights, seed=7)
    if "va" in weights:  # variances must be positive
        value = model.graph.initializers["va"]
        value.const_value = ir.tensor(abs(value.const_value.numpy()) + 0.1, name="va")
    return model


def _assert_equal_models(a: pathlib.Path, b: pathlib.Path) -> None:
    model_a = ir.load(a)
    session_a, session_b = make_session(model_a), make_session(ir.load(b))
    plan = find_feeds(model_a, lambda feed: run_model(session_a, feed))
    assert len(plan.feeds) >= 2
    for feed, expected in zip(plan.feeds, plan.outputs, strict=True):
        assert compare_outputs(expected, run_model(session_b, feed)) == []


@pytest.mark.parametrize("name", sorted(CASES))
def test_default_optimize_succeeds_and_is_equal(name: str, tmp_path: pathlib.Path) -> None:
    source = tmp_path / f"{name}.onnx"
    save_model(_build(name), source)
    out = tmp_path / "out"
    assert main(["optimize", str(source), "-o", str(out)]) == 0
    _assert_equal_models(source, out / "model.onnx")
    report = json.loads((out / "report.json").read_text())
    assert not any("rolled back" in w for w in report["warnings"]), report["warnings"]
    assert report["final_verification"]["status"] == "equal"
    assert report["hygiene"] == []
    assert len(report["verification"]["shapes"]) >= 2
    assert report["after"]["file_bytes"] > 0 and report["before"]["file_bytes"] > 0
    if name == "bn_fold":  # folded weights replace the old ones: smaller, nothing unused
        saved = onnx.load(out / "model.onnx")
        assert [n.op_type for n in saved.graph.node] == ["Conv"]
        assert sorted(i.name for i in saved.graph.initializer) == ["B", "W"]
        assert report["after"]["weight_bytes"] < report["before"]["weight_bytes"]
    if name == "wrong_output_rank":
        corrected = [
            r for r in report["passes"] if r["stats"].get("output_declarations_corrected")
        ]
        assert corrected and corrected[0]["name"] == "infer_shapes"


def test_input_shapes_and_verify_data_flags(tmp_path: pathlib.Path) -> None:
    import numpy as np

    source = tmp_path / "m.onnx"
    save_model(_build("resize_symbolic_hw"), source)
    out = tmp_path / "a"
    argv = ["optimize", str(source), "-o", str(out), "--input-shapes", "images:1x3x32x48"]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    shapes = report["verification"]["shapes"]
    assert shapes[0]["images"] == [1, 3, 32, 48] and shapes[1]["images"] == [2, 3, 32, 48]
    # MACs are reported for those shapes (symbolic dims would count as 1), and say so
    assert report["cost_shapes"] == {"images": [1, 3, 32, 48]}
    macs = report["after"]["macs"]
    assert macs == report["before"]["macs"] and report["after"]["unknown_macs_nodes"] == 0
    out2 = tmp_path / "a2"
    argv = ["optimize", str(source), "-o", str(out2), "--input-shapes", "images:1x3x64x96"]
    assert main(argv) == 0
    report2 = json.loads((out2 / "report.json").read_text())
    assert report2["after"]["macs"] == 4 * macs
    data = tmp_path / "feeds.npz"
    np.savez(data, images=np.random.default_rng(0).standard_normal((3, 3, 16, 16), np.float32))
    out = tmp_path / "b"
    assert main(["optimize", str(source), "-o", str(out), "--verify-data", str(data)]) == 0
    shapes = json.loads((out / "report.json").read_text())["verification"]["shapes"]
    assert shapes[0]["images"][1:] == [3, 16, 16]


def test_unrunnable_model_error_names_the_input_and_the_flags(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[len] x) => (float[7] y) <int64[1] s = {7}> { y = Reshape (x, s) }
    """
    source = tmp_path / "m.onnx"
    save_model(model_from_text(text), source)
    assert main(["optimize", str(source), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "input 'x'" in err and "--input-shapes" in err and "--verify-data" in err
    assert not (tmp_path / "out").exists()


def test_failing_lossless_pass_is_rolled_back_with_exit_0_and_strict_stops(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "m.onnx"
    save_model(_build("bn_fold"), source)
    argv = ["optimize", str(source), "-o", str(tmp_path / "out"), "--passes"]
    assert main([*argv, "t_lying_lossless,canonicalize"]) == 0
    err = capsys.readouterr().err
    assert "t_lying_lossless" in err and "rolled back" in err and "reproducer" in err
    assert main([*argv, "t_lying_lossless,canonicalize", "--strict"]) == 2


def test_optimize_a_graph_deeper_than_the_recursion_limit(tmp_path: pathlib.Path) -> None:
    body = "\n".join(f"a{i + 1} = {'Relu' if i % 2 else 'Neg'}(a{i})" for i in range(1500))
    header = '<ir_version: 8, opset_import: ["" : 17]>\n'
    text = f"{header}g (float[2] a0) => (float[2] a1500) {{\n{body}\n}}"
    source = tmp_path / "deep.onnx"
    save_model(model_from_text(text), source)
    out = tmp_path / "out"
    assert main(["optimize", str(source), "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["final_verification"]["status"] == "equal"
