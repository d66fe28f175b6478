"""Shared machinery of the fusion passes: rule base class, rule-set pass, numeric helpers.

Every fusion pass is a set of onnxscript rewrite rules (pattern / check / rewrite) wrapped in an
:class:`RuleSetPass`. The wrapper adds what irpass needs on top of onnxscript's
``RewriteRuleSet``:

- per-rule application counts in ``self.stats`` (the rule's ``stat`` name);
- ``check`` refusals logged at debug level with the rule name and reason;
- phases: rule lists applied one after another, each to a fixpoint, so a preferred rewrite
  (fold a BatchNormalization into its Conv) gets every chance before a fallback
  (BatchNormalization as Mul+Add);
- clean-up of what the rewrites orphaned: initializers and Constant nodes unused after the pass
  that were used before it *or were created by it* (a weight folded twice in one pass, e.g.
  Conv -> Mul -> Add, leaves an intermediate folded copy), and the Identity nodes pass-through
  rewrites leave behind;
- folded weights *replace* the weights they were computed from: a new initializer is named
  ``<root>_<stat>`` while the old one still exists and takes the old name ``<root>`` back once
  the old weight is gone, so names never grow ``_after_after`` chains across rewrites or passes;
- ``modified`` reported from the number of rewrites actually applied.

onnxscript's rewriter visits If/Loop/Scan bodies itself, so every rule set recurses into
subgraphs.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern as orp
from onnxscript.rewriter._basics import MatchFailureError

from irpass.pass_base import IrpassPass, all_graphs

__all__ = [
    "FusionRule",
    "RuleSetPass",
    "attr_float",
    "attr_int",
    "attr_ints",
    "const_array",
    "constant_scalar",
    "either",
    "model_opset",
    "node_of",
    "one_dim_constant_matched",
    "passthrough",
    "root_name",
    "scalar",
    "scalar",
    "static_dims",
    "static_shape",
    "unique_name",
]

logger = logging.getLogger("irpass.passes.fusion")

#: metadata_props key marking Identity nodes our pass-through rewrites created.
_PASSTHROUGH_TAG = "irpass.fusion.passthrough"
_MAX_ROUNDS = 50


class FusionRule(orp.RewriteRuleClassBase):
    """A rewrite rule: ``pattern`` (what to match), ``check`` (why not), ``rewrite`` (result).

    ``stat`` names the counter the rule increments in the pass report (several rule instances,
    e.g. variants of one algebraic pattern, may share it). ``check`` stores the match context in
    ``self.ctx`` so that ``rewrite`` can reach the graph (unique initializer names, opset).
    """

    stat: ClassVar[str] = ""

    def __init__(self, name: str | None = None, **kwargs: Any) -> None:
        super().__init__(name or type(self).__name__, **kwargs)
        self.ctx: Any = None
        self._reserved: set[str] = set()
        #: (initializer, the name it should take once its source weight is gone)
        self.created: list[tuple[ir.Value, str]] = []

    @property
    def stat_name(self) -> str:
        """The counter name for this rule in the pass's stats."""
        return self.stat or self.name

    # onnxscript names the first parameter ``op`` but passes the match context
    def check(  # type: ignore[override]
        self, context: Any, *args: Any, **kwargs: Any
    ) -> orp.MatchResult:
        """Accept every match (subclasses refine this and return ``fail(reason)``)."""
        return orp.MatchResult()

    @property
    def graph(self) -> ir.Graph:
        """The graph (or function) the current match lives in."""
        return self.ctx.graph_or_function

    def new_initializer(self, op: Any, array: np.ndarray, base: str | None) -> ir.Value:
        """Emit an initializer holding ``array`` with a name unique in the current graph.

        Raises MatchFailureError inside a model-local function (functions have no initializers;
        the rewriter would silently drop the rewrite while we counted it).
        """
        if isinstance(self.graph, ir.Function):
            raise MatchFailureError("cannot add initializers inside a model-local function")
        root = root_name(base or "const")
        name = unique_name(self.graph, root + "_" + self.stat_name, self._reserved)
        self._reserved.add(name)
        # np.array, not np.ascontiguousarray: the latter turns a scalar into shape (1,)
        value = op.initializer(ir.tensor(np.array(array, order="C")), name)
        self.created.append((value, root))
        return value

    def setup(self) -> None:
        """Reset the per-graph set of reserved initializer names."""
        self._reserved = set()


