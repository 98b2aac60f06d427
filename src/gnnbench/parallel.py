"""Chunks of work on ``dask.distributed``: a LocalCluster by default, a scheduler address for a real cluster.

``scheduler`` means the same everywhere gnnbench takes it: ``"none"`` (or None) runs the chunks one after
another in this process; ``"local"`` starts a :class:`distributed.LocalCluster` of ``workers`` processes (one
thread each) for the call; a ``tcp://host:8786`` address connects to a running scheduler, whose workers must see
the same files (``GNNBENCH_HOME`` on a shared filesystem); a ``distributed.Client`` is used as it is.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .io.offline import is_offline, loopback_only

_MISSING = 'Dask is needed for --scheduler: pip install "gnnbench[distributed]"'


@contextmanager
def open_client(scheduler: Any, workers: int | None = None) -> Iterator[Any]:
    """A ``distributed.Client`` for ``scheduler`` (None for ``"none"``), closed on exit if opened here."""
    if scheduler is None or scheduler == "none":
        yield None
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise ImportError(_MISSING) from error
    if isinstance(scheduler, Client):
        yield scheduler
        return
    if scheduler == "local":
        workers = workers or min(4, os.cpu_count() or 1)
        # offline mode and the loopback allowance travel to the worker processes as environment variables
        env = {"GNNBENCH_OFFLINE": "1"} if is_offline() else {}
        if loopback_only():
            env["GNNBENCH_LOOPBACK_ONLY"] = "1"
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                               env=env)
        client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
            cluster.close()
        return
    if not isinstance(scheduler, str) or "://" not in scheduler:
        raise ValueError(f"scheduler must be 'none', 'local' or a Dask scheduler address like tcp://host:8786, "
                         f"got {scheduler!r}")
    client = Client(scheduler)
    try:
        yield client
    finally:
        client.close()


def map_chunks(function: Callable[..., Any], chunks: Sequence[Any], *, client: Any, desc: str,
               progress: bool = False, **kwargs: Any) -> Iterator[tuple[int, Any]]:
    """``(index, function(chunk, **kwargs))`` for every chunk, in completion order, with a progress bar.

    On a client every chunk is a task with its own key (never deduplicated as "pure"); a chunk that fails is
    re-raised as a :class:`RuntimeError` naming the chunk.
    """
    from tqdm.auto import tqdm

    with tqdm(total=len(chunks), desc=desc, unit="chunk", disable=not progress) as bar:
        if client is None:
            for index, chunk in enumerate(chunks):
                yield index, _call(function, chunk, index, desc, kwargs)
                bar.update(1)
            return
        from distributed import as_completed

        run = uuid.uuid4().hex[:12]
        futures = {client.submit(function, chunk, pure=False, key=f"gnnbench-{desc}-{run}-{index}", **kwargs): index
                   for index, chunk in enumerate(chunks)}
        for future in as_completed(list(futures)):
            index = futures[future]
            try:
                result = future.result()
            except Exception as error:
                for other in futures:
                    other.cancel()
                raise RuntimeError(f"{desc}: chunk {index} failed: {type(error).__name__}: {error}") from error
            yield index, result
            bar.update(1)


def _call(function: Callable[..., Any], chunk: Any, index: int, desc: str, kwargs: dict) -> Any:
    try:
        return function(chunk, **kwargs)
    except Exception as error:
        raise RuntimeError(f"{desc}: chunk {index} failed: {type(error).__name__}: {error}") from error
