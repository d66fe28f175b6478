"""``prune``: structured channel pruning of an ONNX graph, with training-free repair.

::

    Conv(x, W[64, 32, 3, 3], B[64]) -> BatchNorm[64] -> Relu -> Conv(., V[128, 64, 3, 3])
    ->  Conv(x, W[45, 32, 3, 3], B[45]) -> BatchNorm[45] -> Relu -> Conv(., V'[128, 45, 3, 3])

The result is a smaller dense model (no masks, no zeros): every tensor that carried a removed
channel loses it, so params and MACs fall and ONNX Runtime runs it unchanged.

1. analysis: :func:`irpass.analysis.channels.analyze_channels` groups coupled channels
   (residual adds, concats, splits, depthwise convs, Flatten -> Gemm, ...) and freezes what
   cannot change (graph inputs / outputs, ops without a channel rule, ``ignore`` nodes);
2. scoring: :mod:`.importance` (``l1`` / ``l2`` group magnitude, ``bn`` scales, ``activation``
   on calibration data);
3. selection: :mod:`.selection` (``global`` or ``local`` ranking, ``max_group_ratio`` cap,
   ``round_to`` channel alignment, per-node ``ratios``);
4. surgery: :mod:`.handlers`, one handler per op type (weights, biases, norm parameters,
   ``group``, Split sizes, Slice bounds, Reshape / Expand / Resize targets);
5. repair (``repair=true`` and calibration data in the context, e.g. ``irpass optimize
   --calib-data D``): :mod:`.repair` folds removed channels' mean contribution into the
   consumers' biases and refits their weights by ridge least squares. Per-layer
   reconstruction errors go to the pass's report section (``details["repair"]``).

Without calibration data the pass prunes and says in its stats that it did not repair
(``repair_skipped_no_calibration``). Calibration data that are random inputs (asked for
with ``--calib-data random``) are used but flagged (``calibration_random``): they say little
about real activations. If/Loop/Scan bodies are analysed and pruned on their own; nothing is
coupled across the subgraph boundary (see the analysis module). Models of IR version < 4 list
their weights as graph inputs; the pass first makes those pure initializers (as canonicalize's
``inputs_to_initializers`` does) so that they can be sliced.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
from typing import Any, Literal

import numpy as np
import onnx_ir as ir

from irpass.analysis.channels import ChannelAnalysis, ChannelGroup, analyze_channels
from irpass.context import limit_samples
from irpass.errors import PassOptionError
from irpass.pass_base import IrpassPass, option
from irpass.passes.canonicalize.inputs_to_initializers import ConvertInputsToInitializersPass
from irpass.passes.pruning.handlers import Surgery, handler_for
from irpass.passes.pruning.importance import (
    ActivationImportance,
    BNScaleImportance,
    Importance,
    MagnitudeImportance,
    channel_energy,
)
from irpass.passes.pruning.repair import repair_consumers
from irpass.passes.pruning.selection import Selection, select_channels
from irpass.registry import register

__all__ = ["PruneOptions", "PrunePass", "parse_ratios"]

logger = logging.getLogger(__name__)


def parse_ratios(entries: list[str]) -> list[tuple[str, float]]:
    """``["layer4.*=0.5", ...]`` -> ``[("layer4.*", 0.5), ...]`` (checked)."""
    parsed = []
    for entry in entries:
        pattern, sep, number = entry.rpartition("=")
        try:
            value = float(number)
        except ValueError:
            value = -1.0
        if not sep or not pattern or not 0.0 <= value < 1.0:
            raise ValueError(
                f"per-node ratio {entry!r} must read 'node-pattern=ratio', 0 <= ratio < 1"
            )
        parsed.append((pattern, value))
    return parsed


@dataclasses.dataclass(frozen=True)
class PruneOptions:
    """Options of ``prune``."""

    ratio: float = option(0.3, "fraction of the prunable channels to remove (0 <= ratio < 1)")
    importance: Literal["l1", "l2", "bn", "activation"] = option(
        "l2", "channel scores: l1/l2 group weight magnitude, bn scales, activation (calibration)"
    )
    scope: Literal["global", "local"] = option(
        "global", "rank channels across all groups (global) or within each group (local)"
    )
    round_to: int = option(8, "keep a multiple of this many channels per group (1: exact)")
    max_group_ratio: float = option(0.8, "never remove more than this fraction of one group")
    ignore: list[str] = option([], "node names (shell patterns) or op types left untouched")
    ratios: list[str] = option(
        [],
        "per-group ratios: 'pattern=ratio' for groups of matching nodes, '#id=ratio' for the "
        "group with that id (irpass inspect --groups)",
    )
    repair: bool = option(True, "refit consumers on calibration data (when the run has some)")
    attention: bool = option(False, "prune whole attention heads (Reshape [.., heads, dim])")
    calib_samples: int = option(512, "calibration samples used for scoring and repair")
    ridge: float = option(0.01, "repair's ridge strength, relative to mean(diag(X^T X))")

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError(f"ratio must be in [0, 1), got {self.ratio}")
        if not 0.0 < self.max_group_ratio < 1.0:
            raise ValueError(f"max_group_ratio must be in (0, 1), got {self.max_group_ratio}")
        if self.round_to < 1 or self.calib_samples < 1 or self.ridge < 0:
            raise ValueError("round_to and calib_samples must be >= 1 and ridge >= 0")
        parse_ratios(self.ratios)


def _restore(model: ir.Model, snapshot: ir.Model) -> None:
    model.graph = snapshot.graph
    model.functions.clear()
    model.functions.update(dict(snapshot.functions))


@register
class PrunePass(IrpassPass):
    """Remove whole channels (structured pruning); repair on calibration data when given."""

    name = "prune"
    lossless = False
    Options = PruneOptions

    def plan(self, model: ir.Model) -> tuple[ChannelAnalysis, Selection]:
        """Analyse, score and select without changing ``model`` (what :meth:`call` will cut).

        Models of IR version < 4 must have gone through ``inputs_to_initializers`` first
        (:meth:`call` does that); their weights are graph inputs here.
        """
        opts: PruneOptions = self.options
        analysis = analyze_channels(model, ignore=opts.ignore, attention=opts.attention)
        groups = analysis.prunable()
        self.stats["groups"] = len(analysis.groups)
        self.stats["groups_frozen"] = len(analysis.frozen())
        self.stats["groups_partly_frozen"] = sum(1 for g in groups if g.frozen)
        self.stats["channels_prunable"] = sum(g.free_channels for g in groups)
        if (opts.ratio == 0.0 and not opts.ratios) or not groups:
            return analysis, Selection({})
        scorer = self._scorer(model, groups, self._calibration())
        scores = {g.id: np.asarray(scorer.score(g), dtype=np.float64) for g in groups}
        self.stats["groups_scored_by_fallback"] = getattr(scorer, "fallbacks", 0)
        selection = select_channels(
            groups,
            scores,
            ratio=opts.ratio,
            scope=opts.scope,
            round_to=opts.round_to,
            max_group_ratio=opts.max_group_ratio,
            group_ratios=self._group_ratios(groups),
        )
        return analysis, selection

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Analyse, score, select, cut, and repair when calibration data are available."""
        opts: PruneOptions = self.options
        legacy = False
        if model.ir_version < 4:  # IR 3 lists weights as graph inputs: they are constants
            converted = ConvertInputsToInitializersPass()
            legacy = converted(model).modified
            self.stats["legacy_weight_inputs"] = converted.stats["inputs_made_initializers"]
        analysis, selection = self.plan(model)
        if not selection.removed:
            return ir.passes.PassResult(model, modified=legacy)
        source = self._calibration()
        if source is not None and self.context.calibration_is_random:
            self.stats["calibration_random"] = 1
            logger.warning(
                "prune: the calibration data are random inputs; repair fits noise, not your data"
            )
        masks = selection.keep_masks(analysis.groups)
        original = model.clone()
        try:
            self._cut(model, masks)
        except Exception:
            _restore(model, original)
            raise
        self.stats["channels_removed"] = selection.channels_removed
        self.stats["groups_pruned"] = len(selection.removed)
        self.details["groups"] = self._group_report(analysis, selection.removed)
        logger.info(
            "prune: %d of %d prunable channels removed from %d groups",
            selection.channels_removed,
            self.stats["channels_prunable"],
            len(selection.removed),
        )
        if opts.repair and source is not None:
            report = repair_consumers(
                original, model, masks, source, ridge=opts.ridge, max_samples=opts.calib_samples
            )
            self.details["repair"] = [entry.to_dict() for entry in report]
            self.stats["layers_refit"] = sum(1 for e in report if e.error_refit is not None)
            self.stats["layers_not_refit"] = sum(1 for e in report if e.error_refit is None)
        elif opts.repair:
            self.stats["repair_skipped_no_calibration"] = 1
            logger.info("prune: no calibration data, so no repair (pass --calib-data D)")
        return ir.passes.PassResult(model, modified=True)

    def _calibration(self) -> Any:
        source = self.context.calibration_data
        if source is None:
            return None
        if self.context.calibration_is_random:
            self.stats["calibration_random"] = 1
            logger.warning(
                "prune: calibration data are random inputs; repair and activation "
                "scores fit noise, not your data"
            )
        return limit_samples(source, self.options.calib_samples)

    def _scorer(self, model: ir.Model, groups: list[ChannelGroup], source: Any) -> Importance:
        kind = self.options.importance
        if kind in ("l1", "l2"):
            return MagnitudeImportance(1 if kind == "l1" else 2)
        if kind == "bn":
            return BNScaleImportance()
        if source is None:
            raise PassOptionError(
                "prune(importance=activation) needs calibration data",
                hint="pass --calib-data D (a file or folder of model inputs), or use importance=l2",
            )
        axes = [a for g in groups for a in g.axes_with_role("act_in")]
        return ActivationImportance(channel_energy(model, axes, source))

    def _group_ratios(self, groups: list[ChannelGroup]) -> dict[int, float]:
        ratios = parse_ratios(self.options.ratios)
        found: dict[int, float] = {}
        for group in groups:
            names = [label.split(" ", 1)[-1] for label in group.nodes]
            for pattern, value in ratios:
                if pattern.startswith("#") and pattern[1:].isdigit():
                    matched = group.id == int(pattern[1:])
                else:
                    matched = any(fnmatch.fnmatchcase(name, pattern) for name in names)
                if matched:
                    found[group.id] = value
                    break
        return found

    def _cut(self, model: ir.Model, masks: Any) -> None:
        surgery = Surgery(model, masks)
        for graph in model.graphs():
            for node in list(graph):
                handler_for(node)(node, surgery)
        missed = surgery.unsliced_constants()
        if missed:
            raise RuntimeError(
                f"pruning surgery left {len(missed)} constant(s) unsliced, e.g. {missed[0].name!r}"
            )
        surgery.update_shapes()
        self.stats.update(surgery.stats)

    @staticmethod
    def _group_report(
        analysis: ChannelAnalysis, removed: dict[int, np.ndarray]
    ) -> list[dict[str, Any]]:
        rows = []
        for group in analysis.groups:
            if group.id in removed:
                rows.append(
                    {
                        "group": group.id,
                        "channels": group.channels,
                        "removed": int(removed[group.id].size),
                        "nodes": group.nodes[:8] + (["..."] if len(group.nodes) > 8 else []),
                    }
                )
        return rows
