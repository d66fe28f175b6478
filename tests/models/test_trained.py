"""The committed trained models reach the accuracies models/README.md states, via `irpass eval`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from irpass.cli import main
from models import trained_eval_data, trained_metrics, trained_paths

NAMES = list(trained_metrics())


def test_the_expected_models_are_committed() -> None:
    assert {"digits_resnet", "digits_mobilenet", "power_cnn1d"} <= set(NAMES)
    for name in NAMES:
        assert trained_paths()[name].stat().st_size < 2 * 2**20
        assert trained_eval_data()[name].stat().st_size < 2 * 2**20


@pytest.mark.parametrize("name", NAMES)
def test_irpass_eval_reproduces_the_recorded_accuracy(name: str, capsys) -> None:
    data = str(trained_eval_data()[name])
    assert main(["eval", str(trained_paths()[name]), "--data", data, "--labels", data,
                 "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    recorded = trained_metrics()[name]
    assert metrics["accuracy"] == pytest.approx(recorded["accuracy"], abs=1e-6)
    assert metrics["macro_f1"] == pytest.approx(recorded["macro_f1"], abs=1e-6)
    assert len(np.load(data)["labels"]) == recorded["test_samples"]


@pytest.mark.parametrize("name", ["digits_resnet", "digits_mobilenet"])
def test_digit_models_reach_95_percent(name: str) -> None:
    assert trained_metrics()[name]["accuracy"] >= 0.95


def test_power_model_macro_f1_is_recorded() -> None:
    assert trained_metrics()["power_cnn1d"]["macro_f1"] >= 0.9
