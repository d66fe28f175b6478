from __future__ import annotations

import numpy as np
import onnx
import onnx.helper as oh
import pytest
from onnx import TensorProto

from irpass.errors import UnsupportedModelError
from irpass.ir import to_ir
from irpass.validate import validate_model_proto


def _model(nodes, inputs=("x",), outputs=("y",), initializers=(), functions=()):
    graph = oh.make_graph(
        nodes,
        "g",
        [oh.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in inputs],
        [oh.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in outputs],
        list(initializers),
    )
    return oh.make_model(
        graph,
        opset_imports=[oh.make_opsetid("", 17), oh.make_opsetid("f", 1)],
        functions=list(functions),
    )


def test_valid_graph_passes_and_reports_order() -> None:
    ordered = _model([oh.make_node("Relu", ["x"], ["a"]), oh.make_node("Neg", ["a"], ["y"])])
    assert validate_model_proto(ordered, "m") is False
    unordered = _model([oh.make_node("Neg", ["a"], ["y"]), oh.make_node("Relu", ["x"], ["a"])])
    assert validate_model_proto(unordered, "m") is True
    model = to_ir(unordered)  # accepted, and sorted so the checker is happy later
    assert [n.op_type for n in model.graph] == ["Relu", "Neg"]


@pytest.mark.parametrize(
    ("nodes", "fragment"),
    [
        (
            [
                oh.make_node("Add", ["x", "b"], ["a"], name="add"),
                oh.make_node("Relu", ["a"], ["b"], name="relu"),
                oh.make_node("Identity", ["a"], ["y"]),
            ],
            "cycle: node 'add' (Add) -> node 'relu' (Relu) -> node 'add' (Add)",
        ),
        (
            [
                oh.make_node("Add", ["x", "a"], ["a"], name="n"),
                oh.make_node("Identity", ["a"], ["y"]),
            ],
            "node 'n' (Add) reads its own output 'a'",
        ),
        ([oh.make_node("Add", ["x", "ghost"], ["y"])], "reads 'ghost', which no node"),
        (
            [oh.make_node("Relu", ["x"], ["y"]), oh.make_node("Neg", ["x"], ["y"], name="neg")],
            "value 'y' in the main graph has two producers: node '#0' (Relu) and node 'neg' (Neg)",
        ),
        ([oh.make_node("Relu", ["x"], ["x"])], "'x' in the main graph has two producers: a graph"),
        ([oh.make_node("Relu", ["x"], ["z"])], "graph output 'y' of the main graph is produced by"),
    ],
    ids=["cycle", "self-loop", "dangling", "two-producers", "input-produced", "output-unproduced"],
)
def test_malformed_graphs_name_the_culprit(nodes, fragment: str) -> None:
    with pytest.raises(UnsupportedModelError) as info:
        validate_model_proto(_model(nodes), "m.onnx")
    assert fragment in info.value.message and info.value.message.startswith("m.onnx: ")
    assert info.value.hint


def test_subgraphs_may_read_outer_values_but_not_unknown_ones() -> None:
    def model(name: str) -> onnx.ModelProto:
        body = oh.make_graph(
            [oh.make_node("Add", ["x", name], ["z"])],
            "b",
            [],
            [oh.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4])],
        )
        c = onnx.numpy_helper.from_array(np.array(True), "c")
        return _model(
            [oh.make_node("If", ["c"], ["y"], then_branch=body, else_branch=body)], initializers=[c]
        )

    assert validate_model_proto(model("x"), "m") is False
    with pytest.raises(UnsupportedModelError, match=r"subgraph '(then|else)_branch'.*reads 'w'"):
        validate_model_proto(model("w"), "m")


def test_subgraph_reading_a_later_outer_value_is_a_cycle() -> None:
    body = oh.make_graph(
        [oh.make_node("Identity", ["late"], ["z"])],
        "b",
        [],
        [oh.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4])],
    )
    c = onnx.numpy_helper.from_array(np.array(True), "c")
    nodes = [
        oh.make_node("If", ["c"], ["a"], then_branch=body, else_branch=body, name="if"),
        oh.make_node("Relu", ["a"], ["late"], name="relu"),
        oh.make_node("Identity", ["late"], ["y"]),
    ]
    with pytest.raises(UnsupportedModelError, match="cycle"):
        validate_model_proto(_model(nodes, initializers=[c]), "m")


def test_function_bodies_are_checked() -> None:
    function = oh.make_function(
        "f", "F", ["a"], ["b"], [oh.make_node("Add", ["a", "q"], ["b"])], [oh.make_opsetid("", 17)]
    )
    model = _model([oh.make_node("F", ["x"], ["y"], domain="f")], functions=[function])
    with pytest.raises(UnsupportedModelError, match=r"function f::F.*reads 'q'"):
        validate_model_proto(model, "m")


def test_weight_bytes_must_match_its_shape() -> None:
    w = onnx.numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    w.dims[:] = [4, 5]
    model = _model([oh.make_node("MatMul", ["x", "w"], ["y"])], initializers=[w])
    with pytest.raises(
        UnsupportedModelError, match=r"declares shape \[4, 5\] \(80 bytes\) but holds 64"
    ):
        validate_model_proto(model, "m")


def test_absurd_input_sizes() -> None:
    graph = oh.make_graph(
        [oh.make_node("Relu", ["x"], ["y"])],
        "g",
        [oh.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2**20, 2**12])],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    with pytest.raises(UnsupportedModelError, match=r"'x' declares shape \['n', 1048576, 4096\]"):
        validate_model_proto(oh.make_model(graph), "m")
