"""Regenerate the benchmark tables in the docs from ``benchmarks/results/*.json``, never typed.

Every results file owns one block in a document, between two markers::

    <!-- begin generated from results/fusion.json by benchmarks/render.py; do not edit -->
    ...
    <!-- end generated -->

``python benchmarks/render.py`` rewrites every block from its file (a block whose file is gone
says so) and appends a block to ``benchmarks/README.md`` for a results file that has none, so
whatever results exist are shown. ``--check`` changes nothing and exits 1 when a document differs
from what the files produce (``tests/benchmarks/test_render.py`` runs that on the committed
files). Benchmarks with a renderer below get their own tables; any other results file is shown
by the generic renderer (its scalar values, and tables for mappings of mappings).
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
#: Documents with generated blocks; the first two also get a section for every results file
#: that has no block yet (the top-level README only holds the blocks put there by hand).
DOCUMENTS = (HERE / "README.md", HERE.parent / "docs" / "benchmarks.md", HERE.parent / "README.md")
APPENDING = 2

BEGIN = ("<!-- begin generated from results/{name}.json{view} by benchmarks/render.py; "
         "do not edit -->")
END = "<!-- end generated -->"
_BLOCK = re.compile(
    r"<!-- begin generated from results/(?P<name>[\w.-]+)\.json(?: \((?P<view>\w+)\))? "
    r"by benchmarks/render\.py; do not edit -->\n(?P<body>.*?)" + re.escape(END),
    re.S,
)
_BLOCK_NAMES = re.compile(r"<!-- begin generated from results/([\w.-]+)\.json")

Payload = Mapping[str, Any]


# ----------------------------------------------------------------------------- formatting
def number(value: Any, digits: int = 3) -> str:
    """A number as table text: ints as they are, floats with ``digits`` decimals."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.{digits}f}"
    return str(value)


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A markdown table (first column left-aligned, the others right-aligned)."""
    align = ["---"] + ["---:"] * (len(headers) - 1)
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def provenance(payload: Payload) -> str:
    """Where, when and how the numbers were measured (from the results file)."""
    machine = payload.get("machine", {})
    packages = machine.get("packages", {})
    versions = ", ".join(f"{k} {v}" for k, v in sorted(packages.items()))
    return (
        f"Measured {payload.get('date', '?')} on {machine.get('cpu', '?')} "
        f"({machine.get('cores', '?')} cores, {machine.get('os', '?')}), Python "
        f"{machine.get('python', '?')}; {versions}. Command: `{payload.get('command', '?')}`."
    )


# ----------------------------------------------------------------------------- renderers
_SETTING_LABELS = {
    "1t/ort_on": "1 thread, ORT opt on",
    "default_t/ort_on": "default threads, ORT opt on",
    "1t/ort_off": "1 thread, ORT opt off",
    "default_t/ort_off": "default threads, ORT opt off",
}


def _verdict(comparison: Mapping[str, Any]) -> str:
    ratio = comparison["ratio"]
    if not comparison["real"]:
        word = "noise"
    else:
        word = "faster" if ratio < 1 else "slower"
    return f"{ratio:.3f} ±{comparison['threshold']:.3f} {word}"


def _story_table(results: Payload, story: str) -> str:
    settings = list(results["settings"])
    rows = []
    for name, row in results["models"].items():
        rows.append([name, *(_verdict(row[story][key]) for key in settings)])
    summary = results["summary"][story]
    rows.append(["**geometric mean**",
                 *(f"**{summary[key]['geomean_ratio']:.3f}**" for key in settings)])
    rows.append(["faster / slower / within noise",
                 *(f"{summary[key]['faster']} / {summary[key]['slower']} / "
                   f"{summary[key]['within_noise']}" for key in settings)])
    return table(["model", *(_SETTING_LABELS.get(k, k) for k in settings)], rows)


def render_fusion(payload: Payload) -> str:
    """Fusion alone, canonicalize alone, and node counts against onnxslim."""
    results = payload["results"]
    nodes = []
    equal = fewer = more = 0
    for name, row in results["models"].items():
        n = row["nodes"]
        slim = n.get("onnxslim")
        if slim is not None:
            equal += n["fused"] == slim
            fewer += n["fused"] < slim
            more += n["fused"] > slim
        nodes.append([name, number(n["orig"]), number(n["canon"]), number(n["fused"]),
                      number(slim) if slim is not None else "failed"])
    return "\n\n".join([
        provenance(payload)
        + f" Median of {results['repeats']} interleaved rounds per setting (fewer when a setting "
        f"exceeded {number(results['budget_seconds'], 0)} s), after {results['warmup']} warm-up "
        "rounds.",
        "**Fusion alone**: median latency of `canonicalize` + `fuse` over `canonicalize` "
        "(below 1 is faster). Each cell gives the ratio, the threshold it must exceed (the "
        "larger of the A/A gap and half the spread of either measurement) and the verdict.",
        _story_table(results, "fusion"),
        "**Canonicalize alone**: median latency of `canonicalize` over the original file, same "
        "run.",
        _story_table(results, "canonicalize"),
        f"**Node counts** (main graph): `canonicalize` + `fuse` has as many nodes as onnxslim on "
        f"{equal} models, fewer on {fewer}, more on {more}.",
        table(["model", "original", "canonicalize", "+ fuse", "onnxslim"], nodes),
    ])


def render_canonicalize(payload: Payload) -> str:
    """Per model and tool: seconds, nodes and output size; totals and ratios."""
    results = payload["results"]
    models = results["models"]
    tools = [t for t in results.get("totals", {}) if t != "input"]
    rows = []
    for name, row in models.items():
        cells = [name, f"{number(row['nodes'])} / {row['file_bytes'] / 1e6:.2f}"]
        for tool in tools:
            r = row.get(tool, {})
            if "seconds" in r:
                mark = " ≠" if r.get("equal") is False else ""
                cells.append(f"{r['seconds']:.2f} / {number(r['nodes'])} / "
                             f"{r['file_bytes'] / 1e6:.2f}{mark}")
            else:
                cells.append("failed")
        rows.append(cells)
    totals = results["totals"]
    rows.append(["**total**", f"{number(int(totals['input']['nodes']))} / "
                              f"{totals['input']['file_bytes'] / 1e6:.2f}"]
                + [f"{totals[t]['seconds']:.2f} / {number(int(totals[t]['nodes']))} / "
                   f"{totals[t]['file_bytes'] / 1e6:.2f}" for t in tools])
    ratio_rows = [[key, *(number(v.get(m)) for m in ("seconds", "nodes", "file_bytes"))]
                  for key, v in results.get("ratios", {}).items()]
    parts = [
        provenance(payload) + f" Pipeline `{results.get('pipeline', '?')}`; totals over the "
        f"{results.get('complete_models', len(models))} models every tool processed.",
        "Seconds / nodes / MB written per tool (≠: output differs from the input on the "
        "checked feeds).",
        table(["model", "input nodes / MB", *tools], rows),
        "Ratios of the totals:",
        table(["ratio", "seconds", "nodes", "file bytes"], ratio_rows),
    ]
    failures = results.get("failures") or {}
    if failures:
        parts.append("Failures: " + "; ".join(f"{m}: {', '.join(sorted(t))}"
                                              for m, t in sorted(failures.items())))
    return "\n\n".join(parts)


def render_pruning(payload: Payload) -> str:
    """Per model and ratio: accuracy, params, MACs and latency of every variant; the goals."""
    results = payload["results"]
    rows, goals = [], []
    for model, by_ratio in results["models"].items():
        for ratio, entry in by_ratio.items():
            for variant, v in entry["variants"].items():
                latency = v["latency_ms"]
                rows.append([model, ratio, variant, number(v["accuracy"], 4),
                             number(v["params_ratio"]), number(v["macs_ratio"]),
                             number(v["latency_ratio"]),
                             f"{latency['median_ms']:.4f} ±{latency['spread']:.3f}"])
            g = entry["goals"]
            goals.append([model, ratio, number(g.get("tp_loss_points"), 2),
                          number(g.get("repair_loss_points"), 2),
                          number(g.get("no_repair_matches_tp")),
                          number(g.get("repair_third_of_tp_loss")),
                          number(g.get("latency_follows_macs_irpass")),
                          number(entry.get("noise"))])
    return "\n\n".join([
        provenance(payload) + " Ratios are against the original model; latency is the median "
        "with its relative p10..p90 spread.",
        table(["model", "ratio", "variant", "accuracy", "params", "MACs", "latency",
               "median ms ±spread"], rows),
        "Goals per model and ratio (accuracy loss in points; A/A noise of the latency run):",
        table(["model", "ratio", "Torch-Pruning loss", "irpass+repair loss",
               "no repair within a point of TP", "repair <= 1/3 of TP loss",
               "latency follows MACs (irpass)", "A/A noise"], goals),
    ])


def _gb(value: Any) -> str:
    return f"{value / 1e9:.2f} GB"


def render_large_model(payload: Payload) -> str:
    """Peak RSS of ``irpass optimize`` per pipeline against the weight size."""
    results = payload["results"]
    weights = results["weight_bytes"]
    baseline = results.get("baseline_peak_rss_bytes")
    intro = (
        f"Synthetic transformer (d_model {results['d_model']}, {results['layers']} layers): "
        f"{_gb(weights)} of weights in an external data file, run from another folder. Goal: "
        f"peak RSS <= {results['goal_rss_over_weights']}x the weights."
    )
    if baseline is not None:
        intro += f" Fixed cost (the same command on a tiny model): {_gb(baseline)} peak RSS."
    rows = []
    for name, run in results["runs"].items():
        above = run.get("rss_over_weights_above_baseline")
        rows.append([
            name,
            str(run["exit_code"]),
            _gb(run["peak_rss_bytes"]),
            f"**{run['rss_over_weights']:.2f}x**",
            "–" if above is None else f"{above:.2f}x",
            f"{run['seconds']:.0f}",
            number(run.get("ort_loads_output")),
            number(run.get("max_abs_diff_vs_input"), 5),
        ])
    headers = ["pipeline", "exit", "peak RSS", "/ weights", "/ weights above fixed cost",
               "seconds", "ORT loads output", "max abs diff vs input"]
    return "\n\n".join([provenance(payload), intro, table(headers, rows)])


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_fuzz(payload: Payload) -> str:
    """Counts of a fuzzing run: per case, and each distinct finding."""
    results = payload["results"]
    intro = (
        f"{results['examples']} random models (seed {results['seed']}), each through "
        f"{len(results['cases'])} cases: {results['findings']} findings in "
        f"{len(results['cases_with_findings'])} cases, {results['generator_invalid']} invalid "
        f"generated models, {results['seconds']:.0f} s."
    )
    rows = [
        [
            _cell(case),
            "lossless" if row["lossless"] else "lossy",
            str(row["runs"]),
            str(row["modified"]),
            ", ".join(f"{k} {v}" for k, v in sorted(row["findings"].items())) or "0",
        ]
        for case, row in results["cases"].items()
    ]
    parts = [provenance(payload), intro,
             table(["case", "kind", "runs", "modified the model", "findings"], rows)]
    if results["distinct_findings"]:
        found = [
            [_cell(f["case"]), f["kind"], str(f["count"]), _cell(f["message"])[:200]]
            for f in results["distinct_findings"]
        ]
        parts.append(table(["case", "kind", "count", "first line"], found))
    return "\n\n".join(parts)
def _quant_cell(entry: Mapping[str, Any], fp32: float) -> list[str]:
    if not entry.get("valid"):
        reason = entry.get("error") or entry.get("invalid_reason") or "failed"
        return ["invalid: " + str(reason)[:60].replace("|", "/")] + ["–"] * 6
    slower = " (slower)" if entry.get("slower_than_fp32") else ""
    return [
        f"{number(entry['task'], 4)} ({100 * (entry['task'] - fp32):+.2f})",
        number(entry.get("cosine"), 5),
        number(entry.get("weight_ratio")),
        number(entry.get("file_ratio")),
        number(entry.get("latency_ratio_fp32")) + slower,
        f"{number(entry.get('peak_rss_mb'), 0)} (+{number(entry.get('peak_increase_mb'), 0)})",
        number(entry.get("seconds"), 1),
    ]


def render_quantize(payload: Payload) -> str:
    """Per model and tool: task metric, size, latency, memory; ORT's calibrators; the goals."""
    results = payload["results"]
    rows, calibrators, goals = [], [], []
    for name, case in results["cases"].items():
        fp32 = case["fp32"]["task"]
        rows.append([name, "fp32", number(fp32, 4), "1", "1.000", "1.000", "1.000", "–", "–"])
        for tool, entry in case["tools"].items():
            label = f"ort ({entry['chosen']})" if tool == "ort" and entry.get("chosen") else tool
            rows.append([name, label, *_quant_cell(entry, fp32)])
        ort = case["tools"].get("ort", {})
        if "calibrators" in ort:
            cells = []
            for method in ("MinMax", "Entropy", "Percentile"):
                run = ort["calibrators"].get(method, {})
                if run.get("valid"):
                    memory = number(run["peak_increase_mb"], 0)
                    cells.append(f"{number(run['task'], 4)} / +{memory}")
                else:
                    reason = run.get("error") or run.get("invalid_reason") or "failed"
                    cells.append("failed: " + str(reason)[:50].replace("|", "/"))
            calibrators.append([name, *cells])
        g = case["goals"]
        accuracy, latency = g.get("accuracy", {}), g.get("latency", {})
        targets = g.get("targets", {})
        goals.append([
            name,
            number(100 * accuracy["ort_drop"], 2) if accuracy else "–",
            number(100 * accuracy["irpass_drop"], 2) if accuracy else "–",
            number(accuracy.get("met")) if accuracy.get("applicable") else "n/a",
            number(latency.get("irpass_over_ort")),
            number(latency.get("met")),
            f"{number(g['validity']['ort_valid'])} / {number(g['validity']['irpass_valid'])}",
            " / ".join(number(targets[t]["met"]) if t in targets else "–"
                       for t in ("irpass", "irpass_all")),
        ])
    magika = results["cases"].get("magika", {}).get("files")
    files = (f" magika: {magika['evaluation']} files of this machine evaluated, "
             f"{magika['calibration']} calibrate." if magika else "")
    return "\n\n".join([
        provenance(payload) + " Tools: " + ", ".join(results["tools"]) + "." + files,
        "Per model and tool: task metric (accuracy; label agreement with FP32 for magika and "
        "SqueezeNet) with its change in points, cosine of the outputs to FP32's, weight bytes "
        "and file bytes over FP32, median "
        "latency over FP32 (batch 1, one thread; \"slower\" only beyond the A/A noise), peak "
        "resident MB of the quantizing process (+ its increase during quantization), seconds.",
        table(["model", "tool", "metric (points)", "cosine", "weights", "file", "latency",
               "peak MB (+)", "s"], rows),
        "ONNX Runtime `quantize_static` per calibrator (metric / peak MB increase); the best "
        "valid one is reported above:",
        table(["model", "MinMax", "Entropy", "Percentile"], calibrators),
        "Goals of issue 12: drops in points; the accuracy goal (irpass loses at most a fifth "
        "of what ORT loses) applies where ORT loses; latency irpass / ORT ≤ 1.05; valid models "
        "(ORT / irpass); per-model targets (drop ≤ 0.5 point, 1 for the transformer; weights "
        "≤ 30 %; not slower than FP32; magika agreement ≥ 99 %) for irpass / irpass_all:",
        table(["model", "ORT drop", "irpass drop", "≤ 1/5 of ORT", "latency irpass/ORT",
               "≤ 1.05", "valid ORT / irpass", "targets irpass / all"], goals),
    ])


