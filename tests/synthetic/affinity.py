"""Task-affinity matrices with a planted partition (test tree only: tests and benchmarks).

Tasks of the same block have affinity ``within``, tasks of different blocks ``between``, each entry plus Gaussian
noise (``T`` is not symmetric, as the study's estimated affinities are not). The diagonal (a task's affinity with
itself) sits between the two, ``(within + between) / 2`` by default: a task gains from its block's partners and
loses from the others, so the planted partition is the one of largest density
``sum over clusters C of sum(T[C, C]) / |C|`` (a block member's row gains ``within - diagonal > 0`` per partner,
a cross-block pair loses ``diagonal - between > 0``).
"""

from __future__ import annotations

import numpy as np


def planted_affinity(sizes, *, within: float = 0.9, between: float = 0.5, diagonal: float | None = None,
                     noise: float = 0.03, seed: int = 0, shuffle: bool = False):
    """``(T, partition)``: an affinity matrix whose blocks have the given ``sizes``, and the planted partition.

    ``partition`` is a tuple of sorted tuples of task indices ordered by their smallest index. With ``shuffle`` the
    tasks are permuted (seeded), so that blocks are not contiguous index ranges.
    """
    rng = np.random.default_rng(seed)
    n = int(sum(sizes))
    labels = np.repeat(np.arange(len(sizes)), sizes)
    if shuffle:
        labels = labels[rng.permutation(n)]
    T = np.where(labels[:, None] == labels[None, :], within, between) + noise * rng.standard_normal((n, n))
    np.fill_diagonal(T, ((within + between) / 2 if diagonal is None else diagonal) + noise * rng.standard_normal(n))
    partition = tuple(sorted(tuple(int(i) for i in np.flatnonzero(labels == b)) for b in range(len(sizes))))
    return T, partition
