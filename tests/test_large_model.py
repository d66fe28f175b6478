"""A few-hundred-MB model with external data goes through ``optimize`` from another folder."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "large_model.py"


def _bench():
    spec = importlib.util.spec_from_file_location("large_model_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_external_data_model_optimizes_from_another_folder(tmp_path: pathlib.Path) -> None:
    bench = _bench()
    weight_bytes = bench.build(tmp_path / "model", d_model=1024, layers=6)
    assert weight_bytes > 190 * 2**20
    (tmp_path / "elsewhere").mkdir()
    run = bench.run_optimize(tmp_path / "model" / "model.onnx", tmp_path / "out",
                             tmp_path / "elsewhere", "canonicalize,fuse")
    assert run["exit_code"] == 0, run["stderr_tail"]
    out = tmp_path / "out"
    assert (out / "model.onnx.data").exists()  # weights written next to the output, not shared
    check = bench.check_output(tmp_path / "model" / "model.onnx", out / "model.onnx")
    assert check["max_abs_diff_vs_input"] < 1e-3
    assert not list(tmp_path.rglob(".irpass-tmp-*"))
