"""Run configs: TOML files shipped in ``configs/``, user files, shortcut flags and ``--set`` overrides.

A config has the sections ``run`` (the harness's: ``benchmark``, ``name``, ``seeds``, ``device``), ``hessian``
(the Hessian column, see :mod:`gnnbench.harness.hessian_column`) and the family's (``data``, ``model``, ``train``,
``eval``, whatever its ``default_config()`` returns). ``run.benchmark`` names the family (``"algo"``, ``"road"`` or
one added with :func:`register_family`); a top-level ``benchmark = "..."`` is read as ``run.benchmark``.

Resolution, later layers winning: the harness's defaults and the family's ``default_config()``; the shipped config
of the benchmark (``configs/<benchmark>.toml``, the reference protocol); a user's TOML file; the shortcut flags
(:data:`SHORTCUTS`); ``--set key.sub=value``. Every key a layer sets must exist in the defaults and have the
default's type (an integer is accepted for a float); errors name the key and the file or flag it came from.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import importlib
import itertools
import json
import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

CONFIG_DIR = Path(__file__).parent / "configs"

#: The harness's own sections; a family's ``default_config()`` supplies the rest.
HARNESS_DEFAULTS: dict[str, dict[str, Any]] = {
    "run": {
        "benchmark": "",      # the family: "algo", "road", or a registered one
        "name": "",           # run directory name under $GNNBENCH_HOME/runs (derived when empty)
        "seeds": [0],         # seeds to train; "0-2", "0,3,5" or a list
        "device": "cpu",      # torch device of training: "cpu", "cuda", "cuda:1"
    },
    "hessian": {
        "enabled": False,            # --hessian: add the Hessian column to each seed's record
        "num_matvecs": 40,           # Hessian-vector products of the per-layer traces, in all
        "trace_method": "hutch++",   # "hutch++" or "hutchinson"
        "probes": "full",            # per-layer traces from full-length ("full") or block ("block") probes
        "top_k": 1,                  # top eigenvalues (block Lanczos, at most 100 iterations each)
        "density_runs": 1,           # spectral density: runs x steps products
        "density_steps": 10,
        "max_train_batches": 2,      # training batches measured (the first ones the family gives)
        "max_test_batches": 2,       # test batches for the measured gap
        "seed": 0,                   # probe seed
    },
}

#: Keys that say how or where a run executes, not what it computes: they may differ between invocations on the
#: same run directory (``run.seeds`` grows, ``data.root`` moves with the machine) and are left out of its identity.
EXECUTION_KEYS = frozenset({"run.seeds", "run.name", "data.root"})

#: Shortcut flags of ``gnnbench run`` per benchmark: flag -> config key. ``--root``, ``--device`` and
#: ``--hessian`` apply to every benchmark.
SHORTCUTS: dict[str, dict[str, str]] = {
    "algo": {"algorithm": "data.algorithm", "model": "model.processor"},
    "road": {"state": "data.state", "model": "model.encoder", "task": "data.task"},
}
COMMON_SHORTCUTS = {"root": "data.root", "device": "run.device", "hessian": "hessian.enabled"}

_BUILTIN_FAMILIES = {"algo": "gnnbench.harness.algo_family", "road": "gnnbench.harness.road_family"}
_REGISTERED: dict[str, str] = {}


# ------------------------------------------------------------------------------------------------------ families


def register_family(module: ModuleType | str, shortcuts: Mapping[str, str] | None = None) -> str:
    """Make a family module (or its import name) runnable as ``run.benchmark = module.FAMILY``; returns the name.

    The module must be importable by that name wherever seeds run (worker processes, Dask workers): it needs
    ``FAMILY``, ``default_config()``, ``validate_config(config)``, ``dataset_identity(config)`` and
    ``train_seed(context)`` (see :mod:`gnnbench.harness.family`). ``shortcuts``: its shortcut flags (flag name
    -> config key, e.g. ``{"model": "model.name"}``), as :data:`SHORTCUTS` holds them for the built-in families.
    """
    if isinstance(module, str):
        module = importlib.import_module(module)
    missing = [name for name in ("FAMILY", "default_config", "validate_config", "dataset_identity", "train_seed")
               if not hasattr(module, name)]
    if missing:
        raise ValueError(f"family module {module.__name__} lacks {', '.join(missing)} (see gnnbench.harness.family)")
    _REGISTERED[module.FAMILY] = module.__name__
    if shortcuts is not None:
        SHORTCUTS[module.FAMILY] = dict(shortcuts)
    return module.FAMILY


def family_names() -> list[str]:
    """Benchmarks that can be run: the built-in families and the registered ones."""
    return sorted(set(_BUILTIN_FAMILIES) | set(_REGISTERED))


def family_module_name(benchmark: str) -> str:
    """The import name of the family module of ``benchmark``."""
    if benchmark in _REGISTERED:
        return _REGISTERED[benchmark]
    if benchmark in _BUILTIN_FAMILIES:
        return _BUILTIN_FAMILIES[benchmark]
    raise ValueError(f"unknown benchmark {benchmark!r} (run.benchmark); known: {', '.join(family_names())}")


def load_family(benchmark: str) -> ModuleType:
    """The family module of a benchmark name."""
    return import_family(family_module_name(benchmark), benchmark)


def import_family(module_name: str, benchmark: str | None = None) -> ModuleType:
    """Import a family module by its import name (as :class:`RunSpec` carries it to worker processes)."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name:
            what = f" of benchmark {benchmark!r}" if benchmark else ""
            raise ValueError(f"the family module {module_name}{what} is not installed or not importable here") \
                from None
        raise


