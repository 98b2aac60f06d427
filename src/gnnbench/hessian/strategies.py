"""How :class:`~gnnbench.hessian.operator.HessianOperator` computes its products: the two strategies.

* ``"forward-over-reverse"``: ``jvp(grad(f))`` with :mod:`torch.func`, ``f`` being ``loss_fn()`` evaluated by
  :func:`torch.func.functional_call` with the selected parameters swapped in; ``k`` probes at once with
  :func:`torch.func.vmap` (``chunk_size`` probes per pass). Forward and backward are recomputed per chunk.
* ``"double-backward"``: ``g = autograd.grad(loss, theta, create_graph=True)`` once (cached while the
  parameters are unchanged), then ``autograd.grad(g, theta, V)`` for ``chunk_size`` probes at once
  (``is_grads_batched=True``) or probe by probe (attribute ``batch_probes``: default False on CPU, where the
  loop was as fast as batching for an MLP and 3.6x faster for a GCN on 2 cores; None elsewhere: time both on
  the first product with >= 4 probes and keep the faster). Batching is switched off where an op does not
  support it (e.g. sparse matrix products).
* ``"auto"``: double backward on CPU (measured faster on 2 CPU cores: vmap was 1.8x slower than PyHessian on an
  MLP and 5x on a GCN), forward-over-reverse elsewhere (GPU); see the operator for the fallback rules.

:class:`ProductStrategies` is the operator's mixin holding both; it uses the operator's layout helpers,
parameters, cache and diagnostics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from .guards import HessianError, custom_function_names, graph_nodes, is_oom

log = logging.getLogger("gnnbench.hessian.operator")

STRATEGIES = ("auto", "forward-over-reverse", "double-backward")
DEFAULT_CHUNK_SIZE = 32


def preferred_strategy(device: torch.device) -> str:
    """The strategy "auto" tries first: double backward on CPU, forward-over-reverse on accelerators."""
    return "double-backward" if torch.device(device).type == "cpu" else "forward-over-reverse"


class ClosureModule(torch.nn.Module):
    """``forward()`` = ``loss_fn()``; lets :func:`torch.func.functional_call` swap the parameters of ``model``."""

    def __init__(self, model: torch.nn.Module, loss_fn: Callable[[], Tensor]) -> None:
        super().__init__()
        self.model = model
        object.__setattr__(self, "_closure", loss_fn)  # not registered, even if it is a Module

    def forward(self) -> Tensor:
        return self._closure()


class ProductStrategies:
    """Products ``V -> V H`` (rows) by forward-over-reverse or double backward (mixed into the operator)."""

    # provided by the operator
    strategy: str
    chunk_size: int
    check: bool
    dtype: torch.dtype
    device: torch.device
    parameter_names: tuple[str, ...]
    batch_probes: bool | None
    batch_fallback_reason: str | None
    batch_timing: tuple[float, float] | None
    _params: list[torch.nn.Parameter]
    _wrapper: ClosureModule
    _cache: tuple[tuple, tuple[Tensor | None, ...], Tensor] | None
    _forward_verified: bool
    _graph_checked: bool
    _custom_functions: list[str]

    def _products(self, V: Tensor) -> Tensor:
        if V.shape[0] == 0:
            return V.clone()
        if self.strategy == "forward-over-reverse":
            try:
                out = self._forward_over_reverse(V)
                self._forward_verified = True
                return out
            except (RuntimeError, NotImplementedError, TypeError) as exc:
                if self._forward_verified or is_oom(exc):
                    raise
                self._fall_back_or_raise(self._describe(exc), exc)
        return self._double_backward(V)

    def _forward_over_reverse(self, V: Tensor) -> Tensor:
        names = ["model." + n for n in self.parameter_names]
        primals = tuple(p.detach() for p in self._params)
        wrapper = self._wrapper

        def f(*params: Tensor) -> Tensor:
            return torch.func.functional_call(wrapper, dict(zip(names, params)), ()).reshape(())

        grad_f = torch.func.grad(f, argnums=tuple(range(len(primals))))

        def hvp(*tangents: Tensor) -> tuple[Tensor, ...]:
            return torch.func.jvp(grad_f, primals, tangents)[1]

        with self._computation_mode(), torch.no_grad():
            out = torch.func.vmap(hvp, chunk_size=self.chunk_size)(*self._split(V))
        return self._flatten_batched(out, V.shape[0])

    def _cache_graph(self, loss: Tensor, grads: Sequence[Tensor | None] | None = None) -> None:
        """Keep ``g = d loss / d theta`` with its graph (``grads``: already computed with ``create_graph``)."""
        if grads is None:
            grads = torch.autograd.grad(loss, self._params, create_graph=True, allow_unused=True)
        grads = tuple(grads)
        if not self._graph_checked:
            self._graph_checked = True
            errors = {n.name() for g in grads if g is not None for n in graph_nodes(g) if "Error" in n.name()}
            if errors:
                names = ", ".join(n.removesuffix("Backward") for n in self._custom_functions)
                raise HessianError(
                    f"double backward failed: custom autograd.Function {names or '(unknown)'} is marked "
                    "@once_differentiable (or its backward is not differentiable): its second-order terms would "
                    "silently be dropped. Implement a differentiable backward, or a jvp and use "
                    "strategy='forward-over-reverse'"
                )
        self._cache = (self._state_key(), grads, loss.detach())

    def _graph(self) -> tuple[Tensor | None, ...]:
        key = self._state_key()
        if self._cache is None or self._cache[0] != key:
            self._cache = None
            with self._computation_mode():
                loss = self._call_loss()
            if self.check and not bool(torch.isfinite(loss.detach()).all()):
                raise ValueError(f"loss_fn() returned a non-finite loss ({float(loss)}) at the current parameters")
            if not self._custom_functions:
                self._custom_functions = custom_function_names(graph_nodes(loss))
            self._cache_graph(loss)
        assert self._cache is not None
        return self._cache[1]

    def _double_backward(self, V: Tensor) -> Tensor:
        k = V.shape[0]
        grads = self._graph()
        live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
        if not live:  # the gradient is constant: H = 0
            return torch.zeros_like(V)
        outputs = [grads[i] for i in live]
        parts = self._split(V)

        def loop(a: int, b: int) -> Tensor:
            rows = []
            for j in range(a, b):
                res = torch.autograd.grad(
                    outputs, self._params, [parts[i][j] for i in live], retain_graph=True, allow_unused=True
                )
                rows.append(self._flatten_batched([None if r is None else r.unsqueeze(0) for r in res], 1))
            return rows[0] if len(rows) == 1 else torch.cat(rows)

        def batched(a: int, b: int) -> Tensor | None:  # None where batched backward is unsupported
            try:
                res = torch.autograd.grad(
                    outputs, self._params, [parts[i][a:b] for i in live], retain_graph=True, allow_unused=True,
                    is_grads_batched=True,
                )
            except (RuntimeError, NotImplementedError) as exc:
                if is_oom(exc):
                    raise
                self.batch_probes = False
                self.batch_fallback_reason = self._describe(exc)
                log.info("batched double backward unsupported (%s); using one backward per probe",
                         self.batch_fallback_reason)
                return None
            return self._flatten_batched(res, b - a)

        results: list[Tensor] = []
        pos = 0
        try:
            if self.batch_probes is None and k >= 4:  # time both ways on the first probes, keep the faster
                times = []
                for j in range(2):
                    t0 = self._clock()
                    results.append(loop(j, j + 1))
                    times.append(self._clock() - t0)
                pos = 2
                n = min(self.chunk_size, k - pos)
                t0 = self._clock()
                out = batched(pos, pos + n)
                if out is not None:
                    per_probe = (self._clock() - t0) / n
                    results.append(out)
                    pos += n
                    self.batch_probes = per_probe < min(times)
                    self.batch_timing = (min(times), per_probe)
                    log.debug("double backward per probe: loop %.3g s, batched %.3g s -> batch_probes=%s",
                              min(times), per_probe, self.batch_probes)
            while pos < k:
                n = min(self.chunk_size, k - pos)
                out = batched(pos, pos + n) if self.batch_probes is not False and n > 1 else None
                results.append(out if out is not None else loop(pos, pos + n))
                pos += n
        except (RuntimeError, NotImplementedError) as exc:
            if is_oom(exc):
                raise
            raise HessianError(f"double backward failed: {self._describe(exc)}") from exc
        return results[0] if len(results) == 1 else torch.cat(results)

    def _clock(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    # implemented by the operator
    def _computation_mode(self) -> Any: ...

    def _call_loss(self) -> Tensor: ...

    def _state_key(self) -> tuple: ...

    def _split(self, V: Tensor) -> list[Tensor]: ...

    def _flatten_batched(self, parts: Sequence[Tensor | None], k: int) -> Tensor: ...

    def _flatten_list(self, parts: Sequence[Tensor | None]) -> Tensor: ...

    def _describe(self, exc: BaseException) -> str: ...

    def _fall_back_or_raise(self, reason: str, exc: BaseException | None = None) -> None: ...
