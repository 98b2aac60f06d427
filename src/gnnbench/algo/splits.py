"""The CLRS-30 dataset splits and gnnbench's length-generalisation test sets."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping


@dataclass(frozen=True)
class SplitConfig:
    """How many graphs of how many nodes, drawn from which seed."""

    num_samples: int
    n: int
    seed: int


CLRS30_SPLITS: Mapping[str, SplitConfig] = MappingProxyType({
    "train": SplitConfig(num_samples=1000, n=16, seed=1),
    "val": SplitConfig(num_samples=32, n=16, seed=2),
    "test": SplitConfig(num_samples=32, n=64, seed=3),
})

# Length generalisation: CLRS-30's test recipe (32 graphs, seed 3) at growing sizes;
# ``test_64`` is exactly CLRS-30's test split.
LENGTH_GENERALIZATION_SIZES: tuple[int, ...] = (16, 32, 64, 128)
GENERALIZATION_SPLITS: Mapping[str, SplitConfig] = MappingProxyType({
    f"test_{n}": SplitConfig(num_samples=32, n=n, seed=3) for n in LENGTH_GENERALIZATION_SIZES
})
_ALIASES = {"valid": "val", "validation": "val"}


def resolve_split(split: str) -> tuple[str, SplitConfig]:
    """Canonical name and configuration of a named split (``valid``/``validation`` mean ``val``)."""
    name = _ALIASES.get(split, split)
    table = {**CLRS30_SPLITS, **GENERALIZATION_SPLITS}
    if name not in table:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(table)} "
                         f"(or pass num_samples, n and seed explicitly)")
    return name, table[name]
