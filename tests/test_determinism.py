from __future__ import annotations

import json
import pathlib

from conftest import light_model_path

from irpass.cli import main


def test_same_input_and_options_give_byte_identical_output(tmp_path: pathlib.Path) -> None:
    outputs = []
    for run in ("a", "b"):
        out = tmp_path / run
        assert main(["optimize", str(light_model_path("squeezenet")), "-o", str(out)]) == 0
        outputs.append(out)
    assert (outputs[0] / "model.onnx").read_bytes() == (outputs[1] / "model.onnx").read_bytes()
    reports = [json.loads((o / "report.json").read_text()) for o in outputs]
    assert [p["step"] for p in reports[0]["passes"]] == [p["step"] for p in reports[1]["passes"]]
    assert reports[0]["after"] == reports[1]["after"]
