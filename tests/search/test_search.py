"""The search on a real trained model with a real lossy knob (t_drop_hidden removes hidden
units of the digits MLP: fewer parameters, lower accuracy as the ratio grows)."""

from __future__ import annotations

import pathlib

import pytest

from irpass.ir import load_model
from irpass.search.budget import parse_budget
from irpass.search.executors import SerialExecutor
from irpass.search.search import SearchOptions, run_search
from irpass.search.space import Knob, SearchSpace
from irpass.search.worker import DataRef, EvalSettings

pytestmark = pytest.mark.usefixtures("test_passes")  # the t_* passes

REPO = pathlib.Path(__file__).resolve().parents[2]
MLP = REPO / "models" / "trained" / "digits_mlp.onnx"
TEST = REPO / "models" / "trained" / "digits8_test.npz"
LEVELS = (0.03, 0.06, 0.12, 0.25, 0.5)
SPACE = SearchSpace((Knob("t_drop_hidden.ratio", "t_drop_hidden", "ratio", LEVELS),))


def _settings(executor) -> EvalSettings:
    return EvalSettings(
        model=executor.share(MLP),
        reference=executor.share(MLP),
        eval_data=DataRef(str(TEST), executor.share(TEST)),
        labels=DataRef(str(TEST), executor.share(TEST)),
        plugins=("plugin_passes_for_tests",),
    )


def _search(budget: str, executor=None, objective: str = "size"):
    executor = executor or SerialExecutor()
    return run_search(SPACE, _settings(executor), parse_budget(budget), executor,
                      options=SearchOptions(objective=objective), has_labels=True)


def test_search_keeps_the_cheapest_setting_inside_a_binding_budget() -> None:
    result = _search("3%")
    assert result.found and result.budget.metric == "accuracy"
    base_acc = result.baseline.result.metrics["accuracy"]
    chosen = result.chosen
    assert chosen.feasible
    assert chosen.result.metrics["accuracy"] >= base_acc - 0.03 - 1e-9
    infeasible = [p for p in result.points if p.result.ok and not p.feasible]
    assert infeasible, "the budget must bind: some setting was too aggressive"
    # the chosen setting is the smallest of the feasible ones, and smaller than the input
    feasible = [p for p in result.points if p.feasible]
    assert chosen.result.file_bytes == min(p.result.file_bytes for p in feasible)
    assert chosen.result.params < result.baseline.result.params
    # every feasible point's accuracy is within budget, every infeasible one's is not
    for point in result.points:
        if point.result.ok:
            within = point.result.metrics["accuracy"] >= base_acc - 0.03 - 1e-9
            assert within == point.feasible
    assert result.chosen.result.pipeline.startswith("t_drop_hidden(ratio=")


def test_no_setting_within_budget_returns_the_unmodified_model_and_says_so() -> None:
    result = _search("accuracy>=1.01")
    assert not result.found
    assert result.pipeline == ""
    assert "no setting" in result.summary()
    assert len(result.points) == 1 + len(LEVELS)


def test_the_search_is_deterministic() -> None:
    a, b = _search("3%"), _search("3%")
    assert [p.result.levels for p in a.points] == [p.result.levels for p in b.points]
    assert a.chosen.result.levels == b.chosen.result.levels


def test_unknown_budget_metric_is_a_clear_error() -> None:
    from irpass.errors import PipelineError

    with pytest.raises(PipelineError, match="does not report"):
        _search("bleu:1%")


def test_model_is_not_touched() -> None:
    before = MLP.read_bytes()
    _search("3%")
    assert MLP.read_bytes() == before
    assert load_model(MLP) is not None


def test_pruning_is_searched_per_layer_from_layer_sensitivity() -> None:
    from irpass.search.layers import prune_layer_probes

    executor = SerialExecutor()
    calib = REPO / "models" / "trained" / "digits8_calib.npz"
    settings = EvalSettings(
        model=executor.share(MLP), reference=executor.share(MLP),
        eval_data=DataRef(str(TEST), executor.share(TEST)),
        labels=DataRef(str(TEST), executor.share(TEST)),
        calib_data=DataRef(str(calib), executor.share(calib)),
    )
    knob = Knob("prune.ratio", "prune", "ratio", (0.3, 0.5, 0.7))
    model = load_model(MLP)
    result = run_search(SearchSpace((knob,)), settings, parse_budget("1%"), executor,
                        options=SearchOptions(objective="size"), has_labels=True,
                        layer_probes=lambda k: prune_layer_probes(model, k))
    phases = [p.phase for p in result.points]
    assert phases.count("layer sensitivity") == 2  # the MLP's two hidden layers
    assert "per-layer sensitivity" in phases
    assert result.chosen.feasible and result.found
    assert result.chosen.result.params < result.baseline.result.params
    base = result.baseline.result.metrics["accuracy"]
    assert result.chosen.result.metrics["accuracy"] >= base - 0.01 - 1e-9
