"""Checks of public functions' arguments: every bad value is a ``ValueError`` that names the argument.

One place for the package's numeric validation, so that ``sample(..., n=1.5)``,
``training_edges(negative_ratio=-1)`` and ``trace(..., num_matvecs=0)`` fail the same way::

    n = check_int("n", n, minimum=1)
    ratio = check_float("negative_ratio", ratio, minimum=0.0)
    p = check_float("p", p, minimum=0.0, maximum=1.0)

Deprecated spellings are mapped by :func:`renamed` (one release of warnings, then removal).
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any


def _describe(minimum: float | None, maximum: float | None, open_min: bool, open_max: bool) -> str:
    parts = []
    if minimum is not None:
        parts.append(f"{'>' if open_min else '>='} {minimum}")
    if maximum is not None:
        parts.append(f"{'<' if open_max else '<='} {maximum}")
    return " and ".join(parts)


def check_int(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an ``int`` if it is an integer (Python or NumPy; not a bool, not a float) within the bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        bounds = _describe(minimum, maximum, False, False)
        raise ValueError(f"{name} must be an integer{' ' + bounds if bounds else ''}, got {value!r}")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be an integer {_describe(minimum, maximum, False, False)}, got {value!r}")
    return value


def check_float(name: str, value: Any, *, minimum: float | None = None, maximum: float | None = None,
                open_min: bool = False, open_max: bool = False) -> float:
    """``value`` as a finite ``float`` within the bounds (``open_min``/``open_max`` exclude the bound itself)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        bounds = _describe(minimum, maximum, open_min, open_max)
        raise ValueError(f"{name} must be a number{' ' + bounds if bounds else ''}, got {value!r}")
    value = float(value)
    below = minimum is not None and (value <= minimum if open_min else value < minimum)
    above = maximum is not None and (value >= maximum if open_max else value > maximum)
    if not math.isfinite(value) or below or above:
        bounds = _describe(minimum, maximum, open_min, open_max)
        raise ValueError(f"{name} must be a finite number{' ' + bounds if bounds else ''}, got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: tuple[str, ...] | list[str]) -> str:
    """``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def renamed(old: str, new: str, old_value: Any, new_value: Any, *, default: Any = None, stacklevel: int = 3) -> Any:
    """The value of an argument renamed from ``old`` to ``new`` (deprecated for one release).

    Returns ``new_value`` unless ``old_value`` was given (not None), in which case it warns with a
    ``DeprecationWarning`` and returns ``old_value``; giving both (``new_value`` not ``default``) is an error.
    """
    if old_value is None:
        return new_value
    if new_value is not default and new_value != default:
        raise ValueError(f"{old!r} is the deprecated name of {new!r}; give only {new!r}")
    warnings.warn(f"{old!r} is deprecated and will be removed in the next release; use {new!r}",
                  DeprecationWarning, stacklevel=stacklevel)
    return old_value
