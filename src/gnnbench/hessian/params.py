"""Parameter selection and grouping for :class:`gnnbench.hessian.operator.HessianOperator`.

The flat parameter vector of an operator is laid out group by group (in group order), and within a group
parameter by parameter in ``model.named_parameters()`` order. ``ParameterGroup.start:stop`` is the group's
slice of that vector.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

__all__ = ["GROUPINGS", "ROOT_GROUP", "ParameterGroup", "make_groups", "owner_name", "select_parameters"]

log = logging.getLogger(__name__)

GROUPINGS = ("module", "parameter", "all")
ROOT_GROUP = "<root>"  # group name of parameters owned directly by the root module


@dataclass(frozen=True)
class ParameterGroup:
    """A block of the Hessian: named parameters sharing a layer, and their slice of the flat vector."""

    name: str
    parameter_names: tuple[str, ...]
    start: int
    stop: int

    @property
    def size(self) -> int:
        """Number of scalar parameters in the group."""
        return self.stop - self.start

    @property
    def slice(self) -> slice:
        """``slice(start, stop)`` of the flat parameter vector."""
        return slice(self.start, self.stop)


def owner_name(parameter_name: str) -> str:
    """Path of the module that directly owns ``parameter_name`` (``"<root>"`` for the root module)."""
    head, sep, _ = parameter_name.rpartition(".")
    return head if sep else ROOT_GROUP


def _close_matches(word: str, candidates: Sequence[str]) -> list[str]:
    close = difflib.get_close_matches(word, candidates, n=5, cutoff=0.5)
    if not close:  # substring hints, e.g. "weight" -> "lin.weight"
        close = [c for c in candidates if word.lower() in c.lower()][:5]
    return close


def select_parameters(
    model: torch.nn.Module, parameters: Iterable[str] | str | None = None
) -> list[tuple[str, torch.nn.Parameter]]:
    """Resolve ``parameters`` (names or module-path prefixes) to ``(name, parameter)`` pairs.

    ``None`` selects every parameter with ``requires_grad``. A request matches a parameter whose name equals
    it or starts with it followed by ``"."``. Errors (``ValueError``): a request that matches nothing (close
    matches are listed), a parameter requested by its exact name that has ``requires_grad=False``, a prefix
    that only matches frozen parameters, or an empty selection. Frozen parameters under a requested prefix
    are skipped. The result is in ``named_parameters()`` order, without duplicates.
    """
    named = list(model.named_parameters())
    if parameters is None:
        selected = [(n, p) for n, p in named if p.requires_grad]
        if not selected:
            raise ValueError(
                f"{type(model).__name__} has no parameters with requires_grad=True "
                f"({len(named)} parameters in total); nothing to differentiate"
            )
        return selected
    if isinstance(parameters, str):
        parameters = [parameters]
    requests = list(parameters)
    for r in requests:
        if not isinstance(r, str):
            raise TypeError(f"parameters must be names (str) from named_parameters(), got {type(r).__name__}: {r!r}")
    if not requests:
        raise ValueError("parameters is empty: select at least one parameter (or pass None for all)")
    names = [n for n, _ in named]
    chosen: set[str] = set()
    frozen_exact: list[str] = []
    for r in requests:
        key = r.rstrip(".")
        exact = [(n, p) for n, p in named if n == key]
        prefixed = [(n, p) for n, p in named if n.startswith(key + ".")] if key else list(named)
        matches = exact or prefixed
        if not matches:
            modules = [m for m, _ in model.named_modules() if m]
            close = _close_matches(key, names + modules)
            hint = f"; close matches: {', '.join(close)}" if close else f"; available: {', '.join(names[:10])}"
            raise ValueError(f"no parameter named {r!r} (or under a module {r!r}) in {type(model).__name__}{hint}")
        if exact and not exact[0][1].requires_grad:
            frozen_exact.append(key)
            continue
        live = [n for n, p in matches if p.requires_grad]
        if not live:
            frozen = ", ".join(n for n, _ in matches)
            raise ValueError(f"parameters under {r!r} all have requires_grad=False: {frozen}")
        skipped = [n for n, p in matches if not p.requires_grad]
        if skipped:
            log.debug("skipping frozen parameters under %r: %s", r, ", ".join(skipped))
        chosen.update(live)
    if frozen_exact:
        raise ValueError(
            f"requested parameters have requires_grad=False: {', '.join(frozen_exact)} "
            "(set requires_grad=True or leave them out)"
        )
    return [(n, p) for n, p in named if n in chosen]


def make_groups(names_and_sizes: Sequence[tuple[str, int]], grouping: str = "module") -> tuple[ParameterGroup, ...]:
    """Group parameters (given in flat-vector order) into layers.

    ``"module"``: one group per module that directly owns parameters, named by its path (``"<root>"`` for
    the root), in order of first appearance; ``"parameter"``: one group per parameter; ``"all"``: one group
    ``"all"``. The flat layout is group by group, so parameters are reordered to make each group
    contiguous (a no-op for ``named_parameters()`` order, which is already module by module).
    """
    if grouping not in GROUPINGS:
        raise ValueError(f"groups must be one of {', '.join(map(repr, GROUPINGS))}, got {grouping!r}")
    buckets: dict[str, list[tuple[str, int]]] = {}
    for name, size in names_and_sizes:
        key = owner_name(name) if grouping == "module" else name if grouping == "parameter" else "all"
        buckets.setdefault(key, []).append((name, size))
    groups = []
    start = 0
    for key, members in buckets.items():
        stop = start + sum(size for _, size in members)
        groups.append(ParameterGroup(key, tuple(n for n, _ in members), start, stop))
        start = stop
    return tuple(groups)
