"""Reference per-sample gradients for the task-affinity tests and benchmark: a Python loop over the graphs, each one's
output function differentiated by ``torch.autograd.grad`` on a batch of one (no vmap, no length buckets)."""

from __future__ import annotations

import torch

from gnnbench.models.algo.batches import TorchBatch
from gnnbench.models.multitask.gradients import output_function


def loop_gradients(net, algorithm: str, batch: TorchBatch, first_depth: int
                   ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``({name: [B, ...]}, [B])``: every graph's gradient of ``f_s`` with respect to ``net.layer_parameters``
    and ``f_s``, one graph at a time."""
    params = net.layer_parameters(first_depth)
    names = sorted(params)
    was_training = net.training
    net.eval()
    grads: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    values = []
    try:
        for i in range(batch.num_graphs):
            value = output_function(net.head(algorithm), batch.select([i]))[0]
            for name, g in zip(names, torch.autograd.grad(value, [params[name] for name in names],
                                                          allow_unused=True)):
                grads[name].append(torch.zeros_like(params[name]) if g is None else g)
            values.append(value.detach())
    finally:
        net.train(was_training)
    return {name: torch.stack(gs) for name, gs in grads.items()}, torch.stack(values)
