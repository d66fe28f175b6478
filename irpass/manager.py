"""The irpass pipeline runner: runs a pipeline, verifying and measuring after every pass.

It wraps onnx-ir's pass contract (every step is an ``onnx_ir.passes`` pass) and adds:

- **verification** (:class:`irpass.verify.Verifier`) after each pass that modified the model:
  a light structural check, then for a lossless pass equality with the last verified state
  (proven by an unchanged computation fingerprint, or through ONNX Runtime on feeds derived from
  the graph: two input configurations, two seeds, dtype-aware tolerance); for a lossy pass the
  drift from the input model. At the end the full ONNX checker and an end-to-end comparison
  with the input model. Statuses say what ran: ``equal``, ``drift <metric>``,
  ``structural only``, ``skipped``;
- **overlap** (``--verify each``): the input model's reference runs and a lossless pass's
  whole-model check run in the background while the next passes run (ONNX Runtime releases
  the GIL); a deferred check is finished before the next pass that changed the model is
  checked, and when it failed its pass is rolled back and the pass that ran on its result is
  run again; the output is written (``run(write=...)``) while the end-to-end check runs;
- **fingerprints** before and after every pass: a pass that changed the model but reported
  ``modified=False`` is caught, verified anyway and named;
- **hygiene invariants** (:mod:`irpass.verify.hygiene`) after every pass: unused initializers,
  values, opsets, shadowed inputs, Constant nodes, consecutive Slices, and weight growth of a
  lossless pass that gave no reason; new items are attributed to the pass that introduced them
  and what remains at the end is reported by invariant and pass;
- **instrumentation**: time, nodes, params, weight bytes, MACs and peak activation memory per
  pass, MACs and activations at the first verification feed's input shapes (or the first
  ``--input-shapes``), recorded in ``RunReport.cost_shapes`` (the cost analysis is cached and
  invalidated only when a pass modifies the model);
- **evaluation**: ``context.evaluator`` (fidelity / task metrics) after every lossy pass;
- **dumps** of the model before and after every modifying pass (``dump_dir``);
- **failure handling**: a failing pass is named, a reproducer (the input model plus the flat
  pipeline of every pass run up to the failing one) is saved, and the model is restored to its
  state before the pass and the run continues (``on_failure="rollback"``, the default) or the
  run stops with an error (``"error"``, ``--strict``). A ``DataError`` (data the user must give
  are missing or unusable, e.g. INT8 quantization without calibration data) always stops the
  run: rolling back would hide the user's mistake behind a warning.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import pathlib
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np
import onnx_ir as ir

from irpass import __version__
from irpass.analysis.cost import Cost, model_cost, shapes_to_count
from irpass.compose import build_pass
from irpass.context import PassContext
from irpass.errors import (
    DataError,
    IrpassError,
    PassFailedError,
    UnsupportedModelError,
    VerificationError,
)
from irpass.ir import KNOWN_DOMAINS, save_model
from irpass.pass_base import IrpassPass
from irpass.pipeline import (
    Step,
    expand_presets,
    format_pipeline,
    parse_pipeline,
)
from irpass.run_report import PassRecord, RunReport, Verification
from irpass.validate import validate_model
from irpass.verify.fingerprint import StructureSnapshot, TensorHasher, structure_snapshot
from irpass.verify.hygiene import hygiene_issues
from irpass.verify.region import RegionOptions
from irpass.verify.structure import check_light
from irpass.verify.verifier import DeferredCheck, Verifier

__all__ = [
    "KNOWN_DOMAINS",
    "PipelineRunner",
    "RunOptions",
    "RunResult",
    "build_pass",
    "custom_ops",
]

logger = logging.getLogger(__name__)

VerifyMode = Literal["each", "final", "none"]
ProgressCallback = Callable[[str, int], None]


@dataclasses.dataclass
class RunOptions:
    """How the manager verifies, dumps and reacts to failures.

    Attributes:
        verify: ``each`` verifies after every modifying pass, ``final`` once at the end,
            ``none`` never (structure only at the end).
        seeds: Seeds of the generated verification inputs (ignored when ``feeds`` is given).
        feeds: Explicit verification inputs (``--verify-data``, or the first batches of
            ``--eval-data``).
        input_shapes: Input shapes to verify with instead of searching for them, one mapping
            per configuration (``--input-shapes``).
        dump_dir: Where to save the model before and after every modifying pass.
        reproducer_dir: Where to save the reproducer when a pass fails.
        on_failure: ``rollback`` (default) restores the model to its state before a failing
            pass, warns and continues; ``error`` stops the run (``--strict``, for CI) and also
            turns hygiene violations into errors.
        max_fixpoint_iterations: Bound on the repetitions of a ``fixpoint(...)`` group.
        allow_custom_ops: Accept ops from unknown domains (verification is then structural).
        tolerance_scale: Multiplier of the dtype tolerances for equivalence checks.
        feed_overridable: Also feed random values to float graph inputs that have defaults
            (IR >= 4), so a pass that freezes one is caught; not done when the pipeline
            freezes them on purpose (``inputs_to_initializers(freeze_overridable=true)``).
        region: ``--verify each``: when a lossless pass that changed a small region is
            verified on that region only (:mod:`irpass.verify.region`); None (the default)
            checks the whole model after every pass. Off by default: on the default pipeline
            and the models in ``benchmarks/region_verify.py`` the recording runs cost more
            than the region checks save.
    """

    verify: VerifyMode = "each"
    seeds: tuple[int, ...] = (0, 1)
    feeds: list[dict[str, np.ndarray]] | None = None
    input_shapes: list[dict[str, tuple[int, ...]]] | None = None
    dump_dir: pathlib.Path | None = None
    reproducer_dir: pathlib.Path | None = None
    on_failure: Literal["error", "rollback"] = "rollback"
    max_fixpoint_iterations: int = 10
    allow_custom_ops: bool = False
    tolerance_scale: float = 1.0
    feed_overridable: bool = True
    region: RegionOptions | None = None


@dataclasses.dataclass
class RunResult:
    """The optimized model (the input object, modified in place) and the run's report."""

    model: ir.Model
    report: RunReport


