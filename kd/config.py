"""YAML configs mapped onto plain dataclasses.

Every field must be declared in the dataclass: an unknown key is an error naming the key, its position in
the file and the accepted keys, so a typo in a config can never be silently ignored.

Two conveniences keep families of configs (one per student of a paper table) free of copies:
- ``base: other.yaml`` (relative to the file's directory as named, symlinks not followed) starts from another
  config; the file's own mappings are merged into it key by key, and its lists and scalars replace the base's.
- ``${NAME}`` in a string value is the environment variable ``NAME`` (``run.sh`` exports where the teacher and
  its targets are); an unset variable is an error naming it. ``${NAME:?message}`` (the shell's form) also
  refuses an empty value, with ``message``: for data that a row cannot do without, where empty would
  silently mean "none". ``${NAME:-default}`` gives ``default`` when the variable is unset or empty: for what
  ``run.sh`` sets but a command typed by hand need not (a seed's suffix of an experiment dir).
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config that does not match its dataclass."""


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: {value!r} matches none of {tp}: {'; '.join(errors)}")
    if _is_dataclass_type(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_tp = args[0] if args else Any
        items = [_convert(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        val_tp = args[1] if len(args) == 2 else Any
        return {k: _convert(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp in (int, str) and (not isinstance(value, tp) or isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Builds dataclass ``cls`` from ``data``; nested dataclasses are built recursively.

    Raises:
        ConfigError: on an unknown key or a value of the wrong type, naming the key path.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {unknown} for {cls.__name__}; accepted keys: {sorted(fields)}"
        )
    kwargs = {name: _convert(value, hints[name], f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:  # includes a ConfigError raised by the dataclass's own checks
        raise ConfigError(f"{where}: {e}") from e


def to_dict(obj: Any) -> dict[str, Any]:
    """The inverse of :func:`from_dict` (tuples become lists, so the result is YAML-safe)."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {k: plain(v) for k, v in dataclasses.asdict(obj).items()}


_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([?-])([^}]*))?\}")


def _read_tree(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The mapping of ``path`` with its ``base`` chain merged in.

    A relative ``base`` is taken from the directory the file was reached through, symlinks not followed: a
    linked directory of rows (``quick/students -> ../conf/students``) builds on the configs next to the link.
    """
    path = Path(os.path.abspath(path))
    if path in seen:
        raise ConfigError(f"{path}: 'base' chain loops: {' -> '.join(str(p) for p in (*seen, path))}")
    if not path.is_file():
        where = f" (the base of {seen[-1]})" if seen else ""
        raise ConfigError(f"config file not found: {path}{where}")
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: 'base' must be the path of another config, got {base!r}")
    return _merge(_read_tree(path.parent / base, (*seen, path)), data)


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _expand_env(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        return {k: _expand_env(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def lookup(match: re.Match) -> str:
        name, form, word = match.groups()
        value = os.environ.get(name)
        if form == "-":
            return value or word
        if form == "?" and not value:
            state = "not set" if value is None else "empty"
            hint = word or "set it to a non-empty value or override the key"
            raise ConfigError(f"{where}: environment variable {name} is {state}: {hint}")
        if value is None:
            hint = "export it or override the key"
            raise ConfigError(f"{where}: environment variable {name} is not set ({hint})")
        return value

    return _ENV_VAR.sub(lookup, value)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``data`` with ``key.sub=value`` overrides applied in place (values parsed as YAML); returns it."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a mapping")
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def load_yaml(cls: type[T], path: str | Path, overrides: list[str] | None = None) -> T:
    """Loads ``path`` (and its ``base`` chain) into ``cls``, applying ``key.sub=value`` overrides (values
    parsed as YAML), then expanding ``${NAME}`` environment variables in strings."""
    data = apply_overrides(_read_tree(Path(path)), overrides or [])
    return from_dict(cls, _expand_env(data, str(path)), where=str(path))


def save_yaml(obj: Any, path: str | Path) -> None:
    """Writes a dataclass as YAML, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        yaml.safe_dump(to_dict(obj), f, sort_keys=False)
    tmp.replace(path)
