"""Access to DeepMind's CLRS-30 reference implementation, when it is installed.

gnnbench does not depend on ``dm-clrs``; the benchmark and the parity tests use it
when present. A full install (``pip install dm-clrs``) imports normally. A light
install (``pip install --no-deps dm-clrs`` plus ``jax chex attrs absl-py``) lacks
TensorFlow, which the reference's samplers only name in an ``isinstance`` check,
so we load its ``_src`` modules directly with a stand-in for that one name.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ClrsReference:
    algorithms: types.ModuleType  # clrs._src.algorithms
    samplers: types.ModuleType  # clrs._src.samplers
    probing: types.ModuleType  # clrs._src.probing
    specs: types.ModuleType  # clrs._src.specs
    version: str


def load_clrs_reference() -> ClrsReference:
    """Import the CLRS-30 reference; ``ImportError`` (with what is missing) if unavailable."""
    spec = importlib.util.find_spec("clrs")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the CLRS-30 reference is not installed: pip install --no-deps dm-clrs "
                          "and pip install jax chex attrs absl-py")
    try:
        import clrs  # noqa: F401  (a complete installation)
    except ImportError:
        _install_light_clrs(Path(next(iter(spec.submodule_search_locations))))
    modules = {name: importlib.import_module(f"clrs._src.{name}")
               for name in ("algorithms", "samplers", "probing", "specs")}
    version = getattr(sys.modules["clrs"], "__version__", None) or _distribution_version()
    return ClrsReference(version=version, **modules)


def _install_light_clrs(root: Path) -> None:
    for name in list(sys.modules):
        if name == "clrs" or name.startswith("clrs."):
            del sys.modules[name]
    if "tensorflow" not in sys.modules:
        try:
            import tensorflow  # noqa: F401
        except ImportError:
            stand_in = types.ModuleType("tensorflow")
            stand_in.Tensor = type("Tensor", (), {})
            sys.modules["tensorflow"] = stand_in
    package = types.ModuleType("clrs")
    package.__path__ = [str(root)]
    internals = types.ModuleType("clrs._src")
    internals.__path__ = [str(root / "_src")]
    package._src = internals
    sys.modules["clrs"] = package
    sys.modules["clrs._src"] = internals


def _distribution_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dm-clrs")
    except PackageNotFoundError:
        return "unknown"
