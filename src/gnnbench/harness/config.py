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
import hashlib
import importlib
import itertools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from .values import _apply, _lists, _lookup, flatten, parse_override, parse_seeds, read_toml, set_key

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
        "parameters": [],            # parameter names or module prefixes measured (e.g. ["processor"]); []: all
        "seed": 0,                   # probe seed
    },
}

#: Keys that say how or where a run executes, not what it computes: they may differ between invocations on the
#: same run directory (``run.seeds`` grows, ``data.root`` moves with the machine) and are left out of its identity.
EXECUTION_KEYS = frozenset({"run.seeds", "run.name", "data.root"})

#: Keys added to a family's config after run directories existed, per family, with the value every earlier run
#: had implicitly: at that value they are left out of a run's identity, so earlier runs keep their hash (and resume).
IMPLICIT_DEFAULTS: dict[str, dict[str, Any]] = {
    "algo": {"model.num_layers": 1},
    # the multimodal baselines (issue 13)
    "road": {"data.image_features": "", "data.image_source": "", "model.fusion": "none", "model.fusion_layers": 5,
             "model.experts": 4, "model.moe_gate_relu": True, "model.gate": "node"},
}

#: Shortcut flags of ``gnnbench run`` per benchmark: flag -> config key. ``--root``, ``--device`` and
#: ``--hessian`` apply to every benchmark.
SHORTCUTS: dict[str, dict[str, str]] = {
    "algo": {"algorithm": "data.algorithm", "model": "model.processor"},
    "road": {"state": "data.state", "model": "model.encoder", "task": "data.task"},
    "multitask": {"model": "model.variant", "processor": "model.processor"},
}
COMMON_SHORTCUTS = {"root": "data.root", "device": "run.device", "hessian": "hessian.enabled"}

_BUILTIN_FAMILIES = {"algo": "gnnbench.harness.algo_family", "road": "gnnbench.harness.road_family",
                     "multitask": "gnnbench.harness.multitask_family"}
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
    for index, name in enumerate(hessian["parameters"]):
        if not isinstance(name, str) or not name:
            raise ValueError(f"hessian.parameters[{index}] must be a parameter name or module prefix, got {name!r}")


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
    TOML cannot store it; keys at their :data:`IMPLICIT_DEFAULTS` left out too)."""
    implicit = IMPLICIT_DEFAULTS.get((config.get("run") or {}).get("benchmark"), {})
    return {key: value for key, value in flatten(_lists(config)).items()
            if key not in EXECUTION_KEYS and value is not None and not (key in implicit and implicit[key] == value)}


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
        if (path / "config.toml").exists():
            path = path / "config.toml"
        elif text not in shipped:  # a bare shipped name ("road") means the shipped config, even beside a folder
            raise FileNotFoundError(f"{path} is not a run directory (it has no config.toml)")
    if path.is_file() or text not in shipped and path.suffix == ".toml":
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