def _compression_rows(payload: Payload) -> list[tuple[str, str, Mapping[str, Any], str]]:
    """(model, variant, row, metric) for every measured compressed variant."""
    out = []
    for model, entry in payload["results"]["models"].items():
        for variant, row in entry["variants"].items():
            if variant != "fp32" and "error" not in row:
                out.append((model, variant, row, entry["metric"]))
    return out


def render_compression(payload: Payload) -> str:
    """Per model: FP32 and every target's model (size, metric, latency, goals)."""
    results = payload["results"]
    rows = []
    for model, entry in results["models"].items():
        metric = entry["metric"]
        for variant, row in entry["variants"].items():
            if "error" in row:
                rows.append([model, variant, "failed: " + row["error"].replace("|", "/")[:80],
                             *["–"] * 7])
                continue
            goals = row.get("goals", {})
            rows.append([
                model, variant, row.get("chosen") or ("as trained" if variant == "fp32" else "–"),
                f"{row['file_bytes'] / 1024:.0f} KB", number(row.get("size_ratio", 1.0)),
                f"{number(row[metric], 2)} {metric}", number(row.get("points_lost"), 2),
                number(row.get("latency_ratio", 1.0)),
                " ".join(k for k, v in goals.items() if v) or "–",
            ])
    return "\n\n".join([
        provenance(payload) + " Metric and size on the half of the test split the search never "
        "saw; latency: ONNX Runtime CPU, batch 1, one thread, median ratio to FP32 (jetson and "
        "android graphs are timed on this CPU for reference only).",
        table(["model", "variant", "chosen setting", "size", "size ratio", "metric",
               "points lost", "latency ratio", "goals met"], rows),
    ])


