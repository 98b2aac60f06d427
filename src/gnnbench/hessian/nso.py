"""Noise stability optimization (NSO) and a Hessian-trace penalty, as training options for any optimizer.

Zhang, Li and Ju, "Noise Stability Optimization for Finding Flat Minima: A Hessian-based Regularization
Approach" (arXiv 2306.08553, TMLR 2024). For ``U ~ N(0, sigma^2 I)`` and a twice differentiable loss,
``E[L(W + U)] = L(W) + (sigma^2 / 2) Tr(H(W)) + O(sigma^4)``, so descending the noise-smoothed loss
penalizes the trace of the Hessian. NSO estimates its gradient with **two-point** (symmetric) noise,
which cancels the first-order Taylor term and its variance:

    g = lam * grad L(W) + (1 - lam) / (2k) * sum_{j=1..k} [grad L(W + U_j) + grad L(W - U_j)],

``U_j ~ N(0, sigma^2 I)`` i.i.d. (``lam = 0`` is the paper's Algorithm 1; the authors' code also mixes in
the unperturbed gradient with ``lam > 0``). The optimizer then steps from the **unperturbed** weights ``W``.

Two ways to use it, with the same semantics:

* :func:`nso_gradient` (``loss_fn()`` returns the scalar loss; no ``backward`` in it) **adds** ``g`` to the
  ``.grad`` of every trainable parameter, like ``loss.backward()`` does; call ``optimizer.zero_grad()``
  before it and ``optimizer.step()`` after it, with any ``torch.optim`` optimizer.
* :class:`NoiseStabilityOptimizer` wraps an optimizer; ``step(closure)`` follows the LBFGS/SAM convention
  (``closure()`` computes the loss, calls ``loss.backward()`` and returns the loss), calls the closure
  ``2k + 1`` times, **sets** ``.grad`` to ``g`` and steps the wrapped optimizer.

Design choices (both APIs):

* **Noise scale.** ``scale="absolute"`` (default, as in the authors' code: ``randn * sigma``) uses std
  ``sigma`` for every entry. ``scale="relative"`` uses std ``sigma * ||W_i||_F / sqrt(numel(W_i))`` for
  parameter tensor ``W_i`` (so ``E||U_i||^2 = sigma^2 ||W_i||^2``), computed from the weights at the start of
  the step and treated as a constant (no gradient flows through it); an all-zero tensor gets no noise.
* **Which parameters.** Noise goes to ``parameters`` (names or name prefixes, as in
  :mod:`gnnbench.hessian.bounds`; default: all), restricted to those with ``requires_grad``; parameters with
  ``requires_grad=False`` are never perturbed and never get a gradient. ``g`` is computed for **every**
  trainable parameter: it is the gradient of the smoothed objective ``lam L(W) + (1 - lam) E L(W + U)``
  even where only some tensors are perturbed.
* **Noise draws.** ``generator`` (a ``torch.Generator``; default the global RNG) draws, for ``j = 1..k`` in
  turn, one tensor per perturbed parameter in ``model.named_parameters()`` order (on the generator's
  device, then moved), so a seeded generator reproduces the step.
* **Exact restoration.** The perturbed weights are set under ``torch.no_grad()`` from a saved copy
  (``W + U_j``, then ``W - U_j``, both computed from the copy) and the copy is written back afterwards, even
  if the loss raises: the weights are restored bitwise, with no add/subtract drift.
* **Buffers / BatchNorm.** The unperturbed pass runs first and is an ordinary pass (in training mode it
  updates BatchNorm running statistics once, as a plain step would). All model buffers are then saved and
  copied back after every perturbed pass, so the perturbed passes run in the model's current mode (batch
  statistics in training mode, as in the authors' code) but leave running means/variances and
  ``num_batches_tracked`` untouched. Dropout and other randomness in the passes use the global RNG.
* **``num_samples`` is not a Hessian-vector-product budget.** It is ``k``, the number of noise draws per step;
  NSO computes no Hessian-vector product at all, only gradients: ``2k`` perturbed gradient evaluations per step,
  plus the unperturbed one when ``lam > 0`` (:class:`NoiseStabilityOptimizer` always evaluates it: ``2k + 1``).
* **Cost.** ``2k + 1`` forward and ``2k + 1`` backward passes per step (:func:`nso_gradient` with
  ``lam = 0`` skips the unperturbed backward; ``lam = 1`` is plain training, one pass and no noise), plus
  memory for two copies of the perturbed weights and one gradient accumulator. The in-place perturbation
  bumps the parameters' version counters, so do not keep an earlier graph through them for a later
  ``backward``.

:func:`trace_penalty` is the explicit alternative: it adds ``weight * grad T(W)`` with the Hutchinson
estimate ``T = (1/m) sum_j v_j^T H v_j`` (Rademacher ``v_j``), by double backward (exact derivatives, no
noise scale to tune, but third-order autograd); ``weight = (1 - lam) sigma^2 / 2`` matches NSO to second order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor

from ..arguments import check_choice, check_float, check_int, renamed

Scale = Literal["absolute", "relative"]
SCALES = ("absolute", "relative")

__all__ = ["NoiseStabilityOptimizer", "TracePenalty", "nso_gradient", "trace_penalty"]


# --- noise stability optimization ------------------------------------------------------------------------------

def nso_gradient(model: torch.nn.Module, loss_fn: Callable[[], Tensor], *, sigma: float, num_samples: int = 1,
                 lam: float = 0.0, scale: Scale = "absolute", parameters: str | Iterable[str] | None = None,
                 generator: torch.Generator | None = None) -> float:
    """Add the NSO gradient ``g`` to ``.grad`` of the trainable parameters; return the unperturbed loss.

    ``g = lam grad L(W) + (1 - lam)/(2k) sum_j [grad L(W + U_j) + grad L(W - U_j)]``, ``U_j ~ N(0, sigma^2 I)``
    on ``parameters`` (``k = num_samples``, the number of noise draws: ``2k`` gradient evaluations, plus one when
    ``lam > 0``; not a Hessian-vector-product budget). ``loss_fn()`` returns the scalar loss of the current weights and
    does not call ``backward``. Like ``loss.backward()``, the gradient is **accumulated** into ``.grad`` (a
    parameter whose gradient is never defined keeps ``.grad`` as it was), so zero the gradients first and
    call ``optimizer.step()`` after. The weights are restored bitwise before returning. With ``lam = 0`` the
    unperturbed pass is forward-only. See the module docstring for scales, buffers and the draw order.
    """
    _check_nso(sigma, num_samples, lam, scale)
    trainable, perturbed = _select(model, parameters)

    def evaluate(need_grad: bool) -> tuple[Tensor, list[Tensor | None]]:
        if not need_grad:
            with torch.no_grad():
                return _scalar(loss_fn()).detach(), [None] * len(trainable)
        with torch.enable_grad():
            loss = _scalar(loss_fn())
            if not loss.requires_grad:
                raise RuntimeError("loss_fn() returned a loss that does not depend on any trainable parameter")
            grads = torch.autograd.grad(loss, trainable, allow_unused=True)
        return loss.detach(), list(grads)

    loss, total = _noise_stability(model, evaluate, trainable, perturbed, sigma=sigma, num_samples=num_samples,
                                   lam=lam, scale=scale, generator=generator)
    _add_to_grad(trainable, total)
    return float(loss)


class NoiseStabilityOptimizer:
    """Wrap any ``torch.optim`` optimizer so that ``step(closure)`` descends along the NSO gradient.

    ``closure()`` must compute the loss at the current weights, call ``loss.backward()`` and return the loss
    (the LBFGS/SAM convention; calling ``zero_grad`` inside it is allowed but not needed). ``step`` clears the
    gradients before each of the ``2k + 1`` closure calls (unperturbed, then ``W + U_j`` and ``W - U_j``),
    restores the weights bitwise, **sets** ``.grad`` of every trainable parameter of ``model`` to

        g = lam grad L(W) + (1 - lam)/(2k) sum_j [grad L(W + U_j) + grad L(W - U_j)]

    (whatever ``.grad`` held before is discarded), calls ``optimizer.step()`` and returns the unperturbed
    loss. ``model`` must own the optimizer's parameters. Attach learning-rate schedulers to ``.optimizer``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, model: torch.nn.Module, *, sigma: float,
                 num_samples: int = 1, lam: float = 0.0, scale: Scale = "absolute",
                 parameters: str | Iterable[str] | None = None, generator: torch.Generator | None = None) -> None:
        _check_nso(sigma, num_samples, lam, scale)
        self.parameters = [parameters] if isinstance(parameters, str) else (
            list(parameters) if parameters is not None else None)
        _select(model, self.parameters)
        self.optimizer = optimizer
        self.model = model
        self.sigma, self.num_samples, self.lam, self.scale = float(sigma), int(num_samples), float(lam), scale
        self.generator = generator

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    @property
    def state(self) -> Any:
        return self.optimizer.state

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state_dict)

    def step(self, closure: Callable[[], Any]) -> Any:
        """One NSO step; returns what the unperturbed ``closure()`` call returned."""
        if closure is None:
            raise TypeError("NoiseStabilityOptimizer.step needs a closure that computes the loss, calls "
                            "loss.backward() and returns the loss")
        trainable, perturbed = _select(self.model, self.parameters)

        def evaluate(need_grad: bool) -> tuple[Any, list[Tensor | None]]:
            for param in trainable:
                param.grad = None
            with torch.enable_grad():
                loss = closure()
            grads = [param.grad for param in trainable]
            for param in trainable:
                param.grad = None
            return loss, grads

        loss, total = _noise_stability(self.model, evaluate, trainable, perturbed, sigma=self.sigma,
                                       num_samples=self.num_samples, lam=self.lam, scale=self.scale,
                                       generator=self.generator, require_grads=True)
        for param, grad in zip(trainable, total):
            param.grad = grad
        self.optimizer.step()
        return loss


