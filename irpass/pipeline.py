"""Pipeline text: parse, print and type-check ``canonicalize,fixpoint(fold_constants,cse)``.

Grammar (whitespace between tokens is ignored)::

    pipeline := step ("," step)*
    step     := NAME                      a pass or a preset with default options
              | NAME "(" option ("," option)* ")"
              | "fixpoint" "(" pipeline ")"   run the steps until none modifies the model
    option   := KEY "=" value
    value    := INT | FLOAT | "true" | "false" | WORD | QUOTED | "[" value ("," value)* "]"

``format_pipeline(parse_pipeline(text))`` is canonical and ``parse(format(p)) == p`` for every
pipeline ``p``. Option values are checked against the pass's ``Options`` dataclass by
:func:`resolve_options`, which names the pass and the bad key in its error.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any, Union

from irpass.errors import PassOptionError, PipelineError

__all__ = [
    "FIXPOINT",
    "MAX_NESTING",
    "Step",
    "describe_type",
    "expand_presets",
    "format_pipeline",
    "format_value",
    "parse_pipeline",
    "resolve_options",
]

FIXPOINT = "fixpoint"
_TOKEN_RE = re.compile(
    r"\s*(?:(?P<punct>[(),=\[\]])|(?P<quoted>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')"
    r"|(?P<word>[^\s(),=\[\]\"']+))"
)
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: The escapes quoted option values understand (what format_value writes, plus \n and \t).
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t"}
#: Deepest nesting of fixpoint(...) groups and [...] lists; real pipelines use one or two.
MAX_NESTING = 16
_INT_RE = re.compile(r"^[+-]?\d+$")
_FLOAT_RE = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$|^[+-]?(inf|nan)$")

OptionValue = Union[int, float, bool, str, tuple]  # noqa: UP007  (a runtime alias on 3.10)


@dataclasses.dataclass(frozen=True)
class Step:
    """One pipeline step: a pass or preset with options, or a ``fixpoint`` of sub-steps."""

    name: str
    options: tuple[tuple[str, OptionValue], ...] = ()
    children: tuple[Step, ...] = ()

    @property
    def is_fixpoint(self) -> bool:
        """Whether this step is a ``fixpoint(...)`` group."""
        return self.name == FIXPOINT

    def options_dict(self) -> dict[str, OptionValue]:
        """The options as a dict (keys are unique by construction)."""
        return dict(self.options)

    def __str__(self) -> str:
        return format_pipeline([self])


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    stripped = text.rstrip()
    while pos < len(stripped):
        match = _TOKEN_RE.match(stripped, pos)
        if match is None:
            shown = text if len(text) <= 120 else text[:100] + "..."
            raise PipelineError(
                f"cannot read pipeline text at column {pos + 1}: {shown!r}",
                hint="close every quote; values with spaces or commas go in quotes",
            )
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0
        self.depth = 0

    def error(self, what: str) -> PipelineError:
        where = " ".join(tok for _, tok in self.tokens[max(0, self.pos - 2) : self.pos + 2])
        shown = self.text if len(self.text) <= 120 else self.text[:100] + "..."
        return PipelineError(
            f"bad pipeline text {shown!r}: {what} near {where!r}",
            hint="write steps as name or name(key=value,...), e.g. "
            "'canonicalize,fixpoint(fold_constants,eliminate_dead)'",
        )

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.error(f"groups nested deeper than {MAX_NESTING} levels")

    def unquote(self, token: str) -> str:
        body = token[1:-1]
        out: list[str] = []
        chars = iter(body)
        for char in chars:
            if char != "\\":
                out.append(char)
                continue
            escaped = next(chars, "")
            if escaped not in _ESCAPES:
                raise self.error(
                    f"unknown escape \\{escaped} in the quoted value {token}; inside quotes "
                    "only \\\\, \\\", \\' , \\n and \\t are escapes"
                )
            out.append(_ESCAPES[escaped])
        return "".join(out)

    def peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise self.error(f"expected {expected or 'more'} but the text ended")
        tok = self.tokens[self.pos]
        if expected is not None and tok[1] != expected:
            raise self.error(f"expected {expected!r}, found {tok[1]!r}")
        self.pos += 1
        return tok

    def pipeline(self) -> list[Step]:
        steps = [self.step()]
        while self.peek() == ",":
            self.take(",")
            steps.append(self.step())
        return steps

    def step(self) -> Step:
        kind, name = self.take()
        if kind != "word" or not _NAME_RE.match(name):
            raise self.error(f"expected a pass name, found {name!r}")
        if self.peek() != "(":
            if name == FIXPOINT:
                raise self.error("fixpoint needs steps: fixpoint(a,b)")
            return Step(name)
        self.take("(")
        if name == FIXPOINT:
            self.enter()
            children = tuple(self.pipeline())
            self.take(")")
            self.depth -= 1
            return Step(name, children=children)
        options: dict[str, OptionValue] = {}
        if self.peek() == ")":
            self.take(")")
            return Step(name)
        while True:
            kind, key = self.take()
            if kind != "word" or not _NAME_RE.match(key):
                raise self.error(f"expected an option name, found {key!r}")
            if key in options:
                raise self.error(f"option {key!r} given twice")
            self.take("=")
            options[key] = self.value()
            if self.peek() == ",":
                self.take(",")
                continue
            self.take(")")
            break
        return Step(name, tuple(options.items()))

    def value(self) -> OptionValue:
        kind, tok = self.take()
        if tok == "[":
            self.enter()
            items: list[OptionValue] = []
            if self.peek() == "]":
                self.take("]")
                self.depth -= 1
                return tuple(items)
            while True:
                items.append(self.value())
                if self.peek() == ",":
                    self.take(",")
                    continue
                self.take("]")
                self.depth -= 1
                return tuple(items)
        if kind == "quoted":
            return self.unquote(tok)
        if kind != "word":
            raise self.error(f"expected a value, found {tok!r}")
        if tok in ("true", "false"):
            return tok == "true"
        if _INT_RE.match(tok):
            return int(tok)
        if _FLOAT_RE.match(tok):
            return float(tok)
        return tok


def parse_pipeline(text: str) -> list[Step]:
    """Parse pipeline text into steps; raises PipelineError with the position of a mistake."""
    if not text or not text.strip():
        raise PipelineError(
            "the pipeline is empty", hint="name at least one pass, e.g. 'canonicalize'"
        )
    parser = _Parser(text)
    steps = parser.pipeline()
    if parser.pos != len(parser.tokens):
        raise parser.error("unexpected text after the pipeline")
    return steps


def format_value(value: OptionValue) -> str:
    """An option value as pipeline text (``true``, ``0.3``, ``[a,b]``, quoted when needed)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    text = str(value)
    needs_quotes = (
        not text
        or re.search(r"[\s(),=\[\]\"'\\]", text) is not None
        or text in ("true", "false")
        or _INT_RE.match(text) is not None
        or _FLOAT_RE.match(text) is not None
    )
    if needs_quotes:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def format_pipeline(steps: list[Step] | tuple[Step, ...]) -> str:
    """Print steps as canonical pipeline text (no spaces)."""
    parts = []
    for step in steps:
        if step.is_fixpoint:
            parts.append(f"{FIXPOINT}({format_pipeline(step.children)})")
        elif step.options:
            opts = ",".join(f"{k}={format_value(v)}" for k, v in step.options)
            parts.append(f"{step.name}({opts})")
        else:
            parts.append(step.name)
    return ",".join(parts)