def either(op: Any, op_type: str, a: Any, b: Any, tag: str) -> Any:
    """Pattern for ``op_type(a, b)`` in either operand order (for commutative Add/Mul).

    Cheaper than ``RewriteRuleSet(commute=True)``, which multiplies whole rules by 2 per
    commutative node (thousands for a GELU pattern). ``tag`` must be unique in the pattern.
    """
    make = getattr(op, op_type)
    return orp.OrValue([make(a, b), make(b, a)], tag_var=tag)


def scalar(value: float, tag: str) -> Any:
    """Pattern for a constant equal to ``value`` held as a scalar or as shape ``(1,)``.

    Exporters write both. ``tag`` (unique in the pattern) is bound to 1 when the ``(1,)`` form
    matched; checks use :func:`one_dim_constant_matched` to make sure the shape is kept.
    """
    return orp.OrValue([orp.Constant(value), orp.Constant([value])], tag_var=f"k_{tag}")


def one_dim_constant_matched(bindings: dict[str, Any]) -> bool:
    """Whether any :func:`scalar` pattern in the match bound its shape-``(1,)`` form."""
    return any(k.startswith("k_") and v == 1 for k, v in bindings.items())


def _stat_names() -> set[str]:
    names: set[str] = set()
    stack: list[type] = [FusionRule]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        stat = getattr(cls, "stat", "")
        if stat:
            names.add(stat)
    return names


def root_name(name: str) -> str:
    """``name`` without the ``_<stat>`` / ``_<stat>_<n>`` suffixes fusion rules append."""
    stats = "|".join(sorted((re.escape(s) for s in _stat_names()), key=len, reverse=True))
    if not stats:
        return name
    root = re.sub(rf"(_(?:{stats})(?:_\d+)?)+$", "", name)
    return root or name


def unique_name(graph: Any, base: str, reserved: Iterable[str] = ()) -> str:
    """``base`` or ``base_<n>``: a name no initializer of ``graph`` (nor ``reserved``) has."""
    taken = set(getattr(graph, "initializers", {}) or {}) | set(reserved)
    name = base
    n = 1
    while name in taken:
        name = f"{base}_{n}"
        n += 1
    return name


def node_of(value: ir.Value) -> ir.Node:
    """The node producing ``value`` (values bound to pattern outputs always have one)."""
    node = value.producer()
    if node is None:
        raise ValueError(f"value {value.name!r} has no producer")
    return node


def passthrough(op: Any, x: ir.Value) -> ir.Value:
    """Replacement for ``f(x) == x`` rewrites: an Identity the pass removes afterwards.

    Returning ``x`` itself would make the rewriter rename ``x`` to the replaced value's name
    (which breaks graph inputs); the pass splices the Identity out when that is safe.
    """
    out = op.Identity(x)
    node_of(out).metadata_props[_PASSTHROUGH_TAG] = "1"
    return out


def model_opset(model: ir.Model) -> int:
    """The default-domain opset of ``model`` (0 when it imports none)."""
    return int(model.opset_imports.get("", model.opset_imports.get("ai.onnx", 0)))


def const_array(value: ir.Value | None) -> np.ndarray | None:
    """The value's constant contents, or None (graph inputs are never constant)."""
    if value is None or value.is_graph_input():
        return None
    tensor = value.const_value
    if tensor is None:
        tensor = ir.convenience.get_const_tensor(value)
    if tensor is None:
        return None
    try:
        return tensor.numpy()
    except Exception:  # unreadable external data, string tensors, ...
        return None


