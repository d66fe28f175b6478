from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import onnx
import pytest

from irpass.errors import OutputError
from irpass.outputs import STAGING_PREFIX, OutputPlan, remove_stale_staging

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 4] x) => (float[1, 4] y) { y = Relu(x) }
"""


def test_plan_stages_and_commits_everything_at_once(tmp_path: pathlib.Path) -> None:
    plan = OutputPlan([(tmp_path / "in.onnx", "the input")])
    model = plan.add_file(tmp_path / "new" / "deep" / "m.onnx", "the model")
    report = plan.add_file(tmp_path / "r.json", "--report")
    with plan:
        plan.staged(model).write_text("m")
        plan.staged(report).write_text("r")
        assert not model.exists() and not report.exists()
        plan.commit()
    assert model.read_text() == "m" and report.read_text() == "r"
    assert not list(tmp_path.rglob(f"{STAGING_PREFIX}*"))


def test_plan_leaves_nothing_on_error(tmp_path: pathlib.Path) -> None:
    plan = OutputPlan()
    model = plan.add_file(tmp_path / "out" / "m.onnx", "the model")
    with pytest.raises(RuntimeError), plan:
        plan.staged(model).write_text("partial")
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_commit_only_part(tmp_path: pathlib.Path) -> None:
    plan = OutputPlan()
    dumps = plan.add_folder(tmp_path / "dumps", "--dump-dir")
    model = plan.add_file(tmp_path / "m.onnx", "the model")
    with plan:
        plan.staged(dumps / "000.onnx").write_text("d")
        plan.staged(model).write_text("m")
        plan.commit(only=[dumps])
    assert (dumps / "000.onnx").exists() and not model.exists()


@pytest.mark.parametrize(
    ("declare", "fragment"),
    [
        (lambda p, d: p.add_file(d / "in.onnx", "-o"), "is the input"),
        (lambda p, d: p.add_folder(d, "--dump-dir"), "holds the input"),
        (lambda p, d: (p.add_file(d / "a", "x"), p.add_file(d / "a", "y")), "overlap"),
        (lambda p, d: (p.add_folder(d / "f", "x"), p.add_file(d / "f" / "a", "y")), "overlap"),
        (lambda p, d: (p.add_file(d / "f", "x"), p.add_file(d / "f" / "a", "y")), "overlap"),
        (lambda p, d: p.add_file(d / "hard.onnx", "x"), "is the input"),
        (lambda p, d: p.add_file("", "-o"), "empty path"),
    ],
    ids=["same", "folder-holds", "twice", "in-folder", "file-as-folder", "hardlink", "empty"],
)
def test_plan_refuses_clashes(tmp_path: pathlib.Path, declare, fragment: str) -> None:
    (tmp_path / "in.onnx").write_text("model")
    os.link(tmp_path / "in.onnx", tmp_path / "hard.onnx")
    plan = OutputPlan([(tmp_path / "in.onnx", "the input")])
    with pytest.raises(OutputError, match=fragment) as info:
        declare(plan, tmp_path)
        plan.check()
    assert info.value.hint


def test_stale_staging_of_dead_runs_is_removed(tmp_path: pathlib.Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = tmp_path / f"{STAGING_PREFIX}{dead.stdout.strip()}-abc"
    stale.mkdir()
    (stale / "model.onnx").write_bytes(b"\0" * 1000)
    alive = tmp_path / f"{STAGING_PREFIX}{os.getpid()}-xyz"
    alive.mkdir()
    assert remove_stale_staging(tmp_path) == [stale]
    assert alive.exists() and not stale.exists()


def _start_sleeping_run(tmp_path: pathlib.Path) -> tuple[subprocess.Popen[bytes], pathlib.Path]:
    model = tmp_path / "in.onnx"
    onnx.save(onnx.parser.parse_model(MODEL), model)
    marker = tmp_path / "marker"
    code = (
        "import sys; sys.path[:0] = ['tests', '.']; import plugin_passes_for_tests; "
        "from irpass.cli import main; "
        f"sys.exit(main(['optimize', {str(model)!r}, '-o', {str(tmp_path / 'out')!r}, "
        f"'--passes', 't_sleep', '--report', {str(tmp_path / 'r.json')!r}]))"
    )
    env = dict(os.environ, IRPASS_TEST_MARKER=str(marker))
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never reached its pass"
        time.sleep(0.05)
    return proc, model


def test_sigterm_during_a_run_leaves_nothing(tmp_path: pathlib.Path) -> None:
    proc, model = _start_sleeping_run(tmp_path)
    assert list(tmp_path.glob(f"{STAGING_PREFIX}*"))  # staging exists while it runs
    before = model.read_bytes()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.onnx", "marker"]
    assert model.read_bytes() == before


def test_sigkill_leftovers_are_removed_by_the_next_run(tmp_path: pathlib.Path) -> None:
    from irpass.cli import main

    proc, model = _start_sleeping_run(tmp_path)
    proc.kill()
    proc.communicate(timeout=60)
    assert list(tmp_path.glob(f"{STAGING_PREFIX}*"))
    assert (
        main(
            [
                "optimize",
                str(model),
                "-o",
                str(tmp_path / "out2.onnx"),
                "--passes",
                "eliminate_dead",
            ]
        )
        == 0
    )
    assert not list(tmp_path.glob(f"{STAGING_PREFIX}*"))
    assert (tmp_path / "out2.onnx").exists() and not (tmp_path / "out").exists()


def test_a_folder_written_in_place_does_not_move_the_staging_of_its_neighbours(
    tmp_path: pathlib.Path,
) -> None:
    out = tmp_path / "new" / "out"  # does not exist yet: files stage in tmp_path
    plan = OutputPlan()
    model = plan.add_file(out / "model.onnx", "the model")
    reproducer = plan.add_folder(out / "reproducer", "the reproducer", staged=False)
    with plan:
        reproducer.mkdir(parents=True)  # e.g. a rolled-back pass saved its reproducer
        (reproducer / "input.onnx").write_text("x")
        plan.staged(model).write_text("model")
        plan.commit()
    assert model.read_text() == "model" and (reproducer / "input.onnx").is_file()
