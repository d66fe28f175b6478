"""``irpass inspect --groups``: every channel group with its channels, nodes and frozen reasons."""

from __future__ import annotations

import json

import pytest

from irpass.cli import main
from models import zoo_paths


def test_groups_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(zoo_paths()["resnet_cnn"]), "--groups", "--json"]) == 0
    groups = json.loads(capsys.readouterr().out)["channel_groups"]
    assert sum(g["prunable"] for g in groups) == 9
    frozen = [g for g in groups if not g["prunable"]]
    reasons = " ".join(r for g in frozen for r in g["frozen"])
    assert "graph input 'input'" in reasons and "graph output 'logits'" in reasons
    assert all(g["nodes"] and g["tensors"] for g in groups)


def test_groups_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(zoo_paths()["transformer"]), "--groups"]) == 0
    out = capsys.readouterr().out
    assert "channel groups: 3 of 6 prunable" in out
    assert "ambiguous" in out  # the attention splits are frozen without --attention


def test_attention_heads_become_groups(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(zoo_paths()["transformer"])
    assert main(["inspect", path, "--groups", "--attention", "--json"]) == 0
    groups = json.loads(capsys.readouterr().out)["channel_groups"]
    assert sum(g["prunable"] for g in groups) == 5


def test_inspect_without_groups_leaves_them_out(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(zoo_paths()["mlp"]), "--json"]) == 0
    assert "channel_groups" not in json.loads(capsys.readouterr().out)