def constant_scalar(value: ir.Value | None) -> float | None:
    """The single element of a constant holding exactly one element, or None."""
    array = const_array(value)
    if array is None or array.size != 1 or array.dtype.kind not in "fiu":
        return None
    return float(array.reshape(()))


def static_shape(value: ir.Value | None) -> tuple[int, ...] | None:
    """The value's shape when every dimension is a known integer, else None."""
    if value is None:
        return None
    array = const_array(value)
    if array is not None:
        return tuple(array.shape)
    return static_dims(value.shape)


def static_dims(shape: Any) -> tuple[int, ...] | None:
    """``shape`` as a tuple of ints when every dimension is a known integer, else None."""
    if shape is None:
        return None
    dims = tuple(d for d in shape if isinstance(d, int))
    return dims if len(dims) == len(shape) else None


def rank_of(value: ir.Value | None) -> int | None:
    """The value's rank when known."""
    if value is None:
        return None
    array = const_array(value)
    if array is not None:
        return array.ndim
    return None if value.shape is None else len(value.shape)


def attr_int(node: ir.Node, name: str, default: int) -> int:
    """Integer attribute ``name`` of ``node`` or ``default``."""
    attr = node.attributes.get(name)
    return default if attr is None else int(attr.as_int())


def attr_float(node: ir.Node, name: str, default: float) -> float:
    """Float attribute ``name`` of ``node`` or ``default``."""
    attr = node.attributes.get(name)
    return default if attr is None else float(attr.as_float())


def attr_ints(node: ir.Node, name: str) -> list[int] | None:
    """Integer-list attribute ``name`` of ``node`` or None."""
    attr = node.attributes.get(name)
    return None if attr is None else [int(v) for v in attr.as_ints()]


def attr_str(node: ir.Node, name: str, default: str) -> str:
    """String attribute ``name`` of ``node`` or ``default``."""
    attr = node.attributes.get(name)
    return default if attr is None else str(attr.as_string())


def is_close(value: float | None, expected: float, rtol: float = 1e-4) -> bool:
    """``value`` is not None and equals ``expected`` up to float32 rounding of the constant."""
    return value is not None and math.isclose(value, expected, rel_tol=rtol, abs_tol=1e-7)


def sole_user_is(value: ir.Value, node: ir.Node) -> bool:
    """``value`` feeds ``node`` only (and is no graph output)."""
    if value.is_graph_output():
        return False
    return all(user is node for user, _ in value.uses())


class _CountingRule(orp.RewriteRule):
    """A RewriteRule that logs check refusals and counts applied rewrites per ``stat``."""

    def __init__(self, impl: FusionRule, counts: Counter[str]) -> None:
        self._impl = impl
        self._counts = counts

        def check(context: Any, **bindings: Any) -> Any:
            impl.ctx = context
            result = impl.check(context, **bindings)
            if not result:
                reason = getattr(result, "reason", "") or "check returned False"
                logger.debug(
                    "%s: not rewriting at node %r (%s): %s",
                    impl.name,
                    context.root.name,
                    context.root.op_type,
                    reason,
                )
            return result

        def rewrite(op: Any, **bindings: Any) -> Any:
            out = impl.rewrite(op, **bindings)
            if out is not None and out is not False:
                counts[impl.stat_name] += 1
            return out

        super().__init__(
            impl.pattern,
            rewrite,
            check,
            name=impl.name,
            remove_nodes=impl.remove_nodes,
            graph_pre_visitor=impl.setup,
            graph_post_visitor=impl.cleanup,
        )


def _unused_initializers(model: ir.Model) -> dict[int, ir.Value]:
    """Initializers nobody reads, by id (not ours to remove: that is eliminate_dead's job).

    The values are kept in the dict so that their ids cannot be reused by new objects.
    """
    return {
        id(value): value
        for graph in all_graphs(model)
        for value in graph.initializers.values()
        if not value.uses() and not value.is_graph_output()
    }


