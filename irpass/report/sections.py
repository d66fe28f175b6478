"""Page sections: the graph diff, the numeric diff, and an optimize run's charts, passes, checks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from irpass.report.charts import bar_chart, line_chart, scatter_chart
from irpass.report.format import (
    as_dict,
    as_list,
    badge,
    capped,
    collapsible,
    delta_cell,
    esc,
    fmt_bytes,
    fmt_count,
    fmt_float,
    fmt_seconds,
    num,
    table,
)
from irpass.report.layout import STATUS_FILL, graph_region_svg

__all__ = [
    "charts_section",
    "cost_rows",
    "diff_section",
    "numeric_section",
    "passes_section",
    "target_section",
]


_CONSTANT_OPS = ("Constant", "ConstantOfShape")


def cost_rows(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Table rows of nodes, params, bytes, MACs and peak memory, A vs. B with the delta."""
    rows = []
    for key, label, fmt in (
        ("file_bytes", "file size", fmt_bytes),
        ("nodes", "nodes", fmt_count),
        ("params", "parameters", fmt_count),
        ("weight_bytes", "weight bytes", fmt_bytes),
        ("macs", "MACs", fmt_count),
        ("peak_activation_bytes", "peak activation memory", fmt_bytes),
    ):
        if key not in a and key not in b:
            continue
        rows.append(f"<tr><td>{esc(label)}</td><td class=\"num\">{esc(fmt(a.get(key)))}</td>"
                    f"<td class=\"num\">{esc(fmt(b.get(key)))}</td>"
                    f"{delta_cell(a.get(key), b.get(key), fmt)}</tr>")
    return rows


def _node_row(node: Mapping[str, Any], status: str) -> str:
    weights = ", ".join(
        f"{esc(w.get('dtype'))}{esc(w.get('shape'))}" for w in as_dict(node.get("weights")).values()
        if isinstance(w, dict)
    )
    outs = ", ".join(
        f"{esc(o.get('dtype') or '?')}{esc(o.get('shape'))}" for o in as_list(node.get("outputs"))
        if isinstance(o, dict)
    )
    return (f'<tr class="{status}"><td class="mono">{esc(node.get("label") or node.get("name"))}'
            f"</td><td>{esc(node.get('op_type'))}</td><td class=\"mono\">{outs}</td>"
            f'<td class="mono">{weights}</td></tr>')


