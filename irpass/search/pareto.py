"""Pareto fronts: the settings no other setting beats on both cost and accuracy."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["pareto_front"]


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated by another (lower cost *and* higher quality).

    Each point is ``(cost, quality)``: cost is minimized, quality maximized. A point is
    dominated when another has cost <= and quality >=, one of them strictly. Returned in
    order of increasing cost; exact duplicates are all kept.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best_quality = float("-inf")
    last: tuple[float, float] | None = None
    for index in order:
        cost, quality = points[index]
        if quality > best_quality or (last is not None and (cost, quality) == last):
            front.append(index)
            best_quality = max(best_quality, quality)
            last = (cost, quality)
    return front
