"""Estimators on real graph models against their exact (dense) Hessians: GCN, GIN, GAT on a generated
graph, and a small GNN on algorithmic-reasoning (BFS) data. The dense Hessians come from
torch.autograd.functional.hessian over the flattened parameters (independently of HessianOperator)."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.nn import GATConv, GCNConv, GINConv

from gnnbench.hessian import HessianOperator
from gnnbench.hessian.estimators import eigenvalues_of, quadratic_form_of, spectral_density_of, trace_of


def _graph(seed: int = 0, nodes: int = 14, edges: int = 40):
    generator = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, nodes, (2, edges), generator=generator)
    x = torch.randn(nodes, 3, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 2, (nodes,), generator=generator)
    return x, edge_index, y


class TwoLayer(torch.nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        if kind == "gcn":
            self.conv1, self.conv2 = GCNConv(3, 4), GCNConv(4, 2)
        elif kind == "gin":
            self.conv1 = GINConv(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 4)))
            self.conv2 = GINConv(torch.nn.Linear(4, 2))
        else:
            self.conv1, self.conv2 = GATConv(3, 3, heads=2), GATConv(6, 2, heads=1)

    def forward(self, x, edge_index):
        return self.conv2(torch.tanh(self.conv1(x, edge_index)), edge_index)


def _algorithmic_model_and_loss():
    """A small GNN predicting BFS reachability (the reach_h hint of the last step) on generated CLRS data."""
    from gnnbench.algo import sample

    torch.manual_seed(0)
    traces = sample("bfs", 3, n=6, seed=5)
    graphs = []
    for item in traces:
        adjacency = torch.tensor(item.inputs["adj"], dtype=torch.float64)
        edge_index = adjacency.nonzero().t()
        features = torch.stack([torch.tensor(item.inputs["s"], dtype=torch.float64),
                                torch.tensor(item.inputs["pos"], dtype=torch.float64)], dim=1)
        target = torch.tensor(item.hints["reach_h"][-1], dtype=torch.float64)
        graphs.append((features, edge_index, target))
    model = torch.nn.ModuleDict({"conv": GCNConv(2, 4), "out": torch.nn.Linear(4, 1)}).double()

    def loss_fn():
        total = 0.0
        for features, edge_index, target in graphs:
            hidden = torch.tanh(model["conv"](features, edge_index))
            logits = model["out"](hidden).squeeze(-1)
            total = total + torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        return total / len(graphs)

    return model, loss_fn


def _model_and_loss(kind: str):
    if kind == "algorithmic":
        return _algorithmic_model_and_loss()
    torch.manual_seed(1)
    model = TwoLayer(kind).double()
    x, edge_index, y = _graph()
    return model, lambda: torch.nn.functional.cross_entropy(model(x, edge_index), y)


class _Closure(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, loss_fn) -> None:
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self) -> torch.Tensor:
        return self.loss_fn()


def _autograd_hessian(model: torch.nn.Module, loss_fn, names: list[str]) -> torch.Tensor:
    """The loss's Hessian over the named parameters (flattened in that order) by torch.autograd.functional.hessian,
    the parameters swapped in by torch.func.functional_call."""
    params = dict(model.named_parameters())
    shapes = [params[name].shape for name in names]
    flat = torch.cat([params[name].detach().reshape(-1) for name in names])
    closure = _Closure(model, loss_fn)

    def f(vector):
        pieces = torch.split(vector, [shape.numel() for shape in shapes])
        swapped = {f"model.{name}": piece.reshape(shape) for name, piece, shape in zip(names, pieces, shapes)}
        return torch.func.functional_call(closure, swapped, ())

    return torch.autograd.functional.hessian(f, flat)


KINDS = ["gcn", "gin", "gat", "algorithmic"]


@pytest.fixture(scope="module", params=KINDS)
def exact(request):
    model, loss_fn = _model_and_loss(request.param)
    op = HessianOperator(model, loss_fn, strategy="double-backward")
    dense = _autograd_hessian(model, loss_fn, list(op.parameter_names))
    assert torch.allclose(dense, dense.T, atol=1e-10)
    assert torch.allclose(op.dense(), dense, atol=1e-10)  # the operator's products, column by column
    return request.param, op, dense


def test_traces_are_within_stderr_and_within_one_percent(exact):
    kind, op, dense = exact
    blocks = {group.name: float(torch.trace(dense[group.start:group.stop, group.start:group.stop]))
              for group in op.groups}
    rough = trace_of(op, method="hutchinson", num_matvecs=30, per_layer=True, seed=0)
    for name, value in blocks.items():
        error = abs(rough.per_layer[name] - value)
        assert error <= 4 * (rough.per_layer_stderr[name] or 0.0) + 1e-9, (kind, name)
    block = trace_of(op, method="hutchinson", num_matvecs=60, probes="block", seed=0)
    for name, value in blocks.items():
        assert abs(block.per_layer[name] - value) <= 4 * (block.per_layer_stderr[name] or 0.0) + 1e-9, (kind, name)
    # Hutch++ with 3d products: the sketch spans the space, per-layer traces are exact (d + d products)
    precise = trace_of(op, method="hutch++", num_matvecs=3 * op.dim, per_layer=True, seed=1)
    assert precise.num_matvecs == 2 * op.dim and precise.stderr == 0.0
    for name, value in blocks.items():
        assert precise.per_layer[name] == pytest.approx(value, rel=1e-8, abs=1e-10), (kind, name)
    whole = trace_of(op, method="hutchinson", num_matvecs=300, per_layer=False, seed=2)
    assert abs(whole.total - float(torch.trace(dense))) <= 4 * whole.stderr + 1e-9


def test_eigenvalues_match_the_dense_spectrum(exact):
    kind, op, dense = exact
    spectrum = torch.linalg.eigvalsh(dense)
    top = eigenvalues_of(op, k=3, which="largest", tol=1e-8, num_matvecs=900, seed=0)
    bottom = eigenvalues_of(op, k=2, which="smallest", tol=1e-8, num_matvecs=600, seed=0)
    scale = spectrum.abs().max()
    assert torch.allclose(top, spectrum.flip(0)[:3], rtol=1e-3, atol=1e-3 * scale), kind
    assert torch.allclose(bottom, spectrum[:2], rtol=1e-3, atol=1e-3 * scale), kind


def test_quadratic_forms_are_exact(exact):
    kind, op, dense = exact
    direction = torch.randn(op.dim, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    result = quadratic_form_of(op, direction)
    assert result.total == pytest.approx(float(direction @ dense @ direction), rel=1e-8, abs=1e-10)
    for group in op.groups:
        piece = direction[group.start:group.stop]
        block = dense[group.start:group.stop, group.start:group.stop]
        assert result.per_layer[group.name] == pytest.approx(float(piece @ block @ piece), rel=1e-8, abs=1e-10)


def test_spectral_density_moments(exact):
    kind, op, dense = exact
    density = spectral_density_of(op, num_runs=12, num_steps=min(op.dim, 20), seed=0)
    moments = density.moments(3)
    stderr = density.moment_stderr(3)
    spectrum = torch.linalg.eigvalsh(dense)
    for power in range(4):
        exact_moment = float((spectrum ** power).mean())
        assert abs(float(moments[power]) - exact_moment) <= 5 * float(stderr[power]) + 1e-6 * (1 + abs(exact_moment)), \
            (kind, power)