def diff_section(diff: Mapping[str, Any], heading: str = "Graph diff") -> str:
    """The graph diff: counts, costs, op histogram, signature, node tables, drawings."""
    summary = as_dict(diff.get("summary"))
    parts = [f'<section id="diff"><h2>{esc(heading)}</h2>']
    if diff.get("a") or diff.get("b"):
        parts.append(f'<p class="muted">A = <code>{esc(diff.get("a"))}</code>, '
                     f'B = <code>{esc(diff.get("b"))}</code></p>')
    cards = [
        ("nodes", f"{fmt_count(summary.get('nodes_a'))} → {fmt_count(summary.get('nodes_b'))}"),
        ("matched", fmt_count(summary.get("matched"))),
        ("changed", fmt_count(summary.get("changed"))),
        ("added", fmt_count(summary.get("added"))),
        ("removed", fmt_count(summary.get("removed"))),
    ]
    parts.append('<div class="cards">' + "".join(
        f'<div class="card"><div class="k">{esc(k)}</div><div class="v">{esc(v)}</div></div>'
        for k, v in cards) + "</div>")
    methods = {k[len("matched_by_"):]: v for k, v in summary.items()
               if str(k).startswith("matched_by_")}
    if methods:
        parts.append('<p class="muted">Matched by ' + ", ".join(
            f"{esc(k)}: {esc(v)}" for k, v in sorted(methods.items())) + "</p>")
    if diff.get("identical"):
        parts.append("<p><strong>The graphs are structurally identical.</strong></p>")

    cost = as_dict(diff.get("cost"))
    rows = cost_rows(as_dict(cost.get("a")), as_dict(cost.get("b")))
    if rows:
        parts.append("<h3>Size and compute</h3>"
                     + table(["", "A", "B", "Δ"], rows, numeric=(1, 2, 3), table_id="diff-cost"))

    op_delta = as_dict(diff.get("op_delta"))
    if op_delta:
        rows = [
            f"<tr><td>{esc(op)}</td><td class=\"num\">{esc(d.get('a'))}</td>"
            f"<td class=\"num\">{esc(d.get('b'))}</td>{delta_cell(d.get('a'), d.get('b'))}</tr>"
            for op, d in op_delta.items() if isinstance(d, dict)
        ]
        parts.append("<h3>Op histogram delta</h3>"
                     + table(["op", "A", "B", "Δ"], rows, numeric=(1, 2, 3), table_id="op-delta"))

    io = as_list(diff.get("io_changes"))
    opsets = as_dict(diff.get("opset_changes"))
    if io or opsets:
        rows = [f"<tr><td>{esc(c.get('kind'))}</td><td>{badge(c.get('change'))}</td>"
                f"<td class=\"mono\">{esc(c.get('name'))}</td><td class=\"mono\">"
                f"{esc(c.get('before'))}</td><td class=\"mono\">{esc(c.get('after'))}</td></tr>"
                for c in io if isinstance(c, dict)]
        rows += [f"<tr><td>opset</td><td>{badge('changed')}</td><td class=\"mono\">{esc(d)}</td>"
                 f"<td>{esc(as_dict(v).get('a'))}</td><td>{esc(as_dict(v).get('b'))}</td></tr>"
                 for d, v in opsets.items()]
        parts.append("<h3>Signature and opset changes</h3>"
                     + table(["", "change", "name", "A", "B"], rows, table_id="io-changes"))

    changed = [c for c in as_list(diff.get("changed")) if isinstance(c, dict)]
    if changed:
        rows = []
        for c in changed:
            items = "".join(f"<li>{esc(ch.get('text'))}</li>" for ch in as_list(c.get("changes"))
                            if isinstance(ch, dict))
            b_label = c.get("b_label")
            name = esc(c.get("a_label"))
            if b_label and b_label != c.get("a_label"):
                name += f" → {esc(b_label)}"
            rows.append(f'<tr class="changed"><td class="mono">{name}</td>'
                        f"<td>{esc(c.get('op_type'))}</td><td>{esc(c.get('method'))}</td>"
                        f'<td><ul class="changes">{items}</ul></td></tr>')
        parts.append(collapsible(f"Changed nodes ({len(changed)})", table(
            ["node (A → B)", "op", "matched by", "changes"], capped(rows, 4),
            table_id="changed-nodes"), len(rows)))
    for key, title, status in (("removed", "Removed nodes", "removed"),
                               ("added", "Added nodes", "added")):
        nodes = [n for n in as_list(diff.get(key)) if isinstance(n, dict)]
        compute = [n for n in nodes if n.get("op_type") not in _CONSTANT_OPS]
        constants = [n for n in nodes if n.get("op_type") in _CONSTANT_OPS]
        headers = ["node", "op", "outputs", "weights"]
        if compute:
            parts.append(collapsible(f"{title} ({len(compute)})", table(
                headers, capped([_node_row(n, status) for n in compute], 4),
                table_id=f"{key}-nodes"), len(compute)))
        if constants:
            # constant producers (e.g. folded into initializers) are many and rarely interesting
            parts.append(f"<details><summary>{title}: {len(constants)} constant producers "
                         "(Constant / ConstantOfShape)</summary>" + table(
                             headers, capped([_node_row(n, status) for n in constants], 4),
                             table_id=f"{key}-constants") + "</details>")

    regions = [r for r in as_list(diff.get("regions")) if isinstance(r, dict)]
    if regions:
        tips = {str(c.get("a")): [str(ch.get("text")) for ch in as_list(c.get("changes"))
                                  if isinstance(ch, dict)] for c in changed}
        parts.append('<section id="graph-regions"><h3>Changed regions of the graph</h3>'
                     '<p class="legend">' + "".join(
                         f'<span><i style="background:{f};border-color:{s}"></i>{esc(k)}</span>'
                         for k, (f, s) in STATUS_FILL.items()) +
                     '<span>edges: <b style="color:#b3261e">dashed red</b> only in A, '
                     '<b style="color:#1f8a4c">green</b> only in B</span></p>')
        for k, region in enumerate(regions):
            size = region.get("size", len(as_list(region.get("nodes"))))
            note = ""
            if isinstance(region.get("parts"), int) and region["parts"] > 1:
                note = (f" (part {esc(region.get('part'))} of {esc(region['parts'])} of one "
                        f"connected change of {esc(region.get('component_size'))} nodes)")
            parts.append(f'<h3 class="muted">Region {k + 1}: {esc(size)} nodes{note}</h3>'
                         f'<div class="region">{graph_region_svg(region, tips, f"region-{k}")}'
                         "</div>")
        omitted = num(diff.get("regions_omitted"))
        if omitted:
            parts.append(f'<p class="muted">{omitted:.0f} more regions are not drawn; the '
                         "tables above list every change.</p>")
        parts.append("</section>")
    parts.append("</section>")
    return "".join(parts)


