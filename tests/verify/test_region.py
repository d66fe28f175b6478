"""Region verification (irpass/verify/region.py): a lossless pass that rewrote a few nodes of a
larger model is checked on that region, with boundary values recorded from the last verified
state; everything it cannot extract soundly falls back to the whole-model check."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx_ir as ir
import pytest

from irpass import registry
from irpass.errors import VerificationError
from irpass.manager import PipelineRunner, RunOptions, RunResult
from irpass.pass_base import IrpassPass
from irpass.testing import inputs_to_random_initializers, model_from_text
from irpass.verify.fingerprint import TensorHasher, structure_snapshot
from irpass.verify.region import RegionChecker, RegionOptions, RegionResult

LAYERS = 34  # 3 nodes per layer: 103 nodes, above RegionOptions.min_nodes


def _chain(layers: int = LAYERS, extra: str = "") -> ir.Model:
    """x -> (MatMul, Add, Tanh) x layers -> Identity -> y, seeded random weights.

    ``extra``: ONNX text appended to the graph (more inputs, nodes, outputs), as
    ``inputs|nodes|outputs``.
    """
    weights = ", ".join(f"float[8, 8] w{i}, float[8] b{i}" for i in range(layers))
    more_inputs, more_nodes, more_outputs = extra.split("|") if extra else ("", "", "")
    body = []
    previous = "x"
    for i in range(layers):
        body += [f"m{i} = MatMul ({previous}, w{i})", f"a{i} = Add (m{i}, b{i})"]
        body.append(f"t{i} = Tanh (a{i})")
        previous = f"t{i}"
    body.append(f"y = Identity ({previous})")
    text = f"""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N, 8] x, {weights}{more_inputs}) => (float[N, 8] y{more_outputs}) {{
        {chr(10).join(body)}
        {more_nodes}
    }}
    """
    names = [f"{kind}{i}" for i in range(layers) for kind in ("w", "b")]
    return inputs_to_random_initializers(model_from_text(text), names, seed=0, scale=0.5)


def _feeds() -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [
        {"x": rng.standard_normal((1, 8)).astype(np.float32)},
        {"x": rng.standard_normal((3, 8)).astype(np.float32)},
    ]


def _node(model: ir.Model, output: str) -> ir.Node:
    return next(n for n in model.graph if n.outputs[0].name == output)


def _replace(model: ir.Model, output: str, op_type: str, *extra: ir.Value) -> ir.Node:
    """Replace the node computing ``output`` by ``op_type`` on the same inputs."""
    old = _node(model, output)
    new = ir.Node("", op_type, [*old.inputs, *extra], name=f"{old.name}_new")
    new.outputs[0].name = f"{output}_new"
    ir.convenience.replace_nodes_and_values(
        model.graph, old, [old], [new], [old.outputs[0]], [new.outputs[0]]
    )
    return new


def _tanh_as_sigmoid(model: ir.Model, output: str) -> None:
    """tanh(a) = 2 sigmoid(2a) - 1: four nodes instead of one, the same function."""
    old = _node(model, output)
    two = ir.Value(name=f"{output}_two", const_value=ir.tensor(np.float32(2.0)))
    one = ir.Value(name=f"{output}_one", const_value=ir.tensor(np.float32(1.0)))
    for value in (two, one):
        value.type, value.shape = ir.TensorType(ir.DataType.FLOAT), ir.Shape([])
        model.graph.register_initializer(value)
    doubled = ir.Node("", "Mul", [old.inputs[0], two])
    squashed = ir.Node("", "Sigmoid", [doubled.outputs[0]])
    scaled = ir.Node("", "Mul", [squashed.outputs[0], two])
    shifted = ir.Node("", "Sub", [scaled.outputs[0], one])
    nodes = [doubled, squashed, scaled, shifted]
    for index, node in enumerate(nodes):
        node.outputs[0].name = f"{output}_s{index}"
    ir.convenience.replace_nodes_and_values(
        model.graph, old, [old], nodes, [old.outputs[0]], [shifted.outputs[0]]
    )
    shifted.outputs[0].name = output  # the region's output keeps its name


def _region_check(
    model: ir.Model,
    change: Callable[[ir.Model], object],
    checker: RegionChecker | None = None,
    **options: float,
) -> RegionResult:
    checker = checker or RegionChecker(_feeds(), frozenset({"x"}), RegionOptions(**options))
    hasher = TensorHasher()
    before = structure_snapshot(model, hasher)
    change(model)
    return checker.check(model, before, structure_snapshot(model, hasher))


def test_equal_rewrite_is_checked_as_a_region_and_its_values_recorded() -> None:
    model = _chain()
    checker = RegionChecker(_feeds(), frozenset({"x"}), RegionOptions())
    result = _region_check(model, lambda m: _tanh_as_sigmoid(m, "t5"), checker)
    assert result.checked, result.reason
    # the Tanh and its consumer (now reading the new value): 2 nodes before, 5 after
    assert (result.old_nodes, result.new_nodes) == (2, 5)
    assert len(result.outputs) == 2 and set(result.outputs[0]) == {"m6"}
    # the reference is the old region on the recorded boundary value; the rewrite matches it
    np.testing.assert_allclose(result.outputs[1]["m6"], result.reference[1]["m6"], atol=1e-5)
    assert result.outputs[1]["m6"].shape == (3, 8)
    # the boundary value (a5, recorded from the last verified state) and what the new region
    # computes are kept for later regions
    recorded = {v.name for v in checker.recorded.data}
    assert {"a5", "m6", "t5", "t5_s1"} <= recorded
    # a second rewrite downstream finds its boundary value recorded (no recording run)
    again = _region_check(model, lambda m: _tanh_as_sigmoid(m, "t7"), checker)
    assert again.checked and (again.old_nodes, again.new_nodes) == (2, 5)


def test_shapes_annotated_anew_do_not_widen_the_region() -> None:
    def rewrite_and_annotate(m: ir.Model) -> None:
        _tanh_as_sigmoid(m, "t5")
        for node in m.graph:  # a pass that re-infers every shape after its rewrite
            node.outputs[0].shape = ir.Shape(["N", 8])

    result = _region_check(_chain(), rewrite_and_annotate)
    assert result.checked and (result.old_nodes, result.new_nodes) == (2, 5)


def test_wrong_rewrite_of_one_node_is_caught_by_the_region_check() -> None:
    model = _chain()
    with pytest.raises(VerificationError, match=r"region it rewrote \(2 -> 2 nodes\)"):
        _region_check(model, lambda m: _replace(m, "t6", "Sigmoid"))


def test_two_sites_one_downstream_of_the_other_form_one_region() -> None:
    # the second site's boundary value is recorded in the state before the pass
    model = _chain()

    def both(m: ir.Model) -> None:
        _tanh_as_sigmoid(m, "t2")
        _tanh_as_sigmoid(m, "t6")

    result = _region_check(model, both)
    assert result.checked and (result.old_nodes, result.new_nodes) == (4, 10)
    assert set(result.outputs[0]) == {"m3", "m7"}


def test_a_deep_region_whose_inputs_are_not_recorded_is_checked_whole() -> None:
    # recording a30 would run 92 of the 103 nodes: the whole-model check costs less
    result = _region_check(_chain(), lambda m: _tanh_as_sigmoid(m, "t30"))
    assert "recording them would run 92 of 103 nodes" in result.reason
    assert result.unrecorded  # the whole-model check records instead (run_whole)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param(
            lambda m: [_tanh_as_sigmoid(m, f"t{i}") for i in range(LAYERS)],
            "the region is large",
            id="large",
        ),
        pytest.param(
            lambda m: m.graph.initializers["w3"].const_value.numpy().__imul__(2),
            "changed weight 'w3' in place",
            id="weight-in-place",
        ),
        pytest.param(
            lambda m: setattr(_node(m, "y").outputs[0], "name", "z"),
            "names or types of the graph outputs",
            id="output-renamed",
        ),
        pytest.param(
            lambda m: setattr(_node(m, "t4").outputs[0], "name", "t4_renamed"),
            "outputs do not match by name",
            id="region-output-renamed",
        ),
        pytest.param(
            lambda m: m.opset_imports.__setitem__("", 18),
            "opsets",
            id="opset",
        ),
    ],
)
def test_falls_back_to_the_whole_model_and_says_why(
    change: Callable[[ir.Model], object], reason: str
) -> None:
    result = _region_check(_chain(), change)
    assert not result.checked
    assert reason in result.reason


def test_small_models_and_a_tiny_memory_budget_fall_back() -> None:
    small = _region_check(_chain(12), lambda m: _tanh_as_sigmoid(m, "t1"))
    assert small.reason.startswith("small model")
    tight = _region_check(_chain(), lambda m: _tanh_as_sigmoid(m, "t5"), memory_bytes=16)
    assert "memory budget" in tight.reason


def test_a_region_that_cannot_be_built_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("some value")

    monkeypatch.setattr("irpass.verify.region._submodel", broken)
    result = _region_check(_chain(), lambda m: _tanh_as_sigmoid(m, "t5"))
    assert result.reason.startswith("the region could not be checked on its own (KeyError")


def test_a_replaced_weight_puts_its_consumers_in_the_region() -> None:
    model = _chain()

    def replace(m: ir.Model) -> None:
        value = m.graph.initializers["b4"]
        assert value.const_value is not None
        value.const_value = ir.tensor(value.const_value.numpy() + 1.0, name="b4")

    with pytest.raises(VerificationError, match=r"region it rewrote \(1 -> 1 nodes\)"):
        _region_check(model, replace)


IF_MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 8] x, bool c) => (float[N, 8] y) {
    y = If (c) <
        then_branch = t () => (float[N, 8] r) { r = Tanh (x) },
        else_branch = e () => (float[N, 8] s) { s = Sigmoid (x) }
    >
}
"""


