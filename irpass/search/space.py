"""The search space: lossy knobs, each a pass option with levels from gentle to aggressive.

A :class:`Knob` varies one option of one lossy pass (``prune(ratio=...)``) or switches a step
on and off (``quantize(mode=int8,rules=ort)``). Level 0 leaves the step out; level ``i`` uses
the ``i``-th value. A candidate is one level per knob, and its pipeline is the knobs' steps in
knob order followed by the target's remaining steps.

:func:`default_knobs` builds the space from what the registry holds: pruning and low-rank
factorization when those passes are installed, and every lossy step of the target's pipeline
(quantization), so the search grows with the passes without changes here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from irpass import registry
from irpass.errors import PipelineError
from irpass.pass_base import IrpassPass
from irpass.pipeline import OptionValue, Step, expand_presets, format_pipeline, parse_pipeline

__all__ = ["Knob", "SearchSpace", "default_knobs", "split_lossless_prefix"]

#: Levels tried for passes that take a fraction (pruning ratio, low-rank parameter ratio).
RATIO_LEVELS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)

#: Options the search varies when a pass of that name is a knob: (option, levels from gentle
#: to aggressive). quantize's ``max_drop`` is its own fallback budget (top-1 disagreement on
#: calibration data, points): a larger one leaves fewer sensitive layers in float.
GRADED_OPTIONS: dict[str, tuple[str, tuple[float, ...]]] = {
    "prune": ("ratio", RATIO_LEVELS),
    "svd": ("ratio", RATIO_LEVELS),
    "quantize": ("max_drop", (0.25, 0.5, 1.0, 2.0, 4.0)),
}

#: Lossy passes the search adds, when they are registered, to a pipeline that lacks them.
OPTIONAL_PASSES: tuple[str, ...] = ("prune", "svd")


@dataclasses.dataclass(frozen=True)
class Knob:
    """One searchable setting of one lossy pass."""

    name: str
    pass_name: str
    option: str | None
    values: tuple[OptionValue, ...]
    fixed: tuple[tuple[str, OptionValue], ...] = ()
    #: Per level, several options at once (e.g. a ratio and the per-layer ratios behind it);
    #: ``values`` then only name the levels.
    variants: tuple[tuple[tuple[str, OptionValue], ...], ...] = ()

    @property
    def levels(self) -> int:
        """Number of levels besides 0 (off)."""
        if self.variants:
            return len(self.variants)
        return len(self.values) if self.option is not None else 1

    def step(self, level: int) -> Step | None:
        """The pipeline step at ``level`` (None for level 0)."""
        if level == 0:
            return None
        if not 1 <= level <= self.levels:
            raise ValueError(f"knob {self.name} has levels 0..{self.levels}, not {level}")
        options = dict(self.fixed)
        if self.variants:
            options.update(self.variants[level - 1])
        elif self.option is not None:
            options[self.option] = self.values[level - 1]
        return Step(self.pass_name, tuple(options.items()))

    def describe(self, level: int) -> str:
        """``prune.ratio=0.3``, ``quantize on`` or ``... off``."""
        if level == 0:
            return f"{self.name} off"
        if self.option is None:
            return f"{self.name} on"
        return f"{self.name}={self.values[level - 1]}"


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Knobs plus the steps that follow them in every candidate."""

    knobs: tuple[Knob, ...]
    tail: tuple[Step, ...] = ()

    def pipeline(self, levels: Sequence[int]) -> str:
        """Pipeline text of the candidate with these knob levels (empty when all are off)."""
        if len(levels) != len(self.knobs):
            raise ValueError(f"{len(levels)} levels for {len(self.knobs)} knobs")
        steps = [s for k, lv in zip(self.knobs, levels, strict=True) if (s := k.step(lv))]
        if steps or any(levels):
            steps += list(self.tail)
        return format_pipeline(steps) if steps else ""

    def describe(self, levels: Sequence[int]) -> str:
        """``prune.ratio=0.3, quantize on`` (knobs that are off are left out)."""
        parts = [k.describe(lv) for k, lv in zip(self.knobs, levels, strict=True) if lv]
        return ", ".join(parts) or "no lossy pass"


def _is_lossless(step: Step) -> bool:
    if step.is_fixpoint:
        return all(_is_lossless(child) for child in step.children)
    return registry.get_pass(step.name).lossless


def split_lossless_prefix(pipeline: str) -> tuple[list[Step], list[Step]]:
    """Split a pipeline into its leading lossless steps and the rest (presets expanded)."""
    steps = expand_presets(parse_pipeline(pipeline))
    for index, step in enumerate(steps):
        if not _is_lossless(step):
            return steps[:index], steps[index:]
    return steps, []


def _knob(cls: type[IrpassPass], step: Step) -> Knob:
    """A graded knob when the pass has a graded option that applies, else on/off."""
    graded = GRADED_OPTIONS.get(step.name)
    fields = {f.name: f for f in dataclasses.fields(cls.Options)}
    given = step.options_dict()
    applies = graded is not None and graded[0] in fields
    if applies and step.name == "quantize":
        # only int8 QDQ has a fallback budget; fp16 and weight-only are on/off
        mode = given.get("mode", fields["mode"].default if "mode" in fields else "int8")
        applies = mode == "int8"
    if graded is None or not applies:
        return Knob(step.name, step.name, None, (), step.options)
    option, levels = graded
    fixed = tuple((k, v) for k, v in step.options if k != option)
    return Knob(f"{step.name}.{option}", step.name, option, levels, fixed)


def default_knobs(
    rest: Sequence[Step],
    only: Sequence[str] | None = None,
    pass_options: Mapping[str, Mapping[str, OptionValue]] | None = None,
) -> SearchSpace:
    """Knobs for the optional lossy passes that are registered and the lossy steps of ``rest``.

    ``rest`` is what follows the lossless prefix of the target's pipeline: its lossy steps
    become knobs (graded over :data:`GRADED_OPTIONS` where one applies, else on/off, keeping
    their other options) and its lossless steps stay in the tail.
    ``only`` restricts the knobs to these pass names. ``pass_options`` are options the added
    optional passes take in every candidate (a target's channel alignment as prune's
    ``round_to``); options a pass does not have are left out.
    """
    known = {cls.name: cls for cls in registry.list_passes()}
    knobs: list[Knob] = []
    in_rest = {s.name for s in rest if not s.is_fixpoint}
    for pass_name in OPTIONAL_PASSES:
        if pass_name in known and pass_name not in in_rest:
            fields = {f.name for f in dataclasses.fields(known[pass_name].Options)}
            given = (pass_options or {}).get(pass_name, {})
            options = tuple((k, v) for k, v in given.items() if k in fields)
            knob = _knob(known[pass_name], Step(pass_name, options))
            if knob.option is not None:
                knobs.append(knob)
    tail: list[Step] = []
    for step in rest:
        if not step.is_fixpoint and not registry.get_pass(step.name).lossless:
            knobs.append(_knob(registry.get_pass(step.name), step))
        else:
            tail.append(step)
    if only is not None:
        unknown = [n for n in only if n not in {k.pass_name for k in knobs}]
        if unknown:
            raise PipelineError(
                f"cannot search over {', '.join(unknown)}: not a lossy pass of this pipeline "
                "or not installed",
                hint="searchable here: " + (", ".join(k.pass_name for k in knobs) or "none"),
            )
        knobs = [k for k in knobs if k.pass_name in only]
    return SearchSpace(tuple(knobs), tuple(tail))
