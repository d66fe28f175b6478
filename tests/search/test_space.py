from __future__ import annotations

import pytest

from irpass.errors import PipelineError
from irpass.pipeline import parse_pipeline
from irpass.search.space import Knob, SearchSpace, default_knobs, split_lossless_prefix

pytestmark = pytest.mark.usefixtures("test_passes")  # the t_* passes


def test_prefix_split_stops_at_the_first_lossy_step() -> None:
    prefix, rest = split_lossless_prefix("canonicalize,t_scale_weight(factor=0.5),fuse")
    assert prefix and all(s.name != "t_scale_weight" for s in prefix)
    assert next(s.name for s in rest) == "t_scale_weight"
    assert split_lossless_prefix("fuse")[1] == []


def test_lossy_steps_become_on_off_knobs_keeping_their_options() -> None:
    _, rest = split_lossless_prefix("canonicalize,t_scale_weight(factor=0.25),eliminate_dead")
    space = default_knobs(rest, only=["t_scale_weight"])
    (knob,) = space.knobs
    assert knob.levels == 1 and [s.name for s in space.tail] == ["eliminate_dead"]
    assert space.pipeline((1,)) == "t_scale_weight(factor=0.25),eliminate_dead"
    assert space.pipeline((0,)) == ""
    assert space.describe((1,)) == "t_scale_weight on"


def test_searching_a_pass_that_is_not_there_is_an_error() -> None:
    with pytest.raises(PipelineError, match="cannot search over"):
        default_knobs(parse_pipeline("eliminate_dead"), only=["quantize_nope"])


def test_graded_knob_levels_render_in_order() -> None:
    knob = Knob("t_drop_hidden.ratio", "t_drop_hidden", "ratio", (0.1, 0.2))
    space = SearchSpace((knob,))
    assert space.pipeline((2,)) == "t_drop_hidden(ratio=0.2)"
    assert space.describe((1,)) == "t_drop_hidden.ratio=0.1"
    with pytest.raises(ValueError, match=r"levels 0..2"):
        knob.step(3)


def test_int8_quantize_is_graded_over_its_fallback_budget_other_modes_are_on_off() -> None:
    _, rest = split_lossless_prefix("canonicalize,quantize(rules=ort,method=minmax)")
    (knob,) = default_knobs(rest, only=["quantize"]).knobs
    assert knob.option == "max_drop" and knob.levels > 1
    assert dict(knob.fixed) == {"rules": "ort", "method": "minmax"}
    assert knob.step(1).options_dict()["max_drop"] < knob.step(knob.levels).options_dict()[
        "max_drop"]
    _, rest = split_lossless_prefix("canonicalize,quantize(mode=fp16)")
    (knob,) = default_knobs(rest, only=["quantize"]).knobs
    assert knob.option is None and knob.levels == 1
