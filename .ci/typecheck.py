"""Type-check irpass as it is installed: ``irpass``, ``irpass.passes`` and ``irpass.backends``.

setuptools maps ``passes/`` and ``backends/`` into the ``irpass`` namespace (``package-dir``
in pyproject.toml). mypy cannot follow that mapping: run on the source tree it finds no
``irpass/passes``, and with ``ignore_missing_imports`` everything imported from there silently
becomes ``Any``. So this script lays the sources out as they are installed, a tree of symlinks
under ``build/typecheck/`` built from pyproject's ``package-dir``, runs ``mypy -p irpass`` there
with the project's configuration, and prints the findings with their paths in the source tree
(``passes/fusion/_rules.py:12: error: ...``).

Usage: ``python .ci/typecheck.py [extra mypy arguments]``; exit status is mypy's.
"""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import sys

import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def package_dirs(root: pathlib.Path) -> dict[str, str]:
    """``{package: source folder}`` from pyproject's ``[tool.setuptools] package-dir``."""
    config = tomllib.loads((root / "pyproject.toml").read_text())
    return dict(config["tool"]["setuptools"]["package-dir"])


def build_view(root: pathlib.Path, mapping: dict[str, str], view: pathlib.Path) -> None:
    """Recreate ``view`` so that ``view/<a>/<b>`` is package ``a.b`` as installed.

    A package's folder gets one symlink per entry of its source folder; a mapped subpackage
    (``irpass.passes`` -> ``passes``) is a symlink to its source folder placed inside its
    parent. Longer package names are placed after their parents.
    """
    if view.exists():
        shutil.rmtree(view)
    for package in sorted(mapping, key=lambda p: p.count(".")):
        source = root / mapping[package]
        target = view.joinpath(*package.split("."))
        if "." in package:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)  # a same-named entry of the parent's source folder
            target.symlink_to(source, target_is_directory=True)
            continue
        target.mkdir(parents=True)
        for entry in sorted(source.iterdir()):
            if entry.name != "__pycache__":
                (target / entry.name).symlink_to(entry, entry.is_dir())


def source_paths(text: str, mapping: dict[str, str]) -> str:
    """Rewrite view paths in mypy's output (``irpass/passes/x.py``) to source paths."""
    for package in sorted(mapping, key=lambda p: -p.count(".")):
        view_prefix = package.replace(".", "/") + "/"
        source_prefix = mapping[package].rstrip("/") + "/"
        if view_prefix != source_prefix:
            text = re.sub(rf"(?m)^{re.escape(view_prefix)}", source_prefix, text)
    return text


def main(argv: list[str] | None = None, root: pathlib.Path = ROOT) -> int:
    """Build the view, run mypy on the top-level package, print its report; mypy's status."""
    mapping = package_dirs(root)
    top = min(mapping, key=lambda p: p.count("."))
    view = root / "build" / "typecheck"
    build_view(root, mapping, view)
    command = [
        sys.executable, "-m", "mypy",
        "--config-file", str(root / "pyproject.toml"),
        "--cache-dir", str(root / ".mypy_cache"),
        "-p", top,
        *(argv if argv is not None else sys.argv[1:]),
    ]
    # mypy also searches its working directory: run it in the view, where only the view's
    # ``top`` exists (in the source tree ``top`` lacks the mapped subpackages)
    result = subprocess.run(command, cwd=view, capture_output=True, text=True, check=False)
    sys.stdout.write(source_paths(result.stdout, mapping))
    sys.stderr.write(result.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
