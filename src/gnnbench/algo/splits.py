"""The CLRS-30 dataset splits and gnnbench's length-generalisation test sets.

Split names are gnnbench's everywhere: ``"train"``, ``"valid"``, ``"test"`` (plus ``"test_<n>"``).
CLRS-30 spells the validation split ``"val"``; here ``"val"`` (and ``"validation"``) are aliases of
``"valid"``: the same configuration, the same data and the same cache file.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class SplitConfig:
    """How many graphs of how many nodes, drawn from which seed."""

    num_samples: int
    n: int
    seed: int


SPLIT_ALIASES: Mapping[str, str] = MappingProxyType({"val": "valid", "validation": "valid"})


class SplitTable(Mapping):
    """A read-only table of named splits in which the aliases (``"val"``) look up their canonical split.

    Iterating gives the canonical names only; ``table["val"] is table["valid"]``.
    """

    def __init__(self, splits: Mapping[str, SplitConfig]) -> None:
        self._splits = dict(splits)

    def __getitem__(self, name: str) -> SplitConfig:
        return self._splits[SPLIT_ALIASES.get(name, name)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._splits)

    def __len__(self) -> int:
        return len(self._splits)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._splits!r})"


CLRS30_SPLITS: Mapping[str, SplitConfig] = SplitTable({
    "train": SplitConfig(num_samples=1000, n=16, seed=1),
    "valid": SplitConfig(num_samples=32, n=16, seed=2),
    "test": SplitConfig(num_samples=32, n=64, seed=3),
})

# Length generalisation: CLRS-30's test recipe (32 graphs, seed 3) at growing sizes;
# ``test_64`` is exactly CLRS-30's test split.
LENGTH_GENERALIZATION_SIZES: tuple[int, ...] = (16, 32, 64, 128)
GENERALIZATION_SPLITS: Mapping[str, SplitConfig] = SplitTable({
    f"test_{n}": SplitConfig(num_samples=32, n=n, seed=3) for n in LENGTH_GENERALIZATION_SIZES
})


def resolve_split(split: str) -> tuple[str, SplitConfig]:
    """Canonical name and configuration of a named split (``val``/``validation`` mean ``valid``)."""
    if not isinstance(split, str):
        raise ValueError(f"split must be a split name (a string), got {split!r}")
    name = SPLIT_ALIASES.get(split, split)
    table = {**CLRS30_SPLITS, **GENERALIZATION_SPLITS}
    if name not in table:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(table)} (CLRS-30's 'val' is accepted "
                         f"for 'valid'; or pass num_samples, n and seed explicitly)")
    return name, table[name]
