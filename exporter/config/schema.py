"""Frozen dataclasses from YAML: the loader behind table.py's keys.

Each key is declared with `setting(default, doc, check)`. Building collects every problem,
each named by its YAML path (`services[1].base_url: must be ...`), instead of stopping at the
first, so `check-config` can print them all.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import field


def setting(default=dataclasses.MISSING, doc: str = "", check=None, **kw):
    """Declare a config key with its default, its doc line and an optional check."""
    return field(default=default, metadata={"doc": doc, "check": check}, **kw)


class ConfigError(Exception):
    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def build(cls, data, path: str, problems: list[str]):
    """Build dataclass cls from a YAML mapping, appending every problem found."""
    if not isinstance(data, dict):
        problems.append(f"{path or '(top)'}: must be a mapping")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    for key in data:
        if key not in fields:
            problems.append(f"{_join(path, key)}: unknown key (known: {', '.join(fields)})")
    values = {}
    for name, f in fields.items():
        where = _join(path, name)
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                problems.append(f"{where}: required")
            continue
        value = _value(hints[name], data[name], where, problems)
        if value is _BAD:
            continue
        check = f.metadata.get("check")
        message = check(value) if check and value is not None else None
        if message:
            problems.append(f"{where}: {message}")
        else:
            values[name] = value
    try:
        return cls(**values)
    except TypeError:  # a required key was missing: already reported
        return None


_BAD = object()


def _value(hint, value, where, problems):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        if not isinstance(value, list):
            problems.append(f"{where}: must be a list")
            return _BAD
        items = [_value(args[0], v, f"{where}[{i}]", problems) for i, v in enumerate(value)]
        return _BAD if any(i is _BAD or i is None for i in items) else tuple(items)
    if origin is dict:  # a table of names to names (reconcile's api_keys)
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            problems.append(f"{where}: must be a mapping of names to names")
            return _BAD
        return dict(value)
    if dataclasses.is_dataclass(hint):
        built = build(hint, value, where, problems)
        return _BAD if built is None else built
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool)) if hint is float \
        else (isinstance(value, int) and not isinstance(value, bool)) if hint is int \
        else isinstance(value, hint)
    if not ok:
        problems.append(f"{where}: must be {hint.__name__}, not {type(value).__name__}")
        return _BAD
    return float(value) if hint is float else value


def _join(path, key):
    return f"{path}.{key}" if path else str(key)


REQUIRED = "(required)"  # documented_keys' default of a key that has none


def documented_keys(cls, prefix="") -> list[tuple[str, object, str]]:
    """List (yaml path, default, doc) for every key, for the docs and their test."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        path = f"{prefix}{f.name}"
        default = REQUIRED if f.default is dataclasses.MISSING and \
            f.default_factory is dataclasses.MISSING else f.default \
            if f.default is not dataclasses.MISSING else None
        hint = hints[f.name]
        if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        inner = typing.get_args(hint)[0] if typing.get_origin(hint) is tuple else hint
        if dataclasses.is_dataclass(inner):
            rows.append((path, "" if inner is not hint else None, f.metadata["doc"]))
            rows += documented_keys(inner, f"{path}[]." if inner is not hint else f"{path}.")
        else:
            rows.append((path, default, f.metadata["doc"]))
    return rows
