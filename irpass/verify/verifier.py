"""The verifier the pipeline runner consults after passes: what was checked, and how it went.

One :class:`Verifier` per run. At the start it finds feeds the input model runs with
(:func:`irpass.verify.feeds.find_feeds`, or the user's data) and keeps the input model's
outputs on them: the reference, computed once. Those runs happen in a background thread
while the first passes run (ONNX Runtime releases the GIL); the first check that needs them
waits, and an error of theirs (the input model runs on no feed) is raised there. After a
pass it answers with a
:class:`~irpass.run_report.Verification` whose ``status`` says what actually happened:

- ``equal``: proven equal to the last verified state, either because the computation
  fingerprint is unchanged (same function, bit for bit: dead code, deduplication, merged equal
  nodes) or because ONNX Runtime's outputs match within the dtype's tolerance on every feed
  (two input configurations where the model has symbolic dims, two seeds);
- ``drift <metric>``: a lossy pass, measured against the input model (SQNR, cosine);
- ``structural only``: only the structural checks ran (``--verify none`` or custom ops);
- ``skipped``: nothing ran (the pass changed nothing, or ``--verify final`` defers the check).

A lossless pass whose outputs differ raises :class:`~irpass.errors.VerificationError`; the
runner rolls it back (or stops with ``--strict``). :meth:`Verifier.final` runs the full ONNX
checker once and compares the end result with the input model end to end, so errors within
tolerance cannot add up unnoticed over many passes.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar, overload

import numpy as np
import onnx_ir as ir
import onnxruntime as ort

from irpass.errors import UnsupportedModelError, VerificationError
from irpass.metrics import compare_outputs, cosine, max_abs_error, sqnr_db
from irpass.run_report import Verification
from irpass.verify.feeds import FeedPlan, FeedSearch
from irpass.verify.fingerprint import StructureSnapshot, TensorHasher, computation_fingerprint
from irpass.verify.region import RegionChecker, RegionOptions, RegionResult
from irpass.verify.session import check_structure, make_session, run_model
from irpass.verify.structure import check_light

__all__ = ["DeferredCheck", "Verifier", "drift_metrics", "max_abs_error_all"]

logger = logging.getLogger(__name__)

Outputs = list[dict[str, Any]]
_T = TypeVar("_T")


def _tensor_pairs(reference: Any, actual: Any) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """The (reference, actual) tensors of one output, None when their structures differ.

    A sequence pairs its elements; two empty optionals pair nothing.
    """
    if isinstance(reference, list) or isinstance(actual, list):
        if not (isinstance(reference, list) and isinstance(actual, list)):
            return None
        if len(reference) != len(actual):
            return None
        pairs: list[tuple[np.ndarray, np.ndarray]] = []
        for ref, got in zip(reference, actual, strict=True):
            inner = _tensor_pairs(ref, got)
            if inner is None:
                return None
            pairs.extend(inner)
        return pairs
    if reference is None or actual is None:
        return [] if reference is None and actual is None else None
    return [(np.asarray(reference), np.asarray(actual))]


def drift_metrics(reference: Outputs, actual: Outputs) -> dict[str, float]:
    """Worst SQNR (dB), worst cosine and max abs error over every float output of every feed.

    Sequence outputs count each of their tensors; empty optionals count nothing.
    """
    worst_sqnr, worst_cos, worst_abs = float("inf"), 1.0, 0.0
    diverged = {"sqnr_db": float("-inf"), "cosine": 0.0, "max_abs_error": float("inf")}
    for ref, got in zip(reference, actual, strict=True):
        for name, output in ref.items():
            pairs = _tensor_pairs(output, got[name]) if name in got else None
            if pairs is None:
                return diverged
            for value, other in pairs:
                if value.shape != other.shape:
                    return diverged
                worst_abs = max(worst_abs, max_abs_error(value, other))
                if value.dtype.kind == "f" and value.size:
                    worst_sqnr = min(worst_sqnr, sqnr_db(value, other))
                    worst_cos = min(worst_cos, cosine(value, other))
    return {"sqnr_db": worst_sqnr, "cosine": worst_cos, "max_abs_error": worst_abs}


def _describe_shapes(plan_shapes: Sequence[Mapping[str, tuple[int, ...]]]) -> str:
    seen: list[str] = []
    for shapes in plan_shapes:
        text = ", ".join(f"{k}:{'x'.join(map(str, v)) or 'scalar'}" for k, v in shapes.items())
        if text not in seen:
            seen.append(text)
    return "; ".join(seen)


@dataclasses.dataclass
class _State:
    """The last verified state: its computation fingerprint and outputs.

    ``exact`` is False after a region check: the outputs are then those of the last state run
    as a whole, which the checked regions left equal within tolerance.
    """

    fingerprint: str
    outputs: Outputs
    exact: bool = True


@dataclasses.dataclass
class DeferredCheck:
    """A lossless pass's whole-model check whose runs go on in the background.

    ``resolve()`` waits for them and compares: it returns the pass's Verification, or raises
    VerificationError like :meth:`Verifier.check`. Resolve once.
    """

    resolve: Callable[[], Verification]


class Verifier:
    """Feeds, reference outputs and the last verified state of one pipeline run.

    Args:
        model: The input model (before any pass).
        numeric: False for structural checks only (``--verify none``, custom ops).
        feeds: Verification inputs given by the user (``--verify-data``/``--eval-data``);
            None to derive them from the graph.
        input_shapes: Per configuration, input shapes to use instead of searching
            (``--input-shapes``).
        seeds: Seeds of the generated feeds (at least two are used).
        tolerance_scale: Multiplier of the dtype tolerances.
        overridable: Also feed float inputs that have a default value, so that a pass which
            freezes one into a constant is caught.
        region: When to check only the region a lossless pass changed
            (:mod:`irpass.verify.region`); None checks the whole model after every pass.
    """

    def __init__(
        self,
        model: ir.Model,
        *,
        numeric: bool = True,
        feeds: Sequence[Mapping[str, np.ndarray]] | None = None,
        input_shapes: Sequence[Mapping[str, Sequence[int]]] = (),
        seeds: Sequence[int] = (0, 1),
        tolerance_scale: float = 1.0,
        overridable: bool = False,
        region: RegionOptions | None = None,
    ) -> None:
        self.numeric = numeric
        self.tolerance_scale = tolerance_scale
        self.hasher = TensorHasher()
        self._plan: FeedPlan | None = None
        self._pending: concurrent.futures.Future[FeedPlan] | None = None
        #: runs of deferred checks not resolved yet (waited for by close())
        self._background: list[concurrent.futures.Future[Outputs]] = []
        self.notes: list[str] = []
        check_light(model)
        self.fed: frozenset[str] = frozenset()
        if numeric:
            # one intra-op thread: the reference runs on one core while the passes run on the
            # other (they hold the GIL, ONNX Runtime releases it); weights a pass could change
            # in place meanwhile are copied
            session = make_session(model, threads=1, private=True)
            if feeds:
                given = [dict(f) for f in feeds]
                self.fed = frozenset(name for feed in given for name in feed)
                work = functools.partial(_run_given, session, given)
            else:
                search = FeedSearch.prepare(
                    model, seeds=seeds, input_shapes=input_shapes, overridable=overridable
                )
                self.fed = search.inputs
                work = functools.partial(search.run, functools.partial(run_model, session))
            self._pending = _in_background(work)
        # inputs with a default value that no feed sets compute with it (see the fingerprint)
        fingerprint = self._fingerprint(model) if numeric else ""
        self.original = _State(fingerprint, [])  # outputs: when the reference is ready
        self.last = self.original
        self._region_options = region if numeric and region and region.max_fraction > 0 else None
        self._region: RegionChecker | None = None

    # -- the reference, computed beside the passes -----------------------------------------
    @property
    def plan(self) -> FeedPlan | None:
        """Feeds and the input model's outputs on them; waits for the reference runs.

        Raises the error of the reference runs (UnsupportedModelError when the input model
        runs on no feed) the first time it is asked for.
        """
        if self._pending is not None:
            pending, self._pending = self._pending, None
            plan = pending.result()
            self._plan = plan
            self.notes.extend(plan.notes)
            self.original.outputs = plan.outputs  # ``last`` is still ``original`` here
        return self._plan

    def close(self) -> None:
        """Wait for the reference runs if they are still going and drop their result.

        For a run that ends early (a pass raised): the background work holds a session of
        the input model, which must not outlive the run; its error, if any, is not the one
        to report.
        """
        if self._pending is not None:
            pending, self._pending = self._pending, None
            concurrent.futures.wait([pending])
        concurrent.futures.wait(self._background)
        self._background.clear()

    # -- what the report says about the feeds ---------------------------------------------
    @property
    def shapes(self) -> list[dict[str, tuple[int, ...]]]:
        """Input shapes of every verification feed (empty without numeric verification)."""
        return list(self.plan.shapes) if self.plan is not None else []

    def describe(self) -> str:
        """One line: how many feeds, which shapes."""
        if self.plan is None:
            return "structural checks only"
        return f"{len(self.plan.feeds)} feeds ({_describe_shapes(self.plan.shapes)})"

    # -- checks --------------------------------------------------------------------------
    def _fingerprint(self, model: ir.Model) -> str:
        return computation_fingerprint(model, self.hasher, self.fed)

    def _run(
        self,
        model: ir.Model,
        beside: Callable[[], object] | None = None,
        recording: RegionChecker | None = None,
    ) -> Outputs:
        """Run ``model`` on every feed; call ``beside`` in this thread while ONNX Runtime runs.

        ``recording`` (no ``beside``): also keep the model's intermediate values for region
        checks (:meth:`RegionChecker.run_whole`).
        """
        plan = self.plan
        assert plan is not None
        if recording is not None and beside is None:
            try:
                return recording.run_whole(model)
            except Exception:  # the plain run below reports what is really wrong
                logger.debug("recording intermediate values failed", exc_info=True)
                recording.recorded.clear()
        # beside something else, ONNX Runtime gets one core and ``beside`` the other
        session = make_session(model, threads=1 if beside is not None else 0)
        runs = functools.partial(_run_all, session, plan.feeds)
        if beside is None:
            return runs()
        pending = _in_background(runs)
        try:
            beside()
        finally:
            concurrent.futures.wait([pending])  # no run outlives this call
        return pending.result()

    def _equal(self, reference: Outputs, outputs: Outputs, what: str) -> str:
        """Raise when ``outputs`` differ from ``reference``; return the detail of the match."""
        for index, (expected, actual) in enumerate(zip(reference, outputs, strict=True)):
            mismatches = compare_outputs(expected, actual, self.tolerance_scale)
            if mismatches:
                assert self.plan is not None
                shapes = _describe_shapes([self.plan.shapes[index]])
                raise VerificationError(
                    f"{what} changed the outputs on feed {index + 1} ({shapes}): {mismatches[0]}",
                    hint="this is a bug in the pass; the reproducer holds its input",
                )
        drift = drift_metrics(reference, outputs)
        return (
            f"{len(outputs)} feeds, max abs error {drift['max_abs_error']:.3g}, "
            f"SQNR >= {min(drift['sqnr_db'], 200.0):.0f} dB"
        )

    @overload
    def check(
        self,
        model: ir.Model,
        lossless: bool,
        changes: tuple[StructureSnapshot, StructureSnapshot] | None = None,
        *,
        defer: Literal[False] = False,
    ) -> Verification: ...

    @overload
    def check(
        self,
        model: ir.Model,
        lossless: bool,
        changes: tuple[StructureSnapshot, StructureSnapshot] | None = None,
        *,
        defer: bool,
    ) -> Verification | DeferredCheck: ...

    def check(
        self,
        model: ir.Model,
        lossless: bool,
        changes: tuple[StructureSnapshot, StructureSnapshot] | None = None,
        *,
        defer: bool = False,
    ) -> Verification | DeferredCheck:
        """Verify ``model`` after one pass against the last verified state.

        ``changes``: the structure snapshots before and after the pass; with them a lossless
        pass that changed a small region is verified on that region only
        (:mod:`irpass.verify.region`), and the status says so (``equal (region: N nodes)``).

        ``defer``: a lossless pass that needs a whole-model run gets a :class:`DeferredCheck`
        instead of waiting for it: the runs go on in the background (while the caller runs the
        next passes) and ``resolve()`` compares them. Until it is resolved the last verified
        state is not updated, so the caller resolves it before any other check, and undoes the
        passes it ran meanwhile when it fails.

        Raises VerificationError for a malformed model, a model ONNX Runtime cannot load or
        run, and a lossless pass whose outputs differ.
        """
        check_light(model)
        result = Verification(status="structural only", checker=True)
        if not self.numeric:  # --verify none: no proofs either, it is the cheapest mode
            result.detail = "structure checked; numeric verification is off"
            return result
        fingerprint = self._fingerprint(model)
        self.hasher.prune()
        # an existing checker only: creating one waits for the reference runs, and a checker
        # made later has recorded nothing a pass could have made stale
        region = self._region if changes is not None else None
        if fingerprint == self.last.fingerprint:
            if region is not None and changes is not None:
                region.forget(model, *changes, same_computation=True)
            result.status = "equal"
            result.max_abs_error = 0.0
            result.detail = "same computation (no op, weight or annotation on a path changed)"
            return result
        whole, record = "", False
        if lossless and changes is not None:
            region = self._region_checker()
        if region is not None and changes is not None:
            if lossless:
                checked = region.check(model, *changes)
                if checked.checked:
                    return self._region_equal(fingerprint, checked)
                whole = f" (whole model: {checked.reason})"
                record = checked.unrecorded
            else:
                region.forget(model, *changes)
        if defer and lossless and not record:
            return self._deferred(model, fingerprint, result, whole)
        outputs = self._run(model, recording=region if record else None)
        return self._compared(fingerprint, outputs, lossless, result, whole)

    def _deferred(
        self, model: ir.Model, fingerprint: str, result: Verification, whole: str
    ) -> DeferredCheck:
        """Start the runs of ``model`` in the background; compare when the caller resolves."""
        plan = self.plan
        assert plan is not None
        # one intra-op thread: the next passes run on the other core meanwhile, and may
        # change in place the weights they made (those are copied)
        session = make_session(model, threads=1, private=True)
        pending = _in_background(functools.partial(_run_all, session, plan.feeds))
        self._background.append(pending)

        def resolve() -> Verification:
            concurrent.futures.wait([pending])
            self._background.remove(pending)
            return self._compared(fingerprint, pending.result(), True, result, whole)

        return DeferredCheck(resolve)

    def _compared(
        self, fingerprint: str, outputs: Outputs, lossless: bool, result: Verification, whole: str
    ) -> Verification:
        """The rest of :meth:`check` once ``outputs`` ran: compare, then they become the last."""
        result.ort_load = True
        if lossless:
            result.detail = self._equal(self.last.outputs, outputs, "a lossless pass") + whole
            result.status = "equal"
        else:
            drift = drift_metrics(self.original.outputs, outputs)
            result.status = f"drift sqnr={drift['sqnr_db']:.1f}dB"
            result.detail = (
                f"vs. the input model: cosine {drift['cosine']:.6f}, "
                f"max abs error {drift['max_abs_error']:.4g}"
            )
        result.max_abs_error = max_abs_error_all(self.last.outputs, outputs)
        self.last = _State(fingerprint, outputs)
        return result

    def _region_checker(self) -> RegionChecker | None:
        """The region checker, made on first use (it needs the feeds: waits for them)."""
        if self._region is None and self._region_options is not None:
            plan = self.plan
            if plan is not None:
                self._region = RegionChecker(
                    plan.feeds, self.fed, self._region_options, self.tolerance_scale
                )
        return self._region

    def _region_equal(self, fingerprint: str, checked: RegionResult) -> Verification:
        """The verification of a pass whose region checked equal; it becomes the last state."""
        drift = drift_metrics(checked.reference, checked.outputs)
        size = max(checked.old_nodes, checked.new_nodes)
        self.last = _State(fingerprint, self.last.outputs, exact=False)
        return Verification(
            status=f"equal (region: {size} nodes)",
            checker=True,
            ort_load=True,
            max_abs_error=max_abs_error_all(checked.reference, checked.outputs),
            detail=f"region of {checked.old_nodes} -> {checked.new_nodes} nodes on recorded "
            f"boundary values, {len(checked.outputs)} feeds, max abs error "
            f"{drift['max_abs_error']:.3g}, SQNR >= {min(drift['sqnr_db'], 200.0):.0f} dB",
        )

    def compare_with_last(self, model: ir.Model) -> None:
        """Raise VerificationError when ``model`` differs from the last verified state."""
        check_light(model)
        if self._fingerprint(model) == self.last.fingerprint:
            return
        if self.numeric:
            outputs = self._run(model)  # first: the reference may still be running
            self._equal(self.last.outputs, outputs, "the lossless passes")

    def final(
        self, model: ir.Model, lossless_run: bool, beside: Callable[[], object] | None = None
    ) -> Verification:
        """Full ONNX checker, then the end result against the input model, end to end.

        ``beside`` (the runner writes the output file) is called while ONNX Runtime runs the
        end result, so the two overlap; it is called once when this returns (whether or not a
        run was needed), and may not have been when this raises.
        """
        check_structure(model)
        result = Verification(status="structural only", checker=True)
        if not self.numeric:
            _call(beside)
            result.detail = "ONNX checker passed; numeric verification is off"
            return result
        fingerprint = self._fingerprint(model)
        if fingerprint == self.original.fingerprint:
            _call(beside)
            result.status, result.max_abs_error = "equal", 0.0
            result.detail = "same computation as the input model"
            return result
        # after a region check the last outputs are those of an earlier state: run this one
        if fingerprint == self.last.fingerprint and self.last.exact:
            _call(beside)
            outputs = self.last.outputs
        else:
            outputs = self._run(model, beside)
        result.ort_load = True
        result.max_abs_error = max_abs_error_all(self.original.outputs, outputs)
        if lossless_run:
            detail = self._equal(self.original.outputs, outputs, "the lossless pipeline")
            result.status, result.detail = "equal", "end to end vs. the input model: " + detail
        else:
            drift = drift_metrics(self.original.outputs, outputs)
            result.status = f"drift sqnr={drift['sqnr_db']:.1f}dB"
            result.detail = (
                f"end to end vs. the input model: cosine {drift['cosine']:.6f}, "
                f"max abs error {drift['max_abs_error']:.4g}"
            )
        self.last = _State(fingerprint, outputs)
        return result


def _run_given(session: ort.InferenceSession, feeds: list[dict[str, Any]]) -> FeedPlan:
    """The plan for the user's feeds (``--verify-data``): the input model's outputs on them."""
    shapes = [{k: tuple(np.shape(v)) for k, v in f.items()} for f in feeds]
    try:
        outputs = [run_model(session, f) for f in feeds]
    except VerificationError as exc:
        raise UnsupportedModelError(
            f"ONNX Runtime cannot run the input model on the verification data: {exc.message}",
            hint="check that the data match the model's inputs (names, shapes, dtypes, value "
            "ranges)",
        ) from exc
    return FeedPlan(feeds, outputs, [{}] * len(feeds), shapes)


def _run_all(session: ort.InferenceSession, feeds: list[dict[str, Any]]) -> Outputs:
    return [run_model(session, feed) for feed in feeds]


def _call(function: Callable[[], object] | None) -> None:
    if function is not None:
        function()


def _in_background(work: Callable[[], _T]) -> concurrent.futures.Future[_T]:
    """Start ``work`` in its own thread; the future holds its result or its exception.

    The thread ends with the work (nothing is left running after the future completes).
    """
    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="irpass-reference")
    try:
        return executor.submit(work)
    finally:
        executor.shutdown(wait=False)


def max_abs_error_all(reference: Outputs, actual: Outputs) -> float:
    """The largest absolute difference over every output of every feed (inf on mismatch).

    Sequence outputs count each of their tensors; empty optionals count nothing.
    """
    worst = 0.0
    for ref, got in zip(reference, actual, strict=True):
        for name, output in ref.items():
            pairs = _tensor_pairs(output, got[name]) if name in got else None
            if pairs is None:
                return float("inf")
            for value, other in pairs:
                worst = max(worst, max_abs_error(value, other))
    return worst