def defaults(family: ModuleType) -> dict[str, Any]:
    """The full schema of a family's configs: the harness's sections and the family's ``default_config()``."""
    merged = copy.deepcopy(HARNESS_DEFAULTS)
    merged["run"]["benchmark"] = family.FAMILY
    for section, values in family.default_config().items():
        if not isinstance(values, Mapping):
            raise ValueError(f"{family.__name__}.default_config(): {section!r} must be a section (a dict)")
        merged.setdefault(section, {}).update(_lists(values))
    return merged


def _lists(value: Any) -> Any:
    """A deep copy with tuples as lists (TOML has only arrays, and identities compare equal after a round trip)."""
    if isinstance(value, Mapping):
        return {key: _lists(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists(item) for item in value]
    return copy.deepcopy(value)


def validate_harness(config: Mapping[str, Any]) -> None:
    """Check the harness's sections (``run``, ``hessian``); a ValueError names the key."""
    from ..arguments import check_choice, check_int

    run = config["run"]
    if not re.fullmatch(r"[A-Za-z0-9_.+=-]*", run["name"]):
        raise ValueError(f"run.name may hold letters, digits and _ . + = - only, got {run['name']!r}")
    if not re.fullmatch(r"(cpu|cuda|mps)(:\d+)?", run["device"]):
        raise ValueError(f"run.device must be cpu, cuda or cuda:<index>, got {run['device']!r}")
    hessian = config["hessian"]
    check_int("hessian.num_matvecs", hessian["num_matvecs"], minimum=1)
    check_choice("hessian.trace_method", hessian["trace_method"], ("hutch++", "hutchinson"))
    check_choice("hessian.probes", hessian["probes"], ("full", "block"))
    for key in ("top_k", "density_runs", "density_steps", "max_train_batches"):
        check_int(f"hessian.{key}", hessian[key], minimum=1)
    check_int("hessian.max_test_batches", hessian["max_test_batches"], minimum=0)
    check_int("hessian.seed", hessian["seed"], minimum=0)


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


# ------------------------------------------------------------------------------------------------ resolved runs


@dataclass
class RunSpec:
    """One resolved run: its config, its family module's import name and where each layer came from."""

    config: dict[str, Any]
    family: str
    sources: list[str] = field(default_factory=list)

    @property
    def benchmark(self) -> str:
        return self.config["run"]["benchmark"]

    @property
    def name(self) -> str:
        return self.config["run"]["name"]

    @property
    def seeds(self) -> list[int]:
        return list(self.config["run"]["seeds"])


def identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """The flat keys that decide what a run computes (all but :data:`EXECUTION_KEYS`; ``None`` left out, since
    TOML cannot store it)."""
    return {key: value for key, value in flatten(_lists(config)).items()
            if key not in EXECUTION_KEYS and value is not None}


def config_sha256(config: Mapping[str, Any]) -> str:
    """SHA-256 of a config's identity (canonical JSON)."""
    text = json.dumps(identity(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, old value, new value)`` for every identity key that differs (``None``: absent)."""
    left, right = identity(old), identity(new)
    return [(key, left.get(key), right.get(key)) for key in sorted(set(left) | set(right))
            if left.get(key) != right.get(key)]


def shipped_configs() -> dict[str, Path]:
    """The configs shipped in the package, by name (``algo``, ``road``, ...)."""
    return {path.stem: path for path in sorted(CONFIG_DIR.glob("*.toml"))}


def _shortcut_table(benchmark: str) -> dict[str, str]:
    return {**SHORTCUTS.get(benchmark, {}), **COMMON_SHORTCUTS}


def resolve(target: str | Path, *, shortcuts: Mapping[str, Any] | None = None,
            overrides: Iterable[str] = (), seeds: str | Iterable[int] | None = None) -> list[RunSpec]:
    """Resolve a shipped config name (``"algo"``), a TOML file or a run directory into run specs.

    ``shortcuts``: flag name -> value (``{"algorithm": "bfs,dfs", "model": "mpnn"}``; ``None`` and ``False``
    values are ignored), mapped to config keys by :data:`SHORTCUTS` and :data:`COMMON_SHORTCUTS`; a
    comma-separated value of a key whose default is a string sweeps it (one run per value, e.g. several
    algorithms). ``overrides``: ``"key.sub=value"`` texts. ``seeds``: replaces ``run.seeds``. Each spec is
    validated by its family; an empty ``run.name`` is derived (:func:`default_name`).
    """
    layers, benchmark, prefix = _layers(target)
    family_name = family_module_name(benchmark)
    family = import_family(family_name, benchmark)
    schema = defaults(family)
    config = copy.deepcopy(schema)
    sources = ["defaults"]
    base = None
    for source, values, shipped in layers:
        _apply(config, schema, values, source, schema)
        sources.append(source)
        if shipped:
            base = copy.deepcopy(config)
    base = base if base is not None else copy.deepcopy(schema)
    table = _shortcut_table(benchmark)
    sweeps: list[tuple[str, list[str]]] = []
    for flag, value in (shortcuts or {}).items():
        if value is None or value is False:
            continue
        if flag not in table:
            usable = ", ".join(f"--{name}" for name in table)
            raise ValueError(f"--{flag} does not apply to the {benchmark} benchmark (its flags: {usable})")
        key = table[flag]
        found, default = _lookup(schema, key)
        if not found:
            raise ValueError(f"--{flag} does not apply to the {benchmark} benchmark (its config has no {key})")
        value = str(value) if isinstance(value, Path) else value
        if isinstance(value, str) and isinstance(default, str) and "," in value:
            sweeps.append((key, [part.strip() for part in value.split(",") if part.strip()]))
            continue
        set_key(config, schema, key, value, f"--{flag}")
        sources.append(f"--{flag}")
    for text in overrides:
        key, value = parse_override(text)
        set_key(config, schema, key, value, f"--set {text}")
        sources.append(f"--set {text}")
    if seeds is not None:
        config["run"]["seeds"] = parse_seeds(seeds)
    specs = []
    keys = [key for key, _ in sweeps]
    for combination in itertools.product(*(values for _, values in sweeps)):
        resolved = copy.deepcopy(config)
        for key, value in zip(keys, combination):
            set_key(resolved, schema, key, value, f"--{key}")
        family.validate_config(resolved)
        if not resolved["run"]["name"]:
            resolved["run"]["name"] = default_name(resolved, base, schema, prefix)
        validate_harness(resolved)
        specs.append(RunSpec(resolved, family_name, list(sources)))
    return specs


def _layers(target: str | Path) -> tuple[list[tuple[str, dict[str, Any], bool]], str, str]:
    """The TOML layers of ``target`` as ``(source, values, shipped)``, the benchmark they name and the name prefix
    of its runs."""
    shipped = shipped_configs()
    text = str(target)
    path = Path(target)
    if path.is_dir():
        if not (path / "config.toml").exists():
            raise FileNotFoundError(f"{path} is not a run directory (it has no config.toml)")
        path = path / "config.toml"
    if text not in shipped and (path.suffix == ".toml" or path.exists()):
        user = read_toml(path)
        benchmark = (user.get("run") or {}).get("benchmark")
        if not benchmark:
            raise ValueError(f"{path}: run.benchmark is not set (the family: {', '.join(family_names())})")
        layers = []
        if benchmark in shipped:
            layers.append((str(shipped[benchmark]), read_toml(shipped[benchmark]), True))
        layers.append((str(path), user, False))
        return layers, benchmark, benchmark
    if text in shipped:
        data = read_toml(shipped[text])
        benchmark = (data.get("run") or {}).get("benchmark") or text
        layers = []
        if benchmark != text and benchmark in shipped:
            layers.append((str(shipped[benchmark]), read_toml(shipped[benchmark]), True))
        layers.append((str(shipped[text]), data, True))
        return layers, benchmark, text
    if text in family_names():
        return [], text, text  # a registered family without a shipped config: its defaults
    raise ValueError(f"{text!r} is neither a shipped config ({', '.join(shipped) or 'none'}) nor a TOML file")


def default_name(config: Mapping[str, Any], base: Mapping[str, Any], schema: Mapping[str, Any], prefix: str) -> str:
    """``<prefix>-<shortcut values>`` (e.g. ``algo-bfs-triplet_gmpnn``), plus the first 8 hex digits of the
    config's hash when it differs from ``base`` (the shipped protocol) with those values, so that different
    configs never share a run directory by default."""
    parts = [prefix]
    baseline = copy.deepcopy(dict(base))
    for key in SHORTCUTS.get(config["run"]["benchmark"], {}).values():
        found, value = _lookup(config, key)
        if found and value not in (None, ""):
            parts.append("+".join(map(str, value)) if isinstance(value, list) else str(value))
            set_key(baseline, schema, key, value, "name")
    name = "-".join(re.sub(r"[^A-Za-z0-9_.+]+", "_", part) for part in parts)
    if differences(baseline, config):
        name += "-" + config_sha256(config)[:8]
    return name
