from __future__ import annotations

import numpy as np
import onnx
import onnx.helper as oh
import onnx_ir as ir
import pytest
from onnx import TensorProto

from irpass.errors import UnsupportedModelError
from irpass.ir import to_ir
from irpass.validate import validate_model, validate_model_proto


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


# -- ir.Model built by a library caller ---------------------------------------------------


def _value(name: str, shape=(1, 4), dtype=ir.DataType.FLOAT) -> ir.Value:
    return ir.Value(name=name, shape=ir.Shape(list(shape)), type=ir.TensorType(dtype))


def _chain() -> tuple[ir.Model, ir.Node, ir.Node]:
    """x -> Relu 'relu' -> Neg 'neg' -> y."""
    x = _value("x")
    relu = ir.node("Relu", [x], name="relu")
    neg = ir.node("Neg", [relu.outputs[0]], name="neg")
    relu.outputs[0].name, neg.outputs[0].name = "a", "y"
    graph = ir.Graph([x], [neg.outputs[0]], nodes=[relu, neg], opset_imports={"": 17})
    return ir.Model(graph, ir_version=8), relu, neg


def test_ir_valid_model_passes() -> None:
    model, _, _ = _chain()
    assert validate_model(model) is False


def test_ir_cycle_names_the_nodes() -> None:
    model, relu, neg = _chain()
    relu.replace_input_with(0, neg.outputs[0])
    with pytest.raises(UnsupportedModelError, match=r"cycle: node 'relu' \(Relu\) -> node 'neg'"):
        validate_model(model, "caller")


def test_ir_self_loop() -> None:
    model, relu, _ = _chain()
    relu.replace_input_with(0, relu.outputs[0])
    with pytest.raises(UnsupportedModelError, match=r"node 'relu' \(Relu\) reads its own output"):
        validate_model(model)


def test_ir_dangling_input_found_by_identity_even_when_a_name_matches() -> None:
    model, _, neg = _chain()
    stray = _value("a")  # same name as relu's output, but no node produces this value
    neg.replace_input_with(0, stray)
    with pytest.raises(UnsupportedModelError, match=r"node 'neg' \(Neg\) .* reads 'a', which no"):
        validate_model(model)


def test_ir_two_values_with_one_name_are_two_producers() -> None:
    model, _relu, neg = _chain()
    neg.outputs[0].name = "a"
    model.graph.outputs[0] = neg.outputs[0]
    with pytest.raises(
        UnsupportedModelError, match=r"value 'a' in the main graph has two producers: node 'relu'"
    ):
        validate_model(model)


def test_ir_unproduced_graph_output() -> None:
    model, _, _ = _chain()
    model.graph.outputs.append(_value("z"))
    with pytest.raises(UnsupportedModelError, match="graph output 'z' of the main graph"):
        validate_model(model)


def test_ir_unsorted_nodes_are_reported_and_to_ir_sorts_them() -> None:
    model, relu, _neg = _chain()
    model.graph.remove(relu)
    model.graph.append(relu)
    assert validate_model(model) is True
    assert [n.name for n in to_ir(model).graph] == ["relu", "neg"]


def test_ir_subgraph_reads_outer_values_but_not_strays() -> None:
    def body(read: ir.Value) -> ir.Graph:
        node = ir.node("Identity", [read], name="inner")
        node.outputs[0].name = "z"
        return ir.Graph([], [node.outputs[0]], nodes=[node], name="b")

    def model(stray: bool) -> ir.Model:
        x, cond = _value("x"), _value("c", (), ir.DataType.BOOL)
        read = _value("x") if stray else x  # a stray only looks like the input
        if_node = ir.node(
            "If",
            [cond],
            attributes={"then_branch": body(read), "else_branch": body(read)},
            name="if",
        )
        if_node.outputs[0].name = "y"
        graph = ir.Graph([x, cond], [if_node.outputs[0]], nodes=[if_node], opset_imports={"": 17})
        return ir.Model(graph, ir_version=8)

    assert validate_model(model(stray=False)) is False
    with pytest.raises(UnsupportedModelError, match=r"subgraph '(then|else)_branch' of node 'if'"):
        validate_model(model(stray=True))


def test_ir_initializer_without_tensor_and_bad_external_length(tmp_path) -> None:
    model, _, neg = _chain()
    weight = _value("w")
    weight.const_value = ir.tensor(np.ones((1, 4), np.float32))
    model.graph.register_initializer(weight)
    weight.const_value = None  # onnx-ir checks on registration only
    add = ir.node("Add", [neg.outputs[0], weight], name="add")
    model.graph.append(add)
    model.graph.outputs[0] = add.outputs[0]
    with pytest.raises(UnsupportedModelError, match="initializer 'w' in the main graph holds no"):
        validate_model(model)
    (tmp_path / "w.bin").write_bytes(bytes(8))
    weight.const_value = ir.ExternalTensor(
        "w.bin", 0, 8, ir.DataType.FLOAT, shape=ir.Shape([1, 4]), name="w", base_dir=tmp_path
    )
    with pytest.raises(UnsupportedModelError, match=r"declares shape \[1, 4\] \(16 bytes\) but"):
        validate_model(model)


def test_ir_absurd_input_shape() -> None:
    model, _, _ = _chain()
    model.graph.inputs[0].shape = ir.Shape(["n", 2**20, 2**12])
    with pytest.raises(UnsupportedModelError, match=r"'x' declares shape \['n', 1048576, 4096\]"):
        validate_model(model)


def test_ir_function_bodies_are_checked() -> None:
    a = _value("a")
    add = ir.node("Add", [a, _value("q")], name="inside")
    function = ir.Function(
        "f",
        "F",
        "",
        graph=ir.Graph([a], [add.outputs[0]], nodes=[add], opset_imports={"": 17}),
        attributes=[],
    )
    model, _, _ = _chain()
    model.functions[function.identifier()] = function
    with pytest.raises(UnsupportedModelError, match=r"function f::F.*reads 'q'"):
        validate_model(model)
