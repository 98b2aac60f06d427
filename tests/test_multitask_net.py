"""Branching trees and the multitask networks: routing, zero gradients across branches, save/load, inheritance."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gnnbench.algo import sample
from gnnbench.algo.specs import ALGORITHMS
from gnnbench.harness.multitask_family import fit
from gnnbench.models.algo import EncodeProcessDecode, to_torch
from gnnbench.models.multitask import PUBLISHED_TREE, MultitaskNet, Tree, inherit

ALGOS = ("bfs", "dfs", "dijkstra", "mst_prim")
TREE = Tree.from_partitions(ALGOS, [[ALGOS], [("bfs", "dfs"), ("dijkstra", "mst_prim")],
                                    [("bfs",), ("dfs",), ("dijkstra", "mst_prim")]])


def _batch(algorithm: str, seed: int = 0, n: int = 6, size: int = 3):
    return to_torch(sample(algorithm, size, n=n, seed=seed).clrs_batch())


def _net(variant: str = "branched", tree: Tree | None = TREE, seed: int = 0, **kwargs) -> MultitaskNet:
    return MultitaskNet(ALGOS, "mpnn", hidden=8, num_layers=kwargs.pop("num_layers", 3), variant=variant,
                        tree=tree if variant == "branched" else None,
                        generator=torch.Generator().manual_seed(seed), **kwargs)


# ------------------------------------------------------------------------------------------------------ trees


def test_tree_json_round_trip(tmp_path):
    path = TREE.save(tmp_path / "tree.json")
    data = json.loads(path.read_text())
    assert data["depths"]["2"] == [["bfs", "dfs"], ["dijkstra", "mst_prim"]]
    assert Tree.load(path) == TREE
    assert TREE.route("dfs") == (0, 0, 1) and TREE.route("mst_prim") == (0, 1, 2)
    assert TREE.num_groups() == (1, 2, 3)


@pytest.mark.parametrize("depths, message", [
    ({"1": [["bfs", "dfs"]], "2": [["bfs"]]}, "depth 2 leaves out dfs"),
    ({"1": [["bfs"], ["dfs"]], "2": [["bfs", "dfs"]]}, "spans 2 groups of depth 1"),
    ({"1": [["bfs", "dfs"], ["dfs"]]}, "'dfs' is in two groups"),
    ({"1": [["bfs", "dfs"], []]}, "group 2 is empty"),
    ({"1": [["bfs", "dfs"]], "3": [["bfs", "dfs"]]}, "numbered 1..2"),
    ({"1": [["bfs", "quicksort"]]}, "'quicksort' is not one of the tree's algorithms"),
])
def test_malformed_tree_files_are_rejected_with_the_depth_and_group(tmp_path, depths, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"format": 1, "algorithms": ["bfs", "dfs"], "depths": depths}))
    with pytest.raises(ValueError, match=message) as error:
        Tree.load(path)
    assert str(path) in str(error.value)


def test_tree_file_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="no such tree file"):
        Tree.load(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        Tree.load(tmp_path / "x.json")
    (tmp_path / "y.json").write_text(json.dumps({"format": 2, "algorithms": [], "depths": {}}))
    with pytest.raises(ValueError, match="format must be 1"):
        Tree.load(tmp_path / "y.json")
    with pytest.raises(ValueError, match="unknown algorithm 'sorting'"):
        Tree(("sorting",), ((("sorting",),),))


def test_published_tree_is_the_studys_final_structure():
    assert set(PUBLISHED_TREE.algorithms) == set(ALGORITHMS)
    assert PUBLISHED_TREE.num_groups() == (1, 3, 6, 9, 10)
    first_branching = {frozenset(g) for g in PUBLISHED_TREE.depths[1]}
    assert first_branching == {
        frozenset({"bfs", "dfs", "topological_sort", "strongly_connected_components", "dag_shortest_paths",
                   "bellman_ford", "articulation_points", "bridges"}),
        frozenset({"dijkstra", "mst_prim"}), frozenset({"floyd_warshall", "mst_kruskal"})}
    assert {frozenset(g) for g in PUBLISHED_TREE.depths[4] if len(g) > 1} == {
        frozenset({"dfs", "topological_sort"}), frozenset({"articulation_points", "bridges"})}


def test_single_task_and_shared_trees():
    stn, mtn = Tree.single_task(ALGOS, 2), Tree.shared(ALGOS, 2)
    assert stn.num_groups() == (4, 4) and mtn.num_groups() == (1, 1)


# ---------------------------------------------------------------------------------------------------- routing


def _grads(net: MultitaskNet, algorithm: str) -> dict[str, torch.Tensor | None]:
    net.zero_grad(set_to_none=True)
    net.loss(algorithm, _batch(algorithm)).backward()
    return {name: p.grad for name, p in net.named_parameters()}


@pytest.mark.parametrize("algorithm", ALGOS)
def test_branched_model_routes_each_algorithm_only_through_its_branch(algorithm):
    net = _net()
    grads = _grads(net, algorithm)
    route = TREE.route(algorithm)
    for name, grad in grads.items():
        parts = name.split(".")
        if parts[0] == "layers":
            depth, group = int(parts[1]), int(parts[2])
            on_route = route[depth] == group
        else:
            on_route = parts[1] == algorithm
        if on_route:
            # every weight on the route learns (m_g reads graph features, which these algorithms lack; a softmax
            # is blind to its logits' shared bias, so some decoder biases get exactly zero)
            if name.startswith("layers") and not name.endswith("m_g.weight"):
                assert grad is not None and grad.abs().sum() > 0, name
        else:
            assert grad is None or torch.count_nonzero(grad) == 0, name


def test_single_task_variant_shares_nothing_and_shared_variant_shares_every_layer():
    stn, mtn = _net("stn", num_layers=2), _net("mtn", num_layers=2)
    grads = _grads(stn, "dijkstra")
    touched = {name.split(".")[2] for name, g in grads.items() if name.startswith("layers") and g is not None}
    assert touched == {str(ALGOS.index("dijkstra"))}
    grads = _grads(mtn, "bfs")
    assert all(g is not None for name, g in grads.items() if name.startswith("layers") and "m_g.weight" not in name)


def test_mmoe_gates_of_other_algorithms_get_no_gradient():
    net = _net("mmoe", num_layers=2, num_experts=2)
    grads = _grads(net, "dfs")
    for name, grad in grads.items():
        if ".gates." in name:
            assert (grad is not None) == (name.split(".")[3] == "dfs"), name
        elif ".experts." in name and "m_g.weight" not in name:
            assert grad is not None and grad.abs().sum() > 0, name


def test_each_parameter_is_registered_once():
    net = _net()
    names = [name for name, _ in net.named_parameters()]
    assert not any(".processor." in name for name in names)
    state = net.state_dict()
    assert len(state) == len(set(state)) and all(not k.startswith("heads.") or ".processor." not in k for k in state)


def test_multitask_head_matches_the_single_task_network_with_the_same_weights():
    """A one-algorithm, one-layer MTN is CLRS-30's network: same weights, same loss and predictions."""
    net = MultitaskNet(["bfs"], "mpnn", hidden=8, num_layers=1, variant="mtn",
                       generator=torch.Generator().manual_seed(3))
    single = EncodeProcessDecode("bfs", "mpnn", hidden=8, generator=torch.Generator().manual_seed(4))
    state = {k.replace("heads.bfs.", ""): v for k, v in net.state_dict().items() if k.startswith("heads.")}
    state.update({k.replace("layers.0.0.", "processor."): v for k, v in net.state_dict().items()
                  if k.startswith("layers.")})
    single.load_state_dict(state)
    batch = _batch("bfs", seed=5)
    assert torch.equal(net.loss("bfs", batch), single.loss(batch))
    assert torch.equal(net.predict("bfs", batch)["pi"], single.predict(batch)["pi"])


