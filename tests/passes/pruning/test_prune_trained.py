"""Pruning the trained models without retraining: 30 % of the channels go, repair keeps the
accuracy within 1 point of the original (test splits committed in models/trained/, calibration
splits taken from the training data, never from the test split)."""

from __future__ import annotations

import numpy as np
import pytest

from irpass.context import PassContext
from irpass.data import ArraySource
from irpass.ir import load_model
from irpass.passes.pruning.prune import PruneOptions, PrunePass
from irpass.verify import make_session
from models import MODELS_DIR, trained_eval_data, trained_paths

#: Bound on calibration samples, to keep the test quick (the splits hold 256 / 120).
CALIB_SAMPLES = 128
CALIBRATION = {
    "digits_resnet": "digits16_calib.npz",
    "digits_mobilenet": "digits16_calib.npz",
    "digits_mlp": "digits8_calib.npz",
    "power_cnn1d": "power_calib.npz",
}


def _accuracy(model: object, inputs: np.ndarray, labels: np.ndarray) -> float:
    session = make_session(model)  # type: ignore[arg-type]
    name = session.get_inputs()[0].name
    scores = session.run(None, {name: inputs})[0]
    return float((scores.argmax(axis=1) == labels).mean())


@pytest.mark.parametrize("name", sorted(CALIBRATION))
def test_thirty_percent_of_channels_go_and_repair_keeps_accuracy(name: str) -> None:
    test = np.load(trained_eval_data()[name])
    calib = np.load(MODELS_DIR / "trained" / CALIBRATION[name])
    input_name = next(k for k in test.files if k != "labels")
    inputs, labels = test[input_name], test["labels"]
    accuracy = {"original": _accuracy(load_model(trained_paths()[name]), inputs, labels)}
    for repair in (False, True):
        model = load_model(trained_paths()[name])
        context = PassContext(calibration_data=ArraySource({input_name: calib[input_name]}))
        options = PruneOptions(ratio=0.3, round_to=1, repair=repair, calib_samples=CALIB_SAMPLES)
        pass_ = PrunePass(options, context)
        assert pass_(model).modified
        removed = pass_.stats["channels_removed"] / pass_.stats["channels_prunable"]
        assert abs(removed - 0.3) < 0.02
        accuracy["repair" if repair else "no_repair"] = _accuracy(model, inputs, labels)
        if repair:
            layers = pass_.details["repair"]
            assert layers and all(
                e["error_refit"] <= e["error_bias_fold"] + 1e-9
                for e in layers
                if e["error_bias_fold"] is not None and e["error_refit"] is not None
            )
    assert accuracy["original"] - accuracy["repair"] <= 0.010, accuracy
    assert accuracy["repair"] >= accuracy["no_repair"], accuracy