_METRIC_NAMES = {"macro_f1": "macro-F1", "accuracy": "accuracy"}
#: Compression variants that run on a CPU like this machine's, as the headline names them.
_CPU_VARIANTS = {"x86": "`--target x86`", "x86-size": "`--target x86`, size first",
                 "rpi": "`--target rpi`"}


def render_compression_headline(payload: Payload) -> str:
    """One line per model: the best CPU-target result (for the top-level README)."""
    lines = []
    for model, variant, row, metric in _compression_rows(payload):
        label = _CPU_VARIANTS.get(variant)
        if label is None:
            continue
        lines.append(
            f"- **{model}** ({label}): {100 * (1 - row['size_ratio']):.0f} % smaller, "
            + (f"{1 / row['latency_ratio']:.2f}x as fast" if row.get("latency_real", True)
               else f"as fast within the A/A noise (x{1 / row['latency_ratio']:.2f})")
            + " (ONNX Runtime CPU, batch 1, one thread), "
            f"{row['points_lost']:+.2f} points of {_METRIC_NAMES.get(metric, metric)} lost"
        )
    date = str(payload.get("date", "?"))[:10]
    return "\n".join([*lines, "", f"(`benchmarks/compression.py`, {date}; details in "
                                   "[docs/benchmarks.md](docs/benchmarks.md).)"])


