"""``pre_transform`` and ``pre_filter``, as PyTorch Geometric datasets take them, with fingerprinted caches.

Both datasets apply them once, when processing, and cache the result beside a small JSON record of
what produced it: the fingerprint of each function and the key of the data it was applied to. A
later construction with a different ``pre_transform`` or ``pre_filter`` processes again and warns
(PyG only warns and keeps the old result; gnnbench does not hand back data processed by another
function).

A fingerprint covers what PyG's comparison (the ``repr`` without memory addresses) covers, plus, for
Python functions, their code, constants, default arguments and the constants and functions they
close over (not mutable state such as a call counter), so two different lambdas do not look alike,
and for transform objects their attributes (``NormalizeFeatures(["x"])`` and
``NormalizeFeatures(["edge_attr"])`` print alike) and the code of their ``__call__``/``forward``.
The values of global variables a function reads are not covered: after changing those, pass
``force_reload=True``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import types
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..io.cache import require_writable, warn_rebuilt
from ..io.files import atomic_path
from ..io.manifest import ManifestError, file_record, read_manifest, verify_files, write_manifest

logger = logging.getLogger(__name__)

FUNCTIONS = ("pre_transform", "pre_filter")


_CONSTANTS = (int, float, complex, str, bytes, bool, type(None), tuple, frozenset)


def describe(function: Any) -> str:
    """``repr(function)`` without memory addresses (what PyG compares)."""
    return "None" if function is None else re.sub(r" at 0x[0-9a-fA-F]+", "", repr(function))


def fingerprint(function: Callable | None) -> str | None:
    """A digest that changes when ``function`` computes something else (None for None)."""
    if function is None:
        return None
    digest = hashlib.sha256()
    _feed(digest, function, depth=0)
    return digest.hexdigest()[:20]


def _feed(digest: Any, value: Any, depth: int) -> None:
    if depth > 8:  # deep closures: the repr is enough
        digest.update(describe(value).encode())
        return
    if isinstance(value, functools.partial):
        digest.update(b"partial")
        _feed(digest, value.func, depth + 1)
        for argument in (*value.args, *sorted(value.keywords.items())):
            _feed(digest, argument, depth + 1)
    elif isinstance(value, types.MethodType):
        _feed(digest, value.__func__, depth + 1)
        digest.update(describe(value.__self__).encode())
    elif isinstance(value, types.FunctionType):
        digest.update(f"{value.__module__}.{value.__qualname__}".encode())
        _feed_code(digest, value.__code__)
        for default in (*(value.__defaults__ or ()), *sorted((value.__kwdefaults__ or {}).items())):
            _feed(digest, default, depth + 1)
        for cell in value.__closure__ or ():
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if callable(contents) or isinstance(contents, _CONSTANTS):
                _feed(digest, contents, depth + 1)
            else:  # mutable state (a call counter, a cache) is not part of what the function computes
                digest.update(type(contents).__qualname__.encode())
    elif callable(value) and not isinstance(value, type) and not isinstance(value, types.BuiltinFunctionType):
        cls = type(value)
        digest.update(f"{cls.__module__}.{cls.__qualname__}:{describe(value)}".encode())
        for name in ("__call__", "forward"):  # the class's own code, when written in Python
            method = getattr(cls, name, None)
            if isinstance(method, types.FunctionType):
                _feed_code(digest, method.__code__)
        for name, attribute in sorted(getattr(value, "__dict__", {}).items()):  # its settings, which a repr may omit
            digest.update(name.encode())
            _feed(digest, attribute, depth + 1)
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__qualname__}[{len(value)}]".encode())
        for item in value:
            _feed(digest, item, depth + 1)
    else:
        digest.update(f"{type(value).__qualname__}:{describe(value)}".encode())


def _feed_code(digest: Any, code: types.CodeType) -> None:
    digest.update(code.co_code)
    digest.update(repr(code.co_names).encode())
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            _feed_code(digest, constant)
        else:
            digest.update(repr(constant).encode())


def read_cached(path: Path, keys: set[str], what: str) -> dict | None:
    """The dict cached at ``path`` (``torch_geometric.io.fs.torch_load``) if readable and holding
    ``keys``, else None (logged at debug level: the caller processes again)."""
    from torch_geometric.io import fs  # the datasets' own loader; imported on use

    try:
        stored = fs.torch_load(str(path))
    except Exception as error:  # noqa: BLE001 - any unreadable cache is remade
        logger.debug("%s: unreadable %s (%s); processing again", path, what, error)
        return None
    return stored if isinstance(stored, dict) and keys <= set(stored) else None


def record(pre_transform: Callable | None, pre_filter: Callable | None, key: Any) -> dict:
    """What a preprocessed cache was made from: the key of its input data and both functions."""
    return {"key": key, "pre_transform": fingerprint(pre_transform), "pre_filter": fingerprint(pre_filter),
            "pre_transform_repr": describe(pre_transform), "pre_filter_repr": describe(pre_filter)}


RECORD_KIND = "preprocessed"


def read_record(path: Path, output: Path | None = None) -> dict | None:
    """The record at ``path`` (as :func:`record` returns it), or None when it is missing, unreadable, or the
    output it describes is missing or corrupt (a :class:`~gnnbench.io.cache.CacheRebuiltWarning` names the file,
    also when the record is gone but its ``output`` is still there)."""
    path = Path(path)
    if not path.exists():
        if output is not None and Path(output).exists():
            warn_rebuilt(f"{path}: missing; preprocessing again", stacklevel=6)
        return None
    try:
        manifest = read_manifest(path, kinds=(RECORD_KIND,), layout=1)
        verify_files(manifest, path.parent)
    except ManifestError as error:
        warn_rebuilt(f"{error}; preprocessing again", stacklevel=6)
        return None
    parameters = manifest["parameters"]
    if not {"key", *FUNCTIONS} <= set(parameters):
        return None
    return {**parameters, **{f"{name}_repr": manifest.get(f"{name}_repr") for name in FUNCTIONS}}


def write_record(path: Path, current: dict, output: Path, **sections: Any) -> None:
    """Record (in the package's manifest format) that ``output`` was made as ``current`` describes."""
    write_manifest(path, kind=RECORD_KIND, layout=1,
                   parameters={"key": current["key"], **{name: current[name] for name in FUNCTIONS}},
                   files={"output": file_record(output)},
                   **{f"{name}_repr": current[f"{name}_repr"] for name in FUNCTIONS}, **sections)


def needs_processing(path: Path, current: dict, *, force_reload: bool, what: str,
                     output: Path | None = None) -> bool:
    """Whether the cache recorded at ``path`` (of ``output``) must be (re)made for ``current``; warns when a
    function changed, or the record or its output is damaged."""
    stored = None if force_reload else read_record(path, output)
    if force_reload or stored is None:
        return True
    if stored["key"] != json.loads(json.dumps(current["key"])):
        logger.info("%s: the data changed since it was preprocessed; preprocessing again", what)
        return True
    changed = [name for name in FUNCTIONS if stored[name] != current[name]]
    for name in changed:
        warnings.warn(f"{what}: the {name} differs from the one the cached data was processed with "
                      f"({stored.get(name + '_repr')} -> {current[name + '_repr']}); processing again",
                      UserWarning, stacklevel=4)
    return bool(changed)


#: PyG's records of the functions a dataset was processed with, in its ``processed_dir``.
PYG_RECORDS = ("pre_transform.pt", "pre_filter.pt")
_PYG_NONE = "None"  # what PyG records for no function (gnnbench passes PyG none: it applies them itself)


def check_pyg_records(processed_dir: str | Path, *, data_exists: bool, force_reload: bool) -> None:
    """Heal PyG's ``pre_transform.pt``/``pre_filter.pt`` before PyG reads them.

    PyG unpickles both (``torch.load(weights_only=False)``) before anything else, so a corrupt one ends in
    an unpickling error such as ``invalid literal for int()``, and a deleted one is only written again when
    the whole dataset is processed again. gnnbench's datasets give PyG no functions, so each must hold
    ``"None"``: a missing (while the processed data exists), unreadable or different one is written again
    with a :class:`~gnnbench.io.cache.CacheRebuiltWarning` naming it.
    """
    import torch

    if force_reload:
        return  # PyG writes both again after processing, without reading them
    for name in PYG_RECORDS:
        path = Path(processed_dir) / name
        if not path.exists():
            if not data_exists:
                continue  # a fresh dataset: PyG writes them after processing
            problem = "missing"
        else:
            try:
                value = torch.load(path, weights_only=True)
            except Exception as error:  # noqa: BLE001 - whatever unpickling a damaged file raises
                problem = f"unreadable ({type(error).__name__}: not the torch.save of a string that PyG writes)"
            else:
                if value == _PYG_NONE:
                    continue
                problem = f"records {value!r}, not {_PYG_NONE!r} (gnnbench applies pre_transform/pre_filter itself)"
        warn_rebuilt(f"{path}: {problem}; writing it again", stacklevel=6)
        require_writable(path.parent)
        write_pyg_records(path.parent, names=(name,))


def write_pyg_records(processed_dir: str | Path, names: tuple[str, ...] = PYG_RECORDS) -> None:
    """Write PyG's records of no ``pre_transform``/``pre_filter`` (as PyG does after processing) atomically."""
    from torch_geometric.io import fs

    for name in names:
        with atomic_path(Path(processed_dir) / name) as temporary:
            fs.torch_save(_PYG_NONE, str(temporary))
