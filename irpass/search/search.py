"""Accuracy-budgeted search over the lossy knobs of a pipeline.

Given the knobs (:mod:`irpass.search.space`), a budget (:mod:`irpass.search.budget`) and an
objective (:mod:`irpass.search.objective`), the search looks for the cheapest setting whose
evaluation stays inside the budget:

1. **Sensitivity.** Every knob alone at every level (one batch of parallel evaluations):
   how much each pass costs in accuracy, per level.
2. **Combine.** Every knob at the highest level it stands alone. When the combination breaks
   the budget, step down the knob whose step down is cheapest (all single step-downs are
   evaluated in parallel; the feasible one with the best objective wins, else the one closest
   to the budget) until it fits.
3. **Climb.** From the feasible point, evaluate every single step up in parallel and move to
   the best feasible one, until none improves the objective.

Every evaluated point is recorded (it becomes the Pareto plot of the report). The baseline
(every knob off) is always feasible, so the search returns the unmodified model, and says so,
when nothing else fits. ``budget_seconds`` stops the search between batches; the best feasible
point so far is returned. Results do not depend on the executor: jobs are collected in order
and ties are broken by knob levels. With the ``latency`` objective the search itself ranks by
the cost estimate and the final choice among the best feasible points is measured.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import pathlib
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import onnx_ir as ir

from irpass.bench import measure_latency
from irpass.ir import load_model, save_model
from irpass.search.budget import Budget
from irpass.search.executors import Executor
from irpass.search.space import SearchSpace
from irpass.search.worker import CandidateJob, CandidateResult, EvalSettings, evaluate_candidate

__all__ = ["SearchOptions", "SearchPoint", "SearchResult", "run_search"]

logger = logging.getLogger(__name__)

Levels = tuple[int, ...]
Progress = Callable[[str], None]


@dataclasses.dataclass
class SearchOptions:
    """How the search runs.

    Attributes:
        objective: ``cost`` (per-target estimate), ``size`` (file bytes), ``macs`` or
            ``latency`` (measured on this machine among the best feasible points).
        budget_seconds: Stop starting new batches after this long (None: no limit).
        max_candidates: Upper bound on evaluated candidates.
        latency_finalists: How many of the best feasible points are timed for ``latency``.
    """

    objective: str = "cost"
    budget_seconds: float | None = None
    max_candidates: int = 60
    latency_finalists: int = 4


@dataclasses.dataclass
class SearchPoint:
    """One evaluated candidate, with what the search made of it."""

    result: CandidateResult
    description: str
    phase: str
    feasible: bool = False
    slack: float = float("-inf")
    cost: float | None = None
    latency_ms: float | None = None

    def objective(self, name: str) -> float:
        """The value the search minimizes for objective ``name`` (inf when unknown)."""
        value: float | int | None
        if name == "size":
            value = self.result.file_bytes
        elif name == "macs":
            value = self.result.macs
        elif name == "latency" and self.latency_ms is not None:
            value = self.latency_ms
        else:
            value = self.cost
        return float("inf") if value is None else float(value)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (also what the report's Pareto plot reads)."""
        data = self.result.to_dict()
        data.update(description=self.description, phase=self.phase, feasible=self.feasible,
                    slack=None if math.isinf(self.slack) else self.slack, cost=self.cost,
                    latency_ms=self.latency_ms)
        return data


