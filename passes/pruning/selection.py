"""Which channels go: local or global ranking of importance scores, with caps and rounding.

- ``local``: every group loses ``ratio`` of its channels (its own ratio when a per-node ratio
  names one of its nodes), lowest scores first.
- ``global``: scores are divided by their group's mean (groups differ in scale: fan-in,
  layer depth), all channels of all groups are ranked together and the lowest
  ``ratio`` of the total go; groups with a per-node ratio are pruned locally.

Frozen classes of a partly frozen group are never chosen. Then, per group: at most
``max_group_ratio`` of its free channels go and at least one channel stays; the
number kept is rounded to a multiple of ``round_to`` (groups smaller than ``round_to`` are left
alone); and no tensor axis may lose every position (a Concat input whose channels all ranked
lowest keeps its best one).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np
import onnx_ir as ir

from irpass.analysis.channels import ChannelGroup

__all__ = ["Selection", "select_channels"]


@dataclasses.dataclass
class Selection:
    """The classes removed from each group (group id -> sorted class indices)."""

    removed: dict[int, np.ndarray]

    @property
    def channels_removed(self) -> int:
        """Total number of classes removed."""
        return int(sum(r.size for r in self.removed.values()))

    def keep_masks(self, groups: Sequence[ChannelGroup]) -> dict[tuple[ir.Value, int], np.ndarray]:
        """``(value, axis) -> kept positions`` for every axis of every group that loses channels."""
        masks: dict[tuple[ir.Value, int], np.ndarray] = {}
        for group in groups:
            removed = self.removed.get(group.id)
            if removed is None or not removed.size:
                continue
            for tensor_axis in group.axes:
                masks[(tensor_axis.value, tensor_axis.axis)] = ~np.isin(
                    tensor_axis.classes, removed
                )
        return masks


def _rounded_keep(keep: int, channels: int, round_to: int) -> int:
    if round_to <= 1:
        return keep
    if channels < round_to:
        return channels
    return min(channels, max(round_to, round_to * int(round(keep / round_to))))


def _cap(group: ChannelGroup, max_group_ratio: float) -> int:
    """Most classes one group may lose: a share of its free ones, and one class stays."""
    free = group.free_channels
    return min(free, group.channels - 1, int(math.floor(free * max_group_ratio + 1e-9)))


def _bounded_count(count: int, group: ChannelGroup, max_group_ratio: float, round_to: int) -> int:
    """Channels to remove from one group after rounding the kept count and capping."""
    channels = group.channels
    keep = _rounded_keep(channels - count, channels, round_to)
    removed = min(channels - keep, _cap(group, max_group_ratio))
    if round_to > 1 and channels >= round_to:
        while removed > 0 and (channels - removed) % round_to:
            removed -= 1
    return max(removed, 0)


def _lowest(scores: np.ndarray, count: int) -> np.ndarray:
    order = np.argsort(scores, kind="stable")
    return np.sort(order[:count])


def _keep_every_axis(group: ChannelGroup, removed: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Give back the best class of any tensor axis that would lose all its positions."""
    removed_set = set(int(c) for c in removed)
    for tensor_axis in group.axes:
        classes = set(int(c) for c in np.unique(tensor_axis.classes))
        if classes and classes <= removed_set:
            best = max(classes, key=lambda c: (scores[c], -c))
            removed_set.discard(best)
    return np.array(sorted(removed_set), dtype=np.int64)


def select_channels(
    groups: Sequence[ChannelGroup],
    scores: Mapping[int, np.ndarray],
    *,
    ratio: float,
    scope: str = "global",
    round_to: int = 1,
    max_group_ratio: float = 0.8,
    group_ratios: Mapping[int, float] | None = None,
) -> Selection:
    """Choose the classes to remove from each (prunable) group.

    Args:
        groups: Prunable groups (frozen ones are skipped).
        scores: Group id -> one score per class.
        ratio: Fraction of the channels to remove.
        scope: ``global`` (rank all groups together) or ``local`` (each group alone).
        round_to: Keep a multiple of this many channels per group.
        max_group_ratio: Never remove more than this fraction of one group.
        group_ratios: Group id -> its own ratio (pruned locally at that ratio).
    """
    overrides = dict(group_ratios or {})
    counts: dict[int, int] = {}
    candidates = [g for g in groups if g.prunable]
    pooled = [g for g in candidates if g.id not in overrides]
    for group in candidates:
        if group.id in overrides or scope == "local":
            counts[group.id] = int(round(group.free_channels * overrides.get(group.id, ratio)))
    if scope == "global" and pooled:
        target = int(round(ratio * sum(g.free_channels for g in pooled)))
        ranked: list[tuple[float, int, int]] = []
        for group in pooled:
            values = np.asarray(scores[group.id], dtype=np.float64)
            free = ~group.frozen_classes
            mean = float(values[free].mean())
            normalized = values / mean if mean > 0 else np.ones_like(values)
            ranked.extend((float(normalized[c]), group.id, int(c)) for c in np.flatnonzero(free))
        ranked.sort()
        cap = {g.id: _cap(g, max_group_ratio) for g in pooled}
        taken = dict.fromkeys(cap, 0)
        for _, group_id, _ in ranked:
            if target <= 0:
                break
            if taken[group_id] < cap[group_id]:
                taken[group_id] += 1
                target -= 1
        counts.update(taken)
    removed: dict[int, np.ndarray] = {}
    for group in candidates:
        count = _bounded_count(counts.get(group.id, 0), group, max_group_ratio, round_to)
        if count <= 0:
            continue
        group_scores = np.asarray(scores[group.id], dtype=np.float64)
        ranking = np.where(group.frozen_classes, np.inf, group_scores)  # frozen ones stay
        chosen = _keep_every_axis(group, _lowest(ranking, count), group_scores)
        if chosen.size:
            removed[group.id] = chosen
    return Selection(removed)
