"""Losses of the algorithmic baselines, one per CLRS-30 field type, as CLRS-30 defines them.

Predictions are logits (masks, mask_one, categorical, pointers) or values (scalars);
truths are the float arrays of ``TraceSet.clrs_batch()`` (pointers as node indices),
batch-first for outputs (``[B, ...]``) and time-first for hints (``[T, B, ...]``).
The semantics follow CLRS-30's ``losses.py`` (dm-clrs 2.0.3,
https://github.com/google-deepmind/clrs/blob/v2.0.3/clrs/_src/losses.py):

* scalar: squared error; mask: binary cross-entropy on logits, entries equal to -1
  (``OutputClass.MASKED``) left out; mask_one and categorical: softmax
  cross-entropy over the last axis (masked entries weigh 0); pointer: softmax
  cross-entropy over every candidate node.
* outputs are averaged as CLRS-30 averages them (categorical over the positive
  entries, mask over the unmasked ones, the rest over all entries);
* hints: step t's prediction (t = 1 .. T-1; step 0 is the input's hint) is scored
  only while ``t < length`` of its trace, and the loss is the sum over scored
  entries divided by their number (at least ``EPS``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...algo.specs import OutputClass, Type

EPS = 1e-12
TYPES = (Type.SCALAR, Type.MASK, Type.MASK_ONE, Type.CATEGORICAL, Type.POINTER)


def output_loss(kind: str, pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Loss of an output field of CLRS-30 type ``kind`` (see the module docstring)."""
    loss, mask = _elementwise(kind, pred, truth)
    if kind == Type.SCALAR or kind == Type.POINTER:
        return loss.mean()
    if kind == Type.MASK:
        return (loss * mask).sum() / mask.sum()
    return loss.sum() / (truth == OutputClass.POSITIVE).sum()  # mask_one, categorical


def hint_loss(kind: str, preds: torch.Tensor, truth: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Loss of a hint field: ``preds`` ``[T - 1, B, ...]`` predict ``truth[1:]`` of ``truth``
    ``[T, B, ...]``; step t + 1 counts while ``t + 1 < lengths[b]``."""
    if preds.shape[0] != truth.shape[0] - 1:
        raise ValueError(f"hint_loss: {preds.shape[0]} predicted steps for a truth of {truth.shape[0]} steps "
                         f"(expected {truth.shape[0] - 1}: step 0 is not predicted)")
    loss, mask = _elementwise(kind, preds, truth[1:], hint=True)
    steps = torch.arange(1, truth.shape[0], device=truth.device)[:, None]
    alive = (lengths.to(truth.device)[None, :] > steps).to(loss.dtype)
    mask = mask * alive.reshape(*alive.shape, *([1] * (loss.dim() - 2)))
    return (loss * mask).sum() / torch.clamp(mask.sum(), min=EPS)


def _elementwise(kind: str, pred: torch.Tensor, truth: torch.Tensor,
                 hint: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-entry loss and weight (1 where the entry counts)."""
    ones = torch.ones((), dtype=pred.dtype, device=pred.device)
    if kind == Type.SCALAR:
        loss = (pred - truth) ** 2
        return loss, ones.expand_as(loss)
    if kind == Type.MASK:  # binary cross-entropy on logits, written as CLRS-30 writes it, with JAX's
        # derivatives at a logit of exactly 0 (e.g. a node whose features are all 0 at initialisation):
        # jnp.maximum splits a tie (1/2), d|x|/dx is 1 there (torch's clamp gives 1 and abs 0)
        zero = torch.zeros((), dtype=pred.dtype, device=pred.device)
        loss = torch.maximum(pred, zero) - pred * truth + torch.log1p(torch.exp(-torch.where(pred >= 0, pred, -pred)))
        return loss, (truth != OutputClass.MASKED).to(pred.dtype)
    if kind in (Type.MASK_ONE, Type.CATEGORICAL):
        weights = truth if hint else truth * (truth != OutputClass.MASKED)
        loss = -(weights * F.log_softmax(pred, dim=-1)).sum(-1)
        if kind == Type.CATEGORICAL and hint:
            return loss, (truth == OutputClass.POSITIVE).any(-1).to(pred.dtype)
        return loss, ones.expand_as(loss)
    if kind == Type.POINTER:
        target = truth.long()
        if (target < 0).any() or (target >= pred.shape[-1]).any():
            raise ValueError(f"pointer loss: target node outside 0..{pred.shape[-1] - 1}")
        loss = -F.log_softmax(pred, dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
        return loss, ones.expand_as(loss)
    raise ValueError(f"unknown CLRS-30 type {kind!r}; expected one of {', '.join(TYPES)}")
