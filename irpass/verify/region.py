"""Region verification: check only the part of the graph a lossless pass rewrote.

A pass that rewrites a few nodes of a large model need not be verified by running the whole
model. From the structure snapshots before and after the pass
(:class:`~irpass.verify.fingerprint.StructureSnapshot`) the :class:`RegionChecker` finds

- the **region**: main-graph nodes the pass added, removed or changed (inputs rewired,
  attributes, names, annotations), plus the consumers of a weight it replaced; the old region
  is rebuilt from the snapshot before the pass (the records keep the old nodes' inputs,
  attributes and output names), the new one from the snapshot after it;
- its **boundary inputs**: values the region reads but does not compute. Weights are part of
  the sub-model; graph inputs come from the verification feeds; every other boundary value
  is *recorded* on the verification feeds and kept in a cache bounded by a memory budget.
  A value not recorded yet is computed by running the last verified state (rebuilt from the
  snapshot before the pass, as a sub-model from the graph inputs or from values already
  recorded) when few nodes lead to it; otherwise the region is declined, and the whole-model
  check of that pass records every intermediate value (:meth:`RegionChecker.run_whole`), so
  that the regions of later passes find theirs;
- its **outputs**: values the region computes that nodes outside it or the graph outputs
  still read, matched by name between the old and the new state.

The old and the new region run as two small models in ONNX Runtime on the recorded boundary
values of every feed, and their outputs are compared with :func:`irpass.metrics.compare_outputs`
and the same tolerance as whole-model checks. A region check that fails raises
:class:`~irpass.errors.VerificationError` like a whole-model check, and the pass is rolled back.

After a region check, the recorded values the region computes are replaced with the new
region's; values further downstream keep the values recorded earlier, which differ from the
current model's only through what the checked regions changed (equal within tolerance at the
regions' outputs). A difference that stays within tolerance at a region's outputs but grows
downstream, or small differences adding up over passes, are caught by the end-to-end
comparison with the input model at the end of the run
(:meth:`irpass.verify.verifier.Verifier.final`, always the whole model), which bisects to the
pass and rolls it back.

The checker declines (:attr:`RegionResult.reason` says why) and the caller checks the whole
model when the model is small (a whole run is cheap), the region is large relative to the
model (nodes or weights), the pass changed opsets, functions, subgraphs (If/Loop/Scan bodies),
the graph's inputs or the names and types of its outputs, a weight in place, or only weights
or declarations (no node), the region holds control flow, its outputs do not match by name,
a boundary value is not a tensor, recording the boundary values would run a large part of
the model, or they would not fit the memory budget.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import onnx_ir as ir

from irpass.errors import VerificationError
from irpass.metrics import compare_outputs
from irpass.verify.fingerprint import StructureSnapshot
from irpass.verify.session import make_session, run_model

__all__ = ["RegionChecker", "RegionOptions", "RegionResult"]

logger = logging.getLogger(__name__)

Record = tuple[Any, ...]
Feeds = Sequence[Mapping[str, Any]]
Outputs = list[dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class RegionOptions:
    """When a region check replaces the whole-model check after a lossless pass.

    Attributes:
        max_fraction: Largest region, as a fraction of the model's main-graph nodes and of its
            weight elements, that is checked as a region (0 turns region checks off).
        min_nodes: Models with fewer main-graph nodes are always checked whole: one session
            and run of a small model cost less than the two to three small sessions of a
            region check (measured: models of about 40 nodes check whole in 20-40 ms).
        memory_bytes: Budget of the recorded boundary values (all feeds together).
    """

    max_fraction: float = 0.25
    min_nodes: int = 100
    memory_bytes: int = 256 << 20


@dataclasses.dataclass
class RegionResult:
    """What a region check did: ``reason`` is set when it declined (check the whole model)."""

    reason: str = ""
    #: declined only because its boundary values are not recorded: the whole-model check
    #: should record them (:meth:`RegionChecker.run_whole`) for the regions that follow
    unrecorded: bool = False
    old_nodes: int = 0
    new_nodes: int = 0
    outputs: Outputs = dataclasses.field(default_factory=list)
    reference: Outputs = dataclasses.field(default_factory=list)

    @property
    def checked(self) -> bool:
        """Whether the region check ran (and passed: a failure raises)."""
        return not self.reason


class _View:
    """One state of the main graph, read from a structure snapshot (not from the live IR).

    The snapshot keeps the records of the nodes as they were, so the state before a pass can
    be rebuilt after the pass rewrote the IR in place.
    """

    def __init__(self, snapshot: StructureSnapshot, fed: frozenset[str]) -> None:
        self.snapshot = snapshot
        self.records: dict[ir.Node, Record] = dict(
            itertools.islice(snapshot.nodes.items(), snapshot.main_count)
        )
        _, inputs, outputs, initializers = snapshot.graphs[0]
        self.names: dict[ir.Value, str | None] = {}
        self.inputs: dict[ir.Value, str] = {}
        for value, name, _, _ in inputs:
            self.names[value] = name
            self.inputs[value] = name
        self.consts: dict[ir.Value, tuple[Any, Any]] = {}
        for name, (value, *_), tensor, token in initializers:
            self.names[value] = name
            # an input with a default that the feeds set is an input, else the default counts
            if tensor is not None and not (value in self.inputs and name in fed):
                self.consts[value] = (tensor, token)
                self.inputs.pop(value, None)
        self.outputs: list[tuple[ir.Value, str | None]] = [(v, n) for v, n, _, _ in outputs]
        self.output_signature = [(n, dims, t) for _, n, dims, t in outputs]
        self.producer: dict[ir.Value, ir.Node] = {}
        self.consumers: dict[ir.Value, list[ir.Node]] = {}
        for node, record in self.records.items():
            for value in record[6]:
                if value is not None:
                    self.consumers.setdefault(value, []).append(node)
            for value, name, _, _ in record[7]:
                self.producer[value] = node
                self.names[value] = name
        self.graph_outputs = {value for value, _ in self.outputs}
        # main-graph values a subgraph body reads from the outer scope: read outside any region
        self.captured = {
            value
            for record in itertools.islice(snapshot.nodes.values(), snapshot.main_count, None)
            for value in record[6]
            if value in self.producer
        }

    def downstream(self, nodes: Iterable[ir.Node]) -> set[ir.Node]:
        """``nodes`` and every node that reads what they compute, transitively."""
        seen: set[ir.Node] = set()
        pending = list(nodes)
        while pending:
            node = pending.pop()
            if node in seen or node not in self.records:
                continue
            seen.add(node)
            for value, *_ in self.records[node][7]:
                pending.extend(self.consumers.get(value, ()))
        return seen


@dataclasses.dataclass
class _Region:
    old: list[ir.Node]
    new: list[ir.Node]
    #: values the old region computed: their recorded data are not the model's any more
    removed: set[ir.Value]
    #: values computed downstream of the new region: within tolerance of their recorded data
    #: when the region checks equal, unknown otherwise
    downstream: set[ir.Value]


def _find_region(before: _View, after: _View) -> _Region | str:
    """The nodes a pass changed in the main graph, or why they cannot be checked as a region."""
    old_snap, new_snap = before.snapshot, after.snapshot
    if old_snap.header != new_snap.header:
        return "the pass changed opsets, the IR version or functions"
    if old_snap.graphs[1:] != new_snap.graphs[1:] or _nested_changed(old_snap, new_snap):
        return "the pass changed a subgraph (If/Loop/Scan body) or a function"
    if old_snap.graphs[0][1] != new_snap.graphs[0][1]:
        return "the pass changed the graph inputs"
    if before.output_signature != after.output_signature:
        return "the pass changed the names or types of the graph outputs"
    replaced: set[ir.Value] = set()
    for value, (tensor, token) in before.consts.items():
        now = after.consts.get(value)
        if now is None:
            continue
        if now[0] is tensor and now[1] != token:
            return f"the pass changed weight {before.names.get(value)!r} in place"
        if now[0] is not tensor:
            replaced.add(value)
    old = {n for n, r in before.records.items() if _changed(r, after.records.get(n))}
    new = {n for n, r in after.records.items() if _changed(r, before.records.get(n))}
    for value in replaced:
        old.update(before.consumers.get(value, ()))
        new.update(after.consumers.get(value, ()))
    if not old and not new:
        return "no node changed (weights or declarations only)"
    removed = {value for node in old for value, *_ in before.records[node][7]}
    below = {value for node in after.downstream(new) for value, *_ in after.records[node][7]}
    return _Region(
        old=[n for n in before.records if n in old],
        new=[n for n in after.records if n in new],
        removed=removed,
        downstream=below - removed,
    )


def _changed(record: Record, other: Record | None) -> bool:
    """Whether a node's record differs in what it computes or names.

    Shapes and types annotated on its outputs do not count: the sub-models do not use them,
    and a pass that re-infers shapes after a rewrite would otherwise make every node a part
    of its region.
    """
    if other is None:
        return True
    if record[:7] != other[:7] or len(record[7]) != len(other[7]):
        return True
    return any(
        (value, name) != (value2, name2)
        for (value, name, *_), (value2, name2, *_) in zip(record[7], other[7], strict=True)
    )


def _nested_changed(before: StructureSnapshot, after: StructureSnapshot) -> bool:
    """Whether a node of a subgraph or function was added, removed or changed."""
    old = dict(itertools.islice(before.nodes.items(), before.main_count, None))
    new = dict(itertools.islice(after.nodes.items(), after.main_count, None))
    return old != new


def _has_subgraph(record: Record) -> bool:
    return any(
        attr.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for _, attr, _ in record[5]
    )


def _records(view: _View, nodes: Iterable[ir.Node]) -> Iterator[Record]:
    return (view.records[node] for node in nodes)


def _topological(view: _View, nodes: Sequence[ir.Node]) -> list[ir.Node]:
    """``nodes`` ordered so that producers come first (a pass may insert nodes anywhere)."""
    inside = set(nodes)
    waiting = {
        node: {view.producer[v] for v in view.records[node][6] if v in view.producer}
        & inside
        - {node}
        for node in nodes
    }
    ordered: list[ir.Node] = []
    ready = [node for node in nodes if not waiting[node]]
    while ready:
        node = ready.pop(0)
        ordered.append(node)
        for value, *_ in view.records[node][7]:
            for consumer in view.consumers.get(value, ()):
                pending = waiting.get(consumer)
                if pending and node in pending:
                    pending.discard(node)
                    if not pending:
                        ready.append(consumer)
    if len(ordered) != len(nodes):
        raise VerificationError("the region has a cycle", hint="this is a bug in the pass")
    return ordered


def _nbytes(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    return 0


@dataclasses.dataclass
class _Side:
    """One state of the region: what the sub-model reads, computes and returns."""

    view: _View
    nodes: list[ir.Node]
    recorded: list[ir.Value]
    consts: dict[ir.Value, Any]
    outputs: dict[str, ir.Value]


def _side(view: _View, nodes: list[ir.Node]) -> _Side | str:
    inside = set(nodes)
    produced = {value for node in nodes for value, *_ in view.records[node][7]}
    recorded: list[ir.Value] = []
    consts: dict[ir.Value, Any] = {}
    for node in nodes:
        for value in view.records[node][6]:
            if value is None or value in produced or value in consts or value in recorded:
                continue
            if value in view.consts:
                consts[value] = view.consts[value][0]
            elif value in view.inputs or value in view.producer:
                recorded.append(value)
            else:
                return f"the region reads {view.names.get(value)!r}, which the graph does not hold"
    outputs: dict[str, ir.Value] = {}
    for value in sorted(produced, key=lambda v: view.names.get(v) or ""):
        read_outside = any(c not in inside for c in view.consumers.get(value, ()))
        if read_outside or value in view.graph_outputs or value in view.captured:
            name = view.names.get(value)
            if not name:
                return "a region output has no name"
            outputs[name] = value
    return _Side(view, nodes, recorded, consts, outputs)


def _submodel(
    view: _View,
    nodes: Sequence[ir.Node],
    inputs: Sequence[ir.Value],
    consts: Mapping[ir.Value, Any],
    outputs: Sequence[ir.Value],
    template: ir.Model,
    samples: Mapping[ir.Value, Any],
) -> ir.Model:
    """A model of ``nodes`` (as ``view`` records them) reading ``inputs`` and ``consts``.

    Inputs are named ``in<i>``, outputs ``out<i>``, everything else ``v<i>`` (the model's own
    names may be missing or clash); empty names (absent optional outputs) stay empty, so that
    ops with optional outputs compute what they computed in the model.
    """
    mapped: dict[ir.Value, ir.Value] = {}
    graph_inputs: list[ir.Value] = []
    for index, value in enumerate(inputs):
        sample = samples[value]
        new = ir.Value(
            name=f"in{index}",
            type=ir.TensorType(ir.DataType.from_numpy(sample.dtype)),
            shape=ir.Shape([f"in{index}_{axis}" for axis in range(sample.ndim)]),
        )
        mapped[value] = new
        graph_inputs.append(new)
    initializers: list[ir.Value] = []
    for index, (value, tensor) in enumerate(consts.items()):
        new = ir.Value(
            name=f"w{index}",
            type=ir.TensorType(tensor.dtype),
            shape=ir.Shape(tensor.shape),
            const_value=tensor,
        )
        mapped[value] = new
        initializers.append(new)
    built: list[ir.Node] = []
    counter = itertools.count()
    for node in _topological(view, nodes):
        _, domain, overload, version, name, attributes, node_inputs, node_outputs = view.records[
            node
        ]
        copy = ir.Node(
            domain,
            view.records[node][0],
            [None if v is None else mapped[v] for v in node_inputs],
            attributes=[attr for _, attr, _ in attributes],
            overload=overload,
            version=version,
            num_outputs=len(node_outputs),
            name=name,
        )
        for original, (value, value_name, _, _) in zip(copy.outputs, node_outputs, strict=True):
            original.name = f"v{next(counter)}" if value_name else ""
            mapped[value] = original
        built.append(copy)
    graph_outputs = []
    for index, value in enumerate(outputs):
        out = mapped[value]
        out.name = f"out{index}"
        graph_outputs.append(out)
    graph = ir.Graph(
        graph_inputs,
        graph_outputs,
        nodes=built,
        initializers=initializers,
        opset_imports=dict(template.opset_imports),
    )
    return ir.Model(graph, ir_version=template.ir_version)


class _Recorded:
    """Values of the last verified state on every feed, keyed by IR value, within a budget."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.data: dict[ir.Value, list[Any]] = {}
        self.bytes = 0
        self.graph: ir.Graph | None = None

    def bind(self, graph: ir.Graph) -> None:
        """Forget everything when the model now holds another graph (a rollback restored it)."""
        if graph is not self.graph:
            self.clear()
            self.graph = graph

    def clear(self) -> None:
        self.data.clear()
        self.bytes = 0

    def drop(self, values: Iterable[ir.Value]) -> None:
        for value in values:
            arrays = self.data.pop(value, None)
            if arrays is not None:
                self.bytes -= sum(_nbytes(a) for a in arrays)

    def put(self, value: ir.Value, arrays: list[Any], keep: set[ir.Value], evict: bool) -> bool:
        """Store ``arrays`` (False when they do not fit).

        With ``evict``, room is made by dropping the least recently used values not in ``keep``.
        """
        size = sum(_nbytes(a) for a in arrays)
        self.drop([value])
        for old in list(self.data) if evict else ():
            if self.bytes + size <= self.budget:
                break
            if old not in keep:
                self.drop([old])
        if self.bytes + size > self.budget:
            return False
        self.data[value] = arrays
        self.bytes += size
        return True

    def get(self, value: ir.Value) -> list[Any] | None:
        arrays = self.data.pop(value, None)
        if arrays is not None:
            self.data[value] = arrays  # most recently used last
        return arrays