def numeric_section(numeric: Mapping[str, Any]) -> str:
    """The numeric diff: per-output and per-layer cosine and errors, first divergence."""
    parts = ['<section id="numeric"><h2>Numeric diff</h2>',
             f'<p class="muted">Inputs: {esc(numeric.get("inputs"))}</p>']
    first = numeric.get("first_divergence")
    if isinstance(first, dict):
        parts.append(f'<p><strong>First diverging layer:</strong> <code>{esc(first.get("node"))}'
                     f"</code> ({esc(first.get('op_type'))}, cosine "
                     f"{fmt_float(first.get('cosine'))}, max abs error "
                     f"{fmt_float(first.get('max_abs'))})</p>")
    elif numeric.get("intermediates"):
        parts.append("<p>No matched intermediate tensor exceeds the tolerance.</p>")

    def rows_of(items: list[Any]) -> list[str]:
        rows = []
        for t in items:
            if not isinstance(t, dict):
                continue
            cls = "changed" if t.get("diverged") else ""
            rows.append(f'<tr class="{cls}"><td class="mono">{esc(t.get("node"))}</td>'
                        f"<td>{esc(t.get('op_type'))}</td><td class=\"mono\">{esc(t.get('shape'))}"
                        f"</td><td class=\"num\">{fmt_float(t.get('cosine'))}</td>"
                        f"<td class=\"num\">{fmt_float(t.get('max_abs'))}</td>"
                        f"<td class=\"num\">{fmt_float(t.get('mean_abs'))}</td>"
                        f"<td>{'yes' if t.get('diverged') else 'no'}</td></tr>")
        return rows

    headers = ["tensor", "op", "shape", "cosine", "max abs", "mean abs", "diverged"]
    outputs = as_list(numeric.get("outputs"))
    if outputs:
        parts.append("<h3>Outputs</h3>" + table(headers, rows_of(outputs), numeric=(3, 4, 5),
                                                 table_id="numeric-outputs"))
    inter = [t for t in as_list(numeric.get("intermediates")) if isinstance(t, dict)]
    if inter:
        labels = [str(t.get("node")) for t in inter]
        first_at = next((k for k, t in enumerate(inter) if t.get("diverged")), None)
        chart = line_chart(labels, {"cosine": [num(t.get("cosine")) for t in inter]},
                           "cosine similarity per matched layer (A order)", fmt_float,
                           "chart-cosine", highlight=first_at,
                           highlight_label="first divergence")
        parts.append(f'<div class="charts">{chart}</div>' if chart else "")
        parts.append(f"<details><summary>Matched intermediate tensors ({len(inter)})</summary>"
                     + table(headers, capped(rows_of(inter), 7), numeric=(3, 4, 5),
                              table_id="numeric-intermediates") + "</details>")
    skipped = as_list(numeric.get("skipped"))
    if skipped:
        parts.append(f"<details><summary>Not compared ({len(skipped)})</summary><ul>"
                     + "".join(f"<li>{esc(s)}</li>" for s in skipped[:200]) + "</ul></details>")
    parts.append("</section>")
    return "".join(parts)


def _pass_label(record: Mapping[str, Any], k: int) -> str:
    return str(record.get("step") or record.get("name") or f"pass {k + 1}")


def charts_section(report: Mapping[str, Any], passes: list[dict[str, Any]]) -> str:
    """Size, MACs and accuracy per pass, and the accuracy-vs-size sweep."""
    charts = []
    notes = []
    # passes that left the model alone add nothing to a per-pass chart but width
    shown = [(k, p) for k, p in enumerate(passes) if p.get("modified") or p.get("metrics")]
    labels = ["input"] + [_pass_label(p, k) for k, p in shown]
    before = as_dict(report.get("before"))
    if shown:
        sizes = [num(before.get("weight_bytes"))] + [
            num(as_dict(p.get("after")).get("weight_bytes")) for _, p in shown]
        charts.append(bar_chart(labels, sizes, "weight bytes after each pass", fmt_bytes,
                                "chart-size"))
        macs = [num(before.get("macs"))] + [num(as_dict(p.get("after")).get("macs"))
                                             for _, p in shown]
        if any(v for v in macs):
            charts.append(bar_chart(labels, macs, "MACs after each pass", fmt_count,
                                    "chart-macs"))
        metric_names: list[str] = []
        for _, p in shown:
            for name in as_dict(p.get("metrics")):
                if name not in metric_names:
                    metric_names.append(name)
        metrics_before = as_dict(report.get("metrics_before"))
        if metric_names:
            series = {name: [num(metrics_before.get(name))] + [
                num(as_dict(p.get("metrics")).get(name)) for _, p in shown]
                for name in metric_names}
            charts.append(line_chart(labels, series, "accuracy / fidelity after each pass",
                                     fmt_float, "chart-accuracy"))
        else:
            errors = [None] + [num(as_dict(p.get("verification")).get("max_abs_error"))
                               for _, p in shown]
            known = [v for v in errors if v is not None]
            if known and any(known):
                charts.append(line_chart(labels, {"max abs error": errors},
                                         "verification: max abs error per pass", fmt_float,
                                         "chart-accuracy"))
            elif known:
                notes.append("Every verified pass reproduced the outputs exactly "
                             "(max abs error 0); no accuracy metrics were measured.")
        if len(shown) < len(passes):
            notes.append(f"Charts show the {len(shown)} passes that changed the model "
                         f"(of {len(passes)} run).")
    sweeps = [s for s in as_list(report.get("sweeps")) if isinstance(s, dict)
              and num(s.get("size_bytes")) is not None and num(s.get("accuracy")) is not None]
    if sweeps:
        charts.append(scatter_chart(
            [(float(s["size_bytes"]), float(s["accuracy"]), str(s.get("label", "")))
             for s in sweeps],
            "accuracy vs. size of the settings tried", "model size (weight bytes)", "accuracy",
            fmt_bytes, fmt_float, "chart-sweeps"))
    charts = [c for c in charts if c]
    if not charts and not notes:
        return ""
    return ('<section id="charts"><h2>Per-pass size and accuracy</h2>'
            + "".join(f'<p class="muted">{esc(n)}</p>' for n in notes)
            + '<div class="charts">' + "".join(charts) + "</div></section>")


