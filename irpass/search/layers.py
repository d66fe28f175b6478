"""Per-layer pruning ratios from per-layer sensitivity.

A uniform (or globally ranked) pruning ratio treats a layer the network cannot spare like one
it barely uses. The search measures each prunable channel group alone (the group pruned at
:data:`PROBE_RATIO`, every other group intact: ``prune(ratio=0,ratios=["#id=0.5"])``) and
turns the metric each group costs into per-group ratios for every level of the pruning knob:

    r_g = clip(s * r * (mean(d) / d_g) ** ALPHA, 0, cap)   with s such that
    sum_g r_g * c_g = r * sum_g c_g

where ``r`` is the level's overall ratio, ``c_g`` the group's prunable channels and ``d_g``
the drop it caused alone (floored at a small positive value): insensitive groups lose more
channels, sensitive ones fewer, and the level still removes the same share of channels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import onnx_ir as ir

from irpass.analysis.channels import analyze_channels
from irpass.pipeline import Step
from irpass.search.space import Knob

__all__ = [
    "PROBE_RATIO",
    "LayerProbe",
    "allocate_ratios",
    "per_layer_knob",
    "probe_step",
    "prune_layer_probes",
]

#: Fraction of a group's channels removed when its sensitivity is measured.
PROBE_RATIO = 0.5
#: How strongly sensitivity shifts the ratios (0: uniform).
ALPHA = 1.0
#: Drops below this (in metric units) count as this, so free groups do not take everything.
MIN_DROP = 1e-3


@dataclasses.dataclass(frozen=True)
class LayerProbe:
    """One prunable channel group: its id, a readable label and its prunable channels."""

    group: int
    label: str
    channels: int


def prune_layer_probes(model: ir.Model, knob: Knob, max_groups: int = 24) -> list[LayerProbe]:
    """The prunable groups ``knob``'s pass would see on ``model`` (largest first, capped)."""
    fixed = dict(knob.fixed)
    given = fixed.get("ignore", ())
    ignore = [str(v) for v in given] if isinstance(given, tuple) else [str(given)]
    attention = bool(fixed.get("attention", False))
    analysis = analyze_channels(model, ignore=ignore, attention=attention)
    groups = sorted(analysis.prunable(), key=lambda g: (-g.free_channels, g.id))[:max_groups]
    return [
        LayerProbe(g.id, (g.nodes[0] if g.nodes else f"group {g.id}"), g.free_channels)
        for g in sorted(groups, key=lambda g: g.id)
    ]


def probe_step(knob: Knob, probe: LayerProbe) -> Step:
    """``prune`` with only ``probe``'s group pruned at :data:`PROBE_RATIO`."""
    options = {k: v for k, v in knob.fixed if k not in ("ratio", "ratios")}
    options["ratio"] = 0.0
    options["ratios"] = (f"#{probe.group}={PROBE_RATIO}",)
    return Step(knob.pass_name, tuple(options.items()))


def allocate_ratios(
    target: float, channels: Sequence[int], drops: Sequence[float], cap: float
) -> list[float]:
    """Per-group ratios removing ``target`` of all channels, fewer where ``drops`` are larger."""
    c = np.asarray(channels, dtype=np.float64)
    d = np.maximum(np.asarray(drops, dtype=np.float64), MIN_DROP)
    weight = (d.mean() / d) ** ALPHA
    goal = target * c.sum()
    scale_lo, scale_hi = 0.0, cap / max(target, 1e-9) / weight.min() + 1.0
    for _ in range(60):  # bisection on the scale; the clipped total grows with it
        scale = (scale_lo + scale_hi) / 2
        total = float((np.clip(scale * target * weight, 0.0, cap) * c).sum())
        if total < goal:
            scale_lo = scale
        else:
            scale_hi = scale
    ratios = np.clip(scale_hi * target * weight, 0.0, cap)
    return [round(float(r), 3) for r in ratios]


def per_layer_knob(knob: Knob, probes: Sequence[LayerProbe], drops: Sequence[float]) -> Knob:
    """``knob`` with every level's overall ratio spread over the groups by sensitivity."""
    cap = float(dict(knob.fixed).get("max_group_ratio", 0.8))  # type: ignore[arg-type]
    variants = []
    for value in knob.values:
        ratios = allocate_ratios(float(value), [p.channels for p in probes], drops, cap)  # type: ignore[arg-type]
        entries = tuple(f"#{p.group}={r}" for p, r in zip(probes, ratios, strict=True))
        variants.append((("ratio", value), ("ratios", entries)))
    return dataclasses.replace(knob, name=f"{knob.name}(per layer)", variants=tuple(variants))
