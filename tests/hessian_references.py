"""Independent references for the Hessian tests: matrices with known spectra, dense Hessians of small models
by ``torch.autograd.functional.hessian`` (never through :class:`gnnbench.hessian.HessianOperator`), and a tiny
MLP shared by the estimator, trace and bound tests."""

from __future__ import annotations

from collections.abc import Callable

import torch

F64 = torch.float64


def spectral_matrix(lam: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """``U diag(lam) U^T`` with a random orthogonal ``U`` (seeded): a symmetric matrix with spectrum ``lam``."""
    gen = torch.Generator().manual_seed(seed)
    d = lam.numel()
    basis = torch.linalg.qr(torch.randn(d, d, dtype=F64, generator=gen)).Q
    h = (basis * lam.to(F64)) @ basis.T
    return (h + h.T) / 2


def dense_hessian(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                  loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = torch.nn.functional.cross_entropy,
                  ) -> torch.Tensor:
    """The Hessian of ``loss(model(x), y)`` over the flat parameters (``named_parameters`` order)."""
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])

    def objective(vector: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(vector, [s.numel() for s in shapes])
        params = {n: piece.reshape(s) for n, piece, s in zip(names, pieces, shapes)}
        return loss(torch.func.functional_call(model, params, (x,)), y)

    return torch.autograd.functional.hessian(objective, flat)


def tiny_mlp() -> tuple[torch.nn.Module, Callable, list[tuple[torch.Tensor, torch.Tensor]]]:
    """A tanh MLP 4-6-3 (float64) with cross-entropy on three batches of 16; Hessian blocks '0' (30), '2' (21)."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double()
    batches = [(torch.randn(16, 4, dtype=F64, generator=gen), torch.randint(0, 3, (16,), generator=gen))
               for _ in range(3)]

    def loss_fn(batch):
        x, y = batch
        return torch.nn.functional.cross_entropy(model(x), y)

    return model, loss_fn, batches
