"""Checks every backend runs on the final model: operator coverage, opset range, ORT loading.

Each returns a :class:`~irpass.backends.base.TargetCheck` whose ``data`` holds the machine
readable details (unsupported ops with their node counts, the opset found, ...), so the report
and tests can name exactly what failed.
"""

from __future__ import annotations

import collections
import pathlib

import onnx_ir as ir

from irpass.backends.base import TargetCheck
from irpass.errors import VerificationError
from irpass.ir import default_opset
from irpass.targets.profile import Target
from irpass.verify import make_session

__all__ = [
    "has_qdq",
    "op_histogram",
    "op_support_check",
    "opset_check",
    "ort_load_check",
    "qdq_rules_check",
    "qualified_op",
]


def qualified_op(node: ir.Node) -> str:
    """``Conv`` for the default domain, ``domain:Op`` otherwise (as OpSupport spells them)."""
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}:{node.op_type}"


def op_histogram(model: ir.Model) -> collections.Counter[str]:
    """Qualified op name -> node count over the main graph and every subgraph."""
    return collections.Counter(qualified_op(n) for g in model.graphs() for n in g)


def has_qdq(model: ir.Model) -> bool:
    """Whether the model holds QuantizeLinear/DequantizeLinear nodes."""
    ops = op_histogram(model)
    return bool(ops["QuantizeLinear"] or ops["DequantizeLinear"])


def op_support_check(model: ir.Model, target: Target) -> TargetCheck:
    """Every op of the model is in the target's operator list (names the ones that are not)."""
    ops = op_histogram(model)
    support = target.op_support
    missing = {op: n for op, n in sorted(ops.items()) if op not in support.ops}
    source = f"{support.source} ({support.provider} {support.release})"
    if missing:
        listed = ", ".join(f"{op} x{n}" for op, n in missing.items())
        return TargetCheck(
            "operators supported",
            "fail",
            f"{len(missing)} op type(s) not in {source}: {listed}",
            {"unsupported": missing, "source": source},
        )
    return TargetCheck(
        "operators supported",
        "pass",
        f"all {len(ops)} op types ({sum(ops.values())} nodes) are in {source}",
        {"unsupported": {}, "source": source, "op_types": len(ops)},
    )


def opset_check(model: ir.Model, target: Target) -> TargetCheck:
    """The default-domain opset lies in the range the target's runtime parses."""
    opset = default_opset(model)
    low, high = target.opset
    data = {"opset": opset, "range": [low, high]}
    if opset is None:
        return TargetCheck("opset", "warn", "the model imports no default-domain opset", data)
    if low <= opset <= high:
        return TargetCheck("opset", "pass", f"opset {opset} within {low}..{high}", data)
    return TargetCheck(
        "opset",
        "fail",
        f"opset {opset} outside {low}..{high} that {target.runtime} parses",
        data,
    )


def qdq_rules_check(model: ir.Model, rules: str) -> TargetCheck:
    """The quantization package's validator for rule set ``rules`` on the model's Q/DQ nodes."""
    from irpass.passes.quantization.rules import get_rules
    from irpass.passes.quantization.validate import validate

    name = f"Q/DQ placement ({rules} rules validator)"
    ops = op_histogram(model)
    count = ops["QuantizeLinear"] + ops["DequantizeLinear"]
    if not count:
        return TargetCheck(name, "skipped", "no Q/DQ nodes in the model (not quantized)")
    violations = validate(model, get_rules(rules))
    if violations:
        listed = "; ".join(str(v) for v in violations[:6])
        more = f" (+{len(violations) - 6} more)" if len(violations) > 6 else ""
        return TargetCheck(
            name, "fail", listed + more, {"violations": [str(v) for v in violations]}
        )
    return TargetCheck(name, "pass", f"{count} Q/DQ nodes follow the {rules} rules")


def ort_load_check(model: ir.Model | pathlib.Path, what: str = "model") -> TargetCheck:
    """ONNX Runtime (CPU) creates a session for the model (or the written file)."""
    try:
        make_session(model)
    except VerificationError as exc:
        return TargetCheck(f"ONNX Runtime loads the {what}", "fail", exc.message)
    return TargetCheck(f"ONNX Runtime loads the {what}", "pass", "session created (CPU EP)")
