"""Upgrade the default-domain opset (7..target-1) to ``target`` (default 17).

Per-channel QDQ, ``axes`` as inputs and most modern fusions need opset >= 13; legacy exports
(the light model zoo is opset 9) get there through ONNX's version converter::

    opset 9:  y = Dropout <ratio=0.5> (x)           opset 17:  y = Dropout (x, ratio)
              u = Unsqueeze <axes=[1,2]> (b)                   u = Unsqueeze (b, axes)
              z = BatchNormalization <spatial=1> ...           z = BatchNormalization ...
              r = Upsample <mode> (x, scales)                  r = Resize (x, roi, scales)

The converter (``onnx.version_converter``, C++) only takes a ``ModelProto``. We use onnxscript's
``ConvertVersionPass(fallback=True)``: it serializes the model *without* the initializers larger
than 1 KB (they become typed graph inputs for the converter's benefit), converts, and re-attaches
the original weight tensors by name, so weights are never copied into a protobuf and > 2 GB
models convert too. Model-local functions are inlined first (the converter needs that). The
IR version is raised to what the target opset requires.

Convert, then commit: the conversion runs on a clone of the model (``ir.Model.clone`` shares
the weight tensors, so this costs the graph structure, not the weights) and only a complete,
successful result replaces the model's graph, functions and opsets. When the converter fails
(an op without an adapter, a broken graph) the pass logs a warning, records ``failed`` in its
stats and the model is exactly as it was, functions included.

Scan-8 has a batch axis that Scan-9 dropped and the converter's adapter gets wrong; see
``_scan8``: a batch of one is converted exactly, anything else is refused (model unchanged).

The converter keeps the pre-13 meaning of Softmax/LogSoftmax/Hardmax with a
Flatten/Reshape wrapper; ``unwrap_legacy_softmax`` (its own pass, it needs shapes) removes it
where that is exact. No shape inference runs here. Left alone: models already at or above
``target`` (never downgraded), custom-domain opsets. Subgraphs are converted by the converter
together with their parent.
"""

from __future__ import annotations

import dataclasses
import logging

import onnx
import onnx_ir as ir
from onnx_ir.passes.common import InlinePass
from onnxscript.version_converter import ConvertVersionPass

from irpass.ir import default_opset
from irpass.pass_base import IrpassPass, option
from irpass.registry import register

from . import _scan8

__all__ = ["UpgradeOpsetPass"]

logger = logging.getLogger(__name__)


def _min_ir_version(opset: int) -> int:
    return int(onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", opset)]))


class _ConversionFailed(Exception):
    """The converter could not produce a model at the target opset; the message says why."""


@register
class UpgradeOpsetPass(IrpassPass):
    """Convert the default ONNX opset up to ``target`` with ONNX's version converter."""

    @dataclasses.dataclass(frozen=True)
    class Options:
        """Options of upgrade_opset."""

        target: int = option(17, "default-domain opset to upgrade to (never downgrades)")

        def __post_init__(self) -> None:
            newest = onnx.defs.onnx_opset_version()
            if not 7 <= self.target <= newest:
                raise ValueError(f"target must be between 7 and {newest}, got {self.target}")

    name = "upgrade_opset"
    lossless = True
    recurses_into_subgraphs = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Upgrade the opset when it is below the target; otherwise do nothing."""
        current = default_opset(model)
        target = self.options.target
        if current is None or current >= target:
            logger.debug("opset %s needs no upgrade to %d", current, target)
            return ir.passes.PassResult(model, modified=False)
        try:
            converted = _convert(model, current, target)
        except _ConversionFailed as exc:
            logger.warning(
                "opset upgrade %s -> %d failed, model unchanged: %s", current, target, exc
            )
            self.stats["failed"] += 1
            return ir.passes.PassResult(model, modified=False)
        _commit(model, converted)
        model.ir_version = max(model.ir_version, _min_ir_version(target))
        self.stats[f"opset_{current}_to_{target}"] += 1
        self.growth_reasons.append(
            f"opset {current} -> {target}: attributes that became inputs (axes, pads, scales, "
            "split sizes) are constants now"
        )
        return ir.passes.PassResult(model, modified=True)


def _convert(model: ir.Model, current: int, target: int) -> ir.Model:
    """Convert a clone of ``model``; raise _ConversionFailed with the converter's reason."""
    work = model.clone()
    scans: list[_scan8.ScanPlan] = []
    if current < 9 <= target:
        InlinePass()(work)  # as the converter does first, so that every Scan is in a graph
        try:
            scans = _scan8.prepare(work)
        except _scan8.Scan8Refusal as exc:
            raise _ConversionFailed(str(exc)) from exc
    converter_logger = logging.getLogger("onnxscript.version_converter")
    failures = _CountWarnings()
    converter_logger.addFilter(failures)
    try:
        ConvertVersionPass(target_version=target, fallback=True)(work)
    except Exception as exc:  # the C++ converter reports unsupported graphs by raising
        raise _ConversionFailed(str(exc).strip() or type(exc).__name__) from exc
    finally:
        converter_logger.removeFilter(failures)
    if default_opset(work) != target:
        raise _ConversionFailed(failures.last or "the converter gave no reason")
    _scan8.finish(work, scans, target)
    return work


def _commit(model: ir.Model, converted: ir.Model) -> None:
    """Make ``model`` (the caller's object) hold the converted graph, functions and opsets."""
    functions = list(converted.functions.values())
    model.graph = converted.graph
    model.functions.clear()
    model.functions.update({function.identifier(): function for function in functions})


class _CountWarnings(logging.Filter):
    """Remember the converter's last warning (its reason for not converting).

    Its warnings are swallowed: the notice that onnxscript falls back to the C++ converter is
    the expected path for every opset below 18, and a failure is reported once by the pass
    with the reason kept here.
    """

    def __init__(self) -> None:
        super().__init__()
        self.last: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        message = record.getMessage()
        if "fallback is enabled" in message:
            return False
        if record.exc_info and record.exc_info[1] is not None:
            # One line with the converter's reason instead of a traceback; we log it ourselves.
            reason = str(record.exc_info[1]).strip().splitlines()
            message = f"{message}: {reason[-1] if reason else ''}"
        self.last = message
        return False
