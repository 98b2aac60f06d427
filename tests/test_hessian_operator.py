"""Tests of gnnbench.hessian.operator: exact Hessians, groups, PyG message passing vs finite differences and dense
reimplementations, the scatter/forward-mode findings and their guards, and every bad-input path."""

from __future__ import annotations

import logging
import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_geometric")

from torch import nn  # noqa: E402
from torch.autograd.function import once_differentiable  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from torch_geometric.nn import GATConv, GCNConv, GINConv, SAGEConv  # noqa: E402
from torch_geometric.utils import segment  # noqa: E402

from gnnbench.hessian import operator as operator_module  # noqa: E402
from gnnbench.hessian.operator import (  # noqa: E402
    HessianError,
    HessianOperator,
    ParameterGroup,
    forward_ad_scatter_prod_is_wrong,
)
from gnnbench.hessian.params import make_groups, owner_name, select_parameters  # noqa: E402

STRATEGIES = ["double-backward", "forward-over-reverse"]
DT = torch.float64


# ------------------------------------------------------------------------------------------------ helpers
def flat_hessian(model: nn.Module, loss_of_output, names: list[str]) -> torch.Tensor:
    """Reference Hessian over the named parameters with torch.autograd.functional.hessian."""
    params = dict(model.named_parameters())
    shapes = [params[n].shape for n in names]
    sizes = [params[n].numel() for n in names]
    theta = torch.cat([params[n].detach().reshape(-1) for n in names])

    def f(flat: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(flat, sizes)
        replaced = {n: p.view(s) for n, p, s in zip(names, pieces, shapes)}
        return loss_of_output(replaced)

    return torch.autograd.functional.hessian(f, theta)


def fd_hvp(model: nn.Module, loss_fn, names: list[str], v: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Central finite differences of the gradient along v (independent of the operator)."""
    params = dict(model.named_parameters())
    plist = [params[n] for n in names]
    theta = [p.detach().clone() for p in plist]
    pieces = torch.split(v, [p.numel() for p in plist])

    def grad_at(sign: float) -> torch.Tensor:
        with torch.no_grad():
            for p, t, d in zip(plist, theta, pieces):
                p.copy_(t + sign * eps * d.view_as(p))
        g = torch.autograd.grad(loss_fn(), plist)
        return torch.cat([x.reshape(-1) for x in g])

    try:
        return (grad_at(1.0) - grad_at(-1.0)) / (2 * eps)
    finally:
        with torch.no_grad():
            for p, t in zip(plist, theta):
                p.copy_(t)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def mlp(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x = torch.randn(10, 4, dtype=DT)
    y = torch.randint(0, 3, (10,))
    return model, x, y


@pytest.fixture(autouse=True)
def _quiet_jit_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        yield


# ------------------------------------------------------------------------------------------------ exact Hessians
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_dense_matches_autograd_hessian(strategy: str) -> None:
    model, x, y = mlp()
    op = HessianOperator(model, lambda: F.cross_entropy(model(x), y), strategy=strategy)
    names = [n for n, _ in model.named_parameters()]
    ref = flat_hessian(model, lambda ps: F.cross_entropy(torch.func.functional_call(model, ps, (x,)), y), names)
    assert op.strategy == strategy and op.dim == 43 and op.dtype == DT and op.device.type == "cpu"
    assert torch.allclose(op.dense(), ref, atol=1e-12, rtol=1e-10)
    assert torch.allclose(op.flat_parameters(), torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    g = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
    assert torch.allclose(op.gradient(), torch.cat([t.reshape(-1) for t in g]))
    assert op.loss() == pytest.approx(float(F.cross_entropy(model(x), y).detach()))


def test_auto_uses_double_backward_on_cpu() -> None:
    model, x, y = mlp()
    op = HessianOperator(model, lambda: F.cross_entropy(model(x), y))
    assert op.requested_strategy == "auto" and op.strategy == "double-backward" and op.fallback_reason is None
    assert op.batch_probes is False  # the probe loop: as fast as PyHessian on CPU


def test_module_groups_slices_and_blocks() -> None:
    model, x, y = mlp()
    op = HessianOperator(model, lambda: F.cross_entropy(model(x), y))
    assert op.groups == (
        ParameterGroup("0", ("0.weight", "0.bias"), 0, 25),
        ParameterGroup("2", ("2.weight", "2.bias"), 25, 43),
    )
    assert [g.size for g in op.groups] == [25, 18]
    H = op.dense()
    sub = HessianOperator(model, lambda: F.cross_entropy(model(x), y), parameters=["2"])
    assert sub.dim == 18 and [g.name for g in sub.groups] == ["2"]
    assert torch.allclose(sub.dense(), H[op.groups[1].slice, op.groups[1].slice])


def test_parameter_and_all_groups_and_root_parameters() -> None:
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.tensor([1.5], dtype=DT))
            self.lin = nn.Linear(3, 2).double()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.scale * torch.tanh(self.lin(x))

    torch.manual_seed(0)
    model, x = Scaled(), torch.randn(6, 3, dtype=DT)

    def loss() -> torch.Tensor:
        return model(x).pow(2).sum()

    by_module = HessianOperator(model, loss)
    assert [(g.name, g.parameter_names) for g in by_module.groups] == [
        ("<root>", ("scale",)),
        ("lin", ("lin.weight", "lin.bias")),
    ]
    by_param = HessianOperator(model, loss, groups="parameter")
    assert [(g.name, g.start, g.stop) for g in by_param.groups] == [
        ("scale", 0, 1),
        ("lin.weight", 1, 7),
        ("lin.bias", 7, 9),
    ]
    everything = HessianOperator(model, loss, groups="all")
    assert everything.groups == (ParameterGroup("all", ("scale", "lin.weight", "lin.bias"), 0, 9),)
    assert torch.allclose(by_module.dense(), everything.dense())
    assert owner_name("scale") == "<root>" and owner_name("a.b.weight") == "a.b"


def test_make_groups_reorders_to_contiguous_blocks() -> None:
    groups = make_groups([("a.w", 2), ("b.w", 3), ("a.b", 1)], "module")
    assert groups == (ParameterGroup("a", ("a.w", "a.b"), 0, 3), ParameterGroup("b", ("b.w",), 3, 6))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_parameter_subsets(strategy: str) -> None:
    model, x, y = mlp()
    full = HessianOperator(model, lambda: F.cross_entropy(model(x), y)).dense()
    op = HessianOperator(model, lambda: F.cross_entropy(model(x), y), parameters=["2.bias", "0.weight"],
                         strategy=strategy)
    assert op.parameter_names == ("0.weight", "2.bias")  # named_parameters order
    assert [g.name for g in op.groups] == ["0", "2"]
    idx = torch.cat([torch.arange(0, 20), torch.arange(40, 43)])
    assert torch.allclose(op.dense(), full[idx][:, idx], atol=1e-12)
    assert op.parameter_shapes == {"0.weight": (5, 4), "2.bias": (3,)}


def test_frozen_parameters_are_skipped_by_default_and_under_prefixes() -> None:
    model, x, y = mlp()
    model[0].weight.requires_grad_(False)
    op = HessianOperator(model, lambda: F.cross_entropy(model(x), y))
    assert op.parameter_names == ("0.bias", "2.weight", "2.bias")
    assert [n for n, _ in select_parameters(model, "0")] == ["0.bias"]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_matmat_equals_stacked_matvecs_and_counts(strategy: str) -> None:
    model, x, y = mlp()
    op = HessianOperator(model, lambda: F.cross_entropy(model(x), y), strategy=strategy, chunk_size=3)
    assert op.num_matvecs == 0  # the construction check is not counted
    V = torch.randn(7, op.dim, dtype=DT)
    HV = op.matmat(V)
    assert op.num_matvecs == 7
    stacked = torch.stack([op.matvec(v) for v in V])
    assert op.num_matvecs == 14
    assert torch.allclose(HV, stacked, atol=1e-12)
    assert op.matmat(V[:0]).shape == (0, op.dim) and op.num_matvecs == 14
    op.dense()
    assert op.num_matvecs == 14 + op.dim
    op.finite_difference_error()
    assert op.num_matvecs == 14 + op.dim


@pytest.mark.parametrize("batch_probes", [True, False, None])
def test_double_backward_batched_loop_and_timed_choice_agree(batch_probes) -> None:
    model, x, y = mlp()
    op = HessianOperator(model, lambda: F.cross_entropy(model(x), y), strategy="double-backward", chunk_size=4)
    reference = op.dense()
    op.batch_probes = batch_probes
    V = torch.randn(9, op.dim, dtype=DT)
    assert torch.allclose(op.matmat(V), V @ reference, atol=1e-12)
    if batch_probes is None:  # decided by timing on the first product
        loop, batched = op.batch_timing  # seconds per probe of each way; the faster one is kept
        assert loop > 0 and batched > 0 and op.batch_probes == (batched < loop)


def test_cache_follows_parameter_updates_and_refresh() -> None:
    model, x, y = mlp()
    data = {"x": x}
    op = HessianOperator(model, lambda: F.cross_entropy(model(data["x"]), y))
    before = op.dense()
    with torch.no_grad():
        model[0].weight.mul_(1.5)
    after = op.dense()
    assert not torch.allclose(before, after)
    assert torch.allclose(after, HessianOperator(model, lambda: F.cross_entropy(model(x), y)).dense())
    data["x"] = 2 * x
    op.refresh()
    assert torch.allclose(op.dense(), HessianOperator(model, lambda: F.cross_entropy(model(2 * x), y)).dense())
    with op:
        op.matvec(torch.ones(op.dim, dtype=DT))
    assert op._cache is None  # released


def test_regulariser_through_model_parameters_works_with_forward_over_reverse() -> None:
    model, x, y = mlp()

    def loss() -> torch.Tensor:
        return F.cross_entropy(model(x), y) + sum(p.pow(4).sum() for p in model.parameters())

    fwd = HessianOperator(model, loss, strategy="forward-over-reverse")
    dbl = HessianOperator(model, loss, strategy="double-backward")
    assert torch.allclose(fwd.dense(), dbl.dense(), atol=1e-12)


def test_check_false_skips_validation_but_products_are_exact() -> None:
    model, x, y = mlp()
    op = HessianOperator(model, lambda: F.cross_entropy(model(x), y), check=False, strategy="forward-over-reverse")
    ref = HessianOperator(model, lambda: F.cross_entropy(model(x), y)).dense()
    assert torch.allclose(op.dense(), ref, atol=1e-12)


# ------------------------------------------------------------------------------------------------ PyG models
N_NODES, N_FEAT, N_CLASS = 12, 4, 3


def graph(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random continuous features (no ties for max aggregation), unique directed edges without self loops."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N_NODES, N_FEAT, generator=gen, dtype=DT)
    A = torch.rand(N_NODES, N_NODES, generator=gen) < 0.3
    A.fill_diagonal_(False)
    A[0, 1] = A[2, 0] = True  # node 0 sends and receives
    target, source = A.nonzero().t()  # A[i, j]: edge j -> i
    edge_index = torch.stack([source, target])
    y = torch.randint(0, N_CLASS, (N_NODES,), generator=gen)
    return x, edge_index, y, A


class TwoLayer(nn.Module):
    def __init__(self, conv1: nn.Module, conv2: nn.Module) -> None:
        super().__init__()
        self.conv1, self.conv2 = conv1, conv2

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return self.conv2(torch.tanh(self.conv1(x, edge_index)), edge_index)


def pyg_model(kind: str) -> nn.Module:
    torch.manual_seed(1)
    hidden = 5
    if kind == "gcn":
        model = TwoLayer(GCNConv(N_FEAT, hidden), GCNConv(hidden, N_CLASS))
    elif kind == "gin":
        model = TwoLayer(
            GINConv(nn.Sequential(nn.Linear(N_FEAT, hidden), nn.Tanh(), nn.Linear(hidden, hidden)), train_eps=True),
            GINConv(nn.Linear(hidden, N_CLASS)),
        )
    elif kind.startswith("sage-"):
        aggr = kind.split("-")[1]
        model = TwoLayer(SAGEConv(N_FEAT, hidden, aggr=aggr), SAGEConv(hidden, N_CLASS, aggr=aggr))
    elif kind == "gat":
        model = TwoLayer(GATConv(N_FEAT, 3, heads=2), GATConv(6, N_CLASS, heads=1))
    else:
        raise ValueError(kind)
    return model.double().eval()


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("kind", ["gcn", "gin", "sage-mean", "sage-max", "gat"])
def test_pyg_hvp_matches_finite_differences(kind: str, strategy: str) -> None:
    x, edge_index, y, _ = graph()
    model = pyg_model(kind)

    def loss() -> torch.Tensor:
        return F.cross_entropy(model(x, edge_index), y)

    op = HessianOperator(model, loss, strategy=strategy)
    assert op.strategy == strategy
    v = torch.randn(op.dim, generator=torch.Generator().manual_seed(3), dtype=DT)
    hv = op.matvec(v)
    assert rel(hv, fd_hvp(model, loss, list(op.parameter_names), v)) < 1e-7
    assert op.finite_difference_error(v) < 1e-7
    assert [g.name for g in op.groups][0].startswith("conv1")


def dense_two_layer(kind: str, A: torch.Tensor, x: torch.Tensor, ps: dict[str, torch.Tensor]) -> torch.Tensor:
    """The same two-layer networks written with a dense adjacency (A[i, j] = 1 for an edge j -> i)."""
    A = A.to(DT)

    def gcn(h: torch.Tensor, layer: str) -> torch.Tensor:
        A_hat = A + torch.eye(len(A), dtype=DT)
        d = A_hat.sum(1).rsqrt()
        return (d[:, None] * A_hat * d[None, :]) @ F.linear(h, ps[f"{layer}.lin.weight"]) + ps[f"{layer}.bias"]

    def sage(h: torch.Tensor, layer: str, aggr: str) -> torch.Tensor:
        if aggr == "mean":
            agg = (A @ h) / A.sum(1, keepdim=True).clamp(min=1)
        else:
            masked = h[None, :, :].masked_fill(A[:, :, None] == 0, -math.inf).amax(1)
            agg = torch.where(A.sum(1, keepdim=True) > 0, masked, torch.zeros_like(masked))
        return F.linear(agg, ps[f"{layer}.lin_l.weight"], ps[f"{layer}.lin_l.bias"]) + F.linear(
            h, ps[f"{layer}.lin_r.weight"]
        )

    conv = gcn if kind == "gcn" else (lambda h, layer: sage(h, layer, kind.split("-")[1]))
    return conv(torch.tanh(conv(x, "conv1")), "conv2")


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("kind", ["gcn", "sage-mean", "sage-max"])
def test_pyg_hessian_matches_dense_adjacency_reimplementation(kind: str, strategy: str) -> None:
    x, edge_index, y, A = graph()
    model = pyg_model(kind)
    names = [n for n, _ in model.named_parameters()]
    params = dict(model.named_parameters())
    assert torch.allclose(model(x, edge_index), dense_two_layer(kind, A, x, params), atol=1e-12)
    op = HessianOperator(model, lambda: F.cross_entropy(model(x, edge_index), y), strategy=strategy)
    assert list(op.parameter_names) == names
    ref = flat_hessian(model, lambda ps: F.cross_entropy(dense_two_layer(kind, A, x, ps), y), names)
    assert torch.allclose(op.dense(), ref, atol=1e-10)


# ------------------------------------------------------------------------------------------------ scatter findings
def test_finding_forward_mode_scatter_prod_is_wrong_double_backward_right() -> None:
    """Pins pytorch/pytorch#196702 in this torch: forward-mode AD of scatter_reduce(reduce='prod') (PyG
    aggr='mul') is silently wrong, double backward is right. Update the guard when this starts failing."""
    assert forward_ad_scatter_prod_is_wrong()
    x, edge_index, y, _ = graph()
    model = pyg_model("sage-mul")

    def loss() -> torch.Tensor:
        return F.cross_entropy(model(x, edge_index), y)

    names = [n for n, _ in model.named_parameters()]
    primals = tuple(p.detach() for p in model.parameters())
    v = torch.randn(sum(p.numel() for p in primals), generator=torch.Generator().manual_seed(3), dtype=DT)
    tangents = tuple(t.view_as(p) for t, p in zip(torch.split(v, [p.numel() for p in primals]), primals))

    def f(*ps: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(torch.func.functional_call(model, dict(zip(names, ps)), (x, edge_index)), y)

    raw = torch.func.jvp(torch.func.grad(f, argnums=tuple(range(len(names)))), primals, tangents)[1]
    raw = torch.cat([t.reshape(-1) for t in raw])
    fd = fd_hvp(model, loss, names, v)
    assert rel(raw, fd) > 0.1  # silently wrong
    op = HessianOperator(model, loss, strategy="double-backward")
    assert rel(op.matvec(v), fd) < 1e-7


def test_guard_refuses_forward_over_reverse_for_scatter_prod_and_names_layers() -> None:
    x, edge_index, y, _ = graph()
    model = pyg_model("sage-mul")
    with pytest.raises(HessianError, match=r"scatter_reduce\(reduce='prod'\) in layer\(s\) conv1.aggr_module, "
                                           r"conv2.aggr_module.*196702.*double-backward"):
        HessianOperator(model, lambda: F.cross_entropy(model(x, edge_index), y), strategy="forward-over-reverse")


def test_auto_falls_back_from_forward_over_reverse_for_scatter_prod(monkeypatch, caplog) -> None:
    monkeypatch.setattr(operator_module, "preferred_strategy", lambda device: "forward-over-reverse")
    x, edge_index, y, _ = graph()
    model = pyg_model("sage-mul")

    def loss() -> torch.Tensor:
        return F.cross_entropy(model(x, edge_index), y)

    with caplog.at_level(logging.WARNING, logger="gnnbench.hessian.operator"):
        op = HessianOperator(model, loss)
    assert op.strategy == "double-backward" and "scatter_reduce" in op.fallback_reason
    assert any("scatter_reduce" in r.getMessage() for r in caplog.records)
    assert op.finite_difference_error() < 1e-7


def test_cross_check_catches_wrong_forward_mode_even_without_the_known_op_guard(monkeypatch) -> None:
    monkeypatch.setattr(operator_module, "forward_ad_scatter_prod_is_wrong", lambda: False)
    x, edge_index, y, _ = graph()
    model = pyg_model("sage-mul")
    with pytest.raises(HessianError, match="disagree"):
        HessianOperator(model, lambda: F.cross_entropy(model(x, edge_index), y), strategy="forward-over-reverse")


def test_guard_torch_scatter_segment_functions_are_refused() -> None:
    """torch_scatter's segment_csr backward is not recorded: second derivatives silently vanish (#299)."""

    class SegmentSumCSR(torch.autograd.Function):  # stands in for torch_scatter's C++ function
        @staticmethod
        def forward(ctx, src):
            return src.sum(0, keepdim=True)

        @staticmethod
        def backward(ctx, grad):
            return grad.detach().expand(4, -1).clone()  # not differentiable, like the C++ kernel

    torch.manual_seed(0)
    lin, x = nn.Linear(3, 2).double(), torch.randn(4, 3, dtype=DT)
    with pytest.raises(HessianError, match=r"SegmentSumCSR.*pytorch_scatter/issues/299"):
        HessianOperator(lin, lambda: SegmentSumCSR.apply(torch.tanh(lin(x))).pow(2).sum(), check=False)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_segment_reduce_with_ptr_is_refused_naming_op_and_layer(strategy: str) -> None:
    class SegmentPool(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("ptr", torch.tensor([0, 2, 5, 6]))

        def forward(self, h: torch.Tensor) -> torch.Tensor:
            return segment(h, self.ptr, reduce="sum")

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.Tanh()).double()
    model.add_module("pool", SegmentPool())
    x = torch.randn(6, 3, dtype=DT)
    with pytest.raises(HessianError, match=r"segment_reduce.*in layer\(s\) pool"):
        # forward-over-reverse fails in its checked trial product; double backward (no trial product) in the first
        op = HessianOperator(model, lambda: model(x).pow(2).sum(), strategy=strategy)
        op.matvec(torch.ones(op.dim, dtype=DT))


@pytest.mark.filterwarnings("ignore:Sparse")
def test_sparse_adjacency_double_backward_unbatched_and_forward_refused() -> None:
    x, edge_index, y, A = graph()
    torch.manual_seed(0)
    conv = GCNConv(N_FEAT, N_CLASS).double()
    adj = A.to(DT).to_sparse_csr()  # adj_t[i, j]: edge j -> i

    def loss() -> torch.Tensor:
        return F.cross_entropy(torch.tanh(conv(x, adj)), y)

    op = HessianOperator(conv, loss, strategy="double-backward")
    op.batch_probes = True
    V = torch.randn(3, op.dim, dtype=DT)
    dense_edges = HessianOperator(conv, lambda: F.cross_entropy(torch.tanh(conv(x, edge_index)), y)).dense()
    assert torch.allclose(op.matmat(V), V @ dense_edges, atol=1e-10)
    assert op.batch_probes is False and "sparse" in op.batch_fallback_reason
    with pytest.raises(HessianError, match=r"forward-over-reverse cannot be used: operation on sparse tensors"):
        HessianOperator(conv, loss, strategy="forward-over-reverse")


# ------------------------------------------------------------------------------------------------ bad inputs
def test_non_scalar_and_non_tensor_losses() -> None:
    model, x, y = mlp()
    with pytest.raises(ValueError, match=r"scalar loss.*shape \(10, 3\)"):
        HessianOperator(model, lambda: model(x))
    with pytest.raises(TypeError, match="must return a torch.Tensor, got float"):
        HessianOperator(model, lambda: 1.0)
    op = HessianOperator(model, lambda: F.cross_entropy(model(x), y).reshape(1))  # numel 1 is fine
    assert op.dense().shape == (43, 43)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_loss(bad: float) -> None:
    model, x, y = mlp()
    with pytest.raises(ValueError, match=rf"non-finite loss \({bad}\)"):
        HessianOperator(model, lambda: F.cross_entropy(model(x), y) * bad)


def test_loss_without_grad() -> None:
    model, x, y = mlp()

    def loss() -> torch.Tensor:
        with torch.no_grad():
            return F.cross_entropy(model(x), y)

    with pytest.raises(ValueError, match=r"does not require grad.*no_grad"):
        HessianOperator(model, loss)


def test_parameters_that_do_not_affect_the_loss() -> None:
    net, x, y = mlp()
    model = nn.ModuleDict({"net": net, "unused": nn.Linear(2, 2).double()})
    with pytest.raises(ValueError, match=r"do not affect the loss.*unused\.weight, unused\.bias"):
        HessianOperator(model, lambda: F.cross_entropy(model["net"](x), y))
    op = HessianOperator(model, lambda: F.cross_entropy(model["net"](x), y), parameters=["net"])
    assert op.dim == 43


def test_frozen_parameters_requested_by_name() -> None:
    model, x, y = mlp()
    model[0].weight.requires_grad_(False)
    model[2].requires_grad_(False)
    with pytest.raises(ValueError, match=r"requires_grad=False: 0\.weight"):
        HessianOperator(model, lambda: F.cross_entropy(model(x), y), parameters=["0.weight", "0.bias"])
    with pytest.raises(ValueError, match=r"under '2' all have requires_grad=False: 2\.weight, 2\.bias"):
        HessianOperator(model, lambda: F.cross_entropy(model(x), y), parameters=["2"])
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="no parameters with requires_grad=True"):
        HessianOperator(model, lambda: F.cross_entropy(model(x), y))


