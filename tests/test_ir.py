from __future__ import annotations

import pathlib

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from conftest import light_model_path

import irpass.ir as irpass_ir
from irpass.errors import ModelLoadError, UnsupportedModelError
from irpass.ir import atomic_output_path, load_model, save_model
from irpass.testing import model_from_text

SMALL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 2] x) => (float[1, 2] y) <float[2, 2] w = {1, 2, 3, 4}> {
    y = MatMul(x, w)
}
"""


def _big_weight_model() -> ir.Model:
    model = model_from_text(SMALL)
    tensor = ir.tensor(np.arange(64 * 64, dtype=np.float32).reshape(64, 64), name="w2")
    value = ir.Value(
        name="w2", shape=tensor.shape, type=ir.TensorType(ir.DataType.FLOAT), const_value=tensor
    )
    model.graph.register_initializer(value)
    return model


def test_load_light_model() -> None:
    model = load_model(light_model_path("squeezenet"))
    assert irpass_ir.default_opset(model) == 9
    assert len(model.graph) == 105


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda d: d / "missing.onnx", "no such file"),
        (lambda d: d, "is a directory"),
        (lambda d: _write(d / "empty.onnx", b""), "is empty"),
        (
            lambda d: _write(d / "notes.onnx", b"just some text\nnot a model\n"),
            "not a valid ONNX model",
        ),
        (
            lambda d: _write(d / "trunc.onnx", light_model_path("resnet50").read_bytes()[:20000]),
            "not a valid ONNX model",
        ),
    ],
    ids=["missing", "directory", "empty", "text", "truncated"],
)
def test_bad_files_give_one_clear_error(tmp_path: pathlib.Path, make, fragment: str) -> None:
    with pytest.raises(ModelLoadError) as info:
        load_model(make(tmp_path))
    assert fragment in info.value.message
    assert info.value.hint


def _write(path: pathlib.Path, data: bytes) -> pathlib.Path:
    path.write_bytes(data)
    return path


def test_unsupported_opset(tmp_path: pathlib.Path) -> None:
    proto = onnx.parser.parse_model(SMALL.replace('"" : 17', '"" : 5'))
    onnx.save(proto, tmp_path / "old.onnx")
    with pytest.raises(UnsupportedModelError) as info:
        load_model(tmp_path / "old.onnx")
    assert "opset 5" in info.value.message


def test_missing_external_data(tmp_path: pathlib.Path) -> None:
    save_model(_big_weight_model(), tmp_path / "m.onnx", external_data=True)
    assert (tmp_path / "m.onnx.data").exists()
    assert load_model(tmp_path / "m.onnx").graph.initializers["w2"].const_value.numpy()[1, 1] == 65
    (tmp_path / "m.onnx.data").unlink()
    with pytest.raises(ModelLoadError) as info:
        load_model(tmp_path / "m.onnx")
    assert "m.onnx.data" in info.value.message and "missing" in info.value.message


def test_truncated_external_data(tmp_path: pathlib.Path) -> None:
    save_model(_big_weight_model(), tmp_path / "m.onnx", external_data=True)
    data = tmp_path / "m.onnx.data"
    data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(ModelLoadError) as info:
        load_model(tmp_path / "m.onnx")
    assert "truncated" in info.value.message


def test_save_chooses_external_data_above_the_limit(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(irpass_ir, "PROTOBUF_LIMIT", 1000)
    written = save_model(_big_weight_model(), tmp_path / "m.onnx")
    assert sorted(p.name for p in written) == ["m.onnx", "m.onnx.data"]
    assert (tmp_path / "m.onnx").stat().st_size < 2000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data"]


def test_atomic_output_leaves_nothing_on_error(tmp_path: pathlib.Path) -> None:
    (tmp_path / "keep.onnx").write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_output_path(tmp_path / "keep.onnx") as tmp:
            (tmp / "keep.onnx").write_bytes(b"half-written")
            raise RuntimeError("interrupted")
    assert (tmp_path / "keep.onnx").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.onnx"]


@pytest.mark.slow
def test_model_over_2gb_loads_passes_and_saves(tmp_path: pathlib.Path) -> None:
    from irpass.manager import PipelineRunner, RunOptions

    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 4] x) => (float[1, 4] y) {
        i = Identity(x)
        y = Add(i, x)
    }
    """
    model = model_from_text(text)
    count = 0
    for k in range(3):  # 3 x 768 MiB of weights, each feeding a ReduceSum added to the output
        name = f"w{k}"
        tensor = ir.tensor(np.full((192, 1024, 1024), k + 1, dtype=np.float32), name=name)
        value = ir.Value(
            name=name, shape=tensor.shape, type=ir.TensorType(ir.DataType.FLOAT), const_value=tensor
        )
        model.graph.register_initializer(value)
        count += tensor.nbytes
    assert count > 2**31
    save_model(model, tmp_path / "big.onnx")
    assert (tmp_path / "big.onnx.data").stat().st_size >= count
    loaded = load_model(tmp_path / "big.onnx")
    assert isinstance(next(iter(loaded.graph.initializers.values())).const_value, ir.ExternalTensor)
    import passes_for_tests  # noqa: F401

    result = PipelineRunner("t_remove_one_identity", options=RunOptions(verify="each")).run(loaded)
    assert result.report.passes[0].verification.status == "ok"
    save_model(result.model, tmp_path / "out.onnx")
    assert (tmp_path / "out.onnx.data").stat().st_size >= count
