from __future__ import annotations

import json

import pytest

from irpass.cli import main
from models import trained_eval_data, trained_paths, zoo_paths


def test_bench_times_models_against_the_first_and_reports_memory(
    capsys: pytest.CaptureFixture[str],
):
    model = str(trained_paths()["digits_mlp"])
    code = main(["bench", model, str(zoo_paths()["mlp"]), "--repeats", "5", "--warmup", "1",
                 "--data", str(trained_eval_data()["digits_mlp"]), "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    stats = data["latency"]["stats"]
    assert set(stats) == {model, str(zoo_paths()["mlp"]), "A/A control"}
    assert all(s["runs"] == 5 and s["p10_ms"] <= s["median_ms"] <= s["p90_ms"]
               for s in stats.values())
    assert data["latency"]["input_shapes"]["input"][1] == 64
    assert all(m["peak_bytes"] >= m["baseline_bytes"] for m in data["memory"].values())
    assert "cpu" in data["machine"]


def test_bench_takes_input_shapes_and_prints_a_table(capsys: pytest.CaptureFixture[str]):
    code = main(["bench", str(zoo_paths()["transformer"]), "--input-shapes", "tokens:2x12",
                 "--repeats", "3", "--no-memory"])
    assert code == 0
    out = capsys.readouterr().out
    assert "median ms" in out and "A/A noise" in out


def test_bench_refuses_bad_settings(capsys: pytest.CaptureFixture[str]):
    assert main(["bench", str(zoo_paths()["mlp"]), "--threads", "0"]) == 2
    assert "hint:" in capsys.readouterr().err
