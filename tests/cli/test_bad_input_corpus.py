"""A corpus of hostile inputs: each one exits 2 with one ``error:`` and one ``hint:`` line.

Every case builds its files in a fresh folder, runs the CLI from another working folder and
checks: exit code 2, exactly one ``error:`` line and one ``hint:`` line, no traceback, no ONNX
Runtime log and no Python warning on stderr, nothing written anywhere in the folder, and every
input byte-identical.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
from collections.abc import Callable

import numpy as np
import onnx
import onnx.helper as oh
import pytest
from onnx import TensorProto

from irpass.cli import main

Case = Callable[[pathlib.Path], list[str]]


def _model(
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto] | None = None,
    outputs: list[onnx.ValueInfoProto] | None = None,
    initializers: list[onnx.TensorProto] | None = None,
) -> onnx.ModelProto:
    graph = oh.make_graph(
        nodes,
        "g",
        inputs
        if inputs is not None
        else [oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        outputs
        if outputs is not None
        else [oh.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        initializers or [],
    )
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])


def _save(proto: onnx.ModelProto, path: pathlib.Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, path)
    return str(path)


def _good(folder: pathlib.Path, name: str = "in.onnx") -> str:
    w = onnx.numpy_helper.from_array(np.arange(16, dtype=np.float32).reshape(4, 4), "w")
    return _save(
        _model([oh.make_node("MatMul", ["x", "w"], ["y"])], initializers=[w]), folder / name
    )


def _external(folder: pathlib.Path, location: str, name: str = "ext.onnx") -> str:
    """A valid model whose weight lives in ``location`` (relative to the model's folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = np.arange(16, dtype=np.float32).reshape(4, 4)
    proto = _model([oh.make_node("MatMul", ["x", "w"], ["y"])])
    tensor = onnx.numpy_helper.from_array(weights, "w")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "64")):
        tensor.external_data.add(key=key, value=value)
    proto.graph.initializer.append(tensor)
    data = folder / location
    if not os.path.isabs(location) and (folder / location).resolve().parent == folder.resolve():
        data.write_bytes(weights.tobytes())
    onnx.save(proto, folder / name)
    return str(folder / name)


# ----------------------------------------------------------------- the input can be destroyed
def report_is_the_input(d: pathlib.Path) -> list[str]:
    model = _good(d / "in")
    return ["optimize", model, "-o", str(d / "out"), "--report", model]


def dump_dir_is_the_input_folder(d: pathlib.Path) -> list[str]:
    return [
        "optimize",
        _good(d / "in", "000_input.onnx"),
        "-o",
        str(d / "o"),
        "--dump-dir",
        str(d / "in"),
    ]


def output_is_the_inputs_weight_file(d: pathlib.Path) -> list[str]:
    return ["optimize", _external(d / "in", "w.onnx"), "-o", str(d / "in" / "w.onnx")]


def output_weights_would_replace_input_weights(d: pathlib.Path) -> list[str]:
    return ["optimize", _external(d / "in", "out.onnx.data"), "-o", str(d / "in" / "out.onnx")]


def output_is_a_symlink_to_the_input(d: pathlib.Path) -> list[str]:
    model = _good(d / "in")
    (d / "link.onnx").symlink_to(model)
    return ["optimize", model, "-o", str(d / "link.onnx")]


def report_and_model_are_one_file(d: pathlib.Path) -> list[str]:
    return ["optimize", _good(d / "in"), "-o", str(d / "o.onnx"), "--report", str(d / "o.onnx")]


def dump_dir_is_the_output_folder(d: pathlib.Path) -> list[str]:
    return ["optimize", _good(d / "in"), "-o", str(d / "o"), "--dump-dir", str(d / "o")]


# ------------------------------------------------------------------------- external data
def external_data_outside_the_folder(d: pathlib.Path) -> list[str]:
    (d / "secret.bin").write_bytes(b"s" * 631)
    return ["optimize", _external(d / "in", "../secret.bin"), "-o", str(d / "o")]


