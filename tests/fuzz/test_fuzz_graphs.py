"""The generator draws valid models: the ONNX checker and ONNX Runtime accept every one."""

from __future__ import annotations

import numpy as np
import onnx
from hypothesis import HealthCheck, given, settings

from irpass.fuzz.graphs import models
from irpass.verify import make_session, random_feeds, run_model


@settings(
    max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(models())
def test_generated_models_are_valid_and_run(model: onnx.ModelProto) -> None:
    onnx.checker.check_model(model, full_check=True)
    session = make_session(model)
    for batch in (1, 2):  # the symbolic batch really is free
        feeds = random_feeds(session, seed=batch, dim_values={"N": batch}, overridable=True)
        for name, value in run_model(session, feeds).items():
            assert value.dtype.kind != "f" or np.isfinite(value).all(), name
