from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from irpass.cli import main
from models import trained_eval_data, trained_paths

MLP = trained_paths()["digits_mlp"]
MLP_DATA = trained_eval_data()["digits_mlp"]


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(["eval", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_eval_with_labels_and_reference_as_json(capsys) -> None:
    result = run_json(
        capsys, str(MLP), "--data", str(MLP_DATA), "--labels", "data", "--reference", str(MLP)
    )
    metrics = result["metrics"]
    assert metrics["top1_agreement"] == 1.0
    assert metrics["max_abs_error"] == 0.0
    assert result["reference_metrics"]["accuracy"] == metrics["accuracy"]
    assert result["indicative"] is False


def test_eval_table(capsys) -> None:
    assert main(["eval", str(MLP), "--data", str(MLP_DATA), "--labels", str(MLP_DATA)]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "macro_f1" in out and "%" in out


def test_eval_random_data_is_flagged(capsys) -> None:
    result = run_json(capsys, str(MLP), "--data", "random:2", "--reference", str(MLP))
    assert result["indicative"] is True
    assert main(["eval", str(MLP), "--data", "random:2", "--reference", str(MLP)]) == 0
    assert "only indicative" in capsys.readouterr().out


def test_eval_user_metric(capsys, tmp_path: pathlib.Path, monkeypatch) -> None:
    (tmp_path / "metric_for_cli_eval.py").write_text(
        "def mean_logit(outputs, labels):\n    return float(outputs['logits'].mean())\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    result = run_json(
        capsys, str(MLP), "--data", str(MLP_DATA), "--metric", "metric_for_cli_eval:mean_logit"
    )
    assert set(result["metrics"]) == {"mean_logit"}


def test_labels_of_wrong_length_fail_cleanly(capsys, tmp_path: pathlib.Path) -> None:
    np.save(tmp_path / "labels.npy", np.zeros(7, np.int64))
    labels = str(tmp_path / "labels.npy")
    code = main(["eval", str(MLP), "--data", str(MLP_DATA), "--labels", labels])
    assert code == 2
    err = capsys.readouterr().err
    assert "7 labels for 450 samples" in err
    assert "Traceback" not in err


def test_data_not_matching_the_model_names_the_input(capsys) -> None:
    digits16 = trained_eval_data()["digits_resnet"]
    assert main(["eval", str(MLP), "--data", str(digits16), "--labels", "data"]) == 2
    err = capsys.readouterr().err
    assert "input 'input' expects rank 2 (float32 [batch, 64])" in err


def test_nothing_to_measure(capsys) -> None:
    assert main(["eval", str(MLP), "--data", str(MLP_DATA)]) == 2
    assert "nothing to measure" in capsys.readouterr().err


def test_empty_data(capsys, tmp_path: pathlib.Path) -> None:
    np.savez(tmp_path / "empty.npz", input=np.zeros((0, 64), np.float32))
    code = main(["eval", str(MLP), "--data", str(tmp_path / "empty.npz"), "--reference", str(MLP)])
    assert code == 2
    assert "empty" in capsys.readouterr().err


def test_optimize_reports_the_fidelity_cost_of_a_lossy_pass(capsys, tmp_path, test_passes) -> None:
    out = tmp_path / "out"
    code = main(
        ["optimize", str(MLP), "-o", str(out), "--passes", "t_eval_damage",
         "--eval-data", str(MLP_DATA), "--labels", str(MLP_DATA)]
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    (damage,) = [p for p in report["passes"] if p["name"] == "t_eval_damage"]
    assert damage["metrics"]["sqnr_db"] < 20.0
    assert damage["metrics"]["top1_agreement"] < 1.0
    assert "accuracy" in damage["metrics"]
    assert "t_eval_damage" in capsys.readouterr().out


def test_eval_on_a_folder_of_images(capsys, tmp_path) -> None:
    """The digits test split as PGM files, read back with a preprocessing spec."""
    split = np.load(trained_eval_data()["digits_resnet"])
    pixels = np.round((split["input"][:120, 0] * 0.4 + 0.3) * 255).astype(np.uint8)
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(pixels):
        (folder / f"{i:03d}.pgm").write_bytes(b"P5 16 16 255\n" + image.tobytes())
    (tmp_path / "labels.txt").write_text("\n".join(str(v) for v in split["labels"][:120]))
    result = run_json(
        capsys, str(trained_paths()["digits_resnet"]), "--data",
        f"{folder}?mean=0.3&std=0.4&scale=255", "--labels", str(tmp_path / "labels.txt"),
    )
    # The same samples straight from the arrays give the same accuracy.
    from irpass.data import ArraySource
    from irpass.evaluate import evaluate
    from irpass.ir import load_model

    direct = evaluate(
        load_model(trained_paths()["digits_resnet"]),
        ArraySource({"input": split["input"][:120]}),
        labels=split["labels"][:120],
    )
    assert result["metrics"]["accuracy"] == pytest.approx(direct["accuracy"])
    assert result["metrics"]["accuracy"] > 0.9
