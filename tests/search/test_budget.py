from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from irpass.errors import PipelineError
from irpass.search.budget import parse_budget

BASE = {"accuracy": 0.90, "macro_f1": 0.88, "cosine": 1.0, "mse": 0.10, "top1_agreement": 1.0}


@pytest.mark.parametrize("text,kind,value,metric", [
    ("1%", "points", 1.0, None),
    ("0.5pt", "points", 0.5, None),
    ("2", "points", 2.0, None),
    ("2%rel", "relative", 0.02, None),
    ("macro_f1:1%", "points", 1.0, "macro_f1"),
    ("cosine>=0.99", "floor", 0.99, "cosine"),
    ("mse <= 0.2", "ceiling", 0.2, "mse"),
])
def test_parse_forms(text: str, kind: str, value: float, metric: str | None) -> None:
    budget = parse_budget(text)
    assert (budget.kind, budget.metric) == (kind, metric)
    assert budget.value == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "abc", "1%%", "cosine>0.9", "150%rel", "-1%"])
def test_bad_budgets_are_clear_errors(text: str) -> None:
    with pytest.raises(PipelineError) as info:
        parse_budget(text)
    assert info.value.hint


def test_points_and_relative_thresholds() -> None:
    points = parse_budget("1%").resolve(BASE, has_labels=True)
    assert points.metric == "accuracy"
    assert points.threshold(BASE) == pytest.approx(0.89)
    assert points.allows(BASE, {"accuracy": 0.8901}) and not points.allows(BASE, {"accuracy": 0.88})
    relative = parse_budget("10%rel").resolve(BASE, has_labels=True)
    assert relative.threshold(BASE) == pytest.approx(0.81)


def test_without_labels_the_drop_applies_to_agreement_and_floors_to_named_metrics() -> None:
    assert parse_budget("1%").resolve(BASE, has_labels=False).metric == "top1_agreement"
    floor = parse_budget("cosine>=0.99").resolve(BASE, has_labels=False)
    assert floor.allows(BASE, {"cosine": 0.995}) and not floor.allows(BASE, {"cosine": 0.98})


def test_lower_is_better_metrics_drop_by_growing() -> None:
    budget = parse_budget("mse:1%").resolve(BASE, has_labels=True)
    assert budget.threshold(BASE) == pytest.approx(0.11)
    assert budget.allows(BASE, {"mse": 0.105}) and not budget.allows(BASE, {"mse": 0.12})
    assert parse_budget("1%").resolve({"mse": 0.1}, has_labels=True).metric == "mse"


def test_missing_metric_never_fits_and_unknown_metric_is_an_error() -> None:
    budget = parse_budget("1%").resolve(BASE, has_labels=True)
    assert not budget.allows(BASE, {})
    with pytest.raises(PipelineError, match="does not report"):
        parse_budget("bleu:1%").resolve(BASE, has_labels=True)
    with pytest.raises(PipelineError, match="no metric"):
        parse_budget("1%").resolve({"max_abs_error": 0.0}, has_labels=False)


@given(st.floats(0, 1), st.floats(0, 50), st.floats(0, 1))
def test_slack_sign_agrees_with_allows(base: float, points: float, value: float) -> None:
    budget = parse_budget(f"{points:.4f}pt").resolve({"accuracy": base}, has_labels=True)
    metrics = {"accuracy": value}
    slack = budget.slack({"accuracy": base}, metrics)
    assert budget.allows({"accuracy": base}, metrics) == (slack >= -1e-12)
