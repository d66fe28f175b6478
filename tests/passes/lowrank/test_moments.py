import numpy as np
import onnx
import pytest

from irpass.passes.lowrank.moments import MomentAccumulator, conv_patches, same_pads
from irpass.testing import run_ir


def ort_conv(x: np.ndarray, w: np.ndarray, **attrs) -> np.ndarray:
    node = onnx.helper.make_node("Conv", ["x", "w"], ["y"], **attrs)
    graph = onnx.helper.make_graph(
        [node], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(x.shape))],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(w, "w")],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    return run_ir(model, {"x": x})["y"]


@pytest.mark.parametrize(
    ("spatial", "kernel", "strides", "dilations", "pads"),
    [
        ((7, 6), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
        ((9, 8), (3, 2), (2, 1), (1, 2), (0, 1, 2, 0)),
        ((11,), (5,), (2,), (1,), (2, 2)),
        ((5, 5, 4), (3, 1, 2), (1, 2, 1), (1, 1, 1), (1, 0, 0, 1, 0, 1)),
    ],
)
@pytest.mark.parametrize("max_elements", [1 << 22, 50])
def test_patches_times_weight_is_the_convolution(spatial, kernel, strides, dilations, pads,
                                                 max_elements):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, *spatial)).astype(np.float32)
    w = rng.standard_normal((4, 3, *kernel)).astype(np.float32)
    expected = ort_conv(x, w, strides=list(strides), dilations=list(dilations), pads=list(pads))
    rows = np.concatenate(list(conv_patches(x, kernel, strides, dilations, pads,
                                            max_elements=max_elements)))
    got = rows @ w.reshape(4, -1).T  # (N * positions, C_out)
    np.testing.assert_allclose(
        got, np.moveaxis(expected, 1, -1).reshape(-1, 4), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_same_pads_match_onnx_auto_pad(mode):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 7, 8)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 4)).astype(np.float32)
    strides = [2, 3]
    expected = ort_conv(x, w, auto_pad=mode, strides=strides)
    pads = same_pads([7, 8], [3, 4], strides, [1, 1], mode)
    rows = np.concatenate(list(conv_patches(x, [3, 4], strides, [1, 1], pads)))
    np.testing.assert_allclose(rows @ w.reshape(3, -1).T,
                               np.moveaxis(expected, 1, -1).reshape(-1, 3), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("diagonal", [False, True])
def test_moments_stream_to_the_batch_statistics(diagonal):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((100, 5)) + 3
    acc = MomentAccumulator(5, diagonal=diagonal)
    for chunk in np.array_split(x, 7):
        acc.update(chunk)
    np.testing.assert_allclose(acc.mean, x.mean(0))
    full = x.T @ x / len(x)
    centered = np.cov(x.T, bias=True)
    if diagonal:
        full, centered = np.diag(full), np.diag(centered)
    np.testing.assert_allclose(acc.second_moment(centered=False), full)
    np.testing.assert_allclose(acc.second_moment(centered=True), centered, atol=1e-12)
    with pytest.raises(ValueError, match="features"):
        acc.update(np.ones((2, 4)))
