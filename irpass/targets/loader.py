"""Load and validate target profiles: one JSON file per target under ``irpass/targets/profiles``.

A profile file is checked completely when loaded: unknown or missing keys, wrong types, a
precision the target does not list, a backend or operator-list provider that does not exist,
pipeline text that does not parse. Every problem is a :class:`~irpass.errors.TargetError` that
names the file and the key. ``load_target`` also accepts the path of a user's own profile file,
so a new board is a data file, not code.
"""

from __future__ import annotations

import functools
import json
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

from irpass.errors import PipelineError, TargetError
from irpass.pipeline import parse_pipeline
from irpass.targets.profile import (
    PRECISIONS,
    SHAPE_POLICIES,
    ChannelAlignment,
    RuntimeRelease,
    Target,
)

__all__ = ["PROFILES_DIR", "list_targets", "load_target", "parse_profile", "target_names"]

PROFILES_DIR = pathlib.Path(__file__).resolve().parent / "profiles"

_KEYS: dict[str, tuple[type | tuple[type, ...], bool]] = {
    # key: (JSON type, required)
    "name": (str, True),
    "aliases": (list, False),
    "description": (str, True),
    "device": (str, True),
    "backend": (str, True),
    "runtime": (dict, True),
    "precisions": (list, True),
    "default_precision": (str, True),
    "fallback_precision": (str, True),
    "precision_pipelines": (dict, True),
    "supported_ops": (dict, True),
    "opset": (list, True),
    "quantization_rules": ((str, type(None)), True),
    "shape_policy": (str, True),
    "channel_alignment": (dict, True),
    "pipeline": (str, True),
    "legalize": (str, True),
    "backend_options": (dict, False),
    "notes": (list, False),
    "never_slower": (bool, False),
}
_RUNTIME_KEYS = ("name", "version", "platform", "source")


def _fail(where: str, message: str, hint: str | None = None) -> TargetError:
    return TargetError(f"target profile {where}: {message}", hint=hint)


def _check_keys(data: Mapping[str, Any], where: str) -> None:
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        valid = "valid keys: " + ", ".join(_KEYS)
        raise _fail(where, f"unknown key(s) {', '.join(unknown)}", valid)
    for key, (kind, required) in _KEYS.items():
        if key not in data:
            if required:
                raise _fail(where, f"missing key {key!r}")
            continue
        if not isinstance(data[key], kind):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise _fail(where, f"{key!r} must be a JSON {names}, got {type(data[key]).__name__}")


def _strings(value: list[Any], key: str, where: str) -> tuple[str, ...]:
    if not all(isinstance(v, str) for v in value):
        raise _fail(where, f"{key!r} must be a list of strings")
    return tuple(value)


def _pipeline(text: str, key: str, where: str) -> str:
    if not text:
        return text
    try:
        parse_pipeline(text)
    except PipelineError as exc:
        raise _fail(where, f"{key!r} is not valid pipeline text: {exc.message}") from None
    return text


def _precisions(data: Mapping[str, Any], where: str) -> tuple[tuple[str, ...], dict[str, str]]:
    precisions = _strings(data["precisions"], "precisions", where)
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown or not precisions:
        raise _fail(where, f"'precisions' must name some of {', '.join(PRECISIONS)}")
    for key in ("default_precision", "fallback_precision"):
        if data[key] not in precisions:
            raise _fail(where, f"{key!r} is {data[key]!r}, not one of the target's precisions")
    if data["fallback_precision"] == "int8":
        raise _fail(where, "'fallback_precision' is what runs without calibration data: not int8")
    stages = data["precision_pipelines"]
    if set(stages) != set(precisions):
        raise _fail(where, "'precision_pipelines' needs exactly one entry per precision")
    pipelines = {
        p: _pipeline(str(stages[p]), f"precision_pipelines.{p}", where) for p in precisions
    }
    return precisions, pipelines


