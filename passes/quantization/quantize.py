"""The ``quantize`` pass: INT8 QDQ per target rule set, FP16, or weight-only INT8/INT4.

``mode=int8`` (static post-training quantization)::

    float model  --prepare-->  opset >= 13, BatchNorm folded, nodes named
                 --equalize--> cross-layer equalization / SmoothQuant (float-equivalent)
                 --plan------> nodes, weights, tensors to quantize (rules=..., exclude=...)
                 --calibrate-> one streaming pass: histograms -> ranges (method=...)
                 --granular--> per-tensor weights for depthwise Convs where they cost nothing
                 --insert----> Q/DQ pairs, int8 weights, int32 bias
                 --recover---> bias correction; per-layer SQNR; fall back the most sensitive
                               layers to float until max_drop / min_cosine / min_sqnr hold
                 --speed-----> rules=ort: layers whose int8 kernel is not faster stay float
                               or take a faster dynamic / weight-only int8 form; the whole
                               model is never slower than the float one

``mode=fp16`` converts to half precision keeping range-sensitive ops in float32
(:mod:`.to_fp16`); ``mode=int8w`` / ``int4w`` quantize MatMul/Gemm weights only, block-wise
(:mod:`.weight_only`).

Calibration data come from ``PassContext.calibration_data`` (``--calib-data``); INT8 without
data is an error (``--calib-data random`` is accepted, with a warning in the stats). What the
pass decided is in its stats: ``quantized_layers``, ``fallback_layers``, ``kept_float_speed``,
and, in ``self.details``, per-layer sensitivity and the fidelity measured on calibration data.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any, Literal

import onnx_ir as ir

from irpass.errors import DataError
from irpass.pass_base import IrpassPass, option
from irpass.registry import register

from .calibrate import METHODS
from .rules import RuleSet, get_rules, rule_set_names

__all__ = ["QuantizePass"]

logger = logging.getLogger(__name__)

Mode = Literal["int8", "fp16", "int4w", "int8w"]


def _default_rules(target: Any) -> str:
    """The rule set a target profile names (``quantization_rules``), else ``ort``."""
    name = getattr(target, "quantization_rules", None)
    return name if isinstance(name, str) and name else "ort"


@register
class QuantizePass(IrpassPass):
    """Quantize to INT8 QDQ per target rules, FP16, or INT8/INT4 weight-only, with recovery."""

    @dataclasses.dataclass(frozen=True)
    class Options:
        """Options of quantize."""

        mode: Mode = option("int8", "int8 (QDQ), fp16, int8w / int4w (weight-only)")
        rules: str = option(
            "",
            "QDQ rule set: tensorrt, ort, ort_u8s8, ort_s8s8, nnapi "
            "(default: the target's, else ort for this machine)",
        )
        method: str = option("mse", "calibration: minmax, percentile, entropy, mse")
        percentile: float = option(99.99, "kept mass for method=percentile")
        per_channel: bool = option(True, "per-channel weights where the rule set allows")
        depthwise_per_tensor: Literal["auto", "off"] = option(
            "auto",
            "auto: one weight scale for depthwise Convs where calibration data show no cost",
        )
        exclude: tuple[str, ...] = option((), "node names or op types that stay float")
        max_drop: float | None = option(
            0.5,
            "fidelity budget: top-1 disagreement with float on calibration data, "
            "percentage points (none = no budget)",
        )
        min_cosine: float | None = option(None, "fidelity budget: cosine floor of outputs")
        min_sqnr: float | None = option(None, "fidelity budget: SQNR floor of outputs (dB)")
        bias_correction: bool = option(True, "correct the bias for the mean quantization error")
        equalize: Literal["auto", "on", "off"] = option(
            "auto", "cross-layer equalization (auto: when some weights are per-tensor)"
        )
        smooth_quant: float | None = option(
            None, "SmoothQuant migration strength alpha for linear-op inputs (e.g. 0.5)"
        )
        never_slower: bool = option(True, "rules=ort: keep layers float where int8 is not faster")
        alternatives: tuple[str, ...] = option(
            ("dynamic", "int8w"),
            "never_slower: other int8 forms timed for MatMul/Gemm layers static QDQ would keep "
            "float (dynamic, int8w)",
        )
        calib_samples: int | None = option(None, "use at most this many calibration samples")
        block_size: int = option(32, "int8w/int4w: weights per scale along the input axis")
        keep_io_fp32: bool = option(True, "fp16: graph inputs and outputs stay float32")
        keep_fp32: tuple[str, ...] = option((), "fp16: extra op types / node names kept float32")

        def __post_init__(self) -> None:
            if self.method not in METHODS:
                raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
            if self.rules and self.rules not in rule_set_names():
                raise ValueError(
                    f"rules must be one of {', '.join(rule_set_names())}, got {self.rules!r}"
                )
            if not 0.0 < self.percentile <= 100.0:
                raise ValueError(f"percentile must be in (0, 100], got {self.percentile}")
            if self.max_drop is not None and self.max_drop < 0:
                raise ValueError(f"max_drop must be >= 0, got {self.max_drop}")
            if self.min_cosine is not None and not -1.0 <= self.min_cosine <= 1.0:
                raise ValueError(f"min_cosine must be in [-1, 1], got {self.min_cosine}")
            if self.block_size < 16 or self.block_size & (self.block_size - 1):
                raise ValueError(f"block_size must be a power of two >= 16, got {self.block_size}")
            if self.smooth_quant is not None and not 0.0 < self.smooth_quant < 1.0:
                raise ValueError(f"smooth_quant must be in (0, 1), got {self.smooth_quant}")
            unknown = [a for a in self.alternatives if a not in ("dynamic", "int8w")]
            if unknown:
                raise ValueError(f"alternatives must be dynamic and/or int8w, got {unknown}")
            if self.calib_samples is not None and self.calib_samples < 1:
                raise ValueError(f"calib_samples must be >= 1, got {self.calib_samples}")

    name = "quantize"
    lossless = False
    recurses_into_subgraphs = False  # If/Loop/Scan bodies stay float (see plan.py)

    def __init__(self, options: Any = None, context: Any = None) -> None:
        super().__init__(options, context)
        self.details: dict[str, Any] = {}

    def rule_set_name(self) -> str:
        """The rule set this run uses (option, else the target's, else ``ort``)."""
        return self.options.rules or _default_rules(self.context.target)

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Quantize ``model`` in place as ``mode`` says."""
        mode = self.options.mode
        if mode == "int8":
            from .int8 import quantize_int8

            modified = quantize_int8(model, self)
        elif mode == "fp16":
            from .to_fp16 import convert_fp16

            modified = convert_fp16(model, self)
        else:
            from .weight_only import quantize_weights_only

            modified = quantize_weights_only(model, self)
        return ir.passes.PassResult(model, modified)

    def calibration_source(self) -> Any:
        """The context's calibration data, or a DataError saying how to give some."""
        source = self.context.calibration_data
        if source is None:
            raise DataError(
                f"quantize(mode={self.options.mode}) needs calibration data",
                hint="pass --calib-data with real inputs (a .npz / folder from the training "
                "split), or --calib-data random for a structural trial (ranges then mean "
                "nothing)",
            )
        if getattr(self.context, "calibration_is_random", False):
            self.stats["random_calibration"] = 1
            logger.warning("calibrating on random inputs: the quantized ranges are not meaningful")
        return source

    def progress(self, step: str) -> Callable[[int, int | None], None] | None:
        """A per-batch reporter for ``step``, or None when nobody listens.

        It forwards ``"<step>: batch i[ of n]"`` to ``context.extra["progress"]`` (a callable
        taking one message; ``irpass optimize`` shows it next to its spinner).
        """
        report = self.context.extra.get("progress")
        if not callable(report):
            return None

        def on_batch(done: int, total: int | None) -> None:
            report(f"{step}: batch {done}" + (f" of {total}" if total else ""))

        return on_batch

    def rules(self) -> RuleSet:
        """The :class:`~.rules.RuleSet` of this run."""
        return get_rules(self.rule_set_name())
