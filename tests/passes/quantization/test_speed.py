from collections.abc import Mapping

import numpy as np
import onnx_ir as ir
from quant_testlib import build, gaussian_source, op_counts

from irpass.passes.quantization import speed
from irpass.passes.quantization.calibrate import calibrate
from irpass.passes.quantization.int8 import Int8Builder, element_types
from irpass.passes.quantization.plan import make_plan, name_nodes
from irpass.passes.quantization.rules import ORT

NET = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N,4,8,8] x, float[8,4,3,3] w1, float[8,8,3,3] w2, float[8,8,1,1] w3)
  => (float[N,8,8,8] y) {
  a = Conv<pads=[1,1,1,1]>(x, w1)
  r = Relu(a)
  b = Conv<pads=[1,1,1,1]>(r, w2)
  s = Relu(b)
  y = Conv(s, w3)
}"""


class FakeProbe:
    """Returns scripted ratios; whole-model ratios by the number of float layers."""

    def __init__(
        self,
        layers: Mapping[str, float],
        whole: Mapping[int, float],
        tolerance: float = 0.0,
        noise: float = 0.0,
    ) -> None:
        self.layers = layers
        self.whole = whole
        self.tolerance = tolerance
        self.noise = noise
        self.calls: list[tuple[str, ...]] = []

    def ratios(self, baseline, candidates, feeds, *, whole):
        out = {}
        for name, model in candidates.items():
            float_convs = [
                n.name
                for n in model.graph
                if n.op_type == "Conv" and n.inputs[1].producer() is None
            ]
            if whole:
                self.calls.append(tuple(sorted(float_convs)))
                ratio = self.whole[len(float_convs)]
                # without a tolerance every difference is real
                real = not self.tolerance or abs(ratio - 1.0) > self.tolerance
                out[name] = speed.Timing(ratio, real, self.tolerance, self.noise)
            else:
                conv = next(n for n in model.graph if n.op_type == "Conv")
                out[name] = speed.Timing(self.layers[conv.name], True)
        return out


def setup():
    model = build(NET, ["w1", "w2", "w3"])
    for index, node in enumerate(n for n in model.graph if n.op_type == "Conv"):
        node.name = f"conv{index}"
    name_nodes(model.graph)
    source = gaussian_source({"x": (2, 4, 8, 8)})
    names = make_plan(model, ORT, dtypes=element_types(model)).activations()
    calibration = calibrate(model, names, source)
    ranges = calibration.ranges("minmax", levels=256)
    builder = Int8Builder(model, ORT, frozenset(), True, element_types(model), ranges)
    return builder, source, calibration


def test_layer_models_time_the_fused_unit_with_integer_neighbours():
    builder, _, calibration = setup()
    plan = builder.plan()
    middle = plan.nodes["conv1"]
    float_layer, quant_layer, float_feeds, quant_feeds = speed.layer_models(
        builder, plan, middle, calibration.shapes
    )
    assert op_counts(float_layer) == {"Conv": 1, "Relu": 1}
    assert [v.dtype for v in quant_layer.graph.inputs] == [ir.DataType.UINT8]
    assert [v.dtype for v in quant_layer.graph.outputs] == [ir.DataType.UINT8]
    assert next(iter(quant_feeds.values())).dtype == np.uint8
    assert next(iter(float_feeds.values())).shape == (1, 8, 8, 8)


def test_all_int8_is_kept_when_the_whole_model_is_faster():
    builder, source, calibration = setup()
    probe = FakeProbe({"conv0": 1.2, "conv1": 0.7, "conv2": 0.8}, {0: 0.7, 1: 0.9})
    stats, details = {}, {}
    chosen = speed.keep_float_where_slower(builder, [], source, calibration, stats, details, probe)
    assert chosen == [] and stats["kept_float_speed"] == 0
    assert probe.calls == [(), ("conv0",)]  # all-int8 and per-layer compared in one run


def test_per_layer_choice_wins_when_it_is_faster():
    builder, source, calibration = setup()
    probe = FakeProbe({"conv0": 1.2, "conv1": 0.7, "conv2": 0.8}, {0: 0.9, 1: 0.8})
    stats, details = {}, {}
    chosen = speed.keep_float_where_slower(builder, [], source, calibration, stats, details, probe)
    assert chosen == ["conv0"] and stats["kept_float_speed"] == 1


def test_a_faster_mix_within_the_noise_loses_to_the_smaller_model():
    builder, source, calibration = setup()
    # per-layer (one Conv float) is 2 % faster than all-int8, the run's noise is 5 %
    probe = FakeProbe({"conv0": 1.2, "conv1": 0.7, "conv2": 0.8}, {0: 0.82, 1: 0.80}, 0.05)
    stats, details = {}, {}
    chosen = speed.keep_float_where_slower(builder, [], source, calibration, stats, details, probe)
    assert chosen == [] and stats["kept_float_speed"] == 0
    # beyond the noise the faster mix wins
    probe = FakeProbe({"conv0": 1.2, "conv1": 0.7, "conv2": 0.8}, {0: 0.90, 1: 0.80}, 0.05)
    chosen = speed.keep_float_where_slower(builder, [], source, calibration, {}, {}, probe)
    assert chosen == ["conv0"]


def test_a_small_model_slower_than_float_beyond_the_aa_gap_is_not_taken_for_its_size():
    builder, source, calibration = setup()
    # all-int8 is 25 % slower than float, inside a 30 % spread but beyond the 2 % A/A gap
    probe = FakeProbe({"conv0": 1.2, "conv1": 0.7, "conv2": 0.8}, {0: 1.25, 1: 0.98}, 0.3, 0.02)
    chosen = speed.keep_float_where_slower(builder, [], source, calibration, {}, {}, probe)
    assert chosen == ["conv0"]


def test_layers_go_back_to_float_until_int8_wins_or_everything_is_float():
    builder, source, calibration = setup()
    probe = FakeProbe({"conv0": 0.9, "conv1": 0.7, "conv2": 0.8}, {0: 1.3, 1: 1.2, 2: 0.95})
    stats, details = {}, {}
    chosen = speed.keep_float_where_slower(builder, [], source, calibration, stats, details, probe)
    assert chosen == ["conv0", "conv2"]  # least gain first: 0.9, then 0.8
    never = FakeProbe({"conv0": 0.9, "conv1": 0.7, "conv2": 0.8}, {0: 1.3, 1: 1.2, 2: 1.1, 3: 1.0})
    stats = {}
    assert speed.keep_float_where_slower(builder, [], source, calibration, stats, {}, never) is None
    assert stats["kept_float_slower"] == 1


MLP = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N,64] x, float[32,64] w1, float[32] b1, float[10,32] w2, float[10] b2)
  => (float[N,10] y) {
  a = Gemm<transB=1>(x, w1, b1)
  r = Relu(a)
  y = Gemm<transB=1>(r, w2, b2)
}"""


