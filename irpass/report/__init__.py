"""Self-contained HTML pages for optimization reports and graph diffs.

- :func:`render_report_html` / :func:`write_report_html` turn the report dict of an ``optimize``
  run (``RunReport.to_dict()``) into one HTML page: run summary, size and accuracy per pass,
  accuracy vs. size when several settings were tried, the per-pass table, the target's checks,
  and the diff of the whole run with drawings of the changed graph regions.
- :func:`render_diff_html` / :func:`write_diff_html` render a :class:`irpass.diff.GraphDiff`
  dict (and optionally a numeric diff dict) on its own, for ``irpass diff --html``.

The page loads nothing from the network: CSS is inline, charts and graphs are inline SVG laid
out here (graph regions: layered by longest path from the region's sources, nodes ordered in
each layer by the barycenter of their neighbours). Every key of the input dicts is optional;
what is missing is left out of the page, so older or partial reports still render.
"""

from __future__ import annotations

from irpass.report.charts import MAX_CHART_WIDTH, bar_chart, line_chart, scatter_chart
from irpass.report.layout import graph_region_svg
from irpass.report.page import (
    render_diff_html,
    render_report_html,
    write_diff_html,
    write_report_html,
)

__all__ = [
    "MAX_CHART_WIDTH",
    "bar_chart",
    "graph_region_svg",
    "line_chart",
    "render_diff_html",
    "render_report_html",
    "scatter_chart",
    "write_diff_html",
    "write_report_html",
]
