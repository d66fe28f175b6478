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
from irpass.pipeline import format_pipeline
from irpass.search.budget import Budget
from irpass.search.executors import Executor
from irpass.search.layers import PROBE_RATIO, LayerProbe, per_layer_knob, probe_step
from irpass.search.space import Knob, SearchSpace
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
    index: int = 0
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
        data.update(index=self.index, description=self.description, phase=self.phase,
                    feasible=self.feasible,
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


Candidate = tuple[str, str, Levels]  # pipeline text, description, levels in the space


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
        layer_probes: LayerProbeFn | None,
    ) -> None:
        self.space = space
        self.settings = settings
        self.budget = budget
        self.options = options
        self.executor = executor
        self.progress = progress
        self.has_labels = has_labels
        self.layer_probes = layer_probes
        self.points: dict[str, SearchPoint] = {}  # by pipeline text: one evaluation each
        self.started = time.perf_counter()
        self.stopped_early = False
        self.baseline_metrics: dict[str, float] = {}
        self._models: dict[str, bytes] = {}

    # ------------------------------------------------------------------ evaluation
    def _out_of_time(self) -> bool:
        limit = self.options.budget_seconds
        return limit is not None and time.perf_counter() - self.started > limit

    def at(self, levels: Levels) -> Candidate:
        return self.space.pipeline(levels), self.space.describe(levels), levels

    def evaluate(self, candidates: Sequence[Candidate], phase: str) -> list[SearchPoint]:
        """Evaluate the candidates not seen yet (one parallel batch); return all of them."""
        fresh = list({c[0]: c for c in candidates if c[0] not in self.points}.values())
        room = self.options.max_candidates - len(self.points)
        if fresh and (room <= 0 or (self.points and self._out_of_time())):
            self.stopped_early = True
            fresh = []
        if len(fresh) > max(0, room):
            self.stopped_early = True
            fresh = fresh[: max(0, room)]
        if fresh:
            if self.progress is not None:
                self.progress(f"{phase}: {len(fresh)} setting(s), {len(self.points)} done")
            jobs = [CandidateJob(levels, pipeline, self.settings)
                    for pipeline, _, levels in fresh]
            results = self.executor.map(evaluate_candidate, jobs)
            for (_, description, _), result in zip(fresh, results, strict=True):
                self._record(description, result, phase)
        return [self.points[c[0]] for c in candidates if c[0] in self.points]

    def _record(self, description: str, result: CandidateResult, phase: str) -> None:
        point = SearchPoint(result, description, phase, index=len(self.points))
        if result.ok:
            if not self.baseline_metrics:  # the first point recorded is the baseline
                self.baseline_metrics = dict(result.metrics)
                self.budget = self.budget.resolve(result.metrics, self.has_labels)
            point.feasible = self.budget.allows(self.baseline_metrics, result.metrics)
            point.slack = self.budget.slack(self.baseline_metrics, result.metrics)
            point.cost = result.cost
            if result.model_bytes is not None and point.feasible:
                self._models[result.pipeline] = result.model_bytes
        result.model_bytes = None  # reports and results stay small
        self.points[result.pipeline] = point

    def lookup(self, levels: Levels) -> SearchPoint | None:
        return self.points.get(self.space.pipeline(levels))

    # ------------------------------------------------------------------ strategy
    def _ranking(self) -> str:
        return "cost" if self.options.objective == "latency" else self.options.objective

    def best(self, points: Sequence[SearchPoint]) -> SearchPoint | None:
        feasible = [p for p in points if p.feasible]
        if not feasible:
            return None
        ranking = self._ranking()
        return min(feasible, key=lambda p: (p.objective(ranking), -p.slack, p.index))

    def _singles(self, k: int) -> list[Candidate]:
        n = len(self.space.knobs)
        return [self.at(tuple(level if i == k else 0 for i in range(n)))
                for level in range(1, self.space.knobs[k].levels + 1)]

    def run(self) -> SearchResult:
        knobs = self.space.knobs
        zero: Levels = tuple(0 for _ in knobs)
        baseline = self.evaluate([self.at(zero)], "baseline")
        if not baseline or not baseline[0].result.ok:
            error = baseline[0].result.error if baseline else "not evaluated"
            raise RuntimeError(f"the model without lossy passes cannot be evaluated: {error}")
        base = baseline[0]
        base.feasible = True
        names = [k.name for k in knobs]
        if knobs:
            self.evaluate([c for k in range(len(knobs)) for c in self._singles(k)],
                          "sensitivity")
            self._per_layer()
            names = [k.name for k in self.space.knobs]
            start = tuple(self._highest_alone(k) for k in range(len(self.space.knobs)))
            current = self._combine(start)
            if current is not None:
                self._climb(current)
        chosen = self._finalize(base)
        return SearchResult(
            budget=self.budget,
            objective=self.options.objective,
            knobs=names,
            baseline=base,
            points=sorted(self.points.values(), key=lambda p: p.index),
            chosen=chosen,
            stopped_early=self.stopped_early,
            seconds=time.perf_counter() - self.started,
        )

    def _per_layer(self) -> None:
        """Replace a pruning knob by per-layer ratios from each group's sensitivity alone.

        The per-layer knob is kept when it fits the budget at a setting at least as cheap as
        the global knob's best; otherwise the global knob stays.
        """
        if self.layer_probes is None:
            return
        for k, knob in enumerate(self.space.knobs):
            if knob.pass_name != "prune" or knob.option != "ratio" or knob.variants:
                continue
            probes = self.layer_probes(knob)
            if len(probes) < 2:
                continue
            n = len(self.space.knobs)
            zero = tuple(0 for _ in range(n))
            prefix = [s for s in (self.space.knobs[i].step(0) for i in range(n)) if s]
            candidates = []
            for probe in probes:
                steps = [*prefix, probe_step(knob, probe), *self.space.tail]
                candidates.append((format_pipeline(steps), f"{knob.pass_name} group "
                                   f"{probe.group} ({probe.label}) alone at {PROBE_RATIO}",
                                   zero))
            probed = self.evaluate(candidates, "layer sensitivity")
            if len(probed) != len(probes) or not all(p.result.ok for p in probed):
                continue
            # what each group costs alone, in the budget's metric and direction (a group
            # whose pruning happens to help costs nothing)
            base_slack = self.budget.slack(self.baseline_metrics, self.baseline_metrics)
            drops = [max(0.0, base_slack - p.slack) for p in probed]
            global_best = self.best([p for c in self._singles(k)
                                     if (p := self.points.get(c[0])) is not None])
            knobs = list(self.space.knobs)
            knobs[k] = per_layer_knob(knob, probes, drops)
            layered = dataclasses.replace(self.space, knobs=tuple(knobs))
            previous, self.space = self.space, layered
            layered_best = self.best(self.evaluate(self._singles(k), "per-layer sensitivity"))
            ranking = self._ranking()
            if layered_best is None or (global_best is not None and global_best.objective(
                    ranking) < layered_best.objective(ranking)):
                self.space = previous

    def _highest_alone(self, k: int) -> int:
        best = 0
        for level in range(1, self.space.knobs[k].levels + 1):
            point = self.lookup(tuple(level if i == k else 0
                                      for i in range(len(self.space.knobs))))
            if point is not None and point.feasible:
                best = level
        return best

    def _combine(self, start: Levels) -> Levels | None:
        current = start
        while any(current):
            point = self.evaluate([self.at(current)], "combine")
            if not point:
                return None
            if point[0].feasible:
                return current
            # each knob one level down, and each knob off: a knob that costs most of the
            # budget (e.g. an aggressive low-rank ratio) is dropped in one step instead of
            # walking it down level by level while the others stay at their highest
            downs = [tuple(lv - 1 if i == k else lv for i, lv in enumerate(current))
                     for k in range(len(current)) if current[k] > 0]
            downs += [tuple(0 if i == k else lv for i, lv in enumerate(current))
                      for k in range(len(current)) if current[k] > 1]
            tried = self.evaluate([self.at(d) for d in downs], "back off")
            if len(tried) != len(downs):
                return None
            by_point = dict(zip([id(p) for p in tried], downs, strict=True))
            best = self.best(tried)
            if best is not None:
                return by_point[id(best)]
            ok = [p for p in tried if p.result.ok]
            if not ok:
                return None
            current = by_point[id(max(ok, key=lambda p: (p.slack, -p.index)))]
        return None

    def _climb(self, current: Levels) -> Levels:
        ranking = self._ranking()
        while True:
            here = self.lookup(current)
            ups = [tuple(lv + 1 if i == k else lv for i, lv in enumerate(current))
                   for k, knob in enumerate(self.space.knobs) if current[k] < knob.levels]
            tried = self.evaluate([self.at(u) for u in ups], "climb")
            if len(tried) != len(ups) or here is None:
                return current
            best = self.best(tried)
            if best is None or best.objective(ranking) >= here.objective(ranking):
                return current
            current = dict(zip([id(p) for p in tried], ups, strict=True))[id(best)]

    def _finalize(self, base: SearchPoint) -> SearchPoint:
        feasible = [p for p in sorted(self.points.values(), key=lambda p: p.index)
                    if p.feasible]
        if self.options.objective != "latency":
            return self.best(feasible) or base
        ranked = sorted((p for p in feasible
                         if p is not base and p.result.pipeline in self._models),
                        key=lambda p: (p.objective("cost"), p.index))
        finalists = ranked[: self.options.latency_finalists]
        if not finalists:
            return base
        if self.progress is not None:
            self.progress(f"timing {len(finalists)} finalists against the baseline")
        with tempfile.TemporaryDirectory(prefix="irpass-search-") as tmp:
            paths = {"baseline": self.settings.model.local_path()}
            for point in finalists:
                path = pathlib.Path(tmp) / f"candidate-{point.index}.onnx"
                path.write_bytes(self._models[point.result.pipeline])
                paths[f"#{point.index}"] = str(path)
            report = measure_latency(paths, repeats=30, warmup=3, seed=self.settings.seed)
        base.latency_ms = report.stats["baseline"].median_ms
        winner = base
        for point in finalists:
            key = f"#{point.index}"
            point.latency_ms = report.stats[key].median_ms
            faster = report.ratio("baseline", key) < 1.0 and report.is_real("baseline", key)
            if faster and (winner is base or point.latency_ms < (winner.latency_ms or math.inf)):
                winner = point
        if winner is base:
            # nothing measurably faster: never ship a slower model, prefer the smallest of the
            # finalists that is not measurably slower
            not_slower = [p for p in finalists
                          if not (report.ratio("baseline", f"#{p.index}") > 1.0
                                  and report.is_real("baseline", f"#{p.index}"))]
            if not_slower:
                winner = min(not_slower, key=lambda p: (p.objective("size"), p.index))
        return winner


LayerProbeFn = Callable[[Knob], list[LayerProbe]]


def run_search(
    space: SearchSpace,
    settings: EvalSettings,
    budget: Budget,
    executor: Executor,
    *,
    options: SearchOptions | None = None,
    has_labels: bool = False,
    progress: Progress | None = None,
    layer_probes: LayerProbeFn | None = None,
) -> SearchResult:
    """Search ``space`` for the cheapest setting within ``budget`` (see the module docstring).

    ``layer_probes`` lists the prunable groups of a pruning knob (see
    :mod:`irpass.search.layers`); with it, pruning ratios are also searched per layer.
    """
    options = options or SearchOptions()
    if options.objective == "latency" and not settings.return_model:
        settings = dataclasses.replace(settings, return_model=True)
    search = _Search(space, settings, budget, options, executor, progress, has_labels,
                     layer_probes)
    return search.run()


def prepared_model_file(model: ir.Model, directory: pathlib.Path, name: str) -> pathlib.Path:
    """Save ``model`` as ``directory/name`` for the workers and return the path."""
    path = directory / name
    save_model(model, path)
    load_model(path)  # fail here, not in every worker, when the file does not load
    return path


__all__ += ["prepared_model_file"]
