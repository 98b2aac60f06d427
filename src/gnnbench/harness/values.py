"""TOML files and typed config values: reading and writing configs, seeds, ``--set`` texts, checked keys.

Every key a layer sets must exist in the schema (the defaults) and have the default's type (an integer is accepted
for a float, a tuple for a list); errors name the key and the file or flag it came from.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


# ------------------------------------------------------------------------------------------------------ TOML I/O


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as a dict; a syntax error names the file (and the line, from tomllib)."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise FileNotFoundError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: not valid TOML: {error}") from None
    if "benchmark" in data and not isinstance(data["benchmark"], Mapping):  # top-level spelling of run.benchmark
        data.setdefault("run", {})
        if not isinstance(data["run"], Mapping):
            raise ValueError(f"{path}: [run] must be a table")
        data["run"].setdefault("benchmark", data.pop("benchmark"))
    return data


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes are a subset of TOML basic strings'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item, where) for item in value) + "]"
    raise ValueError(f"{where}: cannot write {type(value).__name__} {value!r} to TOML")


def dumps_toml(config: Mapping[str, Any]) -> str:
    """TOML text of a config (sections of scalars, lists and sub-sections; ``None`` values are left out)."""
    lines: list[str] = []

    def section(prefix: list[str], table: Mapping[str, Any]) -> None:
        scalars = [(key, value) for key, value in table.items() if not isinstance(value, Mapping)]
        tables = [(key, value) for key, value in table.items() if isinstance(value, Mapping)]
        if prefix and (scalars or not tables):
            if lines:
                lines.append("")
            lines.append("[" + ".".join(_toml_key(part) for part in prefix) + "]")
        for key, value in scalars:
            if value is not None:
                lines.append(f"{_toml_key(key)} = {_toml_value(value, '.'.join([*prefix, key]))}")
        for key, value in tables:
            section([*prefix, key], value)

    section([], config)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- values and types


def parse_seeds(spec: str | int | Iterable[int], name: str = "--seeds") -> list[int]:
    """Seeds from ``"0-2"``, ``"0,3,5"``, ``"4"``, ``"0-2,7"``, an int or a list: sorted, without repeats."""
    if isinstance(spec, bool):
        raise ValueError(f"{name} must be seeds like '0-2', '0,3,5' or '4', got {spec!r}")
    if isinstance(spec, int):
        items: list[int] = [spec]
    elif isinstance(spec, str):
        items = []
        for part in spec.replace(" ", "").split(","):
            match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
            if not match:
                raise ValueError(f"{name} must be seeds like '0-2', '0,3,5' or '4', got {spec!r}")
            low, high = int(match.group(1)), int(match.group(2) or match.group(1))
            if high < low:
                raise ValueError(f"{name}: the range {part!r} is empty (its end is below its start)")
            items.extend(range(low, high + 1))
    else:
        items = list(spec)
        for item in items:
            if isinstance(item, bool) or not isinstance(item, int):
                raise ValueError(f"{name} must be non-negative integers, got {item!r}")
    if not items:
        raise ValueError(f"{name} names no seed")
    if any(item < 0 for item in items):
        raise ValueError(f"{name} must be non-negative, got {spec!r}")
    return sorted(set(items))


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a section"}.get(type(value), type(value).__name__)


def check_value(key: str, value: Any, default: Any, source: str) -> Any:
    """``value`` converted to the type of ``default`` (int -> float, tuple -> list), or a ValueError naming
    ``key`` and ``source``."""
    def fail(expected: str) -> ValueError:
        return ValueError(f"{source}: {key} must be {expected} (like its default {default!r}), got {value!r}")

    if key == "run.seeds":
        try:
            return parse_seeds(value, key)
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from None
    if default is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise fail("a boolean (true or false)")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("an integer")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail("a number")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise fail("a string")
        return value
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            raise fail("a list")
        if default:
            return [check_value(f"{key}[{index}]", item, default[0], source) for index, item in enumerate(value)]
        return list(value)
    raise fail(_type_name(default))


def parse_text(key: str, text: str, default: Any, source: str) -> Any:
    """A command-line value for ``key``: TOML syntax (``2000``, ``1e-3``, ``true``, ``[4, 7]``, ``"x"``), a bare
    string where the default is a string, comma-separated items where it is a list."""
    if key == "run.seeds" or isinstance(default, str) or (default is None and not _is_toml_value(text)):
        return text
    if isinstance(default, (list, tuple)) and not text.strip().startswith("["):
        item_default = default[0] if default else None
        return [parse_text(f"{key}[{index}]", part.strip(), item_default, source)
                for index, part in enumerate(text.split(",")) if part.strip()]
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text  # reported by check_value as the wrong type, naming the key


def _is_toml_value(text: str) -> bool:
    try:
        tomllib.loads(f"value = {text}")
    except tomllib.TOMLDecodeError:
        return False
    return True


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train.steps": 2000, ...}`` from nested sections."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _lookup(schema: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    node: Any = schema
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _unknown(key: str, schema: Mapping[str, Any], source: str) -> ValueError:
    known = list(flatten(schema))
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    section = key.split(".")[0]
    listing = [name for name in known if name.startswith(section + ".")]
    keys = f" (keys of [{section}]: {', '.join(listing)})" if listing and not close else ""
    return ValueError(f"{source}: unknown config key {key!r}{hint}{keys}")


def _apply(config: dict[str, Any], schema: Mapping[str, Any], values: Mapping[str, Any], source: str,
           root: Mapping[str, Any], prefix: str = "") -> None:
    """Merge nested ``values`` into ``config``, checking every key against ``schema`` (``root``: the whole one)."""
    for key, value in values.items():
        name = f"{prefix}{key}"
        if key not in schema:
            raise _unknown(name, root, source)
        default = schema[key]
        if isinstance(default, Mapping):
            if not isinstance(value, Mapping):
                raise ValueError(f"{source}: {name} is a section ([{name}]), got the value {value!r}")
            _apply(config[key], default, value, source, root, name + ".")
        else:
            if isinstance(value, Mapping):
                raise ValueError(f"{source}: {name} is a value (like its default {default!r}), got a section")
            config[key] = check_value(name, value, default, source)


def set_key(config: dict[str, Any], schema: Mapping[str, Any], key: str, value: Any, source: str) -> None:
    """Set a dotted ``key`` of ``config`` to ``value`` (already typed, or text to parse), checked against
    ``schema``."""
    found, default = _lookup(schema, key)
    if not found or isinstance(default, Mapping):
        raise _unknown(key, schema, source)
    if isinstance(value, str):
        value = parse_text(key, value, default, source)
    node = config
    parts = key.split(".")
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = check_value(key, value, default, source)


def parse_override(text: str) -> tuple[str, str]:
    """``("train.steps", "2000")`` from ``"train.steps=2000"``."""
    key, separator, value = text.partition("=")
    key = key.strip()
    if not separator or not key or not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+", key):
        raise ValueError(f"--set expects SECTION.KEY=VALUE (e.g. train.steps=2000), got {text!r}")
    return key, value.strip()


def _lists(value: Any) -> Any:
    """A deep copy with tuples as lists (TOML has only arrays, and identities compare equal after a round trip)."""
    if isinstance(value, Mapping):
        return {key: _lists(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists(item) for item in value]
    return copy.deepcopy(value)