@dataclasses.dataclass
class SearchResult:
    """Every point the search evaluated, the baseline and the one it chose."""

    budget: Budget
    objective: str
    knobs: list[str]
    baseline: SearchPoint
    points: list[SearchPoint]
    chosen: SearchPoint
    stopped_early: bool = False
    seconds: float = 0.0

    @property
    def pipeline(self) -> str:
        """The lossy part of the chosen candidate's pipeline ("" when nothing fit)."""
        return self.chosen.result.pipeline

    @property
    def found(self) -> bool:
        """Whether a setting other than the baseline fits the budget."""
        return self.chosen is not self.baseline

    def summary(self) -> str:
        """One sentence for the user."""
        if not self.found:
            return (f"no setting of {', '.join(self.knobs) or 'the lossy passes'} met the "
                    f"budget ({self.budget.describe()}); the model keeps only lossless passes")
        return (f"chose {self.chosen.description} of {len(self.points)} settings tried "
                f"({self.budget.describe()}; objective {self.objective})")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for report.json."""
        return {
            "budget": self.budget.text,
            "budget_metric": self.budget.metric,
            "budget_described": self.budget.describe(),
            "threshold": (self.budget.threshold(self.baseline.result.metrics)
                          if self.budget.metric in self.baseline.result.metrics else None),
            "objective": self.objective,
            "knobs": self.knobs,
            "found": self.found,
            "summary": self.summary(),
            "chosen": self.chosen.to_dict(),
            "baseline": self.baseline.to_dict(),
            "points": [p.to_dict() for p in self.points],
            "stopped_early": self.stopped_early,
            "seconds": self.seconds,
        }


class _Search:
    def __init__(
        self,
        space: SearchSpace,
        settings: EvalSettings,
        budget: Budget,
        options: SearchOptions,
        executor: Executor,
        progress: Progress | None,
        has_labels: bool,
    ) -> None:
        self.space = space
        self.settings = settings
        self.budget = budget
        self.options = options
        self.executor = executor
        self.progress = progress
        self.has_labels = has_labels
        self.points: dict[Levels, SearchPoint] = {}
        self.order: list[Levels] = []
        self.started = time.perf_counter()
        self.stopped_early = False
        self.baseline_metrics: dict[str, float] = {}
        self._models: dict[Levels, bytes] = {}

    # ------------------------------------------------------------------ evaluation
    def _out_of_time(self) -> bool:
        limit = self.options.budget_seconds
        return limit is not None and time.perf_counter() - self.started > limit

    def evaluate(self, candidates: Sequence[Levels], phase: str) -> list[SearchPoint]:
        """Evaluate the candidates not seen yet (one parallel batch); return all of them."""
        fresh = [c for c in dict.fromkeys(candidates) if c not in self.points]
        room = self.options.max_candidates - len(self.points)
        if fresh and (room <= 0 or (self.points and self._out_of_time())):
            self.stopped_early = True
            fresh = []
        fresh = fresh[: max(0, room)]
        if fresh:
            if self.progress is not None:
                self.progress(f"{phase}: {len(fresh)} setting(s), {len(self.points)} done")
            jobs = [CandidateJob(c, self.space.pipeline(c), self.settings) for c in fresh]
            for levels, result in zip(fresh, self.executor.map(evaluate_candidate, jobs),
                                      strict=True):
                self._record(levels, result, phase)
        return [self.points[c] for c in candidates if c in self.points]

    def _record(self, levels: Levels, result: CandidateResult, phase: str) -> None:
        point = SearchPoint(result, self.space.describe(levels), phase)
        if result.ok:
            if not self.baseline_metrics:  # the first point recorded is the baseline
                self.baseline_metrics = dict(result.metrics)
                self.budget = self.budget.resolve(result.metrics, self.has_labels)
            point.feasible = self.budget.allows(self.baseline_metrics, result.metrics)
            point.slack = self.budget.slack(self.baseline_metrics, result.metrics)
            point.cost = result.cost
            if result.model_bytes is not None and point.feasible:
                self._models[levels] = result.model_bytes
        result.model_bytes = None  # reports and results stay small
        self.points[levels] = point
        self.order.append(levels)

    # ------------------------------------------------------------------ strategy
    def best(self, points: Sequence[SearchPoint]) -> SearchPoint | None:
        feasible = [p for p in points if p.feasible]
        if not feasible:
            return None
        ranking = "cost" if self.options.objective == "latency" else self.options.objective
        return min(feasible, key=lambda p: (p.objective(ranking), -p.slack, p.result.levels))

    def run(self) -> SearchResult:
        knobs = self.space.knobs
        zero: Levels = tuple(0 for _ in knobs)
        baseline = self.evaluate([zero], "baseline")
        if not baseline or not baseline[0].result.ok:
            error = baseline[0].result.error if baseline else "not evaluated"
            raise RuntimeError(f"the model without lossy passes cannot be evaluated: {error}")
        base = baseline[0]
        base.feasible = True
        current = base
        if knobs:
            singles = [tuple(level if i == k else 0 for i in range(len(knobs)))
                       for k, knob in enumerate(knobs) for level in range(1, knob.levels + 1)]
            self.evaluate(singles, "sensitivity")
            start = tuple(self._highest_alone(k) for k in range(len(knobs)))
            current = self._combine(start) or base
            current = self._climb(current)
        chosen = self._finalize(base)
        return SearchResult(
            budget=self.budget,
            objective=self.options.objective,
            knobs=[k.name for k in knobs],
            baseline=base,
            points=[self.points[c] for c in self.order],
            chosen=chosen,
            stopped_early=self.stopped_early,
            seconds=time.perf_counter() - self.started,
        )

    def _highest_alone(self, k: int) -> int:
        best = 0
        for level in range(1, self.space.knobs[k].levels + 1):
            levels = tuple(level if i == k else 0 for i in range(len(self.space.knobs)))
            point = self.points.get(levels)
            if point is not None and point.feasible:
                best = level
        return best

    def _combine(self, start: Levels) -> SearchPoint | None:
        current = start
        while any(current):
            point = self.evaluate([current], "combine")
            if not point:
                return None
            if point[0].feasible:
                return point[0]
            downs = [tuple(lv - 1 if i == k else lv for i, lv in enumerate(current))
                     for k in range(len(current)) if current[k] > 0]
            tried = self.evaluate(downs, "back off")
            if not tried:
                return None
            best = self.best(tried)
            if best is not None:
                return best
            ok = [p for p in tried if p.result.ok]
            if not ok:
                return None
            current = max(ok, key=lambda p: (p.slack, [-x for x in p.result.levels])).result.levels
        return None

    def _climb(self, current: SearchPoint) -> SearchPoint:
        ranking = "cost" if self.options.objective == "latency" else self.options.objective
        while True:
            levels = current.result.levels
            ups = [tuple(lv + 1 if i == k else lv for i, lv in enumerate(levels))
                   for k, knob in enumerate(self.space.knobs) if levels[k] < knob.levels]
            best = self.best(self.evaluate(ups, "climb"))
            if best is None or best.objective(ranking) >= current.objective(ranking):
                return current
            current = best

    def _finalize(self, base: SearchPoint) -> SearchPoint:
        feasible = [self.points[c] for c in self.order if self.points[c].feasible]
        if self.options.objective != "latency":
            return self.best(feasible) or base
        ranked = sorted((p for p in feasible if p is not base and p.result.levels in self._models),
                        key=lambda p: (p.objective("cost"), p.result.levels))
        finalists = ranked[: self.options.latency_finalists]
        if not finalists:
            return base
        if self.progress is not None:
            self.progress(f"timing {len(finalists)} finalists against the baseline")
        with tempfile.TemporaryDirectory(prefix="irpass-search-") as tmp:
            paths = {"baseline": self.settings.model.local_path()}
            for point in finalists:
                path = pathlib.Path(tmp) / f"{'-'.join(map(str, point.result.levels))}.onnx"
                path.write_bytes(self._models[point.result.levels])
                paths[point.description] = str(path)
            report = measure_latency(paths, repeats=30, warmup=3, seed=self.settings.seed)
        base.latency_ms = report.stats["baseline"].median_ms
        winner = base
        for point in finalists:
            point.latency_ms = report.stats[point.description].median_ms
            faster = report.ratio("baseline", point.description) < 1.0 and report.is_real(
                "baseline", point.description)
            if faster and (winner is base or point.latency_ms < (winner.latency_ms or math.inf)):
                winner = point
        if winner is base:
            # nothing measurably faster: never ship a slower model, prefer the smallest of the
            # finalists that is not measurably slower
            not_slower = [p for p in finalists
                          if not (report.ratio("baseline", p.description) > 1.0
                                  and report.is_real("baseline", p.description))]
            if not_slower:
                winner = min(not_slower, key=lambda p: (p.objective("size"), p.result.levels))
        return winner


def run_search(
    space: SearchSpace,
    settings: EvalSettings,
    budget: Budget,
    executor: Executor,
    *,
    options: SearchOptions | None = None,
    has_labels: bool = False,
    progress: Progress | None = None,
) -> SearchResult:
    """Search ``space`` for the cheapest setting within ``budget`` (see the module docstring)."""
    options = options or SearchOptions()
    if options.objective == "latency" and not settings.return_model:
        settings = dataclasses.replace(settings, return_model=True)
    search = _Search(space, settings, budget, options, executor, progress, has_labels)
    return search.run()


def prepared_model_file(model: ir.Model, directory: pathlib.Path, name: str) -> pathlib.Path:
    """Save ``model`` as ``directory/name`` for the workers and return the path."""
    path = directory / name
    save_model(model, path)
    load_model(path)  # fail here, not in every worker, when the file does not load
    return path


__all__ += ["prepared_model_file"]
