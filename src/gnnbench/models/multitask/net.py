"""Multitask encode-process-decode networks over several CLRS-30 algorithms.

Every algorithm keeps its own encoders and decoders (an :class:`~gnnbench.models.algo.EncodeProcessDecode` head,
built from its spec); the ``L``-layer processor stack, applied at every hint step, is where the variants differ:

* ``stn``: single-task networks, every algorithm with layers of its own (the tree of singletons);
* ``mtn``: one fully shared stack (the tree of one group per depth);
* ``branched``: a :class:`~.tree.Tree`: at depth ``l`` one layer per group of algorithms, each algorithm routed only
  through its groups' layers (so the layers of other branches get exactly zero gradient from its loss);
* ``mmoe``: multi-gate mixture of experts (Ma et al., KDD 2018, https://doi.org/10.1145/3219819.3220007): at every
  depth ``num_experts`` shared processor layers and, per algorithm, a gate (a linear over the graph's mean of
  ``[node_fts, hidden]``) whose softmax weighs the experts' hidden states and edge features.

A head's processor is a :class:`~gnnbench.models.algo.stack.ProcessorStack` that routes through layers owned by the
network (``layers.<depth - 1>.<group>`` for the tree variants, ``layers.<depth - 1>.experts.<k>`` and
``layers.<depth - 1>.gates.<algorithm>`` for MMoE), so every parameter is registered once.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ...algo.specs import ALGORITHMS, check_algorithm
from ...arguments import check_choice, check_int
from ..algo.batches import TorchBatch
from ..algo.net import EncodeProcessDecode
from ..algo.processors import PROCESSORS, haiku_linear, init_haiku_linear_, make_processor
from ..algo.stack import ProcessorStack, threads_pair_state
from .tree import Tree

VARIANTS = ("stn", "mtn", "mmoe", "branched")
#: Options passed through to every head (``EncodeProcessDecode`` keywords).
HEAD_OPTIONS = ("hint_mode", "hint_repred_mode", "encoder_init", "dropout", "nb_msg_passing_steps",
                "hint_teacher_forcing")


def _follow(layer: nn.Module) -> nn.Module:
    """A layer below depth 1 (see :func:`~gnnbench.models.algo.stack.chain`)."""
    if threads_pair_state(layer):
        layer.drop_composition()
    return layer


class MMoELayer(nn.Module):
    """One depth of a multi-gate mixture of experts: shared expert processors, a softmax gate per algorithm."""

    def __init__(self, experts: Sequence[nn.Module], algorithms: Sequence[str], hidden: int,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.experts = nn.ModuleList(experts)
        self.emits_edge_fts = bool(experts[0].emits_edge_fts)
        self.threads_pair_state = threads_pair_state(experts[0])
        self.gates = nn.ModuleDict()
        for algorithm in algorithms:
            self.gates[algorithm] = init_haiku_linear_(haiku_linear(2 * hidden, len(experts)), generator)

    def forward(self, node_fts: torch.Tensor, edge_fts: torch.Tensor, graph_fts: torch.Tensor,
                adj_mat: torch.Tensor, hidden: torch.Tensor, *, algorithm: str,
                pair_state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        pooled = torch.cat([node_fts, hidden], dim=-1).mean(dim=1)  # [B, 2H]
        weights = torch.softmax(self.gates[algorithm](pooled), dim=-1)  # [B, E]
        out, edge_out = None, None
        for k, expert in enumerate(self.experts):
            extra = {"pair_state": pair_state} if pair_state is not None else {}
            h, e = expert(node_fts, edge_fts, graph_fts, adj_mat, hidden, **extra)
            w = weights[:, k]
            out = w.view(-1, 1, 1) * h if out is None else out + w.view(-1, 1, 1) * h
            if e is not None:
                edge_out = w.view(-1, 1, 1, 1) * e if edge_out is None else edge_out + w.view(-1, 1, 1, 1) * e
        return out, edge_out


class MultitaskNet(nn.Module):
    """Per-algorithm heads over an ``L``-layer processor stack shared, branched or mixed (see the module docstring).

    >>> net = MultitaskNet(["bfs", "dfs"], "mpnn", hidden=64, variant="branched",
    ...                    tree=Tree.from_partitions(["bfs", "dfs"], [[["bfs", "dfs"]], [["bfs"], ["dfs"]]]))
    >>> net.loss("bfs", batch).backward()   # only bfs's head, layer 1 and bfs's layer 2 get gradients
    """

    def __init__(self, algorithms: Sequence[str], processor: str = "mpnn", hidden: int = 128, num_layers: int = 3, *,
                 variant: str = "branched", tree: Tree | None = None, num_experts: int = 3,
                 use_ln: bool = True, nb_triplet_fts: int = 8, nb_heads: int = 1,
                 generator: torch.Generator | None = None, **head_options: Any) -> None:
        super().__init__()
        algorithms = tuple(check_algorithm(a) for a in algorithms)
        if not algorithms:
            raise ValueError("algorithms must name at least one algorithm")
        if len(set(algorithms)) != len(algorithms):
            raise ValueError(f"algorithms lists an algorithm twice: {', '.join(algorithms)}")
        check_choice("processor", processor, PROCESSORS)
        self.variant = check_choice("variant", variant, VARIANTS)
        hidden = check_int("hidden", hidden, minimum=1)
        unknown = sorted(set(head_options) - set(HEAD_OPTIONS))
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(unknown)} (options: {', '.join(HEAD_OPTIONS)})")
        if variant == "branched":
            if tree is None:
                raise ValueError("variant 'branched' needs a tree")
            if set(tree.algorithms) != set(algorithms):
                raise ValueError(f"the tree's algorithms ({', '.join(tree.algorithms)}) differ from the network's "
                                 f"({', '.join(algorithms)})")
            num_layers = tree.num_layers
        else:
            if tree is not None:
                raise ValueError(f"variant {variant!r} takes no tree (its structure is fixed)")
            num_layers = check_int("num_layers", num_layers, minimum=1)
            tree = {"stn": Tree.single_task, "mtn": Tree.shared}.get(variant, lambda *_: None)(algorithms, num_layers)
        num_experts = check_int("num_experts", num_experts, minimum=1)
        self.algorithms, self.tree, self.hidden, self.num_layers = algorithms, tree, hidden, num_layers
        self.config = dict(algorithms=list(algorithms), processor=processor, hidden=hidden, num_layers=num_layers,
                           variant=variant, tree=tree.to_dict() if tree is not None else None,
                           num_experts=num_experts if variant == "mmoe" else None, use_ln=use_ln,
                           nb_triplet_fts=nb_triplet_fts, nb_heads=nb_heads, **head_options)

        def layer() -> nn.Module:
            return make_processor(processor, hidden, nb_triplet_fts=nb_triplet_fts, use_ln=use_ln,
                                  nb_heads=nb_heads, generator=generator)

        def follower() -> nn.Module:  # a layer below depth 1: reads the pair state of the layer above it
            return _follow(layer())

        self.layers = nn.ModuleList()
        if variant == "mmoe":
            for depth in range(num_layers):
                make = layer if depth == 0 else follower
                self.layers.append(MMoELayer([make() for _ in range(num_experts)], algorithms, hidden, generator))
        else:
            for depth, groups in enumerate(tree.depths):
                make = layer if depth == 0 else follower
                self.layers.append(nn.ModuleDict({str(g): make() for g in range(len(groups))}))
        emits = bool(self.layers[0].emits_edge_fts if variant == "mmoe" else self.layers[0]["0"].emits_edge_fts)
        self.heads = nn.ModuleDict()
        for algorithm in algorithms:
            route = ProcessorStack(self._route(algorithm), emits_edge_fts=emits, owned=False)
            self.heads[algorithm] = EncodeProcessDecode(algorithm, route, hidden, use_ln=use_ln,
                                                        nb_triplet_fts=nb_triplet_fts, nb_heads=nb_heads,
                                                        generator=generator, **head_options)

    def _route(self, algorithm: str) -> list[Any]:
        if self.variant == "mmoe":
            return [functools.partial(depth, algorithm=algorithm) for depth in self.layers]
        return [self.layers[d][str(g)] for d, g in enumerate(self.tree.route(algorithm))]

    def layer_modules(self, algorithm: str) -> list[nn.Module]:
        """The modules ``algorithm`` runs through, one per depth (MMoE: the depth's whole mixture)."""
        if self.variant == "mmoe":
            return list(self.layers)
        return [self.layers[d][str(g)] for d, g in enumerate(self.tree.route(algorithm))]

    def head(self, algorithm: str) -> EncodeProcessDecode:
        """``algorithm``'s network (its encoders and decoders, routed through its layers): ``predict``, ``loss``."""
        if algorithm not in self.heads:
            raise ValueError(f"{algorithm!r} is not one of the network's algorithms ({', '.join(self.algorithms)})")
        return self.heads[algorithm]

    def loss(self, algorithm: str, batch: TorchBatch) -> torch.Tensor:
        """CLRS-30's training loss of ``algorithm`` on its batch."""
        return self.head(algorithm).loss(batch)

    def total_loss(self, batches: Mapping[str, TorchBatch]) -> torch.Tensor:
        """Sum of the algorithms' losses on their batches (``{algorithm: batch}``)."""
        total = None
        for algorithm, batch in batches.items():
            term = self.loss(algorithm, batch)
            total = term if total is None else total + term
        if total is None:
            raise ValueError("batches is empty")
        return total

    @torch.no_grad()
    def predict(self, algorithm: str, batch: TorchBatch) -> dict[str, torch.Tensor]:
        return self.head(algorithm).predict(batch)

    def layer_parameters(self, first_depth: int) -> dict[str, nn.Parameter]:
        """``{name: parameter}`` of the processor layers at depths ``first_depth..L`` (1-based)."""
        first_depth = check_int("first_depth", first_depth, minimum=1, maximum=self.num_layers)
        prefixes = tuple(f"layers.{d - 1}." for d in range(first_depth, self.num_layers + 1))
        return {name: p for name, p in self.named_parameters() if name.startswith(prefixes)}

    def freeze_below(self, depth: int) -> None:
        """Stop training the processor layers above ``depth`` (depths ``1..depth - 1``); heads stay trainable."""
        depth = check_int("depth", depth, minimum=1, maximum=self.num_layers)
        for d in range(depth - 1):
            for p in self.layers[d].parameters():
                p.requires_grad_(False)


@torch.no_grad()
def inherit(child: MultitaskNet, parent: MultitaskNet) -> None:
    """Start ``child`` from ``parent``'s weights: each head from the parent's head of its algorithm, each layer from
    the parent's layer that all its group's algorithms ran through (a child's tree refines the parent's)."""
    if child.variant == "mmoe" or parent.variant == "mmoe":
        raise ValueError("inherit works on tree networks (stn, mtn, branched), not mmoe")
    if child.num_layers != parent.num_layers:
        raise ValueError(f"child has {child.num_layers} layers, parent {parent.num_layers}")
    for algorithm in child.algorithms:
        if algorithm not in parent.heads:
            raise ValueError(f"the parent network has no {algorithm!r} head")
        child.heads[algorithm].load_state_dict(parent.heads[algorithm].state_dict())
    for depth, groups in enumerate(child.tree.depths, start=1):
        for g, group in enumerate(groups):
            sources = {parent.tree.group_of(a, depth) for a in group}
            if len(sources) > 1:
                raise ValueError(f"depth {depth}: the child's group {', '.join(group)} runs through {len(sources)} "
                                 f"of the parent's layers; a child may only split the parent's groups")
            source = parent.layers[depth - 1][str(sources.pop())]
            child.layers[depth - 1][str(g)].load_state_dict(source.state_dict())


__all__ = ["ALGORITHMS", "HEAD_OPTIONS", "MMoELayer", "MultitaskNet", "VARIANTS", "inherit"]