def test_a_tree_saved_and_loaded_gives_the_same_model(tmp_path):
    net = _net(seed=1)
    TREE.save(tmp_path / "tree.json")
    torch.save(net.state_dict(), tmp_path / "model.pt")
    again = MultitaskNet(ALGOS, "mpnn", hidden=8, variant="branched", tree=Tree.load(tmp_path / "tree.json"),
                         generator=torch.Generator().manual_seed(99))
    again.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    for algorithm in ALGOS:
        batch = _batch(algorithm, seed=7)
        assert torch.equal(net.loss(algorithm, batch), again.loss(algorithm, batch))
        for field, value in net.predict(algorithm, batch).items():
            assert torch.equal(value, again.predict(algorithm, batch)[field])


def test_loading_into_a_different_tree_fails():
    other = Tree.from_partitions(ALGOS, [[ALGOS], [ALGOS], [ALGOS]])
    with pytest.raises(RuntimeError, match="Unexpected key"):
        MultitaskNet(ALGOS, "mpnn", hidden=8, variant="branched", tree=other).load_state_dict(_net().state_dict())


def test_same_generator_seed_same_weights():
    a, b = _net(seed=2), _net(seed=2)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    c = _net(seed=3)
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))


def test_branched_network_of_the_shared_tree_is_the_shared_network():
    """A searched tree that keeps every algorithm in one group at every depth gives MTN's network: the same
    parameters (names and initial values) and the same losses, so it trains exactly as MTN does."""
    shared = _net(variant="branched", tree=Tree.shared(ALGOS, 3), seed=4)
    mtn = _net(variant="mtn", seed=4)
    assert list(shared.state_dict()) == list(mtn.state_dict())
    assert all(torch.equal(x, y) for x, y in zip(shared.state_dict().values(), mtn.state_dict().values()))
    for algorithm in ALGOS:
        assert torch.equal(shared.loss(algorithm, _batch(algorithm)), mtn.loss(algorithm, _batch(algorithm)))
    settings = dict(steps=2, batch_size=2, learning_rate=1e-3, grad_clip=1.0)
    assert fit(shared, rng=np.random.default_rng(1), **settings) == fit(mtn, rng=np.random.default_rng(1), **settings)
    assert all(torch.equal(x, y) for x, y in zip(shared.state_dict().values(), mtn.state_dict().values()))


