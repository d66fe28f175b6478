"""The README's quick-start commands stay true: the main job runs on the bundled model."""

from __future__ import annotations

import json
import pathlib
import re
import shlex

from irpass.cli import main

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, flags=re.S)


def test_first_command_installs_and_optimizes_a_bundled_model(
    tmp_path: pathlib.Path, monkeypatch
) -> None:
    first = _bash_blocks()[0].strip()
    install, _, job = first.partition(" && ")
    assert install.startswith("pip install -e .")
    argv = shlex.split(job)
    assert argv[:2] == ["irpass", "optimize"]
    model = ROOT / argv[2]
    assert model.is_file() and "models" in model.relative_to(ROOT).parts[:1]
    monkeypatch.chdir(ROOT)
    out = tmp_path / "out"
    argv[argv.index("-o") + 1] = str(out)
    assert main(argv[1:]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["metrics_after"]["accuracy"] >= 0.95
    assert (out / "report.html").exists()


def test_second_command_is_what_ci_runs() -> None:
    second = _bash_blocks()[1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert second in ci


def _embedding_blocks() -> list[str]:
    section = README.split("## Embedding irpass in your compiler", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_embedding_examples_run_as_written(tmp_path: pathlib.Path, monkeypatch) -> None:
    import onnx
    import onnx_ir as ir

    from irpass.testing import inputs_to_random_initializers, model_from_text

    model = model_from_text("""
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1, 3, 8, 8] x, float[4, 3, 3, 3] w, float[4] s, float[4] b, float[4] m)
      => (float[1, 4, 6, 6] y) {
        v = Constant<value = float[4] {1.0, 2.0, 0.5, 1.5}>()
        c = Conv(x, w)
        y = BatchNormalization(c, s, b, m, v)
    }""")
    model = inputs_to_random_initializers(model, ["w", "s", "b", "m"])
    ir.save(model, tmp_path / "model.onnx")
    monkeypatch.chdir(tmp_path)
    pipeline_block, rules_block = _embedding_blocks()

    scope: dict[str, object] = {}
    exec(pipeline_block, scope)  # the README's own example
    assert [n.op_type for n in scope["model"].graph] == ["Conv"]  # type: ignore[attr-defined]
    assert scope["pipeline"].stats()["fold_batchnorm"] == {"into_producer": 1}  # type: ignore[attr-defined]

    scope = {}
    exec(rules_block, scope)
    proto = scope["proto"]
    assert isinstance(proto, onnx.ModelProto)
    assert [n.op_type for n in proto.graph.node] == ["Conv"]