class RegionChecker:
    """Region checks for one pipeline run (see the module docstring).

    Args:
        feeds: The verification feeds (graph input name -> array), one dict per feed.
        fed: Names of the graph inputs the feeds set (inputs with defaults may be absent).
        options: Thresholds and memory budget.
        tolerance_scale: Multiplier of the dtype tolerances, as for whole-model checks.
    """

    def __init__(
        self,
        feeds: Feeds,
        fed: frozenset[str],
        options: RegionOptions,
        tolerance_scale: float = 1.0,
    ) -> None:
        self.feeds = list(feeds)
        self.fed = fed
        self.options = options
        self.tolerance_scale = tolerance_scale
        self.recorded = _Recorded(options.memory_bytes)
        self._view: _View | None = None

    def _view_of(self, snapshot: StructureSnapshot) -> _View:
        # the snapshot after one pass is the one before the next: built once
        if self._view is None or self._view.snapshot is not snapshot:
            self._view = _View(snapshot, self.fed)
        return self._view

    # -- the check -----------------------------------------------------------------------
    def check(
        self, model: ir.Model, before: StructureSnapshot, after: StructureSnapshot
    ) -> RegionResult:
        """Check the region a lossless pass changed; ``reason`` says why it declined.

        Raises VerificationError when the region's outputs differ. Whatever the outcome,
        recorded values the pass made stale are forgotten.
        """
        self.recorded.bind(model.graph)
        if self.options.max_fraction <= 0:
            return RegionResult(reason="region checks are off")
        if after.main_count < self.options.min_nodes:
            self.recorded.clear()
            return RegionResult(reason=f"small model ({after.main_count} nodes)")
        old_view = self._view_of(before)
        new_view = _View(after, self.fed)
        region = _find_region(old_view, new_view)
        self._view = new_view
        if isinstance(region, str):
            self.recorded.clear()
            return RegionResult(reason=region)
        try:
            result = self._check(model, old_view, new_view, region)
        except VerificationError:
            self._forget(region)
            raise
        except Exception as exc:  # a region this module cannot handle: the whole model can
            logger.debug("region check failed", exc_info=True)
            self.recorded.clear()
            return RegionResult(
                reason=f"the region could not be checked on its own ({type(exc).__name__}: {exc})"
            )
        if not result.checked:  # before the whole-model check, which may record afresh
            self._forget(region)
        return result

    def _forget(self, region: _Region) -> None:
        self.recorded.drop(region.removed | region.downstream)

    def forget(
        self,
        model: ir.Model,
        before: StructureSnapshot,
        after: StructureSnapshot,
        *,
        same_computation: bool = False,
    ) -> None:
        """A pass was checked another way: forget the recorded values it made stale.

        ``same_computation``: the pass provably computes the same function (equal computation
        fingerprints), so only the values of the nodes it removed are forgotten; otherwise the
        values of the nodes it changed and everything downstream of them go too.
        """
        self.recorded.bind(model.graph)
        if not self.recorded.data:
            return  # nothing to forget: no need to compare the snapshots
        if same_computation:
            # equal fingerprints: every live value a remaining node computes is unchanged
            # (annotations, rewired equal inputs); only the values of removed nodes go
            graph = model.graph
            self.recorded.drop(
                [v for v in self.recorded.data if getattr(v.producer(), "graph", None) is not graph]
            )
            return
        old_view = self._view_of(before)
        new_view = _View(after, self.fed)
        self._view = new_view
        region = _find_region(old_view, new_view)
        if isinstance(region, str):
            self.recorded.clear()
        else:
            self._forget(region)

    def _too_large(self, view: _View, region: _Region) -> str:
        limit = self.options.max_fraction
        if max(len(region.old), len(region.new)) > limit * len(view.records):
            return (
                f"the region is large ({len(region.old)} -> {len(region.new)} nodes, the model "
                f"has {len(view.records)})"
            )
        total = sum(_elements(tensor) for tensor, _ in view.consts.values())
        used = {v for n in region.new for v in view.records[n][6] if v in view.consts}
        weights = sum(_elements(view.consts[v][0]) for v in used)
        if total and weights > limit * total:
            return f"the region holds {weights / total:.0%} of the weights"
        return ""

    def _check(
        self, model: ir.Model, old_view: _View, new_view: _View, region: _Region
    ) -> RegionResult:
        reason = self._too_large(new_view, region)
        if reason:
            return RegionResult(reason=reason)
        if any(_has_subgraph(old_view.records[n]) for n in region.old) or any(
            _has_subgraph(new_view.records[n]) for n in region.new
        ):
            return RegionResult(reason="the region holds control flow (If/Loop/Scan)")
        functions = {(domain, name) for domain, name, _ in model.functions}
        if any((r[1], r[0]) in functions for r in _records(old_view, region.old)) or any(
            (r[1], r[0]) in functions for r in _records(new_view, region.new)
        ):
            return RegionResult(reason="the region calls a model-local function")
        old = _side(old_view, region.old)
        new = _side(new_view, region.new)
        if isinstance(old, str) or isinstance(new, str):
            return RegionResult(reason=old if isinstance(old, str) else str(new))
        if set(old.outputs) != set(new.outputs):
            gone = sorted(set(old.outputs) - set(new.outputs))
            added = sorted(set(new.outputs) - set(old.outputs))
            return RegionResult(
                reason=f"the region's outputs do not match by name (before only: {gone[:3]}, "
                f"after only: {added[:3]})"
            )
        needed = list(dict.fromkeys(old.recorded + new.recorded))
        reason, unrecorded = self._record(model, old_view, needed)
        if reason:
            return RegionResult(reason=reason, unrecorded=unrecorded)
        values = {v: self._values(old_view, v) for v in needed}
        names = sorted(old.outputs)
        region_outputs = set(new.outputs.values())
        extra = [
            v
            for n in new.nodes
            for v, name, _, _ in new_view.records[n][7]
            if name and v not in region_outputs
        ]
        try:
            reference = self._run(model, old, [old.outputs[k] for k in names], values)
            actual = self._run(model, new, [new.outputs[k] for k in names] + extra, values)
        except VerificationError as exc:
            # a region cut out of its model may not run on its own (e.g. an op that needs
            # its input's static shape); the whole model decides, which catches a pass that
            # broke the model too
            return RegionResult(reason=f"the region does not run on its own: {exc.message}")
        expected = [dict(zip(names, run, strict=False)) for run in reference]
        got = [dict(zip(names, run, strict=False)) for run in actual]
        for index, (want, have) in enumerate(zip(expected, got, strict=True)):
            mismatches = compare_outputs(want, have, self.tolerance_scale)
            if mismatches:
                raise VerificationError(
                    f"a lossless pass changed the outputs of the region it rewrote "
                    f"({len(region.old)} -> {len(region.new)} nodes) on feed {index + 1}: "
                    f"{mismatches[0]}",
                    hint="this is a bug in the pass; the reproducer holds its input",
                )
        # what the new region computes is the current model's: recorded for later regions;
        # values downstream keep theirs (within tolerance, as just checked)
        self.recorded.drop(region.removed)
        keep = set(needed)
        for position, value in enumerate([new.outputs[k] for k in names] + extra):
            arrays = [run[position] for run in actual]
            if all(isinstance(a, np.ndarray) for a in arrays):
                self.recorded.put(value, arrays, keep, evict=False)
        return RegionResult(
            old_nodes=len(region.old),
            new_nodes=len(region.new),
            outputs=got,
            reference=expected,
        )

    def _values(self, view: _View, value: ir.Value) -> list[Any]:
        """The recorded (or fed) data of ``value`` on every feed."""
        recorded = self.recorded.get(value)
        if recorded is not None:
            return recorded
        name = view.inputs[value]
        return [feed[name] for feed in self.feeds]

    def _fed(self, view: _View, value: ir.Value) -> bool:
        name = view.inputs.get(value)
        return name is not None and all(name in feed for feed in self.feeds)

    def _run(
        self,
        model: ir.Model,
        side: _Side,
        outputs: list[ir.Value],
        values: Mapping[ir.Value, list[Any]],
    ) -> list[list[Any]]:
        """Run one state of the region on every feed; per feed, ``outputs`` in order."""
        samples = {v: values[v][0] for v in side.recorded}
        sub = _submodel(side.view, side.nodes, side.recorded, side.consts, outputs, model, samples)
        session = make_session(sub)
        results = []
        for index in range(len(self.feeds)):
            feed = {f"in{i}": values[v][index] for i, v in enumerate(side.recorded)}
            got = run_model(session, feed)
            results.append([got[f"out{i}"] for i in range(len(outputs))])
        return results

    # -- recording -----------------------------------------------------------------------
    def run_whole(self, model: ir.Model) -> Outputs:
        """Run the whole model on every feed; record the values it computes, within budget.

        Called for the whole-model check of a pass whose region was declined only because
        its boundary values were not recorded: recording them in this run costs less than a
        run of their own, and regions of later passes then find them. Returns the graph
        outputs per feed, as a plain run would.
        """
        self.recorded.bind(model.graph)
        graph = model.graph
        original = list(graph.outputs)
        present = set(original)
        values = [v for node in graph for v in node.outputs if v.name and v not in present]
        graph.outputs.extend(values)
        try:
            session = make_session(model)
        finally:
            while len(graph.outputs) > len(original):
                graph.outputs.pop()
        names = [v.name or "" for v in original]
        results: Outputs = []
        kept: dict[ir.Value, list[Any]] = {}
        room = self.options.memory_bytes - self.recorded.bytes
        for index, feed in enumerate(self.feeds):
            got = run_model(session, feed)
            results.append({name: got[name] for name in names})
            if index == 0:  # keep what fits, judged by the first feed's sizes
                for value in values:
                    array = got[value.name or ""]
                    size = _nbytes(array) * len(self.feeds)
                    if isinstance(array, np.ndarray) and size <= room:
                        kept[value] = []
                        room -= size
            for value, arrays in kept.items():
                arrays.append(got[value.name or ""])
            del got
        for value, arrays in kept.items():
            if all(isinstance(a, np.ndarray) for a in arrays):
                self.recorded.put(value, arrays, set(), evict=False)
        logger.debug("recorded %d of %d values in a whole-model run", len(kept), len(values))
        return results

    def _record(
        self, model: ir.Model, view: _View, needed: list[ir.Value]
    ) -> tuple[str, bool]:
        """Make sure every ``needed`` value is recorded; return why not otherwise.

        The flag is True when the values were only too costly to record now.

        Missing values are computed by running the last verified state (``view``, the state
        before the pass) from the graph inputs and the values already recorded; every value
        that run computes is recorded too while the budget allows, for later regions. A run
        of more than ``max_fraction`` of the model's nodes is not done (it would cost about
        as much as the whole-model check).
        """
        missing = [
            v for v in needed if self.recorded.get(v) is None and not self._fed(view, v)
        ]
        if missing:
            cone: set[ir.Node] = set()
            inputs: list[ir.Value] = []
            consts: dict[ir.Value, Any] = {}
            pending = list(missing)
            while pending:
                value = pending.pop()
                node = view.producer.get(value)
                if node is None:
                    if value in view.consts:
                        consts[value] = view.consts[value][0]
                    elif self._fed(view, value):
                        if value not in inputs:
                            inputs.append(value)
                    else:
                        name = view.names.get(value)
                        return f"cannot record {name!r} (not a fed graph input)", False
                    continue
                if node in cone:
                    continue
                cone.add(node)
                if _has_subgraph(view.records[node]):
                    return "recording the region's inputs would run control flow", False
                for source in view.records[node][6]:
                    if source is None or source in consts or source in inputs:
                        continue
                    if self.recorded.get(source) is not None:
                        inputs.append(source)
                    else:
                        pending.append(source)
            limit = self.options.max_fraction * len(view.records)
            if len(cone) > limit:
                # as costly as checking the whole model (measured: exposing every value of a
                # large part of the model costs more than the whole-model run itself)
                return (
                    f"its boundary values are not recorded and recording them would run "
                    f"{len(cone)} of {len(view.records)} nodes",
                    True,
                )
            nodes = [n for n in view.records if n in cone]
            computed = [
                v
                for n in nodes
                for v, name, _, _ in view.records[n][7]
                if name and v not in missing
            ]
            outputs = missing + computed
            values = {v: self._values(view, v) for v in inputs}
            samples = {v: arrays[0] for v, arrays in values.items()}
            try:
                sub = _submodel(view, nodes, inputs, consts, outputs, model, samples)
                session = make_session(sub)
                runs = []
                for index in range(len(self.feeds)):
                    feed = {f"in{i}": values[v][index] for i, v in enumerate(inputs)}
                    runs.append(run_model(session, feed))
            except VerificationError as exc:
                return f"recording the region's inputs failed: {exc.message}", False
            keep = set(needed)
            for position, value in enumerate(outputs):
                arrays = [run[f"out{position}"] for run in runs]
                if not all(isinstance(a, np.ndarray) for a in arrays):
                    if value in keep:
                        name = view.names.get(value)
                        return f"boundary value {name!r} is not a tensor", False
                    continue
                stored = self.recorded.put(value, arrays, keep, evict=value in keep)
                if not stored and value in keep:
                    return "the region's inputs do not fit the memory budget", False
            logger.debug(
                "recorded %d values for a region (%d nodes run)", len(outputs), len(nodes)
            )
        for value in needed:
            if not self._fed(view, value) and self.recorded.get(value) is None:
                return "the region's inputs do not fit the memory budget", False
        return "", False


def _elements(tensor: Any) -> int:
    return int(math.prod(tensor.shape.numpy())) if tensor.shape.rank() else 1
