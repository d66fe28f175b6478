"""benchmarks/render.py: the benchmark docs are exactly what the committed results files give."""

from __future__ import annotations

import importlib.util
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("render", ROOT / "benchmarks" / "render.py")
assert _spec is not None and _spec.loader is not None
render = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(render)


def test_committed_docs_match_the_committed_results_files() -> None:
    results = render.load_results()
    for index, path in enumerate(render.DOCUMENTS):
        if not path.exists():
            continue
        text = path.read_text()
        appending = index < render.APPENDING
        assert render.update(text, results, append_missing=appending) == text, (
            f"{path.relative_to(ROOT)} is stale: run python benchmarks/render.py"
        )
        if appending:  # the benchmark pages; the top-level README has other tables
            assert render.tables_outside_blocks(text) == [], "a table typed by hand"


def test_every_results_file_is_shown() -> None:
    readme = render.DOCUMENTS[0].read_text()
    for name in render.load_results():
        assert f"results/{name}.json by benchmarks/render.py" in readme


def _payload(results: dict) -> dict:
    return {"benchmark": "demo", "date": "2026-01-01T00:00:00+00:00", "command": "python x.py",
            "machine": {"cpu": "cpu", "cores": 2, "os": "os", "python": "3.11",
                        "packages": {"onnxruntime": "1"}}, "results": results}


def _comparison(ratio: float, real: bool) -> dict:
    return {"ratio": ratio, "threshold": 0.05, "real": real}


def test_blocks_are_rewritten_from_their_file_and_missing_ones_appended() -> None:
    stats = {"faster": 1, "slower": 0, "within_noise": 1, "models": 2}
    fusion = {
        "settings": ["1t/ort_on"], "repeats": 15, "warmup": 3, "budget_seconds": 20.0,
        "models": {
            "a": {"nodes": {"orig": 10, "canon": 8, "fused": 6, "onnxslim": 6},
                  "fusion": {"1t/ort_on": _comparison(0.8, True)},
                  "canonicalize": {"1t/ort_on": _comparison(0.99, False)}},
            "b": {"nodes": {"orig": 5, "canon": 5, "fused": 5, "onnxslim": 4},
                  "fusion": {"1t/ort_on": _comparison(1.02, False)},
                  "canonicalize": {"1t/ort_on": _comparison(1.0, False)}},
        },
        "summary": {"fusion": {"1t/ort_on": {"geomean_ratio": 0.9032, **stats}},
                    "canonicalize": {"1t/ort_on": {"geomean_ratio": 0.995, **stats}}},
    }
    results = {"fusion": _payload(fusion), "other": _payload({"speedup": 1.25, "n": 3})}
    text = ("# Benchmarks\n\nprose\n\n" + render.block("fusion", "| stale | 1 |") + "\n\n"
            + render.block("gone", "old") + "\n")
    out = render.update(text, results, append_missing=True)
    assert "| stale | 1 |" not in out
    assert "| a | 0.800 ±0.050 faster |" in out
    assert "| b | 1.020 ±0.050 noise |" in out
    assert "| **geometric mean** | **0.903** |" in out
    assert "as many nodes as onnxslim on 1 models, fewer on 0, more on 1" in out
    assert "No results file `benchmarks/results/gone.json` yet." in out
    assert "## `other`" in out and "| speedup | 1.250 |" in out
    assert render.update(out, results, append_missing=True) == out  # idempotent
    assert render.tables_outside_blocks(out) == []
    assert render.tables_outside_blocks(out + "\n| typed | 2 |\n") == ["| typed | 2 |"]


def test_a_results_file_its_renderer_cannot_read_is_shown_generically() -> None:
    body = render.render("fusion", _payload({"models": {"a": {"x": 1.5}}, "note": "partial"}))
    assert "Measured 2026-01-01T00:00:00+00:00" in body
    assert "| note | partial |" in body and "| a | 1.500 |" in body


