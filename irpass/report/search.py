"""The report's search section: Pareto plots of every setting tried and the table behind them.

Each point of the plots links to its row in the table, which holds the setting, its metrics,
size, cost and the exact pipeline text (``irpass optimize --passes "..."`` reproduces it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from irpass.report.charts import ParetoPoint, pareto_chart
from irpass.report.format import as_dict, as_list, esc, fmt_bytes, fmt_float, num, table
from irpass.search.pareto import pareto_front

__all__ = ["search_section"]


def _anchor(index: int) -> str:
    return f"search-point-{index}"


def _chart(points: list[dict[str, Any]], metric: str, x_key: str, title: str, x_title: str,
           fmt: Any, chart_id: str, threshold: float | None, chosen: int | None) -> str:
    usable = [(i, p) for i, p in enumerate(points)
              if num(p.get(x_key)) is not None and num(as_dict(p.get("metrics")).get(metric))
              is not None]
    if not usable:
        return ""
    xy = [(float(p[x_key]), float(as_dict(p["metrics"])[metric])) for _, p in usable]
    front = set(pareto_front(xy))
    return pareto_chart(
        [ParetoPoint(x, y, str(p.get("description", "")), f"#{_anchor(i)}",
                     bool(p.get("feasible")), k in front, i == chosen)
         for k, ((i, p), (x, y)) in enumerate(zip(usable, xy, strict=True))],
        title, x_title, metric, fmt, fmt_float, chart_id, threshold)


def search_section(search: Mapping[str, Any] | None) -> str:
    """HTML for ``report["search"]`` (empty when the run did not search)."""
    if not isinstance(search, Mapping):
        return ""
    points = [p for p in as_list(search.get("points")) if isinstance(p, dict)]
    metric = str(search.get("budget_metric") or "")
    chosen_index = as_dict(search.get("chosen")).get("index")
    chosen = next((i for i, p in enumerate(points) if p.get("index") == chosen_index), None)
    threshold = num(search.get("threshold"))
    timed = any(num(p.get("latency_ms")) is not None for p in points)
    x_key, x_title = ("latency_ms", "latency (ms)") if timed else (
        "cost", "estimated cost (relative)")
    charts = [
        _chart(points, metric, "file_bytes", f"{metric} vs. model size", "model file size",
               fmt_bytes, "chart-search-size", threshold, chosen),
        _chart(points, metric, x_key, f"{metric} vs. {x_title.split(' (')[0]}", x_title,
               fmt_float, "chart-search-cost", threshold, chosen),
    ]
    rows = []
    for i, p in enumerate(points):
        metrics = as_dict(p.get("metrics"))
        status = "chosen" if i == chosen else ("fits" if p.get("feasible") else (
            "failed" if p.get("error") else "over budget"))
        rows.append(
            f'<tr id="{_anchor(i)}"{" class=chosen" if i == chosen else ""}>'
            f"<td>{i}</td><td>{esc(p.get('description'))}</td><td>{esc(p.get('phase'))}</td>"
            f"<td>{esc(status)}</td><td class=\"num\">{esc(fmt_float(metrics.get(metric)))}</td>"
            f"<td class=\"num\">{esc(fmt_bytes(p.get('file_bytes')))}</td>"
            f"<td class=\"num\">{esc(fmt_float(p.get('cost')))}</td>"
            f"<td class=\"num\">{esc(fmt_float(p.get('latency_ms')))}</td>"
            f'<td class="mono">{esc(p.get("pipeline") or "(lossless passes only)")}'
            f"{'<br>' + esc(p.get('error')) if p.get('error') else ''}</td></tr>")
    summary = esc(search.get("summary", ""))
    return ('<section id="search"><h2>Accuracy-budgeted search</h2>'
            f"<p>{summary} Budget: {esc(search.get('budget_described', ''))}; "
            f"objective: {esc(search.get('objective', ''))}"
            f"{'; stopped early (time or candidate limit)' if search.get('stopped_early') else ''}"
            ". Filled points fit the budget; the ringed one was chosen; click a point for its "
            "pipeline.</p>"
            '<div class="charts">' + "".join(c for c in charts if c) + "</div>"
            + table(["#", "setting", "phase", "status", metric or "metric", "file size",
                     "est. cost", "latency ms", "pipeline"], rows, numeric=(4, 5, 6, 7),
                    table_id="search-points")
            + "</section>")