def external_data_absolute(d: pathlib.Path) -> list[str]:
    (d / "secret.bin").write_bytes(b"s" * 631)
    return ["optimize", _external(d / "in", str(d / "secret.bin")), "-o", str(d / "o")]


def external_data_symlink_leading_out(d: pathlib.Path) -> list[str]:
    (d / "secret.bin").write_bytes(b"s" * 631)
    (d / "in").mkdir()
    (d / "in" / "w.bin").symlink_to(d / "secret.bin")
    return ["optimize", _external(d / "in", "w.bin"), "-o", str(d / "o")]


def external_data_missing(d: pathlib.Path) -> list[str]:
    model = _external(d / "in", "w.bin")
    (d / "in" / "w.bin").unlink()
    return ["optimize", model, "-o", str(d / "o")]


def external_data_truncated(d: pathlib.Path) -> list[str]:
    model = _external(d / "in", "w.bin")
    (d / "in" / "w.bin").write_bytes(b"\0" * 10)
    return ["optimize", model, "-o", str(d / "o")]


def diff_with_foreign_external_data(d: pathlib.Path) -> list[str]:
    (d / "secret.bin").write_bytes(b"s" * 631)
    return ["diff", _good(d / "a"), _external(d / "in", "../secret.bin")]


# ---------------------------------------------------------------------- malformed graphs
def cycle(d: pathlib.Path) -> list[str]:
    nodes = [
        oh.make_node("Add", ["x", "b"], ["a"], name="add"),
        oh.make_node("Relu", ["a"], ["b"], name="relu"),
        oh.make_node("Identity", ["a"], ["y"]),
    ]
    return ["optimize", _save(_model(nodes), d / "in.onnx"), "-o", str(d / "o")]


def self_loop(d: pathlib.Path) -> list[str]:
    nodes = [oh.make_node("Add", ["x", "a"], ["a"]), oh.make_node("Identity", ["a"], ["y"])]
    return ["optimize", _save(_model(nodes), d / "in.onnx"), "-o", str(d / "o")]


def dangling_input(d: pathlib.Path) -> list[str]:
    nodes = [oh.make_node("Add", ["x", "ghost"], ["y"])]
    return ["optimize", _save(_model(nodes), d / "in.onnx"), "-o", str(d / "o")]


def duplicate_producers(d: pathlib.Path) -> list[str]:
    nodes = [oh.make_node("Relu", ["x"], ["y"]), oh.make_node("Neg", ["x"], ["y"])]
    return ["optimize", _save(_model(nodes), d / "in.onnx"), "-o", str(d / "o")]


def dangling_input_in_a_subgraph(d: pathlib.Path) -> list[str]:
    branch = oh.make_graph(
        [oh.make_node("Add", ["x", "ghost"], ["z"])],
        "then",
        [],
        [oh.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4])],
    )
    c = onnx.numpy_helper.from_array(np.array(True), "c")
    nodes = [oh.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)]
    return ["optimize", _save(_model(nodes, initializers=[c]), d / "in.onnx"), "-o", str(d / "o")]


def input_dim_2_pow_40(d: pathlib.Path) -> list[str]:
    big = [oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2**40])]
    out = [oh.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2**40])]
    model = _model([oh.make_node("Relu", ["x"], ["y"])], big, out)
    return ["optimize", _save(model, d / "in.onnx"), "-o", str(d / "o")]


def input_of_64_gib(d: pathlib.Path) -> list[str]:
    big = [oh.make_tensor_value_info("x", TensorProto.FLOAT, [4096, 4096, 1024])]
    out = [oh.make_tensor_value_info("y", TensorProto.FLOAT, [4096, 4096, 1024])]
    model = _model([oh.make_node("Relu", ["x"], ["y"])], big, out)
    return ["optimize", _save(model, d / "in.onnx"), "-o", str(d / "o")]