def test_unknown_parameter_names_list_close_matches() -> None:
    model, x, y = mlp()
    with pytest.raises(ValueError, match=r"no parameter named '0\.wieght'.*close matches: 0\.weight"):
        HessianOperator(model, lambda: F.cross_entropy(model(x), y), parameters=["0.wieght"])
    with pytest.raises(ValueError, match=r"no parameter named 'weight'.*close matches: [02]\.weight, [02]\.weight"):
        HessianOperator(model, lambda: F.cross_entropy(model(x), y), parameters="weight")
    with pytest.raises(TypeError, match="names"):
        HessianOperator(model, lambda: F.cross_entropy(model(x), y), parameters=[model[0].weight])


def test_invalid_options() -> None:
    model, x, y = mlp()
    with pytest.raises(ValueError, match="strategy must be one of"):
        HessianOperator(model, lambda: F.cross_entropy(model(x), y), strategy="vmap")
    with pytest.raises(ValueError, match="groups must be one of"):
        HessianOperator(model, lambda: F.cross_entropy(model(x), y), groups="layer")
    with pytest.raises(ValueError, match="chunk_size"):
        HessianOperator(model, lambda: F.cross_entropy(model(x), y), chunk_size=0)
    op = HessianOperator(model, lambda: F.cross_entropy(model(x), y))
    with pytest.raises(ValueError, match=r"shape \[k, 43\]"):
        op.matmat(torch.ones(43, dtype=DT))
    with pytest.raises(ValueError, match=r"shape \[43\]"):
        op.matvec(torch.ones(2, 43, dtype=DT))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_batchnorm_in_training_mode_switches_to_eval_and_restores(strategy: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2)).double()
    with torch.no_grad():
        model(torch.randn(32, 3, dtype=DT))  # non-trivial running statistics
    x, y = torch.randn(8, 3, dtype=DT), torch.randint(0, 2, (8,))
    modes = []

    def loss() -> torch.Tensor:
        modes.append(model[1].training)
        return F.cross_entropy(model(x), y)

    stats = model[1].running_mean.clone()
    with pytest.warns(UserWarning, match=r"1 \(BatchNorm1d\).*switching the model to eval"):
        op = HessianOperator(model, loss, strategy=strategy)
    H = op.dense()
    assert modes and not any(modes)  # every evaluation ran in eval mode
    assert model.training and model[1].training  # restored
    assert torch.equal(model[1].running_mean, stats)  # no statistics updates
    model.eval()
    assert torch.allclose(H, HessianOperator(model, loss, strategy=strategy).dense(), atol=1e-12)