def expand_presets(steps: list[Step] | tuple[Step, ...], _seen: tuple[str, ...] = ()) -> list[Step]:
    """Replace preset steps by their pipelines (recursively); passes stay as they are."""
    from irpass import registry

    out: list[Step] = []
    for step in steps:
        if step.is_fixpoint:
            out.append(Step(FIXPOINT, children=tuple(expand_presets(step.children, _seen))))
            continue
        preset = registry.get_preset(step.name)
        if preset is None:
            registry.get_pass(step.name)  # raises a PipelineError naming valid passes
            out.append(step)
            continue
        if step.options:
            raise PipelineError(
                f"preset {step.name!r} takes no options",
                hint=f"it stands for {preset.pipeline!r}; write those passes with options instead",
            )
        if step.name in _seen:
            raise PipelineError(
                f"preset {step.name!r} refers to itself",
                hint="a preset's pipeline must name passes or other presets, not itself",
            )
        out.extend(expand_presets(parse_pipeline(preset.pipeline), (*_seen, step.name)))
    return out


def describe_type(tp: Any) -> str:
    """Human-readable name of an option type annotation."""
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: OptionValue, tp: Any) -> tuple[bool, Any]:
    """Return (ok, converted) for ``value`` against the type annotation ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return True, value
    if origin in (Union, types.UnionType):
        if type(None) in args and value in ("none", "None"):
            return True, None
        for arg in args:
            if arg is type(None):
                continue
            ok, converted = _coerce(value, arg)
            if ok:
                return True, converted
        return False, None
    if origin is typing.Literal:
        return (value in args), value
    if origin in (tuple, list):
        if not isinstance(value, tuple):
            value = (value,)
        item_type = args[0] if args else Any
        converted_items = []
        for item in value:
            ok, conv = _coerce(item, item_type)
            if not ok:
                return False, None
            converted_items.append(conv)
        return True, tuple(converted_items) if origin is tuple else converted_items
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return (isinstance(value, int) and not isinstance(value, bool)), value
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        return False, None
    if tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, str(value)
        return isinstance(value, str), value
    return False, None


def resolve_options(pass_name: str, options_cls: type, given: dict[str, OptionValue]) -> Any:
    """Build ``options_cls`` from pipeline options, checking every key and type."""
    fields = {f.name: f for f in dataclasses.fields(options_cls)}
    hints = typing.get_type_hints(options_cls)
    valid = ", ".join(f"{n}: {describe_type(hints[n])}" for n in fields) or "(none)"
    kwargs: dict[str, Any] = {}
    for key, value in given.items():
        if key not in fields:
            raise PassOptionError(
                f"pass {pass_name!r} has no option {key!r}", hint=f"valid options: {valid}"
            )
        ok, converted = _coerce(value, hints[key])
        if not ok:
            raise PassOptionError(
                f"option {key!r} of pass {pass_name!r} must be {describe_type(hints[key])}, "
                f"got {format_value(value)}",
                hint=f"valid options: {valid}",
            )
        kwargs[key] = converted
    try:
        return options_cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise PassOptionError(
            f"bad options for pass {pass_name!r}: {exc}",
            hint=f"valid options: {valid}; see `irpass passes`",
        ) from exc