def custom_ops(model: ir.Model) -> list[tuple[str, str]]:
    """(domain, op_type) of nodes whose domain is neither ONNX's, ORT's nor a local function."""
    local = {(f.domain, f.name) for f in model.functions.values()}
    found: set[tuple[str, str]] = set()
    for graph in model.graphs():
        for node in graph:
            if node.domain not in KNOWN_DOMAINS and (node.domain, node.op_type) not in local:
                found.add((node.domain, node.op_type))
    return sorted(found)


class PipelineRunner:
    """Run a pipeline over a model with verification, measurement, dumps and reproducers."""

    def __init__(
        self,
        pipeline: str | list[Step],
        context: PassContext | None = None,
        options: RunOptions | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        steps = parse_pipeline(pipeline) if isinstance(pipeline, str) else list(pipeline)
        self.pipeline_text = format_pipeline(steps)
        self.steps = expand_presets(steps)
        self.context = context if context is not None else PassContext()
        self.options = options if options is not None else RunOptions()
        self.progress = progress
        self._validate(self.steps)  # option errors surface before any work is done
        self._cost: Cost | None = None
        #: input shapes MACs / activations are counted at (None: symbolic dims count as 1)
        self._cost_shapes: dict[str, list[int]] | None = None
        self._dump_index = 0

    def _validate(self, steps: list[Step] | tuple[Step, ...]) -> None:
        for step in steps:
            if step.is_fixpoint:
                self._validate(step.children)
            else:
                build_pass(step, self.context)

    # -- measurement -------------------------------------------------------------------
    def _current_cost(self, model: ir.Model) -> Cost:
        if self._cost is None:
            self._cost = model_cost(model, input_shapes=self._cost_shapes)
        return self._cost

    def _invalidate(self) -> None:
        self._cost = None

    # -- dumps and reproducers -----------------------------------------------------------
    def _dump(self, model: ir.Model, label: str) -> str | None:
        if self.options.dump_dir is None:
            return None
        directory = pathlib.Path(self.options.dump_dir)
        name = f"{self._dump_index:03d}_{label.replace('/', '.').replace('#', '')}.onnx"
        self._dump_index += 1
        save_model(model, directory / name)
        return str(directory / name)

    def _save_reproducer(self, state: _RunState, step: Step, error: BaseException) -> str | None:
        """Save the model irpass received and the flat list of steps that led to the failure.

        Passes are deterministic, so running ``pipeline.txt`` (every pass executed so far, in
        order, then the failing one) on ``input.onnx`` reproduces the failure; this needs one
        copy of the input per run instead of a snapshot before every pass.
        """
        directory = self.options.reproducer_dir
        if directory is None or state.input_copy is None:
            return None
        directory = pathlib.Path(directory)
        try:
            save_model(state.input_copy, directory / "input.onnx")
            (directory / "pipeline.txt").write_text(format_pipeline(state.executed) + "\n")
            (directory / "full_pipeline.txt").write_text(self.pipeline_text + "\n")
            (directory / "error.txt").write_text(f"{type(error).__name__}: {error}\n")
        except (OSError, IrpassError) as exc:
            logger.warning("could not save the reproducer to %s: %s", directory, exc)
            return None
        return str(directory)

    # -- running -----------------------------------------------------------------------
    def run(
        self,
        model: ir.Model,
        input_path: str | None = None,
        *,
        write: Callable[[ir.Model], object] | None = None,
    ) -> RunResult:
        """Run the pipeline on ``model`` (modified in place) and return it with the report.

        ``write`` (saving the output file) is called with the optimized model while ONNX
        Runtime runs it for the end-to-end check, so the two overlap; again after that check
        rolled a pass back. When ``run`` returns, the last call wrote the returned model.

        The model is validated first (:func:`irpass.validate.validate_model`): a cycle, a
        node input nothing produces, two producers of one value, a bad weight or an absurd
        input shape raise :class:`~irpass.errors.UnsupportedModelError` naming the node or
        value, before any pass, clone or serialization touches it. Nodes listed out of
        topological order are sorted.
        """
        started = time.perf_counter()
        if validate_model(model):
            model.graph.sort()
        customs = custom_ops(model)
        if customs and not self.options.allow_custom_ops:
            names = ", ".join(f"{d}::{o}" for d, o in customs)
            raise UnsupportedModelError(
                "the model uses custom-domain ops that neither ONNX nor ONNX Runtime "
                f"define: {names}",
                hint="irpass cannot verify passes numerically on them; pass --allow-custom-ops "
                "to optimize anyway (custom ops pass through untouched, checks are structural)",
            )
        numeric = self.options.verify != "none" and not customs
        try:
            verifier = Verifier(
                model,
                numeric=numeric,
                feeds=self.options.feeds,
                overridable=self.options.feed_overridable and not _freezes_inputs(self.steps),
                input_shapes=self.options.input_shapes or (),
                seeds=self.options.seeds,
                tolerance_scale=self.options.tolerance_scale,
                region=self.options.region if self.options.verify == "each" else None,
            )
        except VerificationError as exc:
            raise UnsupportedModelError(
                f"the input model is not valid: {exc.message}",
                hint="irpass verifies every pass against the input model; fix the input, or "
                "use --verify none for structural checks only",
            ) from exc
        try:
            return self._run_verified(model, input_path, verifier, customs, started, write)
        finally:
            verifier.close()  # a run that raised leaves no reference runs behind

    def _run_verified(
        self,
        model: ir.Model,
        input_path: str | None,
        verifier: Verifier,
        customs: list[tuple[str, str]],
        started: float,
        write: Callable[[ir.Model], object] | None,
    ) -> RunResult:
        report = RunReport(
            irpass_version=__version__,
            input=input_path,
            pipeline=self.pipeline_text,
            expanded_pipeline=format_pipeline(self.steps),
            target=getattr(self.context.target, "name", self.context.target),
        )
        if customs:
            report.warnings.append(
                "custom-domain ops present; numeric verification disabled: "
                + ", ".join(f"{d}::{o}" for d, o in customs)
            )
        report.cost_shapes, report.cost_shapes_source = _cost_shapes(model, verifier, self.options)
        self._cost_shapes = report.cost_shapes
        self._invalidate()
        report.before = self._current_cost(model).summary()
        evaluator = getattr(self.context, "evaluator", None)
        if evaluator is not None:
            report.metrics_before = dict(evaluator(model))
        self._dump(model, "input")
        hasher = TensorHasher()
        state = _RunState(
            checkpoint=None,
            verifier=verifier,
            report=report,
            evaluator=evaluator,
            # reproducers and rollbacks (by replaying the passes kept so far) start from it
            input_copy=model.clone()
            if self.options.reproducer_dir is not None or self.options.on_failure == "rollback"
            else None,
            hasher=hasher,
            snapshot=structure_snapshot(model, hasher),
            hygiene=hygiene_issues(model),
        )
        self._checkpoint(model, state)
        self._run_steps(model, self.steps, "", state)
        if self.options.verify == "final":
            self._close_segment(model, state)
        self._finish(model, state, write)
        # after the passes: the reference runs (which found the feeds) went on beside them
        report.verification.update(
            mode=self.options.verify,
            feeds=verifier.describe(),
            shapes=[
                {name: list(shape) for name, shape in shapes.items()} for shapes in verifier.shapes
            ],
            notes=list(verifier.notes),
        )
        report.after = self._current_cost(model).summary()
        if evaluator is not None:
            report.metrics_after = dict(evaluator(model))
        report.seconds = time.perf_counter() - started
        return RunResult(model, report)

    def _finish(
        self, model: ir.Model, state: _RunState, write: Callable[[ir.Model], object] | None
    ) -> None:
        """Full checker and end-to-end check, ``write`` beside it; report hygiene leftovers."""
        self._resolve(model, state)
        report = state.report
        lossless_run = all(r.lossless for r in report.passes if r.modified)
        beside = functools.partial(write, model) if write is not None else None
        try:
            final = state.verifier.final(model, lossless_run, beside)
        except VerificationError as exc:
            if self.options.on_failure == "error" or state.input_copy is None:
                raise PassFailedError(
                    f"the optimized model fails the final check: {exc.message}",
                    hint="a pass checked only structurally broke the model, or small "
                    "differences added up; rerun with --verify each to find it (the reproducer "
                    "holds the input)",
                ) from exc
            final = self._roll_back_final(model, state, exc)
            if beside is not None:  # the model is not the one written (if any was)
                beside()
        report.final_verification = final
        report.verification["final"] = f"{final.status}: {final.detail}".strip(": ")
        left = hygiene_issues(model)
        for invariant, items in sorted(left.items()):
            introduced = state.introduced.get(invariant, {})
            for item in items:
                culprit = introduced.get(item)
                if culprit is None:
                    continue
                report.hygiene.append({"invariant": invariant, "item": item, "pass": culprit})
        grown = self._current_cost(model).weight_bytes - int(report.before.get("weight_bytes", 0))
        if grown > 0 and lossless_run:
            # the pipeline as a whole grew the weights: every pass that grew them without
            # saying why is named (folding leaves dead producers another pass removes, so
            # growth of a single pass alone is no violation)
            for name, growth in state.growth.items():
                entry = {"invariant": "weight_growth", "item": f"+{growth} bytes", "pass": name}
                report.hygiene.append(entry)
        if not report.hygiene:
            return
        by_pass: dict[str, list[str]] = {}
        for entry in report.hygiene:
            by_pass.setdefault(entry["pass"], []).append(f"{entry['invariant']} {entry['item']}")
        message = "; ".join(
            f"pass {name!r} left {', '.join(items[:4])}" + (" ..." if len(items) > 4 else "")
            for name, items in by_pass.items()
        )
        if self.options.on_failure == "error":
            raise PassFailedError(
                f"hygiene invariants violated: {message}",
                hint="these passes leave the model dirty (a bug); rerun without --strict to get "
                "the output anyway",
                pass_name=next(iter(by_pass)),
            )
        report.warnings.append(f"hygiene invariants violated: {message}")
        logger.info("hygiene invariants violated: %s", message)

    def _run_steps(
        self, model: ir.Model, steps: list[Step] | tuple[Step, ...], prefix: str, state: _RunState
    ) -> bool:
        modified = False
        for step in steps:
            if step.is_fixpoint:
                state.fixpoints += 1
                label = f"{prefix}fixpoint#{state.fixpoints}"
                for iteration in range(1, self.options.max_fixpoint_iterations + 1):
                    changed = self._run_steps(model, step.children, f"{label}.{iteration}/", state)
                    modified = modified or changed
                    if not changed:
                        break
                else:
                    state.report.warnings.append(
                        f"{label} did not converge in {self.options.max_fixpoint_iterations} "
                        "iterations"
                    )
            else:
                modified = self._run_pass(model, step, prefix, state) or modified
        return modified

    def _run_pass(self, model: ir.Model, step: Step, prefix: str, state: _RunState) -> bool:
        pass_ = build_pass(step, self.context)
        label = f"{prefix}{step.name}"
        record = PassRecord(
            step=label,
            name=step.name,
            options=format_pipeline([step]),
            lossless=pass_.lossless,
        )
        state.report.passes.append(record)
        if self.progress is not None:
            self.progress(label, len(state.report.passes))
        before_cost = self._current_cost(model)
        record.before = before_cost.summary()
        if self.options.verify == "final" and not pass_.lossless:
            # a lossless segment ends here: check it before the lossy pass blurs the outputs
            if not self._close_segment(model, state):
                before_cost = self._current_cost(model)
                record.before = before_cost.summary()
        # the state before this pass is the last checkpoint: passes that change nothing (most
        # of a fixpoint's) cost no clone, only a pass that changed the model does
        snapshot = state.checkpoint
        state.executed.append(step)
        started = time.perf_counter()
        try:
            result = pass_(model)
        except DataError:
            # the user's data are missing or unusable (INT8 without calibration data): theirs
            # to fix, so a clear error, not a rollback hidden behind a warning
            raise
        except Exception as exc:  # a pass that raises must not take the run down silently
            record.seconds = time.perf_counter() - started
            record.error = f"{type(exc).__name__}: {exc}"
            return self._fail(model, snapshot, step, record, exc, state)
        record.seconds = time.perf_counter() - started
        record.stats = {k: int(v) for k, v in sorted(pass_.stats.items())}
        record.details = dict(pass_.details)
        structure = structure_snapshot(model, state.hasher)
        state.hasher.prune()
        changed = structure != state.snapshot
        record.modified = bool(result.modified) or changed
        if changed and not result.modified:
            record.underreported = True
            message = (
                f"pass {step.name!r} changed the model but reported modified=False (a bug in "
                "the pass: fixpoints stop early and a later pass would get the blame); verified "
                "as a modifying pass"
            )
            state.report.warnings.append(message)
            logger.info("%s", message)
        if not record.modified:
            record.after = record.before
            record.verification = Verification(status="skipped", detail="unchanged")
            return False
        if not self._resolve(model, state):
            # the pass before failed its deferred check, and this one ran on its result: undo
            # this one's record and run it again on the state the rollback restored
            assert state.report.passes[-1] is record and state.executed[-1] is step
            state.report.passes.pop()
            state.executed.pop()
            return self._run_pass(model, step, prefix, state)
        self._invalidate()
        deferred: DeferredCheck | None = None
        try:
            if self.options.verify == "each":
                changes = (state.snapshot, structure)
                checked = state.verifier.check(
                    model, pass_.lossless, changes, defer=self._defers(pass_)
                )
                if isinstance(checked, DeferredCheck):
                    deferred = checked
                    record.verification = Verification(
                        status="skipped", detail="whole-model check running"
                    )
                else:
                    record.verification = checked
            elif self.options.verify == "final" and pass_.lossless:
                check_light(model)
                record.verification = Verification(
                    status="skipped",
                    checker=True,
                    detail="light structure check; numerics checked at the end of its lossless "
                    "segment",
                )
                state.segment.append((record, snapshot))
            else:
                record.verification = state.verifier.check(model, pass_.lossless)
            record.after = self._current_cost(model).summary()
        except VerificationError as exc:
            record.verification = Verification(status="failed", detail=exc.message)
            record.error = exc.message
            return self._fail(model, snapshot, step, record, exc, state)
        if deferred is not None:
            state.pending = _Pending(
                deferred,
                record,
                step,
                executed=len(state.executed),
                introduced={k: dict(v) for k, v in state.introduced.items()},
                growth=dict(state.growth),
            )
        self._hygiene(model, pass_, record, state)
        state.snapshot = structure
        state.kept.append(step)
        self._checkpoint(model, state)
        if not pass_.lossless and state.evaluator is not None:
            record.metrics = dict(state.evaluator(model))
        record.dump = self._dump(model, label)
        return True

    def _defers(self, pass_: IrpassPass) -> bool:
        """Whether a lossless pass's whole-model check may run beside the next passes.

        Only when a failure can be undone by replaying the kept passes and nothing else
        observes the state in between (dumps, evaluation); ``--strict`` checks at once.
        """
        return (
            pass_.lossless
            and self.options.on_failure == "rollback"
            and self.options.dump_dir is None
            and getattr(self.context, "evaluator", None) is None
        )

    def _resolve(self, model: ir.Model, state: _RunState) -> bool:
        """Finish a deferred check; False when it failed and its pass was rolled back.

        The passes run since then changed nothing (the first that changes the model resolves
        it before its own check), except the one calling, which the caller runs again.
        """
        pending, state.pending = state.pending, None
        if pending is None:
            return True
        record = pending.record
        try:
            record.verification = pending.check.resolve()
            return True
        except VerificationError as exc:
            record.verification = Verification(status="failed", detail=exc.message)
            record.error = exc.message
            error = exc
        # undo what was recorded for the pass as if it had failed at once
        assert state.kept[-1] is pending.step  # the passes since changed nothing
        state.kept.pop()
        state.introduced, state.growth = pending.introduced, pending.growth
        executed, state.executed = state.executed, state.executed[: pending.executed]
        try:
            self._fail(model, None, pending.step, record, error, state)
        finally:
            state.executed = executed
        return False

    def _checkpoint(self, model: ir.Model, state: _RunState) -> None:
        """``--verify final``: keep a copy of the current state (weights shared) to bisect to.

        With ``--verify each`` nothing is copied: a failing pass is undone by replaying the
        passes kept so far on the input copy (passes are deterministic), which costs time only
        when something fails.
        """
        state.checkpoint = model.clone() if self.options.verify == "final" else None

    def _replay(self, state: _RunState) -> ir.Model | None:
        """The model before the failing pass: the input copy with every kept pass applied."""
        if state.input_copy is None:
            return None
        replayed = state.input_copy.clone()
        for step in state.kept:
            build_pass(step, self.context)(replayed)
        return replayed

    def _roll_back_final(
        self, model: ir.Model, state: _RunState, error: VerificationError
    ) -> Verification:
        """The end-to-end check failed: find the first kept pass whose result fails it, drop it.

        Passes are deterministic, so the model after the first ``k`` kept passes is the input
        copy with them replayed; bisection finds the smallest failing ``k``. The pipeline
        without that pass is kept if it passes the check, else the state before it; the pass is
        named with its reproducer, and the run goes on (``--strict`` stops instead).
        """
        kept = list(state.kept)
        state.kept = []

        def replay(steps: list[Step]) -> ir.Model:
            state.kept = steps
            replayed = self._replay(state)
            assert replayed is not None  # rollback mode keeps the input copy
            return replayed

        def passes(candidate: ir.Model) -> bool:
            try:
                state.verifier.final(candidate, lossless_run=True)
            except VerificationError:
                return False
            return True

        low, high = 1, len(kept)  # the model after all kept passes fails the check
        while low < high:
            middle = (low + high) // 2
            if passes(replay(kept[:middle])):
                low = middle + 1
            else:
                high = middle
        culprit = kept[low - 1]
        without = kept[: low - 1] + kept[low:]
        restored = replay(without)
        if not passes(restored):
            without = kept[: low - 1]
            restored = replay(without)
        state.kept = without
        reproducer = self._save_reproducer(
            dataclasses.replace(state, executed=kept[:low]), culprit, error
        )
        _restore(model, restored)
        self._invalidate()
        # the kept steps are the records of passes that changed the model and stayed, in order
        records = [r for r in state.report.passes if r.modified and not r.rolled_back]
        detail = f"the end-to-end check failed with it: {error.message}"
        undone = (
            records[low - 1 : len(kept)] if len(without) < len(kept) - 1 else records[low - 1 : low]
        )
        for index, record in enumerate(undone):
            record.rolled_back, record.modified = True, False
            if index == 0:
                record.verification = Verification(status="failed", detail=detail)
                record.error = detail
            else:
                record.verification = Verification(
                    status="skipped", detail=f"undone with {culprit.name!r}, which it ran after"
                )
        where = f" (reproducer: {reproducer})" if reproducer else ""
        dropped = len(kept) - len(without)
        state.report.warnings.append(
            f"the optimized model failed the end-to-end check ({error.message}); pass "
            f"{culprit.name!r} is the first whose result fails it and was rolled back"
            + (f" with the {dropped - 1} passes after it" if dropped > 1 else "")
            + where
        )
        logger.info("%s", state.report.warnings[-1])
        lossless = all(r.lossless for r in state.report.passes if r.modified)
        return state.verifier.final(model, lossless)

    def _hygiene(
        self, model: ir.Model, pass_: IrpassPass, record: PassRecord, state: _RunState
    ) -> None:
        """Attribute hygiene items the pass introduced; note unexplained weight growth."""
        now = hygiene_issues(model)
        for invariant, items in now.items():
            before = set(state.hygiene.get(invariant, ()))
            new = [item for item in items if item not in before]
            if new:
                record.hygiene[invariant] = new
                owners = state.introduced.setdefault(invariant, {})
                for item in new:
                    owners.setdefault(item, record.name)
        state.hygiene = now
        grown = record.after.get("weight_bytes", 0) - record.before.get("weight_bytes", 0)
        if pass_.lossless and grown > 0:
            reasons = list(pass_.growth_reasons)
            if reasons:
                record.hygiene["weight_growth_explained"] = reasons
            else:
                record.hygiene["weight_growth"] = [f"+{grown} bytes"]
                state.growth[record.name] = state.growth.get(record.name, 0) + grown

    def _close_segment(self, model: ir.Model, state: _RunState) -> bool:
        """``--verify final``: check the lossless passes since the last check as one segment.

        On a mismatch the first failing pass is found by bisection over the snapshots, the model
        is restored to its state before that pass (later passes of the segment are undone with
        it), and the pass is handled like any failure. Returns True when the segment verified.
        """
        segment, state.segment = state.segment, []
        if not segment:
            return True
        try:
            state.verifier.check(model, lossless=True)
        except VerificationError:
            pass
        else:
            for record, _ in segment:
                record.verification = Verification(
                    status="equal",
                    checker=True,
                    detail="checked with the lossless passes around it (--verify final)",
                )
            return True
        # the state after pass i is the snapshot taken before pass i + 1 (the model after the last)
        states: list[ir.Model] = [snap for _, snap in segment[1:] if snap is not None] + [model]
        low, high = 0, len(segment) - 1  # bisect for the first pass whose result fails
        while low < high:
            middle = (low + high) // 2
            try:
                state.verifier.compare_with_last(states[middle])
            except VerificationError:
                high = middle
            else:
                low = middle + 1
        record, snapshot = segment[low]
        error = VerificationError("the lossless segment changed the outputs")
        try:
            state.verifier.compare_with_last(states[low])
        except VerificationError as exc:
            error = exc
        for earlier, _ in segment[:low]:
            earlier.verification = Verification(
                status="equal",
                checker=True,
                detail="checked while bisecting its lossless segment (--verify final)",
            )
        undone = len(segment) - low  # the culprit and the passes after it, all kept so far
        del state.kept[len(state.kept) - undone :]
        for later, _ in segment[low + 1 :]:
            later.rolled_back = True
            later.modified = False
            later.verification = Verification(
                status="skipped", detail=f"undone with {record.name!r}, which it ran after"
            )
        record.verification = Verification(status="failed", detail=error.message)
        record.error = error.message
        step = next(s for s in reversed(state.executed) if s.name == record.name)
        self._fail(model, snapshot, step, record, error, state)
        return False

    def _fail(
        self,
        model: ir.Model,
        snapshot: ir.Model | None,
        step: Step,
        record: PassRecord,
        exc: BaseException,
        state: _RunState,
    ) -> bool:
        reproducer = self._save_reproducer(state, step, exc)
        if snapshot is None and self.options.on_failure == "rollback":
            snapshot = self._replay(state)
        if snapshot is not None and self.options.on_failure == "rollback":
            _restore(model, snapshot)
            self._checkpoint(model, state)  # the model now holds the snapshot's graph
            self._invalidate()
            state.snapshot = structure_snapshot(model, state.hasher)
            state.hygiene = hygiene_issues(model)
            record.rolled_back = True
            record.modified = False
            record.after = record.before
            where = f" (reproducer: {reproducer})" if reproducer else ""
            state.report.warnings.append(
                f"pass {step.name!r} failed and was rolled back: {record.error}{where}"
            )
            logger.info("pass %s failed and was rolled back: %s%s", step.name, record.error, where)
            return False
        message = exc.message if isinstance(exc, IrpassError) else f"{type(exc).__name__}: {exc}"
        hint = (
            f"reproduce with: irpass optimize {reproducer}/input.onnx -o repro-out "
            f'--passes "$(cat {reproducer}/pipeline.txt)"'
            if reproducer
            else "rerun without --strict to roll the pass back and continue, or with --debug "
            "for the traceback"
        )
        raise PassFailedError(
            f"pass {step.name!r} failed: {message}",
            hint=hint,
            pass_name=step.name,
            reproducer=reproducer,
        ) from exc


def _freezes_inputs(steps: list[Step] | tuple[Step, ...]) -> bool:
    """Whether a step turns overridable graph inputs into constants on purpose."""
    return any(
        _freezes_inputs(step.children)
        if step.is_fixpoint
        else step.name == "inputs_to_initializers"
        and bool(step.options_dict().get("freeze_overridable"))
        for step in steps
    )


def _cost_shapes(
    model: ir.Model, verifier: Verifier, options: RunOptions
) -> tuple[dict[str, list[int]] | None, str]:
    """Input shapes to count MACs and activations at.

    The declared sizes, the first ``--input-shapes`` for the inputs it names; when a symbolic
    input is left, the first verification feed's shapes (this waits for the feed search, which
    otherwise runs beside the first passes); None (symbolic dims count as 1) without any.
    Returns them with where they came from, as the report says it.
    """
    given = options.input_shapes[0] if options.input_shapes else {}
    shapes, defaulted = shapes_to_count(model, given)
    inputs = [v for v in model.graph.inputs if (v.name or "") not in model.graph.initializers]
    if not defaulted and len(shapes) == len(inputs):  # every input given or static
        return shapes, "--input-shapes" if given else "declared"
    if not verifier.shapes:
        return None, "no verification shapes"
    first = verifier.shapes[0]
    return {name: [int(d) for d in dims] for name, dims in first.items()}, "verification"


def _restore(model: ir.Model, snapshot: ir.Model) -> None:
    """Make ``model`` (the caller's object) hold the content of ``snapshot``."""
    functions = dict(snapshot.functions)
    opsets = dict(snapshot.opset_imports)
    model.graph = snapshot.graph
    model.functions.clear()
    model.functions.update(functions)
    model.opset_imports.clear()
    model.opset_imports.update(opsets)
    model.ir_version = snapshot.ir_version


@dataclasses.dataclass
class _RunState:
    #: a clone of the current state (None when nothing can roll back)
    checkpoint: ir.Model | None
    verifier: Verifier
    report: RunReport
    evaluator: Callable[[ir.Model], Mapping[str, float]] | None
    hasher: TensorHasher
    snapshot: StructureSnapshot
    hygiene: dict[str, list[str]]
    input_copy: ir.Model | None = None
    executed: list[Step] = dataclasses.field(default_factory=list)
    #: steps that changed the model and were kept, in order (replayed to undo a failing pass)
    kept: list[Step] = dataclasses.field(default_factory=list)
    fixpoints: int = 0
    #: invariant -> item -> name of the pass that introduced it
    introduced: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    #: pass name -> weight bytes it added without saying why
    growth: dict[str, int] = dataclasses.field(default_factory=dict)
    #: ``--verify final``: lossless passes since the last numeric check, with their snapshots
    segment: list[tuple[PassRecord, ir.Model | None]] = dataclasses.field(default_factory=list)
    #: ``--verify each``: the check of the last modifying pass, still running
    pending: _Pending | None = None


@dataclasses.dataclass
class _Pending:
    """A deferred check with what undoing its pass needs."""

    check: DeferredCheck
    record: PassRecord
    step: Step
    #: ``len(executed)`` right after the pass (its reproducer ends with it)
    executed: int
    #: hygiene attributions from before the pass
    introduced: dict[str, dict[str, str]]
    growth: dict[str, int]


def report_json(report: RunReport) -> str:
    """Serialize a report deterministically (sorted keys, no NaN surprises)."""
    return json.dumps(report.to_dict(), indent=2, sort_keys=True, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, pathlib.Path):
        return str(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")


__all__ += ["report_json"]