# ---------------------------------------------------------------------------------------- search support


def test_child_inherits_the_parents_weights_and_predicts_the_same():
    parent = _net("mtn", seed=4)
    child = _net(seed=5)  # TREE refines the shared tree
    inherit(child, parent)
    for algorithm in ALGOS:
        batch = _batch(algorithm, seed=11)
        assert torch.equal(child.loss(algorithm, batch), parent.loss(algorithm, batch))


def test_inherit_refuses_a_child_that_merges_the_parents_groups():
    parent, child = _net(seed=4), _net("mtn", seed=5)
    with pytest.raises(ValueError, match="may only split the parent's groups"):
        inherit(child, parent)


def test_freeze_below_and_layer_parameters():
    net = _net()
    net.freeze_below(3)
    frozen = {name for name, p in net.named_parameters() if not p.requires_grad}
    assert frozen and all(name.startswith(("layers.0.", "layers.1.")) for name in frozen)
    assert all(p.requires_grad for name, p in net.named_parameters() if name.startswith(("layers.2.", "heads.")))
    names = set(net.layer_parameters(2))
    assert names and all(name.startswith(("layers.1.", "layers.2.")) for name in names)
    with pytest.raises(ValueError, match="first_depth"):
        net.layer_parameters(4)


@pytest.mark.parametrize("kwargs, message", [
    (dict(variant="branched", tree=None), "needs a tree"),
    (dict(variant="mtn", tree=TREE), "takes no tree"),
    (dict(variant="other"), "variant"),
    (dict(variant="branched", tree=Tree.shared(("bfs",), 2)), "differ from the network's"),
    (dict(variant="mtn", hint_mode="none", color="red"), "unknown option"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MultitaskNet(ALGOS, "mpnn", hidden=8, **kwargs)


# ------------------------------------------------------------------------------------ Edge Transformer stacks


def test_a_stack_of_edge_transformers_threads_the_pair_state():
    """Layer 2 of a stack reads layer 1's pair state (the study's L-layer transformer), not the step's features."""
    from gnnbench.models.algo.processors import make_processor
    from gnnbench.models.algo.stack import ProcessorStack

    g = torch.Generator().manual_seed(0)
    first, second = (make_processor("edge_transformer", 8, nb_heads=2, generator=g) for _ in range(2))
    stack = ProcessorStack([first, second], emits_edge_fts=True)
    b, n, h = 2, 5, 8
    x = torch.randn(b, n, h, generator=g)
    e, graph = torch.randn(b, n, n, h, generator=g), torch.randn(b, h, generator=g)
    adj, hidden = torch.ones(b, n, n), torch.randn(b, n, h, generator=g)
    h1, pairs = first(x, e, graph, adj, hidden)
    expected = second(x, e, graph, adj, h1, pair_state=pairs)
    got = stack(x, e, graph, adj, hidden)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    assert not torch.equal(got[0], second(x, e, graph, adj, h1)[0])


@pytest.mark.parametrize("variant", ["branched", "mmoe"])
def test_edge_transformer_multitask_networks_train(variant):
    net = MultitaskNet(ALGOS[:2], "edge_transformer", hidden=8, num_layers=2, nb_heads=2, variant=variant,
                       tree=Tree.from_partitions(ALGOS[:2], [[ALGOS[:2]], [ALGOS[:1], ALGOS[1:2]]])
                       if variant == "branched" else None, num_experts=2,
                       generator=torch.Generator().manual_seed(0))
    for algorithm in ALGOS[:2]:
        net.zero_grad()
        loss = net.loss(algorithm, _batch(algorithm))
        loss.backward()
        assert torch.isfinite(loss)
    with pytest.raises(ValueError, match="one CLRS-30 processor"):
        EncodeProcessDecode("bfs", "edge_transformer", hidden=8, nb_heads=2).haiku_names()
