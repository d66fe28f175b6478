import numpy as np
import onnx_ir as ir
from quant_testlib import build, gaussian_source, run_quantize

from irpass.metrics import sqnr_db
from irpass.passes.quantization.equalize import cross_layer_equalize, smooth_quant
from irpass.passes.quantization.int8 import element_types
from irpass.passes.quantization.plan import make_plan, name_nodes
from irpass.passes.quantization.rules import ORT
from irpass.testing import assert_equivalent, run_ir

SEPARABLE = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N,8,8,8] x, float[8,1,3,3] dw, float[8] db, float[16,8,1,1] pw, float[16] pb)
  => (float[N,16,8,8] y) {
  d = Conv<group=8, pads=[1,1,1,1]>(x, dw, db)
  r = Relu(d)
  y = Conv(r, pw, pb)
}"""


def uneven_separable() -> ir.Model:
    model = build(SEPARABLE, ["dw", "db", "pw", "pb"])
    # channel scales spread over three decades that the next layer undoes (as folded BatchNorm
    # leaves them): the float function is ordinary, a per-tensor int8 grid is not
    spread = np.geomspace(0.01, 10.0, 8, dtype=np.float32)
    weights = model.graph.initializers
    dw = weights["dw"].const_value.numpy() * spread.reshape(8, 1, 1, 1)
    db = weights["db"].const_value.numpy() * spread
    pw = weights["pw"].const_value.numpy() / spread.reshape(1, 8, 1, 1)
    for name, array in (("dw", dw), ("db", db), ("pw", pw)):
        weights[name].const_value = ir.tensor(array.astype(np.float32), name=name)
    return model


def weight_ranges(model: ir.Model, name: str, axis: int) -> np.ndarray:
    conv = next(n for n in model.graph if n.name == name)
    weight = ir.convenience.get_const_tensor(conv.inputs[1]).numpy()
    reduce = tuple(i for i in range(weight.ndim) if i != axis)
    return np.abs(weight).max(axis=reduce)


def test_cle_is_float_equivalent_and_balances_the_ranges():
    model = uneven_separable()
    name_nodes(model.graph)
    reference = model.clone()
    assert cross_layer_equalize(model) == 1
    assert_equivalent(reference, model, dim_values={"N": 2})
    np.testing.assert_allclose(
        weight_ranges(model, "Conv_0", 0), weight_ranges(model, "Conv_2", 1), rtol=1e-5
    )


def test_cle_recovers_per_tensor_int8_of_a_depthwise_separable_net():
    source = gaussian_source({"x": (4, 8, 8, 8)})
    feed = next(iter(source()))
    results = {}
    for equalize in ("off", "on"):
        model = uneven_separable()
        reference = model.clone()
        pass_ = run_quantize(
            model,
            source,
            f"per_channel=false,equalize={equalize},max_drop=none,never_slower=false",
        )
        results[equalize] = sqnr_db(run_ir(reference, feed)["y"], run_ir(model, feed)["y"])
        assert pass_.stats["equalized_pairs"] == (1 if equalize == "on" else 0)
    assert results["on"] > results["off"] + 6.0


def test_cle_leaves_relu6_pairs_alone():
    relu6 = (
        "lo = Constant<value_float=0.0>()\n  hi = Constant<value_float=6.0>()\n"
        "  r = Clip(d, lo, hi)"
    )
    model = build(SEPARABLE.replace("r = Relu(d)", relu6), ["dw", "db", "pw", "pb"])
    assert cross_layer_equalize(model) == 0


LAYERNORM = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N,S,16] x, float[16] gamma, float[16] beta, float[16,32] wq, float[16,32] wk)
  => (float[N,S,32] q, float[N,S,32] k) {
  n = LayerNormalization<axis=-1>(x, gamma, beta)
  q = MatMul(n, wq)
  k = MatMul(n, wk)
}"""


def test_smoothquant_folds_into_the_norm_and_both_readers():
    model = build(LAYERNORM, ["gamma", "beta", "wq", "wk"])
    gamma = model.graph.initializers["gamma"].const_value.numpy().copy()
    gamma[3] = 40.0  # one loud channel, as in transformer layer norms
    model.graph.initializers["gamma"].const_value = ir.tensor(gamma, name="gamma")
    name_nodes(model.graph)
    reference = model.clone()
    plan = make_plan(model, ORT, dtypes=element_types(model))
    source = gaussian_source({"x": (4, 5, 16)})
    stats = {}
    assert smooth_quant(model, plan, source, 0.5, stats) == 1
    assert_equivalent(reference, model, dim_values={"N": 2, "S": 3}, tolerance_scale=10)
    norm = next(n for n in model.graph if n.op_type == "LayerNormalization")
    new_gamma = ir.convenience.get_const_tensor(norm.inputs[1]).numpy()
    assert abs(new_gamma[3]) < 40.0 / 2  # the loud channel moved into the weights


def test_smoothquant_refuses_a_producer_it_cannot_fold_into():
    text = LAYERNORM.replace("n = LayerNormalization<axis=-1>(x, gamma, beta)", "n = Sigmoid(x)")
    model = build(text, ["gamma", "beta", "wq", "wk"])
    name_nodes(model.graph)
    plan = make_plan(model, ORT, dtypes=element_types(model))
    assert smooth_quant(model, plan, gaussian_source({"x": (4, 5, 16)}), 0.5, {}) == 0


def test_smoothquant_option_runs_inside_the_pass():
    model = build(LAYERNORM, ["gamma", "beta", "wq", "wk"])
    pass_ = run_quantize(
        model,
        gaussian_source({"x": (4, 5, 16)}),
        "smooth_quant=0.5,max_drop=none,never_slower=false",
    )
    assert pass_.stats["smoothed_inputs"] == 1 and pass_.stats["quantized_layers"] == 2


def test_cle_leaves_a_weight_the_user_may_override_alone_and_quantize_still_plans():
    # a weight that is also a graph input (a default the caller may replace) is not a
    # constant: CLE used to rewrite it into a private initializer, after which quantize
    # planned a layer it had not calibrated (KeyError: no calibrated range; found by fuzzing)
    model = uneven_separable()
    dw = model.graph.initializers["dw"]
    default = dw.const_value.numpy().copy()
    model.graph.inputs.append(dw)
    source = gaussian_source({"x": (4, 8, 8, 8)})
    pass_ = run_quantize(model, source, "rules=nnapi,per_channel=false,never_slower=false")
    assert dw in model.graph.inputs
    np.testing.assert_array_equal(dw.const_value.numpy(), default)
    first = next(n for n in model.graph if n.op_type == "Conv" and n.inputs[1] is dw)
    assert first.attributes.get_int("group") == 8
    assert pass_.stats.get("equalized_pairs", 0) == 0


def test_undone_rescaling_keeps_the_opset_imports():
    from irpass.passes.quantization.int8 import _restore

    model = uneven_separable()
    snapshot = model.clone()
    cross_layer_equalize(model)
    _restore(model, snapshot)
    assert model.opset_imports == {"": 17}
    assert model.graph is snapshot.graph