def passes_section(passes: list[dict[str, Any]], cost_note: str = "") -> str:
    """The per-pass table: time, deltas, verification, stats.

    ``cost_note`` says which input shapes the MACs are counted at.
    """
    if not passes:
        return '<section id="passes"><h2>Passes</h2><p class="muted">No passes ran.</p></section>'
    rows = []
    for k, p in enumerate(passes):
        b, a = as_dict(p.get("before")), as_dict(p.get("after"))
        ver = as_dict(p.get("verification"))
        stats = ", ".join(f"{esc(r)}: {esc(n)}" for r, n in as_dict(p.get("stats")).items())
        metrics = ", ".join(f"{esc(n)}={fmt_float(v)}"
                            for n, v in as_dict(p.get("metrics")).items())
        detail = ver.get("detail") or ""
        error = p.get("error")
        notes = [x for x in (stats, metrics) if x]
        if error:
            notes.append(f'<span class="pos">{esc(error)}</span>')
        if p.get("rolled_back"):
            notes.append('<span class="pos">rolled back</span>')
        status = ver.get("status") or "–"
        cls = "" if p.get("modified") else ' class="muted"'
        lossy = "" if p.get("lossless", True) else ' <span class="badge warn">lossy</span>'
        rows.append(
            f"<tr{cls}><td class=\"num\">{k + 1}</td><td class=\"mono\">{esc(_pass_label(p, k))}"
            f"{lossy}</td>"
            f"<td class=\"num\">{fmt_seconds(p.get('seconds'))}</td>"
            f"{delta_cell(b.get('nodes'), a.get('nodes'))}"
            f"{delta_cell(b.get('params'), a.get('params'))}"
            f"{delta_cell(b.get('weight_bytes'), a.get('weight_bytes'), fmt_bytes)}"
            f"{delta_cell(b.get('macs'), a.get('macs'))}"
            f'<td><span title="{esc(detail)}">{badge(status)}</span></td>'
            f"<td class=\"num\">{fmt_float(ver.get('max_abs_error'))}</td>"
            f"<td>{'; '.join(notes)}</td></tr>"
        )
    return ('<section id="passes"><h2>Passes</h2><p class="muted">Greyed rows: the pass '
            "changed nothing. Hover a verification badge for its detail."
            + (f" Δ MACs: {esc(cost_note)}." if cost_note else "") + "</p>" + table(
                ["#", "step", "time", "Δ nodes", "Δ params", "Δ bytes", "Δ MACs",
                 "verification", "max abs err", "stats / metrics"],
                rows, numeric=(0, 2, 3, 4, 5, 6, 8), table_id="passes-table") + "</section>")


def target_section(checks: list[Any], target: Any) -> str:
    """The target's checks with their status (empty without checks or target)."""
    checks = [c for c in checks if isinstance(c, dict)]
    if not checks:
        if target:
            return (f'<section id="target-checks"><h2>Target checks: {esc(target)}</h2>'
                    '<p class="muted">No target checks were run.</p></section>')
        return ""
    rows = [f"<tr><td>{esc(c.get('name'))}</td><td>{badge(c.get('status'))}</td>"
            f"<td>{esc(c.get('detail'))}</td></tr>" for c in checks]
    title = f"Target checks: {esc(target)}" if target else "Target checks"
    return (f'<section id="target-checks"><h2>{title}</h2>'
            + table(["check", "status", "detail"], rows, table_id="target-checks-table")
            + "</section>")
