"""``prune`` end to end: the zoo, the light model-zoo graphs, magika; options and reports."""

from __future__ import annotations

import logging
import pathlib

import numpy as np
import onnx_ir as ir
import pytest

from irpass.analysis.channels import analyze_channels
from irpass.analysis.cost import model_cost
from irpass.context import PassContext
from irpass.data import ArraySource
from irpass.errors import PassOptionError
from irpass.ir import load_model
from irpass.manager import PipelineRunner, RunOptions
from irpass.passes.pruning.prune import PruneOptions, PrunePass
from irpass.pipeline import parse_pipeline, resolve_options
from irpass.testing import model_from_text, randomize_weights, run_ir
from irpass.verify import check_structure, make_session, random_feeds, run_model
from models import zoo_paths
from tests.conftest import LIGHT_MODELS, light_model_path, magika_model_path

#: Light models whose weights are hundreds of MB (pruning and ORT sessions take long).
SLOW = {"vgg19", "bvlc_alexnet", "zfnet512"}


def _shapes(model: ir.Model) -> dict[str, tuple[int, ...]]:
    return {
        name: tuple(v.const_value.shape.numpy())
        for name, v in model.graph.initializers.items()
        if v.const_value is not None
    }


def _prune_and_run(model: ir.Model, batches: tuple[int, ...], **options: object) -> PrunePass:
    """Prune; check the frozen groups kept every channel, the cost drop, ORT at each batch."""
    analysis = analyze_channels(model)
    frozen = {
        (a.value.name, a.axis, a.classes.size)
        for g in analysis.frozen()
        for a in g.axes
        if a.value.const_value is not None
    }
    before = model_cost(model)
    pass_ = PrunePass(PruneOptions(**options))  # type: ignore[arg-type]
    assert pass_(model).modified
    after = model_cost(model)
    shapes = _shapes(model)
    for name, axis, size in frozen:
        if name in shapes:
            assert shapes[name][axis] == size, f"frozen {name} axis {axis} lost channels"
    removed = pass_.stats["params_removed"] - pass_.stats["params_added"]
    assert before.params - after.params == removed > 0
    assert after.macs < before.macs
    check_structure(model)
    session = make_session(model)
    for batch in batches:
        outputs = run_model(session, random_feeds(session, seed=batch, dim_values={"batch": batch}))
        assert all(np.isfinite(v).all() for v in outputs.values() if v.dtype.kind == "f")
        first = next(iter(outputs.values()))
        assert first.shape[0] == batch
    return pass_


@pytest.mark.parametrize("name", sorted(zoo_paths()))
def test_zoo_model_prunes_and_runs_at_every_batch_size(name: str) -> None:
    model = load_model(zoo_paths()[name])
    pass_ = _prune_and_run(model, (1, 3, 8))
    assert pass_.stats["channels_removed"] > 0
    assert pass_.details["groups"]


def _light_params(names: list[str]) -> list[object]:
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]


@pytest.mark.parametrize("name", _light_params(LIGHT_MODELS))
def test_light_model_prunes_before_canonicalize(name: str) -> None:
    model = randomize_weights(ir.load(light_model_path(name)), seed=0)
    pass_ = _prune_and_run(model, (1,), ratio=0.3)
    assert pass_.stats["legacy_weight_inputs"] > 0  # IR 3: weights were graph inputs


@pytest.mark.parametrize("pipeline", ["", "canonicalize,fuse"])
def test_magika_model_stays_valid_and_says_why_nothing_is_pruned(pipeline: str) -> None:
    path = magika_model_path()
    if path is None:
        pytest.skip("magika is not installed (pip install -e '.[test]')")
    model = load_model(path)
    if pipeline:
        PipelineRunner(pipeline, options=RunOptions(verify="none")).run(model)
    pass_ = PrunePass(PruneOptions(ratio=0.3))
    result = pass_(model)
    analysis = analyze_channels(model)
    # Its layer norms are written out as reductions over channels (fuse does not recognize
    # this form) and its reshape targets are shared, batch-dependent tensors: every group
    # is frozen, each with its reason, and the model is left as it was.
    assert not result.modified and pass_.stats["channels_prunable"] == 0
    assert analysis.groups and all(g.fully_frozen and g.frozen for g in analysis.groups)
    reasons = " ".join(r for g in analysis.groups for r in g.frozen)
    assert "reduces over channels" in reasons
    batch = model.graph.inputs[0].shape[0]
    session = make_session(model)
    for size in (1, 2):
        run_model(session, random_feeds(session, seed=size, dim_values={str(batch): size}))


def test_zoo_model_prunes_the_same_before_and_after_canonicalize_and_fuse() -> None:
    raw = load_model(zoo_paths()["resnet_cnn"])
    fused = load_model(zoo_paths()["resnet_cnn"])
    PipelineRunner("canonicalize,fuse", options=RunOptions(verify="none")).run(fused)
    assert not [n for n in fused.graph if n.op_type == "BatchNormalization"]
    counts = []
    for model in (raw, fused):
        pass_ = _prune_and_run(model, (1, 2), ratio=0.3, round_to=1)
        counts.append((pass_.stats["channels_prunable"], pass_.stats["channels_removed"]))
    assert counts[0] == counts[1]


def test_ignored_node_keeps_its_weights() -> None:
    model = load_model(zoo_paths()["resnet_cnn"])
    conv = next(
        n for n in model.graph if n.op_type == "Conv" and n.inputs[1].name.startswith("blocks.1")
    )
    before = _shapes(model)[conv.inputs[1].name]
    PrunePass(PruneOptions(ratio=0.5, ignore=[conv.name]))(model)
    assert _shapes(model)[conv.inputs[1].name] == before


