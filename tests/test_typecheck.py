""".ci/typecheck.py checks mapped packages for real: a type error there is reported, not Any."""

from __future__ import annotations

import importlib.util
import pathlib
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("typecheck", ROOT / ".ci" / "typecheck.py")
assert _spec is not None and _spec.loader is not None
typecheck = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(typecheck)


def _project(root: pathlib.Path) -> pathlib.Path:
    """A package ``top`` whose subpackage ``top.plugins`` lives in ``plugins/`` (as irpass)."""
    files = {
        "pyproject.toml": """
            [tool.setuptools]
            package-dir = { "top" = "top", "top.plugins" = "plugins" }

            [tool.mypy]
            ignore_missing_imports = true
        """,
        "top/__init__.py": "",
        "top/core.py": """
            from top.plugins.rules import count

            total: str = count()  # wrong only if count's type is known: it returns int
        """,
        "plugins/__init__.py": "",
        "plugins/rules.py": """
            def count() -> int:
                return 1
        """,
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_the_view_lays_out_packages_as_installed(tmp_path: pathlib.Path) -> None:
    root = _project(tmp_path)
    view = tmp_path / "view"
    typecheck.build_view(root, typecheck.package_dirs(root), view)
    assert (view / "top" / "core.py").resolve() == root / "top" / "core.py"
    assert (view / "top" / "plugins" / "rules.py").resolve() == root / "plugins" / "rules.py"
    text = "top/plugins/rules.py:2: error: x\ntop/core.py:1: error: y\n"
    assert typecheck.source_paths(text, typecheck.package_dirs(root)) == (
        "plugins/rules.py:2: error: x\ntop/core.py:1: error: y\n"
    )


def test_a_type_error_through_a_mapped_package_is_caught(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _project(tmp_path)
    # on the source tree, as plain mypy sees it, top.plugins is missing and count() is Any
    plain = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache0"), "-p", "top"],
        cwd=root, capture_output=True, text=True, check=False,
    )
    assert plain.returncode == 0, plain.stdout
    status = typecheck.main([], root=root)
    out = capsys.readouterr().out
    assert status == 1
    assert "top/core.py:4: error: Incompatible types in assignment" in out
    assert '(expression has type "int", variable has type "str")' in out
