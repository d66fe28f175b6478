"""The layout facts are checked numerically: scaling the weight along the axes the layout names
must equal scaling the op's output (or input) channels, for every op, group count and transpose
flag, through ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper

from irpass.analysis.layout import is_constant, weight_layout
from irpass.testing import run_ir


def _model(node: onnx.NodeProto, inputs: list[tuple[str, list[int]]], out_rank: int,
           initializers: dict[str, np.ndarray]) -> onnx.ModelProto:
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * out_rank)],
        [onnx.numpy_helper.from_array(v, k) for k, v in initializers.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(node: onnx.NodeProto, x: np.ndarray, w: np.ndarray, x_name: str = "x") -> np.ndarray:
    proto = _model(node, [(x_name, list(x.shape))], 4, {"w": w.astype(np.float32)})
    return run_ir(proto, {x_name: x.astype(np.float32)})["y"]


def _layout(node: onnx.NodeProto, w: np.ndarray, x_shape: list[int]):
    proto = _model(node, [("x", x_shape)], 4, {"w": w.astype(np.float32)})
    model = ir.from_proto(proto)
    return weight_layout(next(iter(model.graph)))


def _move(array: np.ndarray, axis: int, vector: np.ndarray) -> np.ndarray:
    shape = [1] * array.ndim
    shape[axis] = -1
    return array * vector.reshape(shape)


@pytest.mark.parametrize("op,group", [("Conv", 1), ("Conv", 2), ("Conv", 6),
                                      ("ConvTranspose", 1), ("ConvTranspose", 3)])
def test_conv_channel_scaling_matches_layout(op: str, group: int) -> None:
    rng = np.random.default_rng(group)
    c_in, m_out = 6, 12
    if op == "Conv":
        w = rng.standard_normal((m_out, c_in // group, 3, 3))
    else:
        w = rng.standard_normal((c_in, m_out // group, 3, 3))
    x = rng.standard_normal((2, c_in, 5, 5))
    node = helper.make_node(op, ["x", "w"], ["y"], group=group, pads=[1, 1, 1, 1])
    layout = _layout(node, w, list(x.shape))
    assert layout is not None and layout.groups == group
    assert layout.out_channels(w.shape) == m_out and layout.in_channels(w.shape) == c_in
    s_out = rng.uniform(0.5, 2.0, m_out)
    s_in = rng.uniform(0.5, 2.0, c_in)
    base = _run(node, x, w)
    scaled_out = _run(node, x, w * layout.per_out_channel(s_out, w.shape))
    np.testing.assert_allclose(scaled_out, _move(base, layout.act_out_axis, s_out), rtol=1e-4,
                               atol=1e-4)
    scaled_in = _run(node, x, w * layout.per_in_channel(s_in, w.shape))
    np.testing.assert_allclose(scaled_in, _run(node, _move(x, layout.act_in_axis, s_in), w),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("trans_a", [0, 1])
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("weight_side", [0, 1])
def test_gemm_channel_scaling_matches_layout(trans_a: int, trans_b: int, weight_side: int) -> None:
    rng = np.random.default_rng(trans_a * 4 + trans_b * 2 + weight_side)
    m, k, n = 3, 4, 5
    a = rng.standard_normal((k, m) if trans_a else (m, k))
    b = rng.standard_normal((n, k) if trans_b else (k, n))
    names = ["w", "x"] if weight_side == 0 else ["x", "w"]
    node = helper.make_node("Gemm", names, ["y"], transA=trans_a, transB=trans_b)
    weight, data = (a, b) if weight_side == 0 else (b, a)
    proto = _model(node, [("x", list(data.shape))], 2, {"w": weight.astype(np.float32)})
    layout = weight_layout(next(iter(ir.from_proto(proto).graph)))
    assert layout is not None and layout.weight_input == weight_side
    out_count = m if weight_side == 0 else n
    assert layout.out_channels(weight.shape) == out_count and layout.in_channels(weight.shape) == k

    def run(w: np.ndarray, x: np.ndarray) -> np.ndarray:
        p = _model(node, [("x", list(x.shape))], 2, {"w": w.astype(np.float32)})
        return run_ir(p, {"x": x.astype(np.float32)})["y"]

    s_out, s_in = rng.uniform(0.5, 2, out_count), rng.uniform(0.5, 2, k)
    base = run(weight, data)
    np.testing.assert_allclose(run(weight * layout.per_out_channel(s_out, weight.shape), data),
                               _move(base, layout.act_out_axis, s_out), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(run(weight * layout.per_in_channel(s_in, weight.shape), data),
                               run(weight, _move(data, layout.act_in_axis, s_in)), rtol=1e-4,
                               atol=1e-5)


@pytest.mark.parametrize("weight_side", [0, 1])
@pytest.mark.parametrize("weight_rank", [2, 3])
def test_matmul_channel_scaling_matches_layout(weight_side: int, weight_rank: int) -> None:
    rng = np.random.default_rng(weight_side + 2 * weight_rank)
    batch = (2,) if weight_rank == 3 else ()
    if weight_side == 1:
        weight, data = rng.standard_normal((*batch, 4, 5)), rng.standard_normal((2, 3, 4))
        names = ["x", "w"]
    else:
        weight, data = rng.standard_normal((*batch, 5, 4)), rng.standard_normal((2, 4, 3))
        names = ["w", "x"]
    node = helper.make_node("MatMul", names, ["y"])
    proto = _model(node, [("x", list(data.shape))], 3, {"w": weight.astype(np.float32)})
    layout = weight_layout(next(iter(ir.from_proto(proto).graph)))
    assert layout is not None and layout.weight_input == weight_side

    def run(w: np.ndarray, x: np.ndarray) -> np.ndarray:
        p = _model(node, [("x", list(x.shape))], 3, {"w": w.astype(np.float32)})
        return run_ir(p, {"x": x.astype(np.float32)})["y"]

    s_out = rng.uniform(0.5, 2, layout.out_channels(weight.shape))
    s_in = rng.uniform(0.5, 2, layout.in_channels(weight.shape))
    base = run(weight, data)
    np.testing.assert_allclose(run(weight * layout.per_out_channel(s_out, weight.shape), data),
                               _move(base, layout.act_out_axis, s_out), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(run(weight * layout.per_in_channel(s_in, weight.shape), data),
                               run(weight, _move(data, layout.act_in_axis, s_in)), rtol=1e-4,
                               atol=1e-5)


def test_no_layout_without_a_constant_operand_or_for_other_ops() -> None:
    node = helper.make_node("MatMul", ["x", "z"], ["y"])
    proto = _model(node, [("x", [2, 3]), ("z", [3, 4])], 2, {})
    matmul = next(iter(ir.from_proto(proto).graph))
    assert weight_layout(matmul) is None
    assert weight_layout(matmul, weight_input=1) is not None  # named explicitly
    assert not is_constant(matmul.inputs[1])
    relu = helper.make_node("Relu", ["x"], ["y"])
    proto = _model(relu, [("x", [2, 3])], 2, {})
    assert weight_layout(next(iter(ir.from_proto(proto).graph))) is None


def test_weight_from_a_constant_node_counts_as_constant() -> None:
    const = helper.make_node("Constant", [], ["w"], value=onnx.numpy_helper.from_array(
        np.ones((3, 4), np.float32)))
    matmul = helper.make_node("MatMul", ["x", "w"], ["y"])
    graph = helper.make_graph([const, matmul], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])])
    model = ir.from_proto(helper.make_model(graph))
    layout = weight_layout(list(model.graph)[1])
    assert layout is not None and (layout.out_axis, layout.in_axis) == (1, 0)


def test_wrong_vector_length_is_an_error() -> None:
    w = np.ones((4, 2, 3, 3))
    node = helper.make_node("Conv", ["x", "w"], ["y"], group=2)
    layout = _layout(node, w, [1, 4, 5, 5])
    assert layout is not None
    with pytest.raises(ValueError, match="output channel"):
        layout.per_out_channel(np.ones(3), w.shape)


@pytest.mark.parametrize("op", ["Conv", "ConvTranspose"])
def test_weight_that_does_not_split_into_groups_is_refused(op: str) -> None:
    # axis 0 (Conv: M, ConvTranspose: C) = 5 is not divisible by group = 2: a malformed model
    w = np.ones((5, 2, 3, 3))
    node = helper.make_node(op, ["x", "w"], ["y"], group=2)
    layout = _layout(node, w, [1, 4 if op == "Conv" else 5, 5, 5])
    assert layout is not None and not layout.groups_divide(w.shape)
    assert layout.groups_divide((4, 2, 3, 3))
    grouped = layout.per_in_channel if op == "Conv" else layout.per_out_channel
    count = layout.in_channels(w.shape) if op == "Conv" else layout.out_channels(w.shape)
    with pytest.raises(ValueError, match="does not split into 2 groups"):
        grouped(np.ones(count), w.shape)
