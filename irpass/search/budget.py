"""The accuracy budget of a search: how much a metric may drop, or a floor it must stay above.

Text forms (``--max-drop``):

=====================  ======================================================================
``1%`` / ``1pt``       the task metric may lose 1 percentage point (0.978 -> >= 0.968)
``0.5``                the same in points (a bare number is percentage points)
``2%rel``              the task metric may lose 2 % of its baseline value (0.90 -> >= 0.882)
``macro_f1:1%``        a drop on a named metric instead of the default one
``cosine>=0.99``       a fidelity floor (no labels needed): ``cosine``, ``sqnr_db``,
                       ``top1_agreement``, or any metric the evaluator reports
``mse<=0.02``          a ceiling, for metrics where lower is better
=====================  ======================================================================

The default task metric is ``accuracy`` when labels are given; without labels a drop budget
applies to ``top1_agreement`` (or ``cosine`` for outputs that are not class scores), measured
against the input model. Metrics where lower is better (``mse``, ``max_abs_error``) "drop" by
growing.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Literal

from irpass.errors import PipelineError

__all__ = ["LOWER_IS_BETTER", "Budget", "parse_budget"]

#: Metrics where a smaller value is better.
LOWER_IS_BETTER = frozenset({"mse", "max_abs_error"})

_DROP_RE = re.compile(
    r"^(?:(?P<metric>[A-Za-z_][A-Za-z0-9_:]*?):)?(?P<value>\d+(?:\.\d+)?)\s*"
    r"(?P<unit>%rel|rel|%|pt|pts)?$"
)
_BOUND_RE = re.compile(r"^(?P<metric>[A-Za-z_][A-Za-z0-9_:]*)\s*(?P<op>>=|<=)\s*"
                       r"(?P<value>[+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)$")


@dataclasses.dataclass(frozen=True)
class Budget:
    """What a candidate must keep: a drop relative to the baseline, or an absolute bound.

    Attributes:
        metric: The metric the budget is on (None: chosen from the evaluator's metrics).
        kind: ``points`` (absolute drop in percentage points), ``relative`` (fraction of the
            baseline), ``floor`` (metric >= value) or ``ceiling`` (metric <= value).
        value: Points, fraction, or the bound.
        text: The text it was parsed from (for reports).
    """

    metric: str | None
    kind: Literal["points", "relative", "floor", "ceiling"]
    value: float
    text: str

    def resolve(self, metrics: Mapping[str, float], has_labels: bool) -> Budget:
        """Fix ``metric`` from the baseline's metrics when the text did not name one."""
        if self.metric is not None:
            if self.metric not in metrics:
                raise PipelineError(
                    f"the budget {self.text!r} is on {self.metric!r}, which the evaluation "
                    f"does not report",
                    hint="metrics available: " + ", ".join(sorted(metrics)),
                )
            return self
        for name in (("accuracy", "mse") if has_labels else ()) + ("top1_agreement", "cosine"):
            if name in metrics:
                return dataclasses.replace(self, metric=name)
        raise PipelineError(
            f"no metric to apply the budget {self.text!r} to",
            hint="give --eval-data (and --labels for task metrics), or name a metric, "
            "e.g. --max-drop cosine>=0.99",
        )

    def threshold(self, baseline: Mapping[str, float]) -> float:
        """The worst acceptable value of the metric given the baseline's metrics."""
        if self.metric is None:
            raise ValueError("resolve() the budget first")
        if self.kind in ("floor", "ceiling"):
            return self.value
        base = float(baseline[self.metric])
        lower_better = self.metric in LOWER_IS_BETTER
        if self.kind == "points":
            delta = self.value / 100.0
        else:
            delta = abs(base) * self.value
        return base + delta if lower_better else base - delta

    def allows(self, baseline: Mapping[str, float], metrics: Mapping[str, float]) -> bool:
        """Whether ``metrics`` stay within the budget (a missing metric never does)."""
        if self.metric is None or self.metric not in metrics:
            return False
        value = float(metrics[self.metric])
        limit = self.threshold(baseline)
        if self.kind == "ceiling" or (self.kind != "floor" and self.metric in LOWER_IS_BETTER):
            return value <= limit + 1e-12
        return value >= limit - 1e-12

    def slack(self, baseline: Mapping[str, float], metrics: Mapping[str, float]) -> float:
        """How far ``metrics`` are inside the budget (negative: outside)."""
        if self.metric is None or self.metric not in metrics:
            return float("-inf")
        value = float(metrics[self.metric])
        limit = self.threshold(baseline)
        if self.kind == "ceiling" or (self.kind != "floor" and self.metric in LOWER_IS_BETTER):
            return limit - value
        return value - limit

    def describe(self) -> str:
        """One phrase for summaries, e.g. ``accuracy may drop 1 point``."""
        metric = self.metric or "the task metric"
        if self.kind == "points":
            return f"{metric} may drop {self.value:g} point{'s' if self.value != 1 else ''}"
        if self.kind == "relative":
            return f"{metric} may drop {self.value * 100:g} % of its value"
        return f"{metric} {'>=' if self.kind == 'floor' else '<='} {self.value:g}"


def parse_budget(text: str) -> Budget:
    """Parse ``--max-drop`` text (see the module docstring); raises PipelineError."""
    cleaned = text.strip().replace(" ", "")
    bound = _BOUND_RE.match(cleaned)
    if bound:
        kind: Literal["floor", "ceiling"] = "floor" if bound["op"] == ">=" else "ceiling"
        return Budget(bound["metric"], kind, float(bound["value"]), text)
    drop = _DROP_RE.match(cleaned)
    if drop:
        value = float(drop["value"])
        unit = drop["unit"] or "pt"
        if unit in ("%rel", "rel"):
            if value >= 100:
                raise PipelineError(f"a relative budget of {text!r} allows losing everything",
                                    hint="e.g. --max-drop 2%rel")
            return Budget(drop["metric"], "relative", value / 100.0, text)
        return Budget(drop["metric"], "points", value, text)
    raise PipelineError(
        f"cannot read the budget {text!r}",
        hint="write a drop in points (1%, 0.5pt), a relative drop (2%rel), or a bound "
        "(cosine>=0.99, mse<=0.02)",
    )
