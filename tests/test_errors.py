"""Every error a user can see carries a hint: checked on the source of every raise."""

from __future__ import annotations

import ast
import pathlib

import irpass.errors as errors

ROOT = pathlib.Path(__file__).resolve().parents[1]
USER_ERRORS = {
    name
    for name in dir(errors)
    if isinstance(getattr(errors, name), type)
    and issubclass(getattr(errors, name), errors.IrpassError)
}


def _raises_without_hint() -> list[str]:
    missing = []
    for folder in ("irpass", "passes", "backends"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                    continue
                func = node.exc.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if name not in USER_ERRORS:
                    continue
                has_hint = any(k.arg == "hint" for k in node.exc.keywords) or len(node.exc.args) > 1
                if not has_hint:
                    missing.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    return missing


def test_every_user_error_is_raised_with_a_hint() -> None:
    assert _raises_without_hint() == []
