from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest

from irpass.cli import main
from irpass.ir import load_model
from irpass.testing import run_ir


def test_lower_without_colon_fails_cleanly(capsys, tmp_path: pathlib.Path) -> None:
    assert main(["lower", "models.zoo", "-o", str(tmp_path / "m.onnx")]) == 2
    assert "package.module:factory" in capsys.readouterr().err


def test_lower_without_torch_says_how_to_install_it(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.delitem(sys.modules, "models.zoo", raising=False)
    assert main(["lower", "models.zoo:mlp", "-o", str(tmp_path / "m.onnx")]) == 2
    assert "irpass[torch]" in capsys.readouterr().err


def test_bad_dynamic_axis_spec(capsys, tmp_path: pathlib.Path) -> None:
    pytest.importorskip("torch")
    code = main(["lower", "models.zoo:mlp", "-o", str(tmp_path / "m.onnx"), "--dynamic", "x"])
    assert code == 2
    assert "INPUT:AXIS=NAME" in capsys.readouterr().err


def test_lower_zoo_mlp_from_the_command_line(capsys, tmp_path: pathlib.Path) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "mlp.onnx"
    assert main(["lower", "models.zoo:mlp", "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    model = load_model(out)
    assert [v.name for v in model.graph.inputs] == ["input"]
    assert [v.name for v in model.graph.outputs] == ["logits"]
    result = run_ir(model, {"input": np.zeros((3, 64), np.float32)})
    assert result["logits"].shape == (3, 10)


def test_lower_static_batch_and_names(capsys, tmp_path: pathlib.Path) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "mlp.onnx"
    code = main(
        ["lower", "models.zoo:mlp", "-o", str(out), "--static-batch", "--input-names", "features",
         "--output-names", "scores", "--optimize", "full"]
    )
    assert code == 0
    model = load_model(out)
    assert model.graph.inputs[0].name == "features"
    assert list(model.graph.inputs[0].shape) == [1, 64]
    assert model.graph.outputs[0].name == "scores"
