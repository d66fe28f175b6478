from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
import zipfile

import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _declared_packages() -> set[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(data["tool"]["setuptools"]["packages"])


def _packages_on_disk() -> set[str]:
    found = set()
    for top, name in (
        ("irpass", "irpass"),
        ("passes", "irpass.passes"),
        ("backends", "irpass.backends"),
    ):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top)
            found.add(".".join([name, *rel.parts]) if rel.parts else name)
    return found


def test_every_package_directory_is_declared() -> None:
    assert _packages_on_disk() == _declared_packages()


def test_passes_and_backends_import_under_the_irpass_namespace() -> None:
    import irpass.backends
    import irpass.passes

    assert pathlib.Path(irpass.passes.__file__).parent == ROOT / "passes"
    assert pathlib.Path(irpass.backends.__file__).parent == ROOT / "backends"


def test_wheel_maps_passes_and_backends_into_irpass(tmp_path: pathlib.Path) -> None:
    # build from a copy: setuptools writes build/ and *.egg-info next to the sources
    source = tmp_path / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv*", "build", "*.egg-info", "__pycache__", "models", "tests", ".*cache"
        ),
    )
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)],
        check=True,
    )
    wheel = next(wheels.glob("irpass-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "irpass/passes/__init__.py" in names
    assert "irpass/backends/__init__.py" in names
    assert not any(n.startswith(("passes/", "backends/", "tests/")) for n in names)
    for package in _declared_packages():
        assert package.replace(".", "/") + "/__init__.py" in names
