from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx_ir as ir
import pytest

from irpass.testing import model_from_text
from irpass.verify.fingerprint import TensorHasher, computation_fingerprint, structure_snapshot

TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 3] y) <float[4, 3] w = {1,2,3,4,5,6,7,8,9,10,11,12}> {
    a = Identity (x)
    dead = Relu (x)
    y = MatMul (a, w)
}
"""


def test_computation_fingerprint_ignores_dead_code_identity_and_names() -> None:
    model = model_from_text(TEXT)
    before = computation_fingerprint(model)
    graph = model.graph
    dead = next(n for n in graph if n.op_type == "Relu")
    graph.remove(dead, safe=True)
    identity = next(n for n in graph if n.op_type == "Identity")
    identity.outputs[0].replace_all_uses_with(identity.inputs[0])
    graph.remove(identity, safe=True)
    next(iter(graph)).name = "renamed"
    assert computation_fingerprint(model) == before


def test_computation_fingerprint_sees_weights_ops_and_in_place_changes() -> None:
    model = model_from_text(TEXT)
    array = np.arange(12, dtype=np.float32).reshape(4, 3)
    model.graph.initializers["w"].const_value = ir.tensor(array, name="w")
    hasher = TensorHasher()
    before = computation_fingerprint(model, hasher)
    array[0, 0] = 100.0  # mutated in place, same tensor object
    assert computation_fingerprint(model, hasher) != before
    matmul = next(n for n in model.graph if n.op_type == "MatMul")
    matmul.op_type = "Gemm"
    assert computation_fingerprint(model, hasher) != before


def test_structure_snapshot_sees_annotations_by_value_and_hashes_bfloat16() -> None:
    model = model_from_text(TEXT)
    hasher = TensorHasher()
    before = structure_snapshot(model, hasher)
    assert structure_snapshot(model, hasher) == before
    relu = next(n for n in model.graph if n.op_type == "Relu")
    relu.outputs[0].shape = ir.Shape(["N", 4])
    changed = structure_snapshot(model, hasher)
    assert changed != before
    assert changed.changed_nodes(before) == [relu]
    relu.outputs[0].shape = ir.Shape(["N", 4])  # an equal shape re-set is no change
    assert structure_snapshot(model, hasher) == changed
    bf16 = np.arange(6, dtype=np.float32).astype(ml_dtypes.bfloat16)
    assert len(hasher.content(ir.tensor(bf16))) == 32
    strings = ir.tensor(np.array(["a", "b"], dtype=object))
    assert hasher.content(strings) == hasher.content(strings)  # cached, sample re-checked


def test_structure_snapshot_sees_weights_changed_in_place() -> None:
    model = model_from_text(TEXT)
    array = np.arange(12, dtype=np.float32).reshape(4, 3)
    model.graph.initializers["w"].const_value = ir.tensor(array, name="w")
    hasher = TensorHasher()
    before = structure_snapshot(model, hasher)
    array[0, 0] = 100.0
    assert structure_snapshot(model, hasher) != before


def test_structure_snapshot_ignores_equal_reannotation() -> None:
    # Constant folding re-annotates values with new but equal Shape/type objects: no change
    # (compared by identity, a fixpoint around the folder never settled).
    model = model_from_text(TEXT)
    relu = next(n for n in model.graph if n.op_type == "Relu").outputs[0]
    relu.shape, relu.type = ir.Shape(["N", 4]), ir.TensorType(ir.DataType.FLOAT)
    before = structure_snapshot(model)
    relu.shape, relu.type = ir.Shape(["N", 4]), ir.TensorType(ir.DataType.FLOAT)
    assert structure_snapshot(model) == before
    relu.type = ir.TensorType(ir.DataType.DOUBLE)
    assert structure_snapshot(model) != before


def test_an_input_with_a_default_that_no_run_feeds_is_hashed_as_its_constant() -> None:
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N, 4] x, float[4, 3] w) => (float[N, 3] y)
      <float[4, 3] w = {1,2,3,4,5,6,7,8,9,10,11,12}>
    {
        y = MatMul (x, w)
    }
    """
    model = model_from_text(text)
    fed = frozenset({"x"})
    before, before_all = computation_fingerprint(model, fed=fed), computation_fingerprint(model)
    model.graph.inputs.pop()  # what inputs_to_initializers does: w is a plain weight now
    assert computation_fingerprint(model, fed=fed) == before
    assert computation_fingerprint(model) != before_all  # a run that feeds w would differ


FILL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2, 4] x) => (float[2, 3] y) <int64[2] s = {4, 3}> {
    w = ConstantOfShape <value = float[1] {0.02}> (s)
    y = MatMul (x, w)
}
"""


@pytest.mark.parametrize(
    "stored,same",
    [(np.full((4, 3), 0.02, np.float32), True), (np.full((4, 3), -0.0, np.float32), False)],
)
def test_a_constant_of_shape_and_its_materialized_weight_hash_alike(
    stored: np.ndarray, same: bool
) -> None:
    model = model_from_text(FILL)
    before = computation_fingerprint(model)
    node = next(iter(model.graph))
    matmul = next(n for n in model.graph if n.op_type == "MatMul")
    weight = ir.Value(name="w_folded", const_value=ir.tensor(stored, name="w_folded"))
    model.graph.register_initializer(weight)
    matmul.replace_input_with(1, weight)
    model.graph.remove(node, safe=True)
    assert (computation_fingerprint(model) == before) is same
    zero = model_from_text(FILL.replace("0.02", "0.0"))
    assert computation_fingerprint(zero) != computation_fingerprint(model)  # -0.0 is not 0.0


def test_fingerprint_of_a_graph_deeper_than_the_recursion_limit() -> None:
    # A quantized ShuffleNet (Q/DQ around every op) crashed verification with RecursionError.
    body = "\n".join(f"a{i + 1} = {'Relu' if i % 2 else 'Neg'}(a{i})" for i in range(3000))
    header = '<ir_version: 8, opset_import: ["" : 17]>\n'
    text = f"{header}g (float[2] a0) => (float[2] a3000) {{\n{body}\n}}"
    model = model_from_text(text)
    deeper = model_from_text(text.replace("a3000 = Relu(a2999)", "a3000 = Neg(a2999)"))
    assert computation_fingerprint(model) == computation_fingerprint(model_from_text(text))
    assert computation_fingerprint(model) != computation_fingerprint(deeper)
