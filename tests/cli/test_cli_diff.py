from __future__ import annotations

import json
import pathlib

import numpy as np
import onnx_ir as ir
import pytest

from irpass.cli import main
from tests.diff_models_for_tests import net


@pytest.fixture
def models(tmp_path: pathlib.Path) -> dict[str, pathlib.Path]:
    paths = {}
    for key, model in (("a", net()), ("qdq", net(qdq=True)),
                       ("folded", net(fold_bn=True, prefix="n_", rename_tensors=True)),
                       ("pruned", net(6))):
        paths[key] = tmp_path / f"{key}.onnx"
        ir.save(model, paths[key])
    return paths


def test_diff_prints_tables(models, capsys):
    assert main(["diff", str(models["a"]), str(models["qdq"])]) == 0
    out = capsys.readouterr().out
    for text in ("added nodes (3)", "QuantizeLinear", "changed nodes", "op histogram delta",
                 "size and compute"):
        assert text in out, text


def test_shapes_in_tables_are_not_eaten_as_markup(models, capsys):
    assert main(["diff", str(models["a"]), str(models["pruned"])]) == 0
    out = capsys.readouterr().out
    assert "[8,3,3,3]" in out and "[6,3,3,3]" in out


def test_identical_models(models, capsys):
    assert main(["diff", str(models["a"]), str(models["a"])]) == 0
    assert "structurally identical" in capsys.readouterr().out


def test_json_to_stdout_is_only_json(models, capsys):
    assert main(["diff", str(models["a"]), str(models["folded"]), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["removed"] == 1
    assert [n["op_type"] for n in data["removed"]] == ["BatchNormalization"]
    assert data["op_delta"] == {"BatchNormalization": {"a": 1, "b": 0, "delta": -1}}
    assert data["numeric"] is None


def test_json_html_and_numeric_files(models, tmp_path, capsys):
    out_json, out_html = tmp_path / "o" / "d.json", tmp_path / "o" / "d.html"
    code = main(["diff", str(models["a"]), str(models["pruned"]), "--numeric", "--samples", "2",
                 "--json", str(out_json), "--html", str(out_html)])
    assert code == 0
    stdout = capsys.readouterr().out
    assert "cosine" in stdout and f"JSON written to {out_json}" in stdout
    data = json.loads(out_json.read_text())
    assert data["numeric"]["samples"] == 2
    assert data["numeric"]["outputs"][0]["shape"] == [1, 4, 8, 8]
    weight_changes = [c for m in data["changed"] for c in m["changes"]
                      if c["kind"] == "weight_shape"]
    assert {"before": [8, 3, 3, 3], "after": [6, 3, 3, 3]}.items() <= weight_changes[0].items()
    page = out_html.read_text()
    assert 'id="graph-regions"' in page and 'id="numeric-outputs"' in page


def test_numeric_with_data_file(models, tmp_path, capsys):
    data = tmp_path / "x.npz"
    # samples along axis 0 (the model's batch size is 1)
    np.savez(data, x=np.random.default_rng(3).standard_normal((4, 3, 8, 8)).astype(np.float32))
    assert main(["diff", str(models["a"]), str(models["folded"]), "--data", str(data),
                 "--samples", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["numeric"]
    assert result["samples"] == 3 and str(data) in result["inputs"]
    assert result["first_divergence"] is None
    assert all(not o["diverged"] for o in result["outputs"])


def test_missing_model_is_one_error_line(models, tmp_path, capsys):
    html = tmp_path / "never.html"
    code = main(["diff", str(models["a"]), str(tmp_path / "nope.onnx"), "--html", str(html)])
    assert code == 2
    err = capsys.readouterr().err
    assert "nope.onnx: no such file" in err and "Traceback" not in err
    assert not html.exists()


def test_bad_data_is_a_user_error(models, tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    np.savez(bad, other=np.zeros(3, np.float32))
    code = main(["diff", str(models["a"]), str(models["qdq"]), "--data", str(bad)])
    assert code == 2
    assert "error" in capsys.readouterr().err


def test_macs_are_counted_at_the_given_input_shapes(tmp_path, capsys):
    from irpass.testing import inputs_to_random_initializers, model_from_text

    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N, 8] x, float[8, 4] w) => (float[N, 4] y) { h = MatMul (x, w)
    y = Relu (h) }
    """
    paths = []
    for name in ("a", "b"):
        paths.append(tmp_path / f"{name}.onnx")
        ir.save(inputs_to_random_initializers(model_from_text(text), ["w"]), paths[-1])
    assert main(["diff", *map(str, paths), "--json"]) == 0
    cost = json.loads(capsys.readouterr().out)["cost"]["a"]
    assert cost["macs"] == 8 * 4 and cost["symbolic_set_to_one"] == ["x"]
    assert main(["diff", *map(str, paths), "--json", "--input-shapes", "x:16x8"]) == 0
    cost = json.loads(capsys.readouterr().out)["cost"]["a"]
    assert cost["macs"] == 16 * 8 * 4 and cost["cost_shapes"] == {"x": [16, 8]}
    assert cost["symbolic_set_to_one"] == []
    assert main(["diff", *map(str, paths), "--input-shapes", "x:16x8"]) == 0
    assert "at inputs x:16x8" in capsys.readouterr().out
