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
def test_model_over_2gb_loads_passes_and_saves(tmp_path: pathlib.Path, test_passes) -> None:
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
    result = PipelineRunner("t_remove_one_identity", options=RunOptions(verify="each")).run(loaded)
    assert result.report.passes[0].verification.status == "equal"
    save_model(result.model, tmp_path / "out.onnx")
    assert (tmp_path / "out.onnx.data").stat().st_size >= count


def _save_with_data(folder: pathlib.Path, scale: float) -> pathlib.Path:
    """A model saved by onnx itself with its weight in ``folder/model.data``."""
    folder.mkdir(parents=True, exist_ok=True)
    proto = onnx.parser.parse_model(SMALL)
    proto.graph.initializer[0].CopyFrom(
        onnx.numpy_helper.from_array(np.full((2, 2), scale, np.float32), "w")
    )
    onnx.save(proto, folder / "model.onnx", save_as_external_data=True,
              all_tensors_to_one_file=True, location="model.data", size_threshold=0)
    return folder / "model.onnx"


def test_external_data_resolves_against_the_models_folder(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from irpass.cli import main

    path = _save_with_data(tmp_path / "m", 1.0)
    decoy = _save_with_data(tmp_path / "work", 5.0)  # same data file name, other weights
    monkeypatch.chdir(decoy.parent)
    model = load_model(path)
    assert float(model.graph.initializers["w"].const_value.numpy()[0, 0]) == 1.0
    out = tmp_path / "out"
    assert main(["optimize", str(path), "-o", str(out)]) == 0
    # The output holds its weights itself (a data file of its own), never the input's.
    written = onnx.load(out / "model.onnx")
    assert onnx.numpy_helper.to_array(written.graph.initializer[0])[0, 0] == 1.0
    assert (out / "model.onnx.data").exists()


def test_output_keeps_external_data_when_every_weight_was_rewritten(
    tmp_path: pathlib.Path,
) -> None:
    # weight-only quantization replaces the only (external) weight by an in-memory one; the
    # output still writes its weights to a data file of its own, as the input did
    from irpass.cli import main

    folder = tmp_path / "m"
    folder.mkdir()
    proto = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 64] x) => (float[1, 64] y) <float[64, 64] w = {0.0}> { y = MatMul(x, w) }
    """)
    weight = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    proto.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(weight, "w"))
    onnx.save(proto, folder / "model.onnx", save_as_external_data=True,
              all_tensors_to_one_file=True, location="model.data", size_threshold=0)
    out = tmp_path / "out"
    assert main(["optimize", str(folder / "model.onnx"), "-o", str(out),
                 "--passes", "quantize(mode=int8w)"]) == 0
    written = onnx.load(out / "model.onnx", load_external_data=False)
    assert written.graph.node[0].op_type == "MatMulNBits"
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in written.graph.initializer)
    assert (out / "model.onnx.data").exists()


def test_to_proto_inlines_external_weights(tmp_path: pathlib.Path) -> None:
    model = load_model(_save_with_data(tmp_path / "m", 2.0))
    proto = irpass_ir.to_proto(model)
    tensor = proto.graph.initializer[0]
    assert tensor.data_location == onnx.TensorProto.DEFAULT
    assert onnx.numpy_helper.to_array(tensor)[1, 1] == 2.0
    assert isinstance(model.graph.initializers["w"].const_value, ir.ExternalTensor)  # unchanged


def test_inline_save_never_points_at_the_inputs_data(tmp_path: pathlib.Path) -> None:
    model = load_model(_save_with_data(tmp_path / "m", 3.0))
    save_model(model, tmp_path / "o" / "x.onnx", external_data=False)
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["x.onnx"]
    proto = onnx.load(tmp_path / "o" / "x.onnx")
    assert onnx.numpy_helper.to_array(proto.graph.initializer[0])[0, 0] == 3.0


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/hostname", "link.bin"])
def test_external_data_outside_the_folder_is_refused_unread(
    tmp_path: pathlib.Path, location: str
) -> None:
    (tmp_path / "secret.bin").write_bytes(b"x" * 631)
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "link.bin").symlink_to(tmp_path / "secret.bin")
    proto = onnx.parser.parse_model(SMALL)
    tensor = proto.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        tensor.external_data.add(key=key, value=value)
    onnx.save(proto, folder / "model.onnx")
    with pytest.raises(ModelLoadError, match="outside the model's folder") as info:
        load_model(folder / "model.onnx")
    assert "631" not in info.value.message


def test_declared_minus_one_dims_load_as_dynamic(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Paddle exports (e.g. rapidocr's text-direction classifier) declare "any size" as -1.
    proto = onnx.parser.parse_model(SMALL)
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = -1
    proto.graph.output[0].type.tensor_type.shape.dim[0].dim_value = -1
    path = tmp_path / "paddle.onnx"
    onnx.save(proto, path)
    with caplog.at_level("WARNING", logger="irpass.ir"):
        model = load_model(path)
    assert model.graph.inputs[0].shape is not None
    first = model.graph.inputs[0].shape[0]
    assert not isinstance(first, int)  # unknown, not -1
    assert model.graph.inputs[0].shape[1] == 2
    assert "graph input 'x' declares dimension -1 on axis 0" in caplog.text


def test_negative_weight_dims_are_still_refused(tmp_path: pathlib.Path) -> None:
    proto = onnx.parser.parse_model(SMALL)
    proto.graph.initializer[0].dims[0] = -2
    path = tmp_path / "bad.onnx"
    onnx.save(proto, path)
    with pytest.raises(UnsupportedModelError, match="declares dimension -2"):
        load_model(path)
