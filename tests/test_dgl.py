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
    pyg = AlgorithmicReasoningDataset(tmp_path, name, "val", num_samples=6, n=7, seed=4)
    dgl_set = AlgorithmicReasoningDGLDataset(tmp_path, name, "val", num_samples=6, n=7, seed=4)
    assert len(dgl_set) == len(pyg) == 6
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

    pyg = AlgorithmicReasoningDataset(tmp_path, "bfs", "val", num_samples=4, n=6, seed=1)
    graphs = [to_dgl(pyg[i], "bfs")[0] for i in range(4)]
    batch = dgl.batch(graphs)
    assert batch.num_nodes() == 24
    assert batch.ndata["pi"].shape == (24,)


def test_road_dgl_twin_has_the_same_content(tmp_path):
    from gnnbench.datasets import RoadAccidentDataset
    from gnnbench.datasets.dgl import RoadAccidentDGLDataset

    pyg = RoadAccidentDataset(tmp_path, "DEMO", "accident_count")
    twin = RoadAccidentDGLDataset(tmp_path, "DEMO", "accident_count")
    assert len(twin) == 1 and twin.get_split() == pyg.get_split() and twin.months == pyg.months
    static = twin[0]
    src, dst = static.edges()
    assert torch.equal(torch.stack([src, dst]), pyg[0].edge_index)
    assert torch.equal(static.ndata["feat"], pyg[0].x) and torch.equal(static.edata["feat"], pyg[0].edge_attr)
    for year, month in [(2018, 3), (2021, 11)]:
        graph, data = twin.snapshot(year, month), pyg.snapshot(year, month)
        assert torch.equal(graph.ndata["feat"], data.x)
        assert torch.equal(graph.edata["label"], data.y) and torch.equal(graph.edata["eval_mask"], data.eval_mask)