def render_svd(payload: Payload) -> str:
    """Per model and setting: params, MACs, accuracy, output error, latency; the goals at 0.3."""
    rows, goals = [], []
    for entry in payload["results"]["models"]:
        model, base = entry["model"], entry["base"]
        rows.append([model, "unfactorized", "0", "1.000", "1.000", number(base["accuracy"], 4),
                     "–", "–", "–", "–", "–"])
        for row in entry["settings"]:
            rows.append([
                model, row["setting"], str(row["factorized_layers"]), number(row["params_ratio"]),
                number(row["macs_ratio"]), number(row["accuracy"], 4),
                number(row["accuracy_drop_points"], 2), number(row["relative_error"], 4),
                number(row.get("error_vs_plain_equal_rank")),
                *(_latency(row, batch) for batch in (1, 32)),
            ])
        g = entry["goals"]
        if g:
            aware = next(r for r in entry["settings"] if r["setting"] == "aware@0.3")
            goals.append([model, number(aware["eligible_params_kept"]),
                          number(aware["factorized_params_kept"]),
                          number(aware["accuracy_drop_points"], 2),
                          number(g.get("drop_at_most_1pt")),
                          number(aware.get("error_vs_plain_equal_rank")),
                          number(g.get("half_error_of_plain")),
                          *(number(entry["latency"][f"batch{b}"]["noise"]) for b in (1, 32))])
    return "\n\n".join([
        provenance(payload) + " Reference: the model after `canonicalize,fuse`. Settings: "
        "`plain@r` is `svd(ratio=r, data_aware=false)`, `aware@r` is `svd(ratio=r)` with the "
        "model's calibration split, `aware-nosens@r` the same with `sensitivity=false`, "
        "`plain@aware@r` is plain SVD at the ranks `aware@r` chose. "
        "params/MACs/latency are ratios to the reference (latency: median, ONNX Runtime CPU, one "
        "thread, with its verdict against the A/A noise); accuracy on the test split; drop in "
        "points; error is the output's relative RMS error; err/plain is `aware`'s error over "
        "`plain@aware`'s (equal ranks).",
        table(["model", "setting", "layers", "params", "MACs", "accuracy", "drop", "error",
               "err/plain", "latency b1", "latency b32"], rows),
        "Goals at ratio 0.3 (issue 11): data-aware loses at most a point; its output error is "
        "at most half of plain SVD's at equal ranks.",
        table(["model", "factorizable params kept", "factorized layers' params kept",
               "aware drop", "drop <= 1 point",
               "err / plain at equal rank", "<= 0.5", "A/A noise b1", "A/A noise b32"],
              goals),
    ])