def _noise_stability(model: torch.nn.Module, evaluate: Callable[[bool], tuple[Any, list[Tensor | None]]],
                     trainable: list[Tensor], perturbed: list[int], *, sigma: float, num_samples: int, lam: float,
                     scale: str, generator: torch.Generator | None,
                     require_grads: bool = False) -> tuple[Any, list[Tensor | None]]:
    """(unperturbed loss, NSO gradient per trainable parameter or None), weights and buffers restored."""
    loss, grads = evaluate(lam > 0)
    total: list[Tensor | None] = [None] * len(trainable)
    seen = any(grad is not None for grad in grads)
    if lam > 0:
        _accumulate(total, grads, lam)
    if lam == 1:  # plain training: the perturbed passes would get weight 0
        if require_grads and not seen:
            raise RuntimeError("the closure produced no gradients: it must call loss.backward() and return the loss")
        return loss, total
    weight = (1.0 - lam) / (2 * num_samples)
    targets = [trainable[index] for index in perturbed]
    with torch.no_grad():
        saved = [param.detach().clone() for param in targets]
        stds: list[float | Tensor] = [sigma if scale == "absolute" else
                                      saved_w.norm() * (sigma / math.sqrt(max(saved_w.numel(), 1)))
                                      for saved_w in saved]
        buffers = list(model.buffers())
        saved_buffers = [buffer.detach().clone() for buffer in buffers]
    try:
        for _ in range(num_samples):
            noise = [_gaussian(param, std, generator) for param, std in zip(targets, stds)]
            for sign in (1.0, -1.0):
                with torch.no_grad():
                    for param, original, u in zip(targets, saved, noise):
                        param.copy_(original).add_(u, alpha=sign)
                _, grads = evaluate(True)
                seen = seen or any(grad is not None for grad in grads)
                _accumulate(total, grads, weight)
                _copy_back(buffers, saved_buffers)
    finally:
        with torch.no_grad():
            for param, original in zip(targets, saved):
                param.copy_(original)
        _copy_back(buffers, saved_buffers)
    if require_grads and not seen:
        raise RuntimeError("the closure produced no gradients: it must call loss.backward() and return the loss")
    return loss, total