class FormsProbe:
    """Static int8 slower than float everywhere; the dynamic form faster, int8w slower."""

    def __init__(self, dynamic_whole: float, dynamic_layer: float = 0.8) -> None:
        self.layer = {"int8": 1.2, "dynamic": dynamic_layer, "int8w": 1.5}
        self.dynamic_whole = dynamic_whole

    def ratios(self, baseline, candidates, feeds, *, whole):
        out = {}
        for name, model in candidates.items():
            ops = {n.op_type for n in model.graph}
            if not whole:
                out[name] = speed.Timing(self.layer[name], True)
            elif "DynamicQuantizeLinear" in ops:
                out[name] = speed.Timing(self.dynamic_whole, True, 0.01)
            elif "QuantizeLinear" in ops:
                out[name] = speed.Timing(1.3, True, 0.01)
            else:  # every layer float
                out[name] = speed.Timing(1.0, False, 0.01)
        return out


def _mlp_setup():
    model = build(MLP, ["w1", "b1", "w2", "b2"])
    name_nodes(model.graph)
    source = gaussian_source({"x": (4, 64)})
    names = make_plan(model, ORT, dtypes=element_types(model)).activations()
    calibration = calibrate(model, names, source)
    ranges = calibration.ranges("minmax", levels=256)
    builder = Int8Builder(model, ORT, frozenset(), True, element_types(model), ranges)
    return builder, source, calibration


def test_a_faster_dynamic_form_replaces_float_where_static_int8_is_slower():
    builder, source, calibration = _mlp_setup()
    stats, details = {}, {}
    chosen = speed.keep_float_where_slower(
        builder, [], source, calibration, stats, details, FormsProbe(0.9), ("dynamic", "int8w")
    )
    layers = sorted(details["layer_latency_ratio"])
    assert sorted(chosen) == layers  # no layer static QDQ
    assert builder.forms == dict.fromkeys(layers, "dynamic")  # int8w timed, slower: not chosen
    assert details["layer_form_latency_ratio"][layers[0]] == {"dynamic": 0.8, "int8w": 1.5}
    built = builder.build(chosen)
    counts = op_counts(built)
    assert counts["DynamicQuantizeLinear"] == 2 and "QuantizeLinear" not in counts


def test_dynamic_forms_slower_as_a_whole_leave_the_layers_float():
    builder, source, calibration = _mlp_setup()
    chosen = speed.keep_float_where_slower(
        builder, [], source, calibration, {}, {}, FormsProbe(1.2), ("dynamic",)
    )
    assert chosen is not None and builder.forms == {}
    assert "DynamicQuantizeLinear" not in op_counts(builder.build(chosen))


def test_the_whole_model_decides_when_no_form_wins_alone():
    # dynamic loses by 5 % per layer, yet the all-dynamic model is 10 % faster than float
    builder, source, calibration = _mlp_setup()
    details = {}
    chosen = speed.keep_float_where_slower(
        builder, [], source, calibration, {}, details, FormsProbe(0.9, 1.05), ("dynamic",)
    )
    layers = sorted(details["layer_latency_ratio"])
    assert sorted(chosen) == layers and builder.forms == dict.fromkeys(layers, "dynamic")
    assert details["model_latency_ratio"]["dynamic/2"] == 0.9


def test_without_alternatives_no_form_is_timed():
    builder, source, calibration = _mlp_setup()
    details = {}
    speed.keep_float_where_slower(builder, [], source, calibration, {}, details, FormsProbe(0.9))
    assert builder.forms == {} and "layer_form_latency_ratio" not in details


def test_forms_that_break_the_fidelity_budget_are_dropped():
    # the speed check times forms only; int8.py checks the model with them against the budget
    from irpass.passes.quantization import int8, recover

    builder, source, _ = _mlp_setup()
    layers = [p.name for p in builder.plan().linear()]
    for budget, kept in (
        (recover.Budget(min_sqnr=20.0), True),
        (recover.Budget(min_sqnr=200.0), False),
    ):
        builder.forms = dict.fromkeys(layers, "dynamic")
        stats = {}
        int8._check_forms(builder, layers, source, budget, stats)
        assert bool(builder.forms) is kept
        assert ("forms_over_budget" in stats) is not kept