def test_dropout_in_training_mode_warns_and_is_deterministic() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Dropout(0.5), nn.Linear(4, 2)).double().train()
    x, y = torch.randn(8, 3, dtype=DT), torch.randint(0, 2, (8,))
    with pytest.warns(UserWarning, match=r"2 \(Dropout\)"):
        op = HessianOperator(model, lambda: F.cross_entropy(model(x), y))
    assert torch.allclose(op.dense(), op.dense())
    assert model[2].training


def test_gat_attention_dropout_counts_as_mode_dependent() -> None:
    x, edge_index, y, _ = graph()
    torch.manual_seed(0)
    conv = GATConv(N_FEAT, N_CLASS, dropout=0.3).double().train()
    with pytest.warns(UserWarning, match=r"<root> \(GATConv\)"):
        op = HessianOperator(conv, lambda: F.cross_entropy(conv(x, edge_index), y))
    assert op.finite_difference_error() < 1e-7 and conv.training


def test_non_deterministic_loss() -> None:
    model, x, y = mlp()
    with pytest.raises(ValueError, match="not deterministic"):
        HessianOperator(model, lambda: F.cross_entropy(model(x + 0.1 * torch.randn_like(x)), y))


class Cube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return a**3

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (a,) = ctx.saved_tensors
        return 3 * a**2 * grad


class CubeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return Cube.apply(self.lin(x))


@pytest.mark.parametrize("check", [True, False])
def test_once_differentiable_function_is_refused_not_silently_dropped(check: bool) -> None:
    torch.manual_seed(0)
    model, x = CubeNet(), torch.randn(5, 3, dtype=DT)
    # plain double backward silently returns None (no error) for this function:
    loss = model(x).pow(2).sum()
    g = torch.autograd.grad(loss, list(model.parameters()), create_graph=True)
    assert torch.autograd.grad(g, list(model.parameters()), [torch.ones_like(t) for t in g], allow_unused=True) == (
        None,
        None,
    )
    with pytest.raises(HessianError, match=r"custom autograd.Function Cube is marked @once_differentiable"):
        HessianOperator(model, lambda: model(x).pow(2).sum(), strategy="double-backward", check=check)


def test_forward_over_reverse_unsupported_function_names_it_and_layer() -> None:
    torch.manual_seed(0)
    model, x = CubeNet(), torch.randn(5, 3, dtype=DT)
    with pytest.raises(HessianError, match=r"custom autograd.Function Cube in layer\(s\) <root>.*setup_context"):
        HessianOperator(model, lambda: model(x).pow(2).sum(), strategy="forward-over-reverse")


@pytest.mark.filterwarnings("ignore:Sparse")
def test_auto_falls_back_when_forward_mode_fails(monkeypatch, caplog) -> None:
    monkeypatch.setattr(operator_module, "preferred_strategy", lambda device: "forward-over-reverse")
    x, _, y, A = graph()
    torch.manual_seed(0)
    conv = GCNConv(N_FEAT, N_CLASS).double()
    adj = A.to(DT).to_sparse_csr()
    with caplog.at_level(logging.WARNING, logger="gnnbench.hessian.operator"):
        op = HessianOperator(conv, lambda: F.cross_entropy(conv(x, adj), y))
    assert op.strategy == "double-backward" and "sparse" in op.fallback_reason
    assert any("sparse" in r.getMessage() for r in caplog.records)


def test_closure_capturing_parameters_outside_the_module_is_detected(monkeypatch) -> None:
    model, x, y = mlp()
    w = model[0].weight  # used directly: functional_call cannot swap it

    def loss() -> torch.Tensor:
        return F.cross_entropy(model(x), y) + w.pow(4).sum()

    with pytest.raises(HessianError, match="disagree"):
        HessianOperator(model, loss, strategy="forward-over-reverse")
    monkeypatch.setattr(operator_module, "preferred_strategy", lambda device: "forward-over-reverse")
    op = HessianOperator(model, loss)
    assert op.strategy == "double-backward" and "disagree" in op.fallback_reason
    assert op.finite_difference_error() < 1e-7


def test_mixed_dtypes_are_refused() -> None:
    model, x, y = mlp()
    model[2].float()
    with pytest.raises(ValueError, match="share one dtype"):
        HessianOperator(model, lambda: F.cross_entropy(model[2](model[1](model[0](x)).float()), y))