def weight_shape_larger_than_its_bytes(d: pathlib.Path) -> list[str]:
    w = onnx.numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    w.dims[:] = [4, 4096]
    model = _model([oh.make_node("MatMul", ["x", "w"], ["y"])], initializers=[w])
    return ["optimize", _save(model, d / "in.onnx"), "-o", str(d / "o")]


def diff_of_a_cyclic_graph(d: pathlib.Path) -> list[str]:
    nodes = [
        oh.make_node("Add", ["x", "b"], ["a"]),
        oh.make_node("Relu", ["a"], ["b"]),
        oh.make_node("Identity", ["a"], ["y"]),
    ]
    return ["diff", _save(_model(nodes), d / "in.onnx"), _good(d / "b")]


# ------------------------------------------------------------------- outputs that cannot be
def output_onnx_is_an_existing_directory(d: pathlib.Path) -> list[str]:
    (d / "X.onnx").mkdir()
    return ["optimize", _good(d / "in"), "-o", str(d / "X.onnx")]


def report_html_is_a_directory(d: pathlib.Path) -> list[str]:
    (d / "od" / "report.html").mkdir(parents=True)
    return ["optimize", _good(d / "in"), "-o", str(d / "od")]


def report_in_an_unwritable_place(d: pathlib.Path) -> list[str]:
    return ["optimize", _good(d / "in"), "-o", str(d / "o"), "--report", "/proc/irpass/r.json"]


def report_below_a_file(d: pathlib.Path) -> list[str]:
    (d / "afile").write_text("x")
    return [
        "optimize",
        _good(d / "in"),
        "-o",
        str(d / "o"),
        "--report",
        str(d / "afile" / "r.json"),
    ]


def empty_output(d: pathlib.Path) -> list[str]:
    return ["optimize", _good(d / "in"), "-o", ""]


def diff_json_is_model_b(d: pathlib.Path) -> list[str]:
    b = _good(d / "b")
    return ["diff", _good(d / "a"), b, "--json", b]


def diff_html_and_json_are_one_file(d: pathlib.Path) -> list[str]:
    return ["diff", _good(d / "a"), _good(d / "b"), "--json", str(d / "r"), "--html", str(d / "r")]


# --------------------------------------------------------------------------- pipeline text
def empty_pipeline(d: pathlib.Path) -> list[str]:
    return ["optimize", _good(d / "in"), "-o", str(d / "o"), "--passes", ""]


def bad_escape_in_pipeline(d: pathlib.Path) -> list[str]:
    return ["optimize", _good(d / "in"), "-o", str(d / "o"), "--passes", 'fold_constants(x="\\q")']


def fixpoint_nested_2000_deep(d: pathlib.Path) -> list[str]:
    return ["optimize", _good(d / "in"), "-o", str(d / "o"), "--passes", "fixpoint(" * 2000]


def unterminated_quote(d: pathlib.Path) -> list[str]:
    return ["optimize", _good(d / "in"), "-o", str(d / "o"), "--passes", 'fold_constants(x="a']


def bad_pass_option_type(d: pathlib.Path) -> list[str]:
    return [
        "optimize",
        _good(d / "in"),
        "-o",
        str(d / "o"),
        "--passes",
        "fold_constants(max_output_bytes=big)",
    ]


# ------------------------------------------------------------------------- data and code
def eval_data_os_system(d: pathlib.Path) -> list[str]:
    return ["optimize", _good(d / "in"), "-o", str(d / "o"), "--eval-data", "os:system"]


def eval_data_colon_path_next_to_a_data_py(d: pathlib.Path) -> list[str]:
    sentinel = d / "imported"
    (d / "work" / "data.py").write_text(f"open({str(sentinel)!r}, 'w').write('ran')\n")
    return ["optimize", _good(d / "in"), "-o", str(d / "o"), "--eval-data", "data:feeds"]


def eval_data_of_the_wrong_shape(d: pathlib.Path) -> list[str]:
    np.save(d / "x.npy", np.zeros((2, 7), np.float32))
    return ["optimize", _good(d / "in"), "-o", str(d / "o"), "--eval-data", str(d / "x.npy")]


