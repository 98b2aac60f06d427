"""Progress of the Hessian estimators: a tqdm bar on stderr counting Hessian-vector products.

The harness shows its progress the same way (``tqdm.auto``, cleared when done, off with ``progress=False``).
Estimators wrap their operators in :class:`CountingOperator`, which advances the bar by the number of vectors
of each product, so the bar moves whichever estimator runs and whatever its chunking.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import Tensor


@contextmanager
def matvec_bar(progress: bool, total: int | None, what: str) -> Iterator[Any]:
    """A bar of ``total`` Hessian-vector products described by ``what`` (disabled unless ``progress``)."""
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=what, unit="matvec", disable=not progress, leave=False) as bar:
        yield bar


class CountingOperator:
    """``op`` with every product counted on ``bar`` (all other attributes are ``op``'s)."""

    def __init__(self, op: Any, bar: Any) -> None:
        self._op = op
        self._bar = bar

    def matmat(self, vectors: Tensor) -> Tensor:
        products = self._op.matmat(vectors)
        self._bar.update(int(vectors.shape[0]))
        return products

    def matvec(self, vector: Tensor) -> Tensor:
        product = self._op.matvec(vector)
        self._bar.update(1)
        return product

    def __getattr__(self, name: str) -> Any:
        return getattr(self._op, name)
