"""Number formatting shared by the CLI tables."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["fmt_bytes", "fmt_count", "fmt_delta", "fmt_ratio"]


def fmt_count(value: float | int | None) -> str:
    """1234567 -> '1.23M'."""
    if value is None:
        return "-"
    value = float(value)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:.0f}"


def fmt_bytes(value: float | int | None) -> str:
    """1536 -> '1.5 KiB'."""
    if value is None:
        return "-"
    value = float(value)
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(value) >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value:.0f} B"


def fmt_delta(
    before: float | int | None,
    after: float | int | None,
    formatter: Callable[[float | int | None], str] = fmt_count,
    percent: bool = True,
) -> str:
    """'-12 (-3.4%)' style change, empty when unchanged."""
    if before is None or after is None:
        return "-"
    delta = after - before
    if delta == 0:
        return ""
    pct = f" ({100.0 * delta / before:+.1f}%)" if percent and before else ""
    sign = "+" if delta > 0 else "-"
    return f"{sign}{formatter(abs(delta))}{pct}"


def fmt_ratio(before: float | int | None, after: float | int | None) -> str:
    """after/before as 'x0.52'."""
    if not before or after is None:
        return "-"
    return f"x{after / before:.3f}"