def parse_profile(
    data: Mapping[str, Any],
    where: str,
    resolve_ops: Callable[[str, str], Any] | None = None,
) -> Target:
    """Validate profile ``data`` (read from ``where``) and build the :class:`Target`.

    ``resolve_ops(provider, release)`` turns the ``supported_ops`` reference into an
    :class:`~irpass.targets.profile.OpSupport`; it defaults to the backend registry.
    """
    if not isinstance(data, Mapping):
        raise _fail(where, "must be a JSON object")
    _check_keys(data, where)
    runtime = data["runtime"]
    if set(runtime) != set(_RUNTIME_KEYS) or not all(isinstance(v, str) for v in runtime.values()):
        raise _fail(where, "'runtime' needs string fields " + ", ".join(_RUNTIME_KEYS))
    precisions, pipelines = _precisions(data, where)
    opset = data["opset"]
    if len(opset) != 2 or not all(isinstance(v, int) for v in opset) or opset[0] > opset[1]:
        raise _fail(where, "'opset' must be [min, max] with min <= max")
    if data["shape_policy"] not in SHAPE_POLICIES:
        raise _fail(where, f"'shape_policy' must be one of {', '.join(SHAPE_POLICIES)}")
    alignment = data["channel_alignment"]
    multiple = alignment.get("multiple")
    if set(alignment) != {"multiple", "why"} or not isinstance(multiple, int) or multiple < 1:
        raise _fail(where, "'channel_alignment' must be {\"multiple\": int >= 1, \"why\": text}")
    ops_ref = data["supported_ops"]
    if set(ops_ref) != {"provider", "release"} or not all(
        isinstance(v, str) for v in ops_ref.values()
    ):
        raise _fail(where, "'supported_ops' must be {\"provider\": name, \"release\": version}")
    if "int8" in precisions and not data["quantization_rules"]:
        raise _fail(where, "a target with int8 must name its 'quantization_rules'")
    if resolve_ops is None:
        from irpass.backends.registry import get_backend, op_support

        try:  # an unknown backend fails here, naming the known ones
            get_backend(data["backend"]).validate_options(data.get("backend_options", {}))
        except TargetError as exc:
            raise _fail(where, exc.message, exc.hint) from None
        resolve_ops = op_support
    try:
        ops = resolve_ops(ops_ref["provider"], ops_ref["release"])
    except TargetError as exc:
        raise _fail(where, exc.message, exc.hint) from None
    return Target(
        name=data["name"],
        aliases=_strings(data.get("aliases", []), "aliases", where),
        description=data["description"],
        device=data["device"],
        backend=data["backend"],
        runtime=RuntimeRelease(**runtime),
        precisions=precisions,
        default_precision=data["default_precision"],
        fallback_precision=data["fallback_precision"],
        precision_pipelines=pipelines,
        op_support=ops,
        opset=(opset[0], opset[1]),
        quantization_rules=data["quantization_rules"],
        shape_policy=data["shape_policy"],
        channel_alignment=ChannelAlignment(multiple=multiple, why=str(alignment["why"])),
        pipeline=_pipeline(data["pipeline"], "pipeline", where),
        legalize=_pipeline(data["legalize"], "legalize", where),
        backend_options=dict(data.get("backend_options", {})),
        notes=_strings(data.get("notes", []), "notes", where),
        path=where,
        never_slower=bool(data.get("never_slower", False)),
    )


def _read(path: pathlib.Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise TargetError(
            f"cannot read target profile {path}: {exc.strerror}",
            hint="give a built-in target name (irpass targets) or a readable .json file",
        ) from exc
    except json.JSONDecodeError as exc:
        raise _fail(str(path), f"not valid JSON: {exc}") from exc


def _builtin_files() -> list[pathlib.Path]:
    return sorted(PROFILES_DIR.glob("*.json"))


@functools.cache
def _builtin(path: str) -> Target:
    target = parse_profile(_read(pathlib.Path(path)), f"{pathlib.Path(path).name}")
    if pathlib.Path(path).stem != target.name:
        raise _fail(path, f"file name must be the target name {target.name!r}.json")
    return target


def list_targets() -> list[Target]:
    """Every built-in target profile, sorted by name."""
    return [_builtin(str(p)) for p in _builtin_files()]


def target_names() -> dict[str, str]:
    """Every accepted name (canonical names and aliases) -> the canonical name."""
    names: dict[str, str] = {}
    for target in list_targets():
        for name in (target.name, *target.aliases):
            if name in names:
                raise _fail(target.path, f"name {name!r} is also used by {names[name]!r}")
            names[name] = target.name
    return names


def load_target(name_or_path: str | pathlib.Path) -> Target:
    """A built-in target by name or alias (``jetson``), or a profile file by path."""
    text = str(name_or_path)
    if text.endswith(".json"):
        path = pathlib.Path(text)
        return parse_profile(_read(path), str(path))
    names = target_names()
    if text not in names:
        raise TargetError(
            f"unknown target {text!r}",
            hint="known targets: " + ", ".join(sorted(names)) + " (or the path of a profile .json)",
        )
    return _builtin(str(PROFILES_DIR / f"{names[text]}.json"))
