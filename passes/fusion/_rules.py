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

from irpass.ir import default_opset
from irpass.pass_base import IrpassPass

__all__ = [
    "FusionRule",
    "RuleSetPass",
    "attr_float",
    "attr_int",
    "attr_ints",
    "const_array",
    "constant_scalar",
    "either",
    "node_of",
    "one_dim_constant_matched",
    "passthrough",
    "root_name",
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
    """A rewrite rule: ``pattern`` (what to match), ``plan`` (why not), ``rewrite`` (result).

    A plain onnxscript rule (``rule.rewrite_rule()`` or ``Rule.rule(...)`` gives the
    ``RewriteRule``; any ``RewriteRuleSet`` can hold it) that keeps no state between a match's
    ``check`` and its ``rewrite``: both derive what they need from the match bindings through
    :meth:`plan`, a pure function of those bindings, so an instance may sit in several rule
    sets and never sees data of another match.

    ``check`` (onnxscript's hook) refuses a model whose default-domain opset is outside
    ``min_opset``..``max_opset``, refuses inside model-local functions when the rule adds
    initializers (functions have none; onnxscript would drop the rewrite silently), then
    returns :meth:`plan`'s refusal reason as a failed ``MatchResult``. ``stat`` names the
    counter the rule increments in the pass report (variants of one algebraic pattern may
    share it).
    """

    stat: ClassVar[str] = ""
    #: Whether :meth:`rewrite` emits initializers (through :meth:`new_initializer`).
    adds_initializers: ClassVar[bool] = False
    #: Default-domain opsets the rule applies to (the ops it emits must exist there).
    min_opset: int = 1
    max_opset: int | None = None

    def __init__(self, name: str | None = None, **kwargs: Any) -> None:
        super().__init__(name or type(self).__name__, **kwargs)

    @property
    def stat_name(self) -> str:
        """The counter name for this rule in the pass's stats."""
        return self.stat or self.name

    # onnxscript names the first parameter ``op`` but passes the match context
    def check(  # type: ignore[override]
        self, context: Any, **bindings: Any
    ) -> orp.MatchResult:
        """Refuse for the opset or a function scope, else return :meth:`plan`'s verdict."""
        result = orp.MatchResult()
        opset = default_opset(context.model) or 0
        if opset < self.min_opset:
            return result.fail(
                f"opset {opset} is older than {self.min_opset}, which {self.name} needs "
                "(run upgrade_opset)"
            )
        if self.max_opset is not None and opset > self.max_opset:
            return result.fail(f"opset {opset} is newer than {self.max_opset} ({self.name})")
        if self.adds_initializers and isinstance(context.graph_or_function, ir.Function):
            return result.fail("cannot add initializers inside a model-local function")
        plan = self.plan(**bindings)
        if isinstance(plan, str):
            return result.fail(plan)
        return result

    # ``*args`` only so that subclasses may name the bindings they read (mypy accepts any
    # override of an ``(*args: Any, **kwargs: Any)`` method); onnxscript passes keywords
    def plan(self, *args: Any, **bindings: Any) -> Any:
        """What the rewrite needs, derived from the bindings alone, or a str: why not.

        Called by ``check`` and again by ``rewrite`` (through :meth:`planned`); it must not
        modify anything. The default accepts every match.
        """
        return None

    def planned(self, **bindings: Any) -> Any:
        """:meth:`plan` for a match ``check`` accepted (a refusal here is a bug, so it raises)."""
        plan = self.plan(**bindings)
        if isinstance(plan, str):
            raise RuntimeError(f"{self.name}: rewrite of a match its check refused ({plan})")
        return plan

    def new_initializer(self, op: Any, array: np.ndarray, base: str, near: ir.Node) -> ir.Value:
        """Emit an initializer holding ``array``, named uniquely in the graph of ``near``.

        ``near`` is a matched node: the rewriter adds the initializer to that node's graph.
        Names already taken by this rewrite's other new initializers are avoided too.
        """
        taken = {v.name for v in getattr(op, "initializers", ()) if v.name}
        name = unique_name(near.graph, f"{root_name(base)}_{self.stat_name}", taken)
        # np.array, not np.ascontiguousarray: the latter turns a scalar into shape (1,)
        return op.initializer(ir.tensor(np.array(array, order="C")), name)

    def rewrite_rule(self) -> orp.RewriteRule:
        """This rule as onnxscript's ``RewriteRule`` (what ``Rule.rule(...)`` builds)."""
        return orp.RewriteRule(
            self.pattern,
            self.rewrite,
            self.check,
            name=self.name,
            remove_nodes=self.remove_nodes,
            graph_pre_visitor=self.setup,
            graph_post_visitor=self.cleanup,
        )


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
    """``rule`` as a RewriteRule that also logs check refusals and counts applied rewrites.

    Instrumentation for :class:`RuleSetPass` only: the rule itself works the same without it.
    """

    def __init__(self, rule: FusionRule, counts: Counter[str]) -> None:
        def check(context: Any, **bindings: Any) -> Any:
            result = rule.check(context, **bindings)
            if not result:
                logger.debug(
                    "%s: not rewriting at node %r (%s): %s",
                    rule.name,
                    context.root.name,
                    context.root.op_type,
                    getattr(result, "reason", "") or "check returned False",
                )
            return result

        def rewrite(op: Any, **bindings: Any) -> Any:
            out = rule.rewrite(op, **bindings)
            if out is not None and out is not False:
                counts[rule.stat_name] += 1
            return out

        super().__init__(
            rule.pattern,
            rewrite,
            check,
            name=rule.name,
            remove_nodes=rule.remove_nodes,
            graph_pre_visitor=rule.setup,
            graph_post_visitor=rule.cleanup,
        )


def _initializers(model: ir.Model) -> dict[int, ir.Value]:
    """Every initializer by id (the dict keeps the values alive, so ids are not reused)."""
    return {id(v): v for graph in model.graphs() for v in graph.initializers.values()}


def _unused_initializers(model: ir.Model) -> dict[int, ir.Value]:
    """Initializers nobody reads, by id (not ours to remove: that is eliminate_dead's job)."""
    return {
        key: value
        for key, value in _initializers(model).items()
        if not value.uses() and not value.is_graph_output()
    }


def _unused_constant_nodes(model: ir.Model) -> dict[int, ir.Node]:
    return {
        id(node): node
        for graph in model.graphs()
        for node in graph
        if node.op_type == "Constant"
        and not any(out.uses() or out.is_graph_output() for out in node.outputs)
    }


def _splice_passthrough_identities(model: ir.Model) -> None:
    for graph in list(model.graphs()):
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
    #: Why the pass may grow the weights (reported when a run of it did; see IrpassPass).
    growth_reason: ClassVar[str | None] = None
    #: Let onnxscript also try every operand order of commutative ops (Add, Mul).
    commute: ClassVar[bool] = False

    def phases(self) -> list[list[FusionRule]]:
        """The rule instances of each phase, in order."""
        return [[cls() for cls in phase] for phase in self.rule_phases]

    def rule_set(self) -> orp.RewriteRuleSet:
        """Every rule of every phase, in phase order, as a plain onnxscript ``RewriteRuleSet``.

        For use in another compiler's rewriter (``onnxscript.rewriter.rewrite``,
        ``RewritePass``). The pass itself adds what a flat rule set lacks: phases (a preferred
        rewrite gets every chance before a fallback), removal of the initializers and the
        Identity nodes the rewrites leave behind, and per-rule counts.
        """
        rules = [rule.rewrite_rule() for phase in self.phases() for rule in phase]
        if not rules:
            raise ValueError(f"{self.name} has no rules with options {self.options}")
        return orp.RewriteRuleSet(rules, commute=self.commute)

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Apply every phase to a fixpoint; clean up what the rewrites orphaned."""
        before = _initializers(model)
        bytes_before = _weight_bytes(before.values())
        unused_inits = _unused_initializers(model)
        unused_consts = _unused_constant_nodes(model)
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
        if total:
            _remove_orphans(model, unused_inits, unused_consts)
            # the initializers the rules created, in creation order, with the root of their name
            created = [
                (value, root_name(value.name))
                for key, value in _initializers(model).items()
                if key not in before and value.name
            ]
            _take_back_names(model, created)
            grown = _weight_bytes(_initializers(model).values()) > bytes_before
            if grown and self.growth_reason:
                self.growth_reasons.append(self.growth_reason)
        return ir.passes.PassResult(model, modified=total > 0)


def _weight_bytes(values: Iterable[ir.Value]) -> int:
    return sum(v.const_value.nbytes for v in values if v.const_value is not None)


def _remove_orphans(
    model: ir.Model, unused_inits: dict[int, ir.Value], unused_consts: dict[int, ir.Node]
) -> None:
    """Drop initializers / Constant nodes unused now that were in use (or new) before the pass."""
    for graph in list(model.graphs()):
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
    for graph in list(model.graphs()):
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
