"""DGL twins expose exactly the PyTorch Geometric items' tensors.

Skipped without DGL, unless GNNBENCH_REQUIRE_DGL=1 (CI's DGL environment).
"""

import os

import pytest
import torch

pytestmark = pytest.mark.dgl

if not os.environ.get("GNNBENCH_REQUIRE_DGL"):
    pytest.importorskip("dgl")

from gnnbench.algo import ALGORITHMS, SPECS  # noqa: E402
from gnnbench.datasets import AlgorithmicReasoningDataset  # noqa: E402
from gnnbench.datasets.dgl import AlgorithmicReasoningDGLDataset, to_dgl  # noqa: E402


@pytest.mark.parametrize("name", ALGORITHMS)
def test_dgl_items_equal_pyg_items(tmp_path, name):
    pyg = AlgorithmicReasoningDataset(tmp_path, name, "valid", num_samples=6, n=7, seed=4)
    dgl_set = AlgorithmicReasoningDGLDataset(tmp_path, name, "val", num_samples=6, n=7, seed=4)  # CLRS's spelling
    assert len(dgl_set) == len(pyg) == 6 and dgl_set.source.split == "valid"
    for i in range(len(pyg)):
        data = pyg[i]
        graph, graph_fields = dgl_set[i]
        assert graph.num_nodes() == 7 and graph.num_edges() == 49
        src, dst = graph.edges()
        assert torch.equal(torch.stack([src, dst]), data.edge_index)
        assert torch.equal(graph_fields["num_steps"], data.num_steps)
        for field, (_, location, _) in SPECS[name].items():
            store = {"node": graph.ndata, "edge": graph.edata, "graph": graph_fields}[location]
            assert torch.equal(store[field], data[field]), field


def test_to_dgl_batches(tmp_path):
    import dgl

    pyg = AlgorithmicReasoningDataset(tmp_path, "bfs", "valid", num_samples=4, n=6, seed=1)
    graphs = [to_dgl(pyg[i], "bfs")[0] for i in range(4)]
    batch = dgl.batch(graphs)
    assert batch.num_nodes() == 24
    assert torch.equal(batch.ndata["pi"], torch.cat([pyg[i].pi for i in range(4)]))  # pointers stay per graph


def test_dgl_items_are_fresh(tmp_path):
    dgl_set = AlgorithmicReasoningDGLDataset(tmp_path, "dijkstra", "valid", num_samples=3, n=5, seed=2)
    graph, graph_fields = dgl_set[1]
    expected = {key: graph.edata[key].clone() for key in graph.edata.keys()}
    for value in (*[graph.ndata[k] for k in graph.ndata.keys()], *[graph.edata[k] for k in graph.edata.keys()],
                  *graph_fields.values()):
        value.zero_()
    again, _ = dgl_set[1]
    for key, value in expected.items():
        assert torch.equal(again.edata[key], value), key


def test_road_dgl_twin_has_the_same_content(tmp_path):
    from gnnbench.datasets import RoadAccidentDataset
    from gnnbench.datasets.dgl import RoadAccidentDGLDataset

    pyg = RoadAccidentDataset(tmp_path, "DEMO", "accident_count")
    twin = RoadAccidentDGLDataset(tmp_path, "DEMO", "accident_count")
    assert len(twin) == len(pyg) == 48 and twin.get_split() == pyg.get_split() and twin.months == pyg.months
    assert {k: v.tolist() for k, v in twin.get_idx_split().items()} == {
        k: v.tolist() for k, v in pyg.get_idx_split().items()}
    static = twin.static_graph
    src, dst = static.edges()
    assert torch.equal(torch.stack([src, dst]), pyg.static_graph.edge_index)
    assert torch.equal(static.ndata["feat"], pyg.static_graph.x)
    assert torch.equal(static.edata["feat"], pyg.static_graph.edge_attr)
    for i, (year, month) in [(2, (2018, 3)), (46, (2021, 11))]:
        for graph in (twin.snapshot(year, month), twin[i]):
            data = pyg.snapshot(year, month)
            assert torch.equal(graph.ndata["feat"], data.x)
            assert torch.equal(graph.edata["label"], data.y) and torch.equal(graph.edata["eval_mask"], data.eval_mask)


def test_road_dgl_graphs_are_fresh(tmp_path):
    from gnnbench.datasets import RoadAccidentDataset
    from gnnbench.datasets.dgl import RoadAccidentDGLDataset

    pyg = RoadAccidentDataset(tmp_path, "DEMO", "accident_count")
    twin = RoadAccidentDGLDataset(tmp_path, "DEMO", "accident_count")
    expected = pyg.snapshot(2019, 7)
    graph = twin.snapshot(2019, 7)
    for store in (graph.ndata, graph.edata):
        for key in store.keys():
            store[key].zero_()
    twin.static_graph.edata["feat"].zero_()
    again = twin.snapshot(2019, 7)
    assert torch.equal(again.ndata["feat"], expected.x) and torch.equal(again.edata["feat"], expected.edge_attr)
    assert torch.equal(again.edata["label"], expected.y) and torch.equal(again.edata["eval_mask"], expected.eval_mask)
    assert torch.equal(pyg.static_graph.edge_attr, expected.edge_attr)


def test_road_dgl_twin_requires_a_state(tmp_path):
    from gnnbench.datasets.dgl import RoadAccidentDGLDataset

    with pytest.raises(TypeError, match="needs a state"):
        RoadAccidentDGLDataset(tmp_path)