def test_the_script_checks_and_rewrites(tmp_path: pathlib.Path, monkeypatch) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "other.json").write_text(json.dumps(_payload({"n": 3})))
    doc = tmp_path / "README.md"
    doc.write_text("# B\n")
    monkeypatch.setattr(render, "RESULTS_DIR", results)
    monkeypatch.setattr(render, "DOCUMENTS", (doc,))
    monkeypatch.setattr(render, "HERE", tmp_path / "benchmarks")
    assert render.main(["--check"]) == 1 and doc.read_text() == "# B\n"
    assert render.main([]) == 0 and "| n | 3 |" in doc.read_text()
    assert render.main(["--check"]) == 0


def _compression() -> dict:
    def variant(size: int, acc: float, **extra: object) -> dict:
        return {"file_bytes": size, "accuracy": acc, "macro_f1": acc, **extra}

    return {"models": {"cnn": {"metric": "macro_f1", "noise": 0.02, "variants": {
        "fp32": variant(100_000, 95.0),
        "x86": variant(8_000, 94.5, size_ratio=0.08, latency_ratio=0.25, points_lost=0.5,
                       chosen="prune.ratio=0.7, quantize.max_drop=1.0",
                       goals={"smaller_90": True, "within_1pt": True, "faster_3x": True}),
        "jetson": {"error": "no | data"},
    }}}}


def test_compression_results_render_a_table_and_a_headline_view() -> None:
    payload = _payload(_compression())
    body = render.render("compression", payload)
    assert "| cnn | x86 | prune.ratio=0.7, quantize.max_drop=1.0 | 8 KB | 0.080 |" in body
    assert "smaller_90 within_1pt faster_3x" in body
    assert "failed: no / data" in body
    text = "intro\n\n" + render.block("compression", "old", "headline") + "\n"
    out = render.update(text, {"compression": payload}, append_missing=False)
    assert "results/compression.json (headline) by benchmarks/render.py" in out
    assert "**cnn** (`--target x86`): 92 % smaller, 4.00x as fast" in out
    assert "+0.50 points of macro-F1 lost" in out
    assert render.update(out, {"compression": payload}, append_missing=False) == out


def test_svd_results_get_their_own_tables() -> None:
    setting = {"setting": "aware@0.3", "mode": "aware", "ratio": 0.3, "factorized_layers": 2,
               "params_ratio": 0.7, "macs_ratio": 0.72, "accuracy": 0.97,
               "accuracy_drop_points": 0.5, "relative_error": 0.02,
               "error_vs_plain_equal_rank": 0.25, "eligible_params_kept": 0.69,
               "factorized_params_kept": 0.5, "latency_ratio_batch1": 0.9,
               "latency_batch1": "no measurable change", "latency_ratio_batch32": 0.8,
               "latency_batch32": "faster"}
    entry = {"model": "m", "base": {"accuracy": 0.975}, "settings": [setting],
             "latency": {"batch1": {"noise": 0.05}, "batch32": {"noise": 0.02}},
             "goals": {"drop_at_most_1pt": True, "half_error_of_plain": True}}
    body = render.render("svd", _payload({"ratios": [0.3], "models": [entry]}))
    assert "| m | aware@0.3 | 2 | 0.700 | 0.720 | 0.9700 | 0.50 | 0.0200 | 0.250 | 0.900 noise " \
           "| 0.800 faster |" in body
    assert "| m | 0.690 | 0.500 | 0.50 | yes | 0.250 | yes | 0.050 | 0.020 |" in body


def test_targets_results_get_their_own_tables() -> None:
    entry = {"accuracy": 0.5, "bytes": 2048, "peak_memory": {"session_bytes": 2**20},
             "precision": "int8", "latency_ratio_vs_input": 0.75, "latency_difference_real": True}
    part = {"partitions": 2, "coverage": 0.5, "unsupported": {"Erf": 1}}
    body = render.render("targets", _payload({
        "cpu": {"m": {"irpass x86": entry, "noise": 0.01}},
        "mobile": {"zoo/m": {"android": {"ort_tools": part, "irpass": part},
                             "ios": {"ort_tools": part, "irpass": part}}},
    }))
    assert "| m | irpass x86 | int8 | 0.750 | 50.00% | 2 KiB | 1.0 MiB |" in body
    assert "| zoo/m | 2 (50%) | 2 (50%) | 2 (50%) | 2 (50%) |" in body