def test_per_node_ratio_overrides_the_global_one() -> None:
    model = load_model(zoo_paths()["mlp"])
    first = next(n for n in model.graph if n.op_type == "Gemm")
    pass_ = PrunePass(PruneOptions(ratio=0.1, round_to=1, ratios=[f"{first.name}=0.5"]))
    pass_(model)
    assert _shapes(model)[first.inputs[1].name][0] == 64  # 128 hidden units, half removed


def test_a_group_id_ratio_prunes_that_group_alone() -> None:
    model = load_model(zoo_paths()["mlp"])
    groups = [g for g in analyze_channels(model).groups if g.prunable]
    target = groups[0]
    before = _shapes(model)
    PrunePass(PruneOptions(ratio=0.0, round_to=1, ratios=[f"#{target.id}=0.5"]))(model)
    after = _shapes(model)
    changed = {name for name in before if before[name] != after.get(name)}
    assert changed, "the group with that id lost channels"
    sizes = {a.value.name: int(a.classes.size) for a in target.axes}
    for name in changed:
        assert name in sizes  # only tensors of that group changed
    assert any(s // 2 in after[n] for n, s in sizes.items() if n in after)


@pytest.mark.parametrize(("round_to", "expected"), [(1, 90), (8, 88), (16, 96)])
def test_round_to_aligns_the_kept_channels(round_to: int, expected: int) -> None:
    model = load_model(zoo_paths()["mlp"])
    first = next(n for n in model.graph if n.op_type == "Gemm")
    PrunePass(PruneOptions(ratio=0.3, scope="local", round_to=round_to))(model)
    assert _shapes(model)[first.inputs[1].name][0] == expected


def test_pipeline_text_reaches_the_options() -> None:
    (step,) = parse_pipeline(
        'prune(ratio=0.5,importance=bn,scope=local,round_to=16,ignore=["fc*"],repair=false)'
    )
    options = resolve_options("prune", PruneOptions, step.options_dict())
    assert options == PruneOptions(
        ratio=0.5, importance="bn", scope="local", round_to=16, ignore=["fc*"], repair=False
    )


@pytest.mark.parametrize(
    "text",
    ["prune(ratio=1.0)", "prune(importance=magic)", "prune(ratios=[conv1])", "prune(round_to=0)"],
)
def test_bad_options_are_errors(text: str) -> None:
    (step,) = parse_pipeline(text)
    with pytest.raises(PassOptionError):
        resolve_options("prune", PruneOptions, step.options_dict())


def test_activation_importance_needs_calibration_data() -> None:
    model = load_model(zoo_paths()["mlp"])
    with pytest.raises(PassOptionError, match="calibration data"):
        PrunePass(PruneOptions(importance="activation"))(model)


def test_ratio_zero_changes_nothing() -> None:
    model = load_model(zoo_paths()["mlp"])
    assert not PrunePass(PruneOptions(ratio=0.0))(model).modified


@pytest.mark.parametrize("importance", ["l1", "bn", "activation"])
def test_every_importance_prunes_a_valid_model(importance: str) -> None:
    model = load_model(zoo_paths()["resnet_cnn"])
    data = np.random.default_rng(0).standard_normal((16, 1, 16, 16)).astype(np.float32)
    context = PassContext(calibration_data=ArraySource({"input": data}))
    pass_ = PrunePass(PruneOptions(importance=importance, repair=False), context)  # type: ignore[arg-type]
    assert pass_(model).modified
    assert pass_.stats["groups_scored_by_fallback"] == 0  # every group has BN / consumers
    check_structure(model)


def test_random_calibration_data_are_flagged(tmp_path: pathlib.Path) -> None:
    model = load_model(zoo_paths()["mlp"])
    data = np.random.default_rng(0).standard_normal((32, 64)).astype(np.float32)
    context = PassContext(calibration_data=ArraySource({"input": data}), calibration_is_random=True)
    pass_ = PrunePass(PruneOptions(calib_samples=32), context)
    pass_(model)
    assert pass_.stats["calibration_random"] == 1 and pass_.stats["layers_refit"] >= 1


def test_weights_in_constant_nodes_keep_a_type(caplog: pytest.LogCaptureFixture) -> None:
    # found by the fuzzer (irpass.fuzz): the pruned Constant outputs got a shape but no type,
    # and saving the model logged onnx-ir's "value type ... is not known" for each of them
    rng = np.random.default_rng(0)
    w1 = ",".join(f"{v:.3f}" for v in rng.standard_normal(8 * 3 * 3 * 3))
    w2 = ",".join(f"{v:.3f}" for v in rng.standard_normal(4 * 8))
    text = f"""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N,3,6,6] x) => (float[N,4,6,6] y) {{
      w1 = Constant<value=float[8,3,3,3] {{{w1}}}>()
      w2 = Constant<value=float[4,8,1,1] {{{w2}}}>()
      c = Conv<pads=[1,1,1,1], kernel_shape=[3,3]>(x, w1)
      r = Relu(c)
      y = Conv<kernel_shape=[1,1]>(r, w2)
    }}"""
    model = model_from_text(text)
    assert PrunePass(PruneOptions(ratio=0.5, round_to=1))(model).modified
    with caplog.at_level(logging.WARNING):
        ir.to_proto(model)
    assert "is not known" not in caplog.text
    constants = [n.outputs[0] for n in model.graph if n.op_type == "Constant"]
    assert all(v.dtype == ir.DataType.FLOAT for v in constants)
    assert run_ir(model, {"x": np.ones((2, 3, 6, 6), np.float32)})["y"].shape == (2, 4, 6, 6)