def render_targets(payload: Payload) -> str:
    """CPU targets against ONNX Runtime's quantizer; mobile checker partitions before/after."""
    data = payload["results"]
    parts = [provenance(payload)]
    if "cpu" in data:
        order = ("input fp32", "irpass generic fp32", "irpass x86", "irpass rpi",
                 "ORT quantize_static")
        rows = []
        for model, info in data["cpu"].items():
            for label in order:
                entry = info.get(label)
                if not isinstance(entry, dict) or "accuracy" not in entry:
                    continue
                ratio = entry.get("latency_ratio_vs_input", 1.0)
                verdict = "" if entry.get("latency_difference_real", True) else " noise"
                rows.append([
                    model, label, entry.get("precision") or "–", f"{ratio:.3f}{verdict}",
                    f"{100 * entry['accuracy']:.2f}%", f"{entry['bytes'] / 1024:.0f} KiB",
                    f"{entry['peak_memory']['session_bytes'] / 2**20:.1f} MiB",
                ])
        parts += [
            "Latency is the median ratio to the input FP32 model (ONNX Runtime CPU, 1 thread, "
            "batch 1; `noise` = within the run's A/A noise); accuracy on the test split; file "
            "size; the session's peak memory (fresh process). `irpass x86`/`rpi` ran with the "
            "calibration split; their precision is what they shipped (a layer stays float when "
            "its INT8 form is not faster here).",
            table(["model", "variant", "precision", "latency", "accuracy", "size",
                   "peak memory"], rows),
        ]
    if "mobile" in data:
        rows = []
        for model, entry in data["mobile"].items():
            cells = []
            for target in ("android", "ios"):
                for side in ("ort_tools", "irpass"):
                    part = entry[target][side]
                    cells.append(f"{part['partitions']} ({100 * part['coverage']:.0f}%)")
            rows.append([model, *cells])
        parts += [
            "Partitions (node coverage) ONNX Runtime's mobile usability checker reports for the "
            "model as ONNX Runtime's tools prepare it (dynamic dims fixed to 1) and for irpass's "
            "`--target android` / `--target ios` output (one partition at 100% is the goal):",
            table(["model", "NNAPI: ORT tools", "NNAPI: irpass android", "Core ML: ORT tools",
                   "Core ML: irpass ios"], rows),
        ]
    return "\n\n".join(parts)


