"""Whole pages: an ``optimize`` report and a graph diff, rendered and written atomically."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from irpass.analysis.cost import cost_shapes_note
from irpass.ir import atomic_output_path
from irpass.report.format import (
    as_dict,
    as_list,
    esc,
    fmt_bytes,
    fmt_count,
    fmt_float,
    fmt_seconds,
    num,
    table,
)
from irpass.report.search import search_section
from irpass.report.sections import (
    charts_section,
    cost_rows,
    diff_section,
    numeric_section,
    passes_section,
    target_section,
)

__all__ = [
    "render_diff_html",
    "render_report_html",
    "write_diff_html",
    "write_report_html",
]


_CSS = """
:root { --fg:#1d2430; --muted:#5b6576; --line:#d8dde6; --bg:#ffffff; --panel:#f5f7fa;
  --add:#1f8a4c; --add-bg:#e3f5ea; --rem:#b3261e; --rem-bg:#fbe4e2; --chg:#9a6700;
  --chg-bg:#fff3cd; --acc:#2f5fb3; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  color:var(--fg); background:var(--bg); }
main { max-width:1200px; margin:0 auto; padding:24px 28px 60px; }
h1 { font-size:24px; margin:0 0 4px; } h2 { font-size:19px; margin:32px 0 10px;
  border-bottom:2px solid var(--line); padding-bottom:4px; }
h3 { font-size:15px; margin:18px 0 8px; }
.muted { color:var(--muted); } code, .mono { font-family: "DejaVu Sans Mono", Menlo, monospace;
  font-size:12.5px; }
.pipeline { background:var(--panel); border:1px solid var(--line); border-radius:6px;
  padding:8px 12px; word-break:break-all; }
.cards { display:flex; flex-wrap:wrap; gap:12px; margin:12px 0; }
.card { background:var(--panel); border:1px solid var(--line); border-radius:8px;
  padding:10px 14px; min-width:150px; }
.card .k { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.card .v { font-size:20px; font-weight:600; } .card .d { font-size:12.5px; }
table { border-collapse:collapse; width:100%; margin:6px 0 14px; font-size:13px; }
th, td { border-bottom:1px solid var(--line); padding:5px 8px; text-align:left;
  vertical-align:top; }
th { background:var(--panel); font-weight:600; position:sticky; top:0; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
.neg { color:var(--add); } .pos { color:var(--rem); }
.badge { display:inline-block; padding:1px 7px; border-radius:10px; font-size:12px;
  font-weight:600; }
.ok, .pass { background:var(--add-bg); color:var(--add); }
.failed, .fail { background:var(--rem-bg); color:var(--rem); }
.warn, .skipped { background:var(--chg-bg); color:var(--chg); }
.added { background:var(--add-bg); } .removed { background:var(--rem-bg); }
.changed { background:var(--chg-bg); }
.charts { display:flex; flex-wrap:wrap; gap:18px; }
.chart { border:1px solid var(--line); border-radius:8px; padding:8px; background:#fff;
  max-width:100%; }
.tablewrap { overflow-x:auto; }
.region { border:1px solid var(--line); border-radius:8px; margin:10px 0 18px;
  overflow:auto; max-height:900px; background:#fcfcfd; }
.legend span { display:inline-block; margin-right:14px; font-size:12.5px; }
.legend i { display:inline-block; width:12px; height:12px; border-radius:3px;
  margin-right:5px; vertical-align:-1px; border:1px solid #999; }
ul.changes { margin:0; padding-left:16px; }
details summary { cursor:pointer; color:var(--acc); }
details.table > summary h3 { display:inline; color:var(--fg); }
"""


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; img-src data:\">"
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<main id=\"irpass-report\">{body}</main></body></html>\n"
    )


def render_report_html(report: Mapping[str, Any]) -> str:
    """Render an ``optimize`` report dict (``RunReport.to_dict()``) as a self-contained page."""
    report = report if isinstance(report, Mapping) else {}
    passes = [p for p in as_list(report.get("passes")) if isinstance(p, dict)]
    before, after = as_dict(report.get("before")), as_dict(report.get("after"))
    name = os.path.basename(str(report.get("input") or "model"))
    parts = [f"<h1>irpass optimization report: {esc(name)}</h1>",
             f'<p class="muted">irpass {esc(report.get("irpass_version", "?"))}'
             f" · input <code>{esc(report.get('input'))}</code>"
             + (f" · output <code>{esc(report.get('output'))}</code>" if report.get("output")
                else "")
             + (f" · target <strong>{esc(report.get('target'))}</strong>"
                if report.get("target") else "")
             + f" · {fmt_seconds(report.get('seconds'))}</p>"]
    pipeline = report.get("expanded_pipeline") or report.get("pipeline")
    if pipeline:
        parts.append(f'<h3>Pipeline</h3><div class="pipeline mono" id="pipeline">{esc(pipeline)}'
                     "</div>")
    shapes = report.get("cost_shapes")
    cost_note = cost_shapes_note(
        shapes if isinstance(shapes, Mapping) else None,
        *(max(int(num(before.get(k)) or 0), int(num(after.get(k)) or 0))
          for k in ("unknown_macs_nodes", "unknown_activation_values")),
    )
    cards = []
    for key, label, fmt in (("nodes", "nodes", fmt_count), ("params", "parameters", fmt_count),
                            ("weight_bytes", "weights", fmt_bytes), ("macs", "MACs", fmt_count)):
        if key in before or key in after:
            b, a = num(before.get(key)), num(after.get(key))
            ratio = f"×{a / b:.3f}" if a is not None and b else ""
            cards.append(f'<div class="card"><div class="k">{esc(label)}</div><div class="v">'
                         f"{esc(fmt(b))} → {esc(fmt(a))}</div><div class=\"d muted\">{ratio}</div>"
                         "</div>")
    metrics_b = as_dict(report.get("metrics_before"))
    metrics_a = as_dict(report.get("metrics_after"))
    for key in metrics_a:
        cards.append(f'<div class="card"><div class="k">{esc(key)}</div><div class="v">'
                     f"{fmt_float(metrics_b.get(key))} → {fmt_float(metrics_a.get(key))}</div>"
                     "</div>")
    if cards:
        parts.append('<section id="summary"><h2>Summary</h2><div class="cards">'
                     + "".join(cards) + "</div>")
        rows = cost_rows(before, after)
        if rows:
            parts.append(table(["", "before", "after", "Δ"], rows, numeric=(1, 2, 3),
                                table_id="totals"))
        parts.append(f'<p class="muted" id="cost-shapes">{esc(cost_note)}.</p></section>')
    warnings = as_list(report.get("warnings"))
    if warnings:
        parts.append('<section id="warnings"><h2>Warnings</h2><ul>'
                     + "".join(f"<li>{esc(w)}</li>" for w in warnings) + "</ul></section>")
    parts.append(charts_section(report, passes))
    parts.append(search_section(report.get("search")))
    parts.append(passes_section(passes, cost_note))
    parts.append(target_section(as_list(report.get("target_checks")), report.get("target")))
    diff = report.get("diff")
    if isinstance(diff, dict):
        parts.append(diff_section(diff, "Diff of the whole run (input → output)"))
    numeric = report.get("numeric_diff")
    if isinstance(numeric, dict):
        parts.append(numeric_section(numeric))
    return _page(f"irpass report: {name}", "".join(parts))


def render_diff_html(diff: Mapping[str, Any], numeric: Mapping[str, Any] | None = None) -> str:
    """Render a graph diff dict (and optionally a numeric diff dict) as a self-contained page."""
    title = f"irpass diff: {os.path.basename(str(diff.get('a', 'A')))} → " \
            f"{os.path.basename(str(diff.get('b', 'B')))}"
    body = f"<h1>{esc(title)}</h1>" + diff_section(diff)
    if numeric:
        body += numeric_section(numeric)
    return _page(title, body)


def _write(text: str, path: str | os.PathLike[str]) -> None:
    path = os.fspath(path)
    with atomic_output_path(path) as tmp:
        (tmp / os.path.basename(path)).write_text(text, encoding="utf-8")


def write_report_html(report: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write :func:`render_report_html` of ``report`` to ``path`` atomically."""
    _write(render_report_html(report), path)


def write_diff_html(diff: Mapping[str, Any], path: str | os.PathLike[str],
                    numeric: Mapping[str, Any] | None = None) -> None:
    """Write :func:`render_diff_html` to ``path`` atomically."""
    _write(render_diff_html(diff, numeric), path)