def test_a_change_inside_a_subgraph_falls_back() -> None:
    model = model_from_text(IF_MODEL)
    checker = RegionChecker(
        [{"x": np.ones((1, 8), np.float32), "c": np.array(True)}],
        frozenset({"x", "c"}),
        RegionOptions(min_nodes=1),
    )

    def change(m: ir.Model) -> None:
        body = m.graph.node(0).attributes["then_branch"].as_graph()
        node = body.node(0)
        new = ir.Node("", "Relu", node.inputs)
        ir.convenience.replace_nodes_and_values(
            body, node, [node], [new], [node.outputs[0]], [new.outputs[0]]
        )
        new.outputs[0].name = "r"

    result = _region_check(model, change, checker)
    assert "subgraph" in result.reason


# s is read only inside the If's branches (captured from the outer scope)
CAPTURED = (
    ", bool c|"
    "s = LeakyRelu <alpha = 0.1> (t2)\n"
    "z = If (c) <then_branch = th () => (float[N, 8] r) { r = Neg (s) },"
    " else_branch = el () => (float[N, 8] q) { q = Abs (s) }>"
    "|, float[N, 8] z"
)


def test_a_value_read_only_by_a_subgraph_is_a_region_output() -> None:
    model = _chain(extra=CAPTURED)
    flags = (True, False)  # both branches read s
    feeds = [dict(feed, c=np.array(flag)) for feed, flag in zip(_feeds(), flags, strict=True)]
    checker = RegionChecker(feeds, frozenset({"x", "c"}), RegionOptions())

    def wrong_alpha(m: ir.Model) -> None:
        _node(m, "s").attributes["alpha"] = ir.AttrFloat32("alpha", 0.3)

    with pytest.raises(VerificationError, match="region it rewrote"):
        _region_check(model, wrong_alpha, checker)