def _latency(row: Mapping[str, Any], batch: int) -> str:
    ratio = row.get(f"latency_ratio_batch{batch}")
    if ratio is None:
        return "–"
    word = {"no measurable change": "noise"}.get(row[f"latency_batch{batch}"],
                                                   row[f"latency_batch{batch}"])
    return f"{ratio:.3f} {word}"


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def render_generic(payload: Payload) -> str:
    """Any results file: its scalar values, and a table per mapping of mappings of scalars."""
    parts = [provenance(payload)]
    scalars: list[list[str]] = []

    def walk(prefix: str, value: Any) -> None:
        if _scalar(value):
            scalars.append([prefix, number(value)])
        elif isinstance(value, list) and all(_scalar(v) for v in value):
            scalars.append([prefix, ", ".join(number(v) for v in value)])
        elif isinstance(value, Mapping) and value and all(
            isinstance(v, Mapping) and all(_scalar(x) for x in v.values())
            for v in value.values()
        ):
            columns = list(dict.fromkeys(k for v in value.values() for k in v))
            rows = [[str(k), *(number(v.get(c)) for c in columns)] for k, v in value.items()]
            parts.append(f"`{prefix}`:\n\n" + table([prefix.rsplit(".", 1)[-1], *columns], rows))
        elif isinstance(value, Mapping):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        else:
            scalars.append([prefix, json.dumps(value, sort_keys=True)])

    walk("", payload.get("results", {}))
    if scalars:
        parts.insert(1, table(["result", "value"], scalars))
    return "\n\n".join(parts)