def _gaussian(param: Tensor, std: float | Tensor, generator: torch.Generator | None) -> Tensor:
    if generator is None:
        draw = torch.randn(param.shape, dtype=param.dtype, device=param.device)
    else:
        draw = torch.randn(param.shape, dtype=param.dtype, device=generator.device, generator=generator)
        draw = draw.to(param.device)
    return draw.mul_(std)


def _accumulate(total: list[Tensor | None], grads: list[Tensor | None], weight: float) -> None:
    with torch.no_grad():
        for index, grad in enumerate(grads):
            if grad is None:
                continue
            if total[index] is None:
                total[index] = grad.detach() * weight
            else:
                total[index].add_(grad.detach(), alpha=weight)


def _add_to_grad(params: list[Tensor], grads: list[Tensor | None]) -> None:
    """Add ``grads`` to the parameters' ``.grad`` (as ``backward()`` does)."""
    with torch.no_grad():
        for param, grad in zip(params, grads):
            if grad is None:
                continue
            if param.grad is None:
                param.grad = grad
            else:
                param.grad.add_(grad)


def _copy_back(buffers: list[Tensor], saved: list[Tensor]) -> None:
    with torch.no_grad():
        for buffer, original in zip(buffers, saved):
            buffer.copy_(original)


def _check_nso(sigma: float, num_samples: int, lam: float, scale: str) -> None:
    check_float("sigma", sigma, minimum=0.0)
    check_int("num_samples", num_samples, minimum=1)
    check_float("lam", lam, minimum=0.0, maximum=1.0)
    check_choice("scale", scale, SCALES)


