"""The README's pruning commands run as written: inspect the groups, prune 30 % and repair the
bundled digits ResNet, losing at most one point of accuracy on its test split."""

from __future__ import annotations

import json
import pathlib
import re
import shlex

import pytest

from irpass.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _commands() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Structured pruning", 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"```bash\n(.*?)```", section, flags=re.S)[0]
    return [shlex.split(line.split("#", 1)[0]) for line in block.strip().splitlines()]


def test_readme_pruning_commands(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    inspect, optimize = _commands()
    monkeypatch.chdir(ROOT)
    assert inspect[:2] == ["irpass", "inspect"] and "--groups" in inspect
    assert main(inspect[1:]) == 0
    assert "channel groups:" in capsys.readouterr().out
    assert optimize[:2] == ["irpass", "optimize"]
    optimize[optimize.index("-o") + 1] = str(tmp_path / "out")
    assert main(optimize[1:]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    (prune,) = [p for p in report["passes"] if p["name"] == "prune"]
    assert prune["modified"] and prune["stats"]["layers_refit"] > 0
    assert prune["details"]["repair"] and prune["details"]["groups"]
    removed = prune["stats"]["channels_removed"] / prune["stats"]["channels_prunable"]
    assert abs(removed - 0.3) < 0.02
    assert report["after"]["params"] < 0.6 * report["before"]["params"]
    drop = report["metrics_before"]["accuracy"] - report["metrics_after"]["accuracy"]
    assert drop <= 0.01