RENDERERS: dict[str, Callable[[Payload], str]] = {
    "fusion": render_fusion,
    "canonicalize": render_canonicalize,
    "pruning": render_pruning,
    "large_model": render_large_model,
    "fuzz": render_fuzz,
    "quantize": render_quantize,
    "compression": render_compression,
    "compression.headline": render_compression_headline,
    "svd": render_svd,
    "targets": render_targets,
}


def render(name: str, payload: Payload) -> str:
    """The block body for results file ``name``: its renderer, generic when that one fails."""
    renderer = RENDERERS.get(name, render_generic)
    try:
        return renderer(payload)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        # a results file written by an older or newer version of its benchmark
        return render_generic(payload)


# ----------------------------------------------------------------------------- documents
def load_results(directory: pathlib.Path | None = None) -> dict[str, Payload]:
    """Every results file (default: ``benchmarks/results``), by benchmark name."""
    folder = RESULTS_DIR if directory is None else directory
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def block(name: str, body: str, view: str | None = None) -> str:
    """A generated block with its markers (``view``: another renderer of the same file)."""
    marker = BEGIN.format(name=name, view=f" ({view})" if view else "")
    return f"{marker}\n{body.strip()}\n{END}"


def update(text: str, results: Mapping[str, Payload], append_missing: bool) -> str:
    """``text`` with every generated block rendered from ``results``.

    With ``append_missing``, results without a block get a section at the end.
    """
    def replace(match: re.Match[str]) -> str:
        name, view = match.group("name"), match.group("view")
        if name not in results:
            return block(name, f"No results file `benchmarks/results/{name}.json` yet.", view)
        return block(name, render(f"{name}.{view}" if view else name, results[name]), view)

    out = _BLOCK.sub(replace, text)
    if append_missing:
        present = set(_BLOCK_NAMES.findall(out))
        for name in sorted(set(results) - present):
            section = f"## `{name}`\n\n" + block(name, render(name, results[name]))
            out = out.rstrip("\n") + "\n\n" + section + "\n"
    return out



def tables_outside_blocks(text: str) -> list[str]:
    """Markdown table lines outside generated blocks (every table must be generated)."""
    outside = _BLOCK.sub("", text)
    return [line for line in outside.splitlines() if line.lstrip().startswith("|")]


def main(argv: list[str] | None = None) -> int:
    """Rewrite the documents (or, with ``--check``, report which are stale)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 when a document is not what the files give")
    args = parser.parse_args(argv)
    results = load_results()
    stale = []
    for index, path in enumerate(DOCUMENTS):
        if not path.exists():
            continue
        text = path.read_text()
        new = update(text, results, append_missing=index < APPENDING)
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new)
    for path in stale:
        verb = "is stale" if args.check else "rewritten"
        print(f"{path.relative_to(HERE.parent)} {verb}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