# --- Hessian-trace penalty ---------------------------------------------------------------------------------------

class TracePenalty(NamedTuple):
    """The loss at the current weights, the Hutchinson estimate of Tr(H) (before ``weight``) and the number of
    Hessian-vector products computed (each then differentiated once more for the penalty's gradient)."""

    loss: float
    trace: float
    num_matvecs: int = 0


def trace_penalty(model: torch.nn.Module, loss_fn: Callable[[], Tensor], *, weight: float, num_matvecs: int = 1,
                  include_loss: bool = False, parameters: str | Iterable[str] | None = None,
                  generator: torch.Generator | None = None, num_probes: int | None = None) -> TracePenalty:
    """Add ``weight * grad T(W)`` (and ``grad L(W)`` with ``include_loss``) to ``.grad``, by double backward.

    ``T(W) = (1/m) sum_{j=1..m} v_j^T H(W) v_j`` is the Hutchinson estimate of the trace of the Hessian of
    ``L = loss_fn()`` with respect to ``parameters`` (names or prefixes; default all trainable), with
    Rademacher (+-1) probes ``v_j`` (``m = num_matvecs``, the number of Hessian-vector products; ``E T = Tr(H)``). ``generator`` draws, probe by probe,
    one tensor per selected parameter in ``model.named_parameters()`` order. ``H v`` comes from
    differentiating ``grad L . v`` (``create_graph=True``) and ``grad T`` from differentiating ``v^T H v``
    again (third derivatives), for every trainable parameter; gradients are accumulated into ``.grad`` as
    ``backward`` does. ``loss_fn`` must be twice differentiable (e.g. tanh/softplus, not only ReLU, whose
    Hessian ignores the kinks). Cost: one forward, one backward with graph, then per probe one
    Hessian-vector product with graph plus one backward through it, about ``1 + 3m`` backward passes;
    memory of one double-backward graph. Returns the loss, ``T`` (unweighted) and the number of products computed
    (``m``, or 0 where the gradient does not depend on the selected parameters). ``num_probes`` is the deprecated
    name of ``num_matvecs``.
    """
    num_matvecs = renamed("num_probes", "num_matvecs", num_probes, num_matvecs, default=1)
    weight = check_float("weight", weight, minimum=0.0)
    num_matvecs = check_int("num_matvecs", num_matvecs, minimum=1)
    trainable, selected = _select(model, parameters)
    chosen = [trainable[index] for index in selected]
    total: list[Tensor | None] = [None] * len(trainable)
    estimate, products = 0.0, 0
    with torch.enable_grad():
        loss = _scalar(loss_fn())
        if not loss.requires_grad:
            raise RuntimeError("loss_fn() returned a loss that does not depend on any trainable parameter")
        grads = torch.autograd.grad(loss, chosen, create_graph=True, allow_unused=True)
        for _ in range(num_matvecs):
            probes = [_rademacher(param, generator) for param in chosen]
            terms = [(grad * probe).sum() for grad, probe in zip(grads, probes)
                     if grad is not None and grad.requires_grad]
            if not terms:  # the gradient is constant in the selected parameters: H = 0
                continue
            hvps = torch.autograd.grad(sum(terms), chosen, create_graph=True, allow_unused=True)
            products += 1
            quads = [(hvp * probe).sum() for hvp, probe in zip(hvps, probes) if hvp is not None]
            if not quads:
                continue
            quad = sum(quads)
            estimate += float(quad.detach()) / num_matvecs
            if weight > 0 and quad.requires_grad:
                _accumulate(total, list(torch.autograd.grad(quad * (weight / num_matvecs), trainable,
                                                             retain_graph=True, allow_unused=True)), 1.0)
        if include_loss:
            _accumulate(total, list(torch.autograd.grad(loss, trainable, allow_unused=True)), 1.0)
    _add_to_grad(trainable, total)
    return TracePenalty(loss=float(loss.detach()), trace=estimate, num_matvecs=products)