def _unused_constant_nodes(model: ir.Model) -> dict[int, ir.Node]:
    return {
        id(node): node
        for graph in all_graphs(model)
        for node in graph
        if node.op_type == "Constant"
        and not any(out.uses() or out.is_graph_output() for out in node.outputs)
    }


def _splice_passthrough_identities(model: ir.Model) -> None:
    for graph in all_graphs(model):
        for node in list(graph):
            if node.op_type != "Identity" or _PASSTHROUGH_TAG not in node.metadata_props:
                continue
            src, out = node.inputs[0], node.outputs[0]
            del node.metadata_props[_PASSTHROUGH_TAG]
            if src is None or out.is_graph_output():
                continue  # the graph's output name must survive: keep the Identity
            ir.convenience.replace_all_uses_with(out, src)
            graph.remove(node, safe=True)


class RuleSetPass(IrpassPass):
    """A pass that applies phases of :class:`FusionRule` rules, each phase to a fixpoint."""

    _abstract = True
    lossless: ClassVar[bool] = True
    #: Rule classes of each phase; override :meth:`phases` when rules depend on options.
    rule_phases: ClassVar[Sequence[Sequence[type[FusionRule]]]] = ()
    #: Let onnxscript also try every operand order of commutative ops (Add, Mul).
    commute: ClassVar[bool] = False

    def phases(self) -> list[list[FusionRule]]:
        """The rule instances of each phase, in order."""
        return [[cls() for cls in phase] for phase in self.rule_phases]

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Apply every phase to a fixpoint; clean up what the rewrites orphaned."""
        unused_inits = _unused_initializers(model)
        unused_consts = _unused_constant_nodes(model)
        created: list[tuple[ir.Value, str]] = []
        total = 0
        for phase in self.phases():
            if not phase:
                continue
            counts: Counter[str] = Counter()
            rules = [_CountingRule(r, counts) for r in phase]
            rule_set = orp.RewriteRuleSet(rules, commute=self.commute)
            for _ in range(_MAX_ROUNDS):
                applied = rule_set.apply_to_model(model)
                if not applied:
                    break
                _splice_passthrough_identities(model)
            self.stats.update(counts)
            total += sum(counts.values())
            for rule in phase:
                created.extend(rule.created)
                rule.created = []
        if total:
            _remove_orphans(model, unused_inits, unused_consts)
            _take_back_names(model, created)
        return ir.passes.PassResult(model, modified=total > 0)


def _remove_orphans(
    model: ir.Model, unused_inits: dict[int, ir.Value], unused_consts: dict[int, ir.Node]
) -> None:
    """Drop initializers / Constant nodes unused now that were in use (or new) before the pass."""
    for graph in all_graphs(model):
        for node in list(graph):
            if (
                node.op_type == "Constant"
                and id(node) not in unused_consts
                and not any(out.uses() or out.is_graph_output() for out in node.outputs)
            ):
                graph.remove(node, safe=True)
        for name, value in list(graph.initializers.items()):
            if (
                id(value) not in unused_inits
                and not value.uses()
                and not value.is_graph_input()
                and not value.is_graph_output()
            ):
                del graph.initializers[name]


def _take_back_names(model: ir.Model, created: list[tuple[ir.Value, str]]) -> None:
    """Give each surviving folded weight the name of the weight it replaced, once that is free."""
    taken: dict[int, set[str]] = {}
    for graph in all_graphs(model):
        found = [v.name for v in graph.inputs] + list(graph.initializers)
        found += [out.name for node in graph for out in node.outputs]
        taken[id(graph)] = {n for n in found if n}
    for value, root in created:
        owner = value.graph
        if owner is None or value.name == root or not value.uses():
            continue
        names = taken.get(id(owner))
        if names is None or root in names or value.name not in owner.initializers:
            continue
        names.discard(value.name or "")
        value.name = root
        names.add(root)
