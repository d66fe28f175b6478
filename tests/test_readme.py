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