def eval_data_overflowing_float32(d: pathlib.Path) -> list[str]:
    np.savez(d / "x.npz", x=np.full((2, 4, 4), 1e300))
    return ["optimize", _good(d / "in"), "-o", str(d / "o"), "--eval-data", str(d / "x.npz")]


def labels_without_eval_data(d: pathlib.Path) -> list[str]:
    return ["optimize", _good(d / "in"), "-o", str(d / "o"), "--labels", "data"]


def diff_zero_samples(d: pathlib.Path) -> list[str]:
    return ["diff", _good(d / "a"), _good(d / "b"), "--samples", "0"]


# ---------------------------------------------------------------- argparse and the runtime
def unknown_verify_choice(d: pathlib.Path) -> list[str]:
    return ["optimize", _good(d / "in"), "-o", str(d / "o"), "--verify", "sometimes"]


def missing_output_argument(d: pathlib.Path) -> list[str]:
    return ["optimize", _good(d / "in")]


def model_onnx_runtime_cannot_load(d: pathlib.Path) -> list[str]:
    # Valid to the ONNX checker's graph rules, but ORT rejects the attribute value.
    nodes = [oh.make_node("Softmax", ["x"], ["y"], axis=7)]
    return ["optimize", _save(_model(nodes), d / "in.onnx"), "-o", str(d / "o")]


CASES: list[Case] = [
    report_is_the_input,
    dump_dir_is_the_input_folder,
    output_is_the_inputs_weight_file,
    output_weights_would_replace_input_weights,
    output_is_a_symlink_to_the_input,
    report_and_model_are_one_file,
    dump_dir_is_the_output_folder,
    external_data_outside_the_folder,
    external_data_absolute,
    external_data_symlink_leading_out,
    external_data_missing,
    external_data_truncated,
    diff_with_foreign_external_data,
    cycle,
    self_loop,
    dangling_input,
    duplicate_producers,
    dangling_input_in_a_subgraph,
    input_dim_2_pow_40,
    input_of_64_gib,
    weight_shape_larger_than_its_bytes,
    diff_of_a_cyclic_graph,
    output_onnx_is_an_existing_directory,
    report_html_is_a_directory,
    report_in_an_unwritable_place,
    report_below_a_file,
    empty_output,
    diff_json_is_model_b,
    diff_html_and_json_are_one_file,
    empty_pipeline,
    bad_escape_in_pipeline,
    fixpoint_nested_2000_deep,
    unterminated_quote,
    bad_pass_option_type,
    eval_data_os_system,
    eval_data_colon_path_next_to_a_data_py,
    eval_data_of_the_wrong_shape,
    eval_data_overflowing_float32,
    labels_without_eval_data,
    diff_zero_samples,
    unknown_verify_choice,
    missing_output_argument,
    model_onnx_runtime_cannot_load,
]


def _snapshot(root: pathlib.Path) -> dict[str, str]:
    files = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            files[key] = "link:" + os.readlink(path)
        elif path.is_dir():
            files[key] = "dir"
        else:
            files[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_bad_input_is_one_clear_error_and_nothing_written(
    case: Case,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "work").mkdir()
    argv = case(tmp_path)
    monkeypatch.chdir(tmp_path / "work")  # never the model's folder
    before = _snapshot(tmp_path)
    code = main(argv)
    out, err = capfd.readouterr()
    assert code == 2, (out, err)
    lines = err.splitlines()
    assert [ln for ln in lines if ln.startswith("error:")] != [], err
    assert len([ln for ln in lines if ln.startswith("error:")]) == 1, err
    assert len([ln for ln in lines if ln.startswith("hint:")]) == 1, err
    assert len(lines) == 2, err  # nothing else: no runtime log, no warning, no traceback
    assert "Traceback" not in err + out
    assert _snapshot(tmp_path) == before  # nothing written, every input unchanged
    assert "631" not in err  # nothing about a foreign file leaks into the message
