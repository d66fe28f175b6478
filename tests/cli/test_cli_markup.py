"""Names that look like rich markup are printed verbatim and never crash the terminal output."""

from __future__ import annotations

import pathlib

import onnx
import onnx.helper as oh
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto
from rich.console import Console

from irpass.cli import main
from irpass.cli._markup import esc


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs"))))
def test_esc_round_trips_any_text(text: str) -> None:
    console = Console(width=10_000, record=True, file=open("/dev/null", "w"))
    console.print(esc(text), end="", soft_wrap=True, markup=True, highlight=False)
    assert console.export_text(styles=False) == text


def _hostile_model(path: pathlib.Path) -> None:
    nodes = [
        oh.make_node("Relu", ["x"], ["[bold]a[/]"], name="relu[/]"),
        oh.make_node("Neg", ["[bold]a[/]"], ["y"], name="[red]neg"),
    ]
    graph = oh.make_graph(
        nodes,
        "g",
        [oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    onnx.save(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)]), path)


def test_markup_in_names_and_paths(tmp_path: pathlib.Path, capsys) -> None:
    model = tmp_path / "m[red].onnx"
    _hostile_model(model)
    out = tmp_path / "o[/]" / "x[bold]"
    assert main(["optimize", str(model), "-o", str(out), "--passes", "eliminate_dead"]) == 0
    assert f"wrote {out}/model.onnx" in capsys.readouterr().out
    assert main(["inspect", str(model)]) == 0
    printed = capsys.readouterr().out
    assert "m[red].onnx" in printed.replace("\n", "").replace(" ", "")
    other = tmp_path / "n.onnx"
    _hostile_model(other)
    proto = onnx.load(other)
    proto.graph.node[1].op_type = "Abs"
    onnx.save(proto, other)
    assert main(["diff", str(model), str(other), "--numeric"]) == 0
    printed = capsys.readouterr().out
    assert "[red]neg" in printed