def _rademacher(param: Tensor, generator: torch.Generator | None) -> Tensor:
    device = generator.device if generator is not None else param.device
    bits = torch.randint(0, 2, param.shape, device=device, generator=generator)
    return bits.to(device=param.device, dtype=param.dtype).mul_(2).sub_(1)


# --- shared helpers --------------------------------------------------------------------------------------------

def _select(model: torch.nn.Module, parameters: str | Iterable[str] | None) -> tuple[list[Tensor], list[int]]:
    """(trainable parameters in ``named_parameters`` order, indices of those selected by ``parameters``)."""
    named = list(model.named_parameters())
    trainable = [(name, param) for name, param in named if param.requires_grad]
    if not trainable:
        raise ValueError("the model has no parameter with requires_grad=True")
    if parameters is None:
        return [param for _, param in trainable], list(range(len(trainable)))
    wanted = [parameters] if isinstance(parameters, str) else list(parameters)
    if not wanted:
        raise ValueError("parameters is empty; pass None to select every trainable parameter")

    def matches(name: str, item: str) -> bool:
        return name == item or name.startswith(item + ".")

    for item in wanted:
        if not any(matches(name, item) for name, _ in named):
            raise KeyError(f"no parameter of the model is named {item!r} or lies under it")
        if not any(matches(name, item) for name, _ in trainable):
            raise ValueError(f"parameters {item!r}: every matching parameter has requires_grad=False")
    selected = [index for index, (name, _) in enumerate(trainable) if any(matches(name, item) for item in wanted)]
    return [param for _, param in trainable], selected


def _scalar(loss: Any) -> Tensor:
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise ValueError("loss_fn() must return a scalar tensor (the mean loss of the batch)")
    return loss.reshape(())

