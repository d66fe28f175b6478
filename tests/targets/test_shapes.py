from __future__ import annotations

import numpy as np
import pytest

from irpass.errors import TargetError
from irpass.ir import load_model
from irpass.targets.shapes import dynamic_input_names, rebatch, resolve_profile
from models import zoo_paths


def test_batch_dim_defaults_to_one_and_static_dims_stay():
    model = load_model(zoo_paths()["resnet_cnn"])
    assert dynamic_input_names(model) == ["input"]
    assert resolve_profile(model) == {"input": ((1, 1, 16, 16),) * 3}


def test_user_shapes_win_and_max_shapes_make_a_range_from_batch_one():
    model = load_model(zoo_paths()["transformer"])
    profile = resolve_profile(model, {"tokens": (4, 32)}, {"tokens": (8, 64)})
    assert profile == {"tokens": ((1, 32), (4, 32), (8, 64))}


def test_other_dims_come_from_the_data_and_are_named_when_missing():
    model = load_model(zoo_paths()["transformer"])
    sample = {"tokens": np.zeros((32, 20), np.int64)}
    assert resolve_profile(model, sample=sample) == {"tokens": ((1, 20),) * 3}
    with pytest.raises(TargetError, match=r"input 'tokens' dim 1 \(sequence\)") as info:
        resolve_profile(model)
    assert "--input-shapes tokens:1x<sequence>" in (info.value.hint or "")
    assert "--calib-data" in (info.value.hint or "")


@pytest.mark.parametrize(
    "user, maximum, message",
    [({"nope": (1,)}, None, "no model input named nope"), ({"tokens": (1, 2, 3)}, None, "rank"),
     ({"tokens": (4, 32)}, {"tokens": (2, 32)}, "must have its rank and be >=")],
)
def test_contradicting_shapes_are_errors(user, maximum, message):
    model = load_model(zoo_paths()["transformer"])
    with pytest.raises(TargetError, match=message):
        resolve_profile(model, user, maximum)


def test_rebatch_splits_batches_and_keeps_order():
    data = np.arange(10, dtype=np.float32).reshape(5, 2)
    source = rebatch(lambda: iter([{"x": data[:3]}, {"x": data[3:]}]), 1)
    pieces = [feed["x"] for feed in source()]
    assert [p.shape for p in pieces] == [(1, 2)] * 5
    np.testing.assert_array_equal(np.concatenate(pieces), data)
    pairs = [feed["x"].shape[0] for feed in rebatch(lambda: iter([{"x": data}]), 2)()]
    assert pairs == [2, 2]  # the last partial batch is dropped