# -- in a run: status, rollback naming the pass, the end-to-end check -------------------------


class _WrongTanhPass(IrpassPass):
    """Claims to be lossless, turns one Tanh into a Sigmoid (a bug region checks must catch)."""

    name = "t_region_wrong_tanh"
    lossless = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        _replace(model, "t6", "Sigmoid")
        return ir.passes.PassResult(model, True)


class _TanhAsSigmoidPass(IrpassPass):
    """Rewrites one Tanh as 2 sigmoid(2a) - 1 (lossless)."""

    name = "t_region_tanh_as_sigmoid"
    lossless = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        _tanh_as_sigmoid(model, "t3")
        return ir.passes.PassResult(model, True)


class _DeepTanhAsSigmoidPass(IrpassPass):
    """Rewrites Tanh t30 as 2 sigmoid(2a) - 1 (lossless), deep in the chain."""

    name = "t_region_deep_tanh"
    lossless = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        _tanh_as_sigmoid(model, "t30")
        return ir.passes.PassResult(model, True)


class _DeeperTanhAsSigmoidPass(IrpassPass):
    """Rewrites Tanh t32 the same way."""

    name = "t_region_deeper_tanh"
    lossless = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        _tanh_as_sigmoid(model, "t32")
        return ir.passes.PassResult(model, True)


REGION_ON = RunOptions(region=RegionOptions())  # off by default


def _run(pipeline: str, options: RunOptions | None = None) -> RunResult:
    passes = (_WrongTanhPass, _TanhAsSigmoidPass, _DeepTanhAsSigmoidPass, _DeeperTanhAsSigmoidPass)
    with registry.registered(*passes):
        return PipelineRunner(pipeline, options=options or REGION_ON).run(_chain())


def test_runner_reports_a_region_check_and_still_checks_end_to_end() -> None:
    result = _run("t_region_tanh_as_sigmoid")
    record = result.report.passes[0]
    assert record.verification.status == "equal (region: 5 nodes)"
    assert "region of 2 -> 5 nodes" in record.verification.detail
    final = result.report.final_verification
    assert final.status == "equal" and final.ort_load  # the whole model ran at the end


def test_runner_rolls_back_a_wrong_pass_caught_by_its_region_and_names_it() -> None:
    result = _run("t_region_tanh_as_sigmoid,t_region_wrong_tanh")
    first, wrong = result.report.passes
    assert first.verification.status.startswith("equal (region")
    assert wrong.rolled_back and wrong.verification.status == "failed"
    assert "region it rewrote" in wrong.verification.detail
    assert any("t_region_wrong_tanh" in w for w in result.report.warnings)
    assert not any(n.op_type == "Sigmoid" and n.name.endswith("_new") for n in result.model.graph)
    assert result.report.final_verification.status == "equal"


def test_runner_without_region_checks_verifies_the_whole_model() -> None:
    result = _run("t_region_tanh_as_sigmoid", RunOptions(region=None))
    record = result.report.passes[0]
    assert record.verification.status == "equal"
    assert "region" not in record.verification.detail


def test_runner_records_values_in_a_whole_check_for_the_regions_that_follow() -> None:
    result = _run("t_region_deep_tanh,t_region_deeper_tanh")
    first, second = result.report.passes
    # nothing recorded yet and recording a30 alone would run most of the model: checked whole,
    # and that run records the values the next region reads
    assert first.verification.status == "equal"
    assert "whole model: its boundary values are not recorded" in first.verification.detail
    assert second.verification.status == "equal (region: 5 nodes)"
    assert result.report.final_verification.status == "equal"
