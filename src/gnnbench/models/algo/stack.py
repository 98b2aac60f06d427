"""Processor stacks: ``L`` processor layers applied in turn at every hint step.

CLRS-30 runs one processor per hint step; the branching study (Li et al., "Efficiently learning branching
networks for multitask algorithmic reasoning", https://arxiv.org/abs/2512.01113) stacks ``L`` of them. Layer ``l``
reads the step's encoded node, edge and graph features and the hidden state that layer ``l - 1`` produced (layer 1
reads the previous step's hidden state); the stack returns the last layer's hidden state and edge features.

Layers that thread a pair state (``threads_pair_state``: the Edge Transformer, whose edge output is its whole
state over node pairs) get the previous layer's edge output as ``pair_state=``, so ``L`` of them are one
``L``-layer transformer over node pairs per step, as in the study; other layers all read the step's edge features.

A :class:`ProcessorStack` either owns its layers (a single-task network with ``num_layers > 1``) or routes through
layers owned elsewhere (``owned=False``: a multitask network's route for one algorithm through shared or branched
layers; the layers' parameters stay registered once, in the multitask network).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

#: A processor layer's call: ``(node_fts, edge_fts, graph_fts, adj_mat, hidden) -> (hidden, edge_fts or None)``.
Layer = Callable[..., tuple[torch.Tensor, "torch.Tensor | None"]]


class ProcessorStack(nn.Module):
    """``layers`` applied in turn, with the call and ``emits_edge_fts`` of one processor."""

    def __init__(self, layers: Sequence[Layer], *, emits_edge_fts: bool, owned: bool = True) -> None:
        super().__init__()
        if not layers:
            raise ValueError("a processor stack needs at least one layer")
        self.emits_edge_fts = bool(emits_edge_fts)
        self.owned = owned
        if owned:
            self.layers = nn.ModuleList(layers)
        else:  # a plain tuple: not registered, so the owner's parameters are not listed twice
            self._route = tuple(layers)

    @property
    def route(self) -> tuple[Layer, ...]:
        """The layers in the order they run."""
        return tuple(self.layers) if self.owned else self._route

    def forward(self, node_fts: torch.Tensor, edge_fts: torch.Tensor, graph_fts: torch.Tensor,
                adj_mat: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        edge_out = None
        for layer in self.route:
            if edge_out is not None and threads_pair_state(layer):
                hidden, edge_out = layer(node_fts, edge_fts, graph_fts, adj_mat, hidden, pair_state=edge_out)
            else:
                hidden, edge_out = layer(node_fts, edge_fts, graph_fts, adj_mat, hidden)
        return hidden, edge_out


def chain(layers: Sequence[nn.Module]) -> list[nn.Module]:
    """``layers`` made one stack: the layers after the first that thread a pair state lose the weights that compose
    one (they never use them), so every parameter of the stack is trained."""
    for layer in list(layers)[1:]:
        if threads_pair_state(layer):
            layer.drop_composition()
    return list(layers)


def threads_pair_state(layer: Layer) -> bool:
    """Whether ``layer`` (a module, or a ``functools.partial`` of one) takes ``pair_state=``."""
    return bool(getattr(getattr(layer, "func", layer), "threads_pair_state", False))
