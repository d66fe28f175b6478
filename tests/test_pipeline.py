from __future__ import annotations

import dataclasses
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from irpass.errors import PassOptionError, PipelineError
from irpass.pipeline import Step, format_pipeline, parse_pipeline, resolve_options


def test_parse_example_from_issue() -> None:
    steps = parse_pipeline("canonicalize,fixpoint(fold_constants,eliminate_dead),prune(ratio=0.3)")
    assert steps == [
        Step("canonicalize"),
        Step("fixpoint", children=(Step("fold_constants"), Step("eliminate_dead"))),
        Step("prune", (("ratio", 0.3),)),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "a",
        "a,b",
        "fixpoint(a,fixpoint(b,c)),d",
        'q(mode=int8,per_channel=true,ratio=0.25,n=3,skip=[conv1,conv2],name="x y")',
        "q(empty=[],neg=-2,sci=1e-05)",
    ],
)
def test_format_is_canonical(text: str) -> None:
    assert format_pipeline(parse_pipeline(text)) == text


def test_whitespace_is_ignored() -> None:
    assert parse_pipeline(" a ( x = 1 ) , b ") == parse_pipeline("a(x=1),b")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("a,", "ended"),
        ("a(x=1", "ended"),
        ("a(x)", "expected '='"),
        ("fixpoint", "fixpoint needs steps"),
        ("a(x=1,x=2)", "given twice"),
        ("a)b", "unexpected text"),
        ("1abc", "expected a pass name"),
    ],
)
def test_malformed_text_names_the_problem(text: str, fragment: str) -> None:
    with pytest.raises(PipelineError) as info:
        parse_pipeline(text)
    assert fragment in info.value.message


_names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(lambda s: s != "fixpoint")
_scalars = st.one_of(
    st.integers(-1000, 1000),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.booleans(),
    st.text(st.characters(codec="ascii", exclude_characters="\\"), max_size=8),
)
_values = st.one_of(_scalars, st.lists(_scalars, max_size=3).map(tuple))


def _steps(depth: int = 2) -> st.SearchStrategy[Step]:
    leaf = st.builds(
        lambda name, opts: Step(name, tuple(opts.items())),
        _names,
        st.dictionaries(_names, _values, max_size=3),
    )
    if depth == 0:
        return leaf
    group = st.lists(_steps(depth - 1), min_size=1, max_size=3).map(
        lambda children: Step("fixpoint", children=tuple(children))
    )
    return st.one_of(leaf, group)


@given(st.lists(_steps(), min_size=1, max_size=4))
def test_parse_of_format_round_trips(steps: list[Step]) -> None:
    assert parse_pipeline(format_pipeline(steps)) == steps


@dataclasses.dataclass
class _Opts:
    ratio: float = 0.5
    steps: int = 1
    per_channel: bool = True
    mode: Literal["int8", "fp16"] = "int8"
    skip: tuple[str, ...] = ()
    note: str | None = None


def test_resolve_options_converts_and_checks() -> None:
    opts = resolve_options("q", _Opts, {"ratio": 1, "skip": ("a", "b"), "mode": "fp16"})
    assert opts == _Opts(ratio=1.0, skip=("a", "b"), mode="fp16")
    assert resolve_options("q", _Opts, {"skip": "conv1"}).skip == ("conv1",)
    assert resolve_options("q", _Opts, {"note": "none"}).note is None


@pytest.mark.parametrize(
    ("given", "fragment"),
    [
        ({"ratoi": 0.3}, "has no option 'ratoi'"),
        ({"steps": 1.5}, "must be int"),
        ({"per_channel": 1}, "must be bool"),
        ({"mode": "int4"}, "must be Literal"),
    ],
)
def test_resolve_options_errors_name_key_and_valid_options(given: dict, fragment: str) -> None:
    with pytest.raises(PassOptionError) as info:
        resolve_options("q", _Opts, given)
    assert fragment in info.value.message
    assert "'q'" in info.value.message
    assert info.value.hint is not None and "ratio: float" in info.value.hint
