from __future__ import annotations

import html.parser
import re
import xml.etree.ElementTree as ET
from typing import ClassVar

import pytest

from irpass.diff import diff_models
from irpass.numeric_diff import numeric_diff
from irpass.report import (
    graph_region_svg,
    render_diff_html,
    render_report_html,
    write_report_html,
)
from tests.diff_models_for_tests import net, sample_report

SVG = "{http://www.w3.org/2000/svg}"


class _TagBalance(html.parser.HTMLParser):
    """Counts unclosed elements (void elements excluded)."""

    VOID: ClassVar = frozenset({"meta", "br", "img", "input", "link", "hr"})
    SVG_LEAVES: ClassVar = frozenset({"rect", "circle", "line", "path", "polyline"})

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> (open: {self.stack[-3:]})")
        else:
            self.stack.pop()


def _balanced(page: str) -> None:
    parser = _TagBalance()
    parser.feed(page)
    assert parser.errors == [] and parser.stack == []


def _self_contained(page: str) -> None:
    assert "<script" not in page and "<link" not in page and "@import" not in page
    urls = re.findall(r"(?:src|href)\s*=\s*[\"']([^\"']+)", page) + re.findall(
        r"url\((?!#)([^)]*)\)", page)
    assert urls == []
    external = set(re.findall(r"https?://[^\s\"'<>]+", page)) - {"http://www.w3.org/2000/svg"}
    assert external == set()


def test_full_report_renders_every_section():
    diff = diff_models(net(), net(fold_bn=True)).to_dict()
    page = render_report_html(sample_report(diff))
    _balanced(page)
    _self_contained(page)
    for ident in ("irpass-report", "pipeline", "summary", "charts", "chart-size", "chart-macs",
                  "chart-accuracy", "chart-sweeps", "passes-table", "target-checks-table",
                  "diff", "graph-regions", "region-0", "op-delta", "changed-nodes",
                  "removed-nodes"):
        assert f'id="{ident}"' in page, ident
    for name in ("fixpoint#1/fold_constants", "prune_channels", "quantize_int8", "jetson-orin",
                 "TensorRT rule check", "ratio=0.25"):
        assert name in page
    # user text is escaped
    assert "&lt;QLinearConv&gt; &amp; rolled back" in page and "<QLinearConv>" not in page


def test_report_tolerates_missing_and_malformed_keys():
    for report in ({}, {"passes": None, "before": [], "diff": "x"},
                   {"passes": [{}, {"step": "a", "before": {"nodes": "many"}}, 3],
                    "sweeps": [{"label": "s"}], "target_checks": [None]}):
        page = render_report_html(report)
        _balanced(page)
        assert 'id="irpass-report"' in page and 'id="passes"' in page


def test_without_sweeps_or_metrics_the_accuracy_chart_uses_verification_error():
    report = sample_report()
    del report["sweeps"]
    for record in report["passes"]:
        record["metrics"] = None
    page = render_report_html(report)
    assert 'id="chart-sweeps"' not in page
    assert "verification: max abs error per pass" in page


def test_region_svg_layers_a_chain_top_to_bottom():
    diff = diff_models(net(), net(fold_bn=True)).to_dict()
    region = diff["regions"][0]
    svg = graph_region_svg(region, svg_id="r")
    root = ET.fromstring(svg)
    groups = root.findall(f"{SVG}g")
    assert len(groups) == len(region["nodes"])
    ys = {}
    for group in groups:
        texts = [t.text for t in group.findall(f"{SVG}text")]
        ys[texts[0]] = float(group.find(f"{SVG}rect").get("y"))
    assert ys["Conv"] < ys["BatchNormalization"] < ys["Relu"]
    classes = {g.get("class") for g in groups}
    assert "node removed" in classes and "node changed" in classes
    # the B-only edge Conv -> Relu skips BN's layer and bows around it
    assert len(root.findall(f"{SVG}path")) == len(region["edges"])


def test_region_svg_with_a_cycle_between_a_and_b_orders():
    region = {"nodes": [{"id": "x", "op_type": "Relu", "status": "unchanged"},
                        {"id": "y", "op_type": "MaxPool", "status": "changed"}],
              "edges": [{"from": "x", "to": "y", "side": "a"},
                        {"from": "y", "to": "x", "side": "b"}]}
    root = ET.fromstring(graph_region_svg(region))
    assert len(root.findall(f"{SVG}g")) == 2


def test_diff_page_with_numeric_section():
    a, b = net(), net(qdq=True)
    diff = diff_models(a, b)
    numeric = numeric_diff(a, b, diff=diff)
    page = render_diff_html(diff.to_dict(), numeric.to_dict())
    _balanced(page)
    _self_contained(page)
    assert 'id="numeric-outputs"' in page and "First diverging layer" in page
    assert "QuantizeLinear" in page and 'id="added-nodes"' in page


def test_identical_diff_page_says_so():
    page = render_diff_html(diff_models(net(), net()).to_dict())
    assert "structurally identical" in page and 'id="graph-regions"' not in page


def test_write_report_html(tmp_path):
    path = tmp_path / "sub" / "report.html"
    write_report_html(sample_report(), path)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]


@pytest.mark.parametrize("count", [1, 30])
def test_large_tables_are_capped(count, monkeypatch):
    import irpass.report.format as format_module

    monkeypatch.setattr(format_module, "MAX_TABLE_ROWS", 10)
    diff = diff_models(net(), net(qdq=True)).to_dict()
    diff["added"] = diff["added"] * count
    page = render_diff_html(diff)
    assert ("more rows in the JSON output" in page) == (len(diff["added"]) > 10)


def test_charts_skip_passes_that_changed_nothing_and_exact_verification():
    report = sample_report()
    del report["sweeps"]
    for record in report["passes"]:
        record["metrics"] = None
        record["verification"]["max_abs_error"] = 0.0
    page = render_report_html(report)
    assert "reproduced the outputs exactly" in page
    assert 'id="chart-accuracy"' not in page
    assert "Charts show the 3 passes that changed the model (of 4 run)" in page
    size_chart = page[page.index('id="chart-size"'):]
    size_chart = size_chart[:size_chart.index("</svg>")]
    assert "fixpoint#1/fold_constants" not in size_chart and "quantize_int8" in size_chart


def test_long_charts_stay_within_the_page_and_thin_their_labels():
    from irpass.report import MAX_CHART_WIDTH, line_chart

    labels = [f"layer{k}" for k in range(500)]
    svg = line_chart(labels, {"cosine": [1.0 - k * 1e-4 for k in range(500)]}, "t", str, "c",
                     highlight=200, highlight_label="first divergence")
    root = ET.fromstring(svg[svg.index("<svg"):svg.rindex("</svg>") + 6])
    assert int(root.get("width")) <= MAX_CHART_WIDTH
    label_texts = [t for t in root.iter(f"{SVG}text") if (t.text or "").startswith("layer")]
    assert 10 < len(label_texts) < 60
    assert len(root.findall(f"{SVG}circle")) == 500
    assert "first divergence" in svg
