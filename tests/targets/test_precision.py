from __future__ import annotations

import dataclasses

import pytest

from irpass.errors import TargetError
from irpass.targets import load_target
from irpass.targets.precision import missing_passes, plan_precision


def _with_stages(name: str, **stages: str):
    target = load_target(name)
    return dataclasses.replace(target, precision_pipelines={**target.precision_pipelines, **stages})


def test_int8_without_calibration_data_falls_back_and_says_why():
    plan = plan_precision(_with_stages("x86", int8="fold_constants"), None, has_calibration=False)
    assert (plan.requested, plan.effective) == ("int8", "fp32")
    assert "calibration data" in plan.reasons[0]


def test_int8_with_calibration_runs_the_stage():
    plan = plan_precision(_with_stages("x86", int8="fold_constants"), None, has_calibration=True)
    assert (plan.effective, plan.stage, plan.reasons) == ("int8", "fold_constants", [])


def test_a_stage_naming_a_missing_pass_falls_back_or_moves_to_the_builder():
    target = _with_stages("jetson", int8="no_such_pass", fp16="no_such_pass")
    assert missing_passes("canonicalize,no_such_pass") == ["no_such_pass"]
    plan = plan_precision(target, "int8", has_calibration=True, build_time=("fp16",))
    assert plan.effective == "fp16" and plan.at_build and plan.stage == ""
    assert any("no_such_pass" in r for r in plan.reasons)
    ios = _with_stages("ios", fp16="no_such_pass")
    plan = plan_precision(ios, None, has_calibration=False)
    assert plan.effective == "fp32" and "no_such_pass" in plan.reasons[0]


def test_nano_fp16_is_set_at_engine_build():
    plan = plan_precision(load_target("jetson-nano"), None, False, build_time=("fp16",))
    assert (plan.effective, plan.at_build, plan.stage) == ("fp16", True, "")


def test_a_precision_the_target_lacks_is_an_error():
    with pytest.raises(TargetError, match="runs fp16, fp32, not int8"):
        plan_precision(load_target("jetson-nano"), "int8", has_calibration=True)
