"""Cells and tables of the HTML pages: escaping, number formats, deltas, capped tables."""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "MAX_TABLE_ROWS",
    "OPEN_TABLE_ROWS",
    "PALETTE",
    "as_dict",
    "as_list",
    "badge",
    "capped",
    "collapsible",
    "delta_cell",
    "esc",
    "fmt_bytes",
    "fmt_count",
    "fmt_float",
    "fmt_seconds",
    "num",
    "table",
]


#: Rows shown per node table before the rest is summarised in one line.
MAX_TABLE_ROWS = 400

PALETTE = ["#2f5fb3", "#c2571a", "#1f8a4c", "#8e3bb3", "#b3261e", "#00838f"]


def esc(value: Any) -> str:
    """HTML-escaped text of ``value`` (None becomes empty)."""
    return html.escape("" if value is None else str(value), quote=True)


def num(value: Any) -> float | None:
    """``value`` as a finite float, or None for non-numbers, booleans, NaN and infinities."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return float(value)


def fmt_count(value: Any) -> str:
    """``1.23M``-style count (``–`` when unknown)."""
    v = num(value)
    if v is None:
        return "–"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.2f}{unit}"
    return f"{v:.0f}"


def fmt_bytes(value: Any) -> str:
    """``1.2 MiB``-style size (``–`` when unknown)."""
    v = num(value)
    if v is None:
        return "–"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(v) >= scale:
            return f"{v / scale:.1f} {unit}"
    return f"{v:.0f} B"


def fmt_float(value: Any) -> str:
    """A float with 4 decimals, or 3 significant digits when very large or small."""
    v = num(value)
    if v is None:
        return "–" if value is None else esc(value)
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.3g}"
    return f"{v:.4f}".rstrip("0").rstrip(".")


def fmt_seconds(value: Any) -> str:
    """``850 ms`` below a second, ``2.31 s`` above."""
    v = num(value)
    if v is None:
        return "–"
    return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"


def delta_cell(before: Any, after: Any, fmt: Callable[[Any], str] = fmt_count) -> str:
    """A ``<td>`` with the signed change from ``before`` to ``after`` and its percent."""
    b, a = num(before), num(after)
    if b is None or a is None:
        return '<td class="num">–</td>'
    d = a - b
    if d == 0:
        return '<td class="num muted">0</td>'
    pct = f" ({100.0 * d / b:+.1f}%)" if b else ""
    cls = "neg" if d < 0 else "pos"
    sign = "+" if d > 0 else "−"
    return f'<td class="num {cls}">{sign}{esc(fmt(abs(d)))}{esc(pct)}</td>'


def badge(status: Any) -> str:
    """A coloured status badge (the status is its CSS class)."""
    text = esc(status or "–")
    return f'<span class="badge {text}">{text}</span>'


def table(headers: Sequence[str], rows: Sequence[str], numeric: Sequence[int] = (),
           table_id: str | None = None) -> str:
    """A scrollable table; ``numeric`` columns are right-aligned."""
    head = "".join(
        f'<th class="num">{esc(h)}</th>' if k in numeric else f"<th>{esc(h)}</th>"
        for k, h in enumerate(headers)
    )
    ident = f' id="{esc(table_id)}"' if table_id else ""
    return (f'<div class="tablewrap"><table{ident}><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a dict, else an empty one (report keys are all optional)."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """``value`` if it is a list, else an empty one."""
    return value if isinstance(value, list) else []


def capped(rows: list[str], columns: int) -> list[str]:
    """The first :data:`MAX_TABLE_ROWS` rows and a line saying how many more there are."""
    if len(rows) <= MAX_TABLE_ROWS:
        return rows
    rest = len(rows) - MAX_TABLE_ROWS
    more = (f'<tr><td colspan="{columns}" class="muted">… {rest} more rows in the JSON output'
            "</td></tr>")
    return [*rows[:MAX_TABLE_ROWS], more]


#: Tables with more rows start folded, so the drawings below them stay within reach.
OPEN_TABLE_ROWS = 25


def collapsible(title: str, body: str, rows: int) -> str:
    """A titled table that starts folded when it has many rows."""
    opened = " open" if rows <= OPEN_TABLE_ROWS else ""
    return (f'<details class="table"{opened}><summary><h3>{esc(title)}</h3></summary>{body}'
            "</details>")
