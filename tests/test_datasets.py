"""``AlgorithmicReasoningDataset``: layout, caching, corruption recovery and batching."""

import hashlib
import json
import pickle
import warnings

import numpy as np
import pytest
import torch
from torch_geometric.loader import DataLoader

import gnnbench.datasets.algorithmic_reasoning as ar_module
from gnnbench.algo import ALGORITHMS, SPECS, Evaluator, sample
from gnnbench.algo.specs import Stage
from gnnbench.datasets import AlgorithmicReasoningData, AlgorithmicReasoningDataset
from gnnbench.io import CacheRebuiltWarning

NUM, N, SEED = 12, 7, 5
ROUND_TRIP = ("bfs", "dfs", "bridges", "mst_kruskal", "strongly_connected_components", "floyd_warshall",
              "dag_shortest_paths", "topological_sort")


def make(root, algorithm="bfs", **kwargs):
    kwargs.setdefault("num_samples", NUM)
    kwargs.setdefault("n", N)
    kwargs.setdefault("seed", SEED)
    return AlgorithmicReasoningDataset(root, algorithm, **kwargs)


def expected_item(trace, algorithm, n, pad_steps):
    """Trace fields in item layout, written independently of gnnbench.datasets.layout."""
    out = {}
    for name, (stage, location, _) in SPECS[algorithm].items():
        value = np.asarray(trace.field(name), dtype=np.float64)
        if stage == Stage.HINT:
            steps = value.shape[0]
            if location == "edge":
                value = value.reshape(steps, n * n, *value.shape[3:])
            elif location == "graph":
                value = value.reshape(steps, 1, *value.shape[1:])
            value = np.moveaxis(value, 0, 1)
            padding = [(0, 0)] * value.ndim
            padding[1] = (0, pad_steps - steps)
            value = np.pad(value, padding)
        else:  # inputs and outputs (none categorical); CLRS squeezes them to 0-d when n == 1
            value = value.reshape({"node": n, "edge": n * n, "graph": 1}[location])
        out[name] = value
    return out


def assert_item_matches(item, trace, algorithm, n, pad_steps):
    expected = expected_item(trace, algorithm, n, pad_steps)
    assert set(expected) <= set(item.keys())
    for name, want in expected.items():
        got = item[name]
        type_ = SPECS[algorithm][name][2]
        assert got.dtype == (torch.int64 if type_ == "pointer" else torch.float32), name
        assert tuple(got.shape) == want.shape, name
        np.testing.assert_allclose(got.numpy().astype(np.float64), want, rtol=1e-6, atol=1e-6, err_msg=name)
    assert item.num_steps.tolist() == [trace.num_steps]
    assert item.num_nodes == n


def assert_same_items(a, b):
    assert len(a) == len(b)
    for i in range(len(a)):
        x, y = a[i], b[i]
        assert set(x.keys()) == set(y.keys())
        for key in x.keys():
            if torch.is_tensor(x[key]):
                assert torch.equal(x[key], y[key]), key
            else:
                assert x[key] == y[key], key


def regenerations(record):
    return [w for w in record if issubclass(w.category, UserWarning) and "regenerating" in str(w.message)]


@pytest.fixture
def forbid_generation(monkeypatch):
    """After calling, any trace generation by the dataset fails the test."""

    def activate():
        def refuse(*args, **kwargs):
            raise AssertionError("the dataset regenerated traces instead of loading its cache")

        monkeypatch.setattr(ar_module, "sample", refuse)

    return activate


@pytest.fixture
def count_generation(monkeypatch):
    calls = []

    def counting(*args, **kwargs):
        calls.append((args, kwargs))
        return sample(*args, **kwargs)

    monkeypatch.setattr(ar_module, "sample", counting)
    return calls


# --- layout and round trip --------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", ROUND_TRIP)
def test_round_trip_matches_sample(tmp_path, algorithm):
    dataset = make(tmp_path, algorithm)
    traces = sample(algorithm, NUM, n=N, seed=SEED)
    assert len(dataset) == NUM
    assert dataset.max_steps == int(traces.lengths.max()) == dataset.pad_steps
    np.testing.assert_array_equal(dataset.num_steps, traces.lengths)
    for i in range(NUM):
        item = dataset[i]
        assert isinstance(item, AlgorithmicReasoningData)
        assert_item_matches(item, traces[i], algorithm, N, dataset.max_steps)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_algorithm_round_trips_one_item(tmp_path, algorithm):
    dataset = make(tmp_path, algorithm, num_samples=3, n=5, seed=11)
    traces = sample(algorithm, 3, n=5, seed=11)
    for i in (0, 2):
        assert_item_matches(dataset[i], traces[i], algorithm, 5, dataset.max_steps)


def test_round_trip_with_sampler_options(tmp_path):
    options = {"p": (0.2, 0.9), "low": 1.0, "high": 3.0}
    dataset = make(tmp_path, "dijkstra", sampler_options=options)
    traces = sample("dijkstra", NUM, n=N, seed=SEED, **options)
    for i in range(NUM):
        assert_item_matches(dataset[i], traces[i], "dijkstra", N, dataset.max_steps)


def test_edge_index_is_the_complete_directed_graph_row_major(tmp_path):
    item = make(tmp_path)[0]
    assert item.edge_index.dtype == torch.int64
    assert tuple(item.edge_index.shape) == (2, N * N)
    for e in range(N * N):
        assert item.edge_index[:, e].tolist() == [e // N, e % N]


def test_edge_field_order_matches_edge_index(tmp_path):
    dataset = make(tmp_path, "floyd_warshall")
    trace = sample("floyd_warshall", NUM, n=N, seed=SEED)[3]
    item = dataset[3]
    src, dst = item.edge_index
    np.testing.assert_allclose(item.A.numpy(), trace.inputs["A"][src.numpy(), dst.numpy()], rtol=1e-6)
    np.testing.assert_array_equal(item.Pi.numpy(), trace.outputs["Pi"][src.numpy(), dst.numpy()])


def test_hints_are_zero_padded_after_num_steps(tmp_path):
    dataset = make(tmp_path, "bfs", num_samples=20, n=8, seed=0)
    lengths = dataset.num_steps
    assert lengths.min() < lengths.max()  # the case needs traces of different lengths
    for i in range(len(dataset)):
        item = dataset[i]
        steps = int(item.num_steps)
        for name in ("reach_h", "pi_h"):
            assert item[name].shape[1] == dataset.max_steps
            assert torch.all(item[name][:, steps:] == 0), name


def test_pad_steps_longer_than_max(tmp_path):
    dataset = make(tmp_path, "dfs", pad_steps=40)
    traces = sample("dfs", NUM, n=N, seed=SEED)
    assert dataset.pad_steps == 40
    assert dataset.max_steps == int(traces.lengths.max()) < 40
    for i in (0, NUM - 1):
        item = dataset[i]
        assert item.time.shape == (1, 40)
        assert item.color.shape == (N, 40, 3)
        assert_item_matches(item, traces[i], "dfs", N, 40)


def test_pad_steps_shorter_than_max_raises(tmp_path):
    max_steps = make(tmp_path, "bfs", num_samples=20, n=8, seed=0).max_steps
    with pytest.raises(ValueError, match=rf"pad_steps={max_steps - 1} is shorter than the longest trace"):
        make(tmp_path, "bfs", num_samples=20, n=8, seed=0, pad_steps=max_steps - 1)
    assert make(tmp_path, "bfs", num_samples=20, n=8, seed=0, pad_steps=max_steps).pad_steps == max_steps


def test_repr_and_spec(tmp_path):
    dataset = make(tmp_path, "dijkstra")
    # CLRS-30's dijkstra fields (https://github.com/google-deepmind/clrs/blob/master/clrs/_src/specs.py)
    assert sorted(dataset.spec) == sorted(["pos", "s", "A", "adj", "pi", "pi_h", "d", "mark", "in_queue", "u"])
    assert dataset.spec["pi"] == ("output", "node", "pointer") and dataset.spec["u"] == ("hint", "node", "mask_one")
    text = repr(dataset)
    assert text == f"AlgorithmicReasoningDataset(algorithm='dijkstra', split='train', graphs={NUM}, n={N}, " \
                   f"max_steps={int(sample('dijkstra', NUM, n=N, seed=SEED).lengths.max())})"


# --- targets ------------------------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", ("bfs", "topological_sort", "bridges", "floyd_warshall", "mst_kruskal"))
def test_targets_are_the_stacked_outputs(tmp_path, algorithm):
    dataset = make(tmp_path, algorithm)
    traces = sample(algorithm, NUM, n=N, seed=SEED)
    targets = dataset.targets()
    assert set(targets) == {f for f, (st, _, _) in SPECS[algorithm].items() if st == Stage.OUTPUT}
    for name, values in targets.items():
        np.testing.assert_array_equal(values, np.stack([traces[i].outputs[name] for i in range(NUM)]), name)
    inputs = dataset.targets(Stage.INPUT)
    assert set(inputs) == {f for f, (st, _, _) in SPECS[algorithm].items() if st == Stage.INPUT}
    np.testing.assert_allclose(inputs["A"], traces.inputs["A"], rtol=1e-6)
    # the evaluator accepts them directly, with the TraceSet's outputs as a perfect prediction
    assert Evaluator(algorithm).eval({"y_true": targets, "y_pred": dict(traces.outputs)})["score"] == 1.0


def test_targets_of_an_unknown_stage_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="stage must be one of 'input', 'output'"):
        make(tmp_path, "bfs").targets("hint")


def test_targets_follow_a_subset(tmp_path):
    dataset = make(tmp_path, "bfs")
    subset = dataset[[4, 1, 7]]
    np.testing.assert_array_equal(subset.targets()["pi"], dataset.targets()["pi"][[4, 1, 7]])
    np.testing.assert_array_equal(subset.num_steps, dataset.num_steps[[4, 1, 7]])


# --- caching ------------------------------------------------------------------------------------

def test_files_and_manifest(tmp_path):
    dataset = make(tmp_path, "bridges")
    npz, manifest_path = (tmp_path / "algorithmic_reasoning" / "bridges" / "processed" / name
                          for name in dataset.processed_file_names)
    assert [str(npz), str(manifest_path)] == dataset.processed_paths
    assert npz.suffix == ".npz" and manifest_path.suffix == ".json"
    assert npz.stem == manifest_path.stem
    manifest = json.loads(manifest_path.read_text())
    assert manifest["kind"] == "trace-set" and manifest["files"]["columns"]["path"] == npz.name
    assert manifest["files"]["columns"]["sha256"] == hashlib.sha256(npz.read_bytes()).hexdigest()
    assert manifest["files"]["columns"]["bytes"] == len(npz.read_bytes())
    assert manifest["parameters"] == json.loads(json.dumps(dataset.cache_key))
    assert manifest["num_samples"] == NUM and manifest["n"] == N
    assert manifest["max_steps"] == dataset.max_steps
    with np.load(npz, allow_pickle=False) as arrays:
        assert all(arrays[name].dtype != object for name in arrays.files)
    assert not list(npz.parent.glob("*.part"))  # no temporary files left behind


def test_second_construction_loads_without_regenerating(tmp_path, forbid_generation):
    first = make(tmp_path, "mst_kruskal")
    forbid_generation()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        second = make(tmp_path, "mst_kruskal")
    assert not regenerations(record)
    assert_same_items(first, second)


def test_force_reload_regenerates(tmp_path, count_generation):
    first = make(tmp_path, "dfs")
    assert len(count_generation) == 1
    make(tmp_path, "dfs")
    assert len(count_generation) == 1
    again = make(tmp_path, "dfs", force_reload=True)
    assert len(count_generation) == 2
    assert_same_items(first, again)


@pytest.mark.parametrize("change", [{"seed": SEED + 1}, {"n": N + 1}, {"num_samples": NUM + 1},
                                    {"sampler_options": {"p": 0.9}}, {"sampler_options": {"p": (0.5,)}},
                                    {"split": "val"}],
                         ids=["seed", "n", "num_samples", "p", "p-default-as-tuple", "split"])
def test_different_settings_use_a_different_file(tmp_path, change):
    base = make(tmp_path, "bfs")
    other = make(tmp_path, "bfs", **change)
    if change == {"sampler_options": {"p": (0.5,)}}:
        # the default p spelled explicitly is the same distribution: same file
        assert other.processed_paths == base.processed_paths
        return
    assert other.processed_paths[0] != base.processed_paths[0]
    for path in base.processed_paths + other.processed_paths:
        assert (tmp_path / path).exists()
    assert_same_items(base, make(tmp_path, "bfs"))  # the first file is untouched


def test_different_settings_give_different_data(tmp_path):
    base = make(tmp_path, "dijkstra")
    other_seed = make(tmp_path, "dijkstra", seed=SEED + 1)
    other_p = make(tmp_path, "dijkstra", sampler_options={"p": 0.1})
    assert not np.array_equal(base.targets(Stage.INPUT)["A"], other_seed.targets(Stage.INPUT)["A"])
    assert (other_p.targets(Stage.INPUT)["adj"].mean() < base.targets(Stage.INPUT)["adj"].mean())


def test_algorithms_share_a_root(tmp_path):
    bfs = make(tmp_path, "bfs")
    dfs = make(tmp_path, "dfs")
    assert bfs.processed_dir != dfs.processed_dir
    assert_same_items(bfs, make(tmp_path, "bfs"))


def test_default_root_is_gnnbench_home(tmp_path, monkeypatch):
    monkeypatch.setenv("GNNBENCH_HOME", str(tmp_path / "home"))
    dataset = make(None, "bfs", num_samples=3, n=4)
    assert dataset.processed_dir == str(tmp_path / "home" / "datasets" / "algorithmic_reasoning" / "bfs" /
                                        "processed")
    assert (tmp_path / "home" / "datasets" / "algorithmic_reasoning" / "bfs" / "processed").is_dir()


# --- corrupted caches ------------------------------------------------------------------------

def _rewrite_checksum(npz, manifest_path):
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["columns"]["sha256"] = hashlib.sha256(npz.read_bytes()).hexdigest()
    manifest["files"]["columns"]["bytes"] = len(npz.read_bytes())
    manifest_path.write_text(json.dumps(manifest))


def _truncate(npz, manifest_path):
    npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])


def _garbage(npz, manifest_path):
    npz.write_bytes(b"this is not a zip file" * 10)


def _empty(npz, manifest_path):
    npz.write_bytes(b"")


def _flip_a_byte(npz, manifest_path):
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))


def _wrong_checksum(npz, manifest_path):
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["columns"]["sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))


def _garbage_json(npz, manifest_path):
    manifest_path.write_text("{ this is not json")


def _empty_json(npz, manifest_path):
    manifest_path.write_text("")


def _binary_json(npz, manifest_path):
    manifest_path.write_bytes(b"\xff\xfe\x00\x81garbage")


def _other_key(npz, manifest_path):
    manifest = json.loads(manifest_path.read_text())
    manifest["parameters"]["seed"] += 1
    manifest_path.write_text(json.dumps(manifest))


def _old_format(npz, manifest_path):
    manifest = json.loads(manifest_path.read_text())
    manifest["layout"] = 0
    manifest_path.write_text(json.dumps(manifest))


def _pickle_with_matching_checksum(npz, manifest_path):
    npz.write_bytes(pickle.dumps({"offsets": np.arange(3)}))
    _rewrite_checksum(npz, manifest_path)


def _truncated_zip_with_matching_checksum(npz, manifest_path):
    _truncate(npz, manifest_path)
    _rewrite_checksum(npz, manifest_path)


def _other_npz_with_matching_checksum(npz, manifest_path):
    with open(npz, "wb") as handle:
        np.savez(handle, unrelated=np.zeros(3))
    _rewrite_checksum(npz, manifest_path)


def _wrong_offsets_with_matching_checksum(npz, manifest_path):
    with np.load(npz) as arrays:
        contents = {name: arrays[name] for name in arrays.files}
    contents["offsets"] = contents["offsets"][:-2]
    with open(npz, "wb") as handle:
        np.savez(handle, **contents)
    _rewrite_checksum(npz, manifest_path)


def _missing_array_with_matching_checksum(npz, manifest_path):
    with np.load(npz) as arrays:
        contents = {name: arrays[name] for name in arrays.files}
    del contents[sorted(name for name in contents if name.startswith("hint__is_bridge_h"))[0]]  # offsets intact
    with open(npz, "wb") as handle:
        np.savez(handle, **contents)
    _rewrite_checksum(npz, manifest_path)


def _unknown_encoding(npz, manifest_path):
    manifest = json.loads(manifest_path.read_text())
    manifest["fields"]["is_bridge_h"]["encoding"] = "zstd"
    manifest_path.write_text(json.dumps(manifest))


CORRUPTIONS = [_truncate, _garbage, _empty, _flip_a_byte, _wrong_checksum, _garbage_json, _empty_json,
               _binary_json, _other_key, _old_format, _pickle_with_matching_checksum,
               _truncated_zip_with_matching_checksum, _other_npz_with_matching_checksum,
               _wrong_offsets_with_matching_checksum, _missing_array_with_matching_checksum, _unknown_encoding]


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__.strip("_"))
def test_corrupted_cache_is_regenerated_with_a_warning(tmp_path, corrupt, forbid_generation):
    algorithm = "bridges"  # has an event-encoded hint
    first = make(tmp_path, algorithm)
    npz, manifest_path = map(type(tmp_path), first.processed_paths)
    corrupt(npz, manifest_path)
    with pytest.warns(UserWarning, match="regenerating") as record:
        recovered = make(tmp_path, algorithm)
    assert any("bridges" in str(w.message) for w in regenerations(record))
    traces = sample(algorithm, NUM, n=N, seed=SEED)
    for i in range(NUM):
        assert_item_matches(recovered[i], traces[i], algorithm, N, recovered.max_steps)
    # the regenerated cache is valid: the next construction just loads it
    forbid_generation()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert_same_items(make(tmp_path, algorithm), first)
    assert not regenerations(record)


@pytest.mark.parametrize("missing", [0, 1], ids=["npz", "manifest"])
def test_missing_file_is_regenerated(tmp_path, missing, count_generation):
    first = make(tmp_path, "bfs")
    type(tmp_path)(first.processed_paths[missing]).unlink()
    again = make(tmp_path, "bfs")
    assert len(count_generation) == 2
    assert_same_items(first, again)


@pytest.mark.parametrize("text", ["[1, 2]", "null", '"manifest"', "42", "{}", '{"sha256": "x"}'])
def test_manifest_that_is_json_but_not_a_manifest_is_regenerated(tmp_path, text, forbid_generation):
    first = make(tmp_path, "bfs")
    type(tmp_path)(first.processed_paths[1]).write_text(text)
    with pytest.warns(UserWarning, match="regenerating"):
        again = make(tmp_path, "bfs")
    assert_same_items(first, again)
    forbid_generation()
    assert_same_items(first, make(tmp_path, "bfs"))


@pytest.mark.parametrize("field", ["num_samples", "n", "fields", "algorithm", "parameters", "files", "layout",
                                   "kind", "manifest_format"])
def test_manifest_missing_a_field_is_regenerated(tmp_path, field):
    first = make(tmp_path, "bfs")
    manifest_path = type(tmp_path)(first.processed_paths[1])
    manifest = json.loads(manifest_path.read_text())
    del manifest[field]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="regenerating"):
        again = make(tmp_path, "bfs")
    assert_same_items(first, again)


# --- batching -------------------------------------------------------------------------------------

def test_dataloader_batches_traces_of_different_lengths(tmp_path):
    n, num = 8, 20
    dataset = make(tmp_path, "bfs", num_samples=num, n=n, seed=0)
    lengths = dataset.num_steps
    T = dataset.max_steps
    assert len(set(lengths.tolist())) > 1
    batches = list(DataLoader(dataset, batch_size=4, shuffle=False))
    assert len(batches) == num // 4
    for b, batch in enumerate(batches):
        items = [dataset[4 * b + k] for k in range(4)]
        assert batch.num_graphs == 4
        assert batch.ptr.tolist() == [0, n, 2 * n, 3 * n, 4 * n]
        assert batch.batch.tolist() == [g for g in range(4) for _ in range(n)]
        assert batch.num_steps.tolist() == lengths[4 * b: 4 * b + 4].tolist()
        assert tuple(batch.reach_h.shape) == (4 * n, T)
        assert tuple(batch.pi_h.shape) == (4 * n, T)
        assert tuple(batch.A.shape) == (4 * n * n,)
        assert tuple(batch.edge_index.shape) == (2, 4 * n * n)
        offset = batch.ptr[batch.batch]
        assert torch.equal(batch.pi - offset, torch.cat([item.pi for item in items]))
        assert torch.equal(batch.pi_h - offset[:, None], torch.cat([item.pi_h for item in items]))
        assert torch.equal(batch.reach_h, torch.cat([item.reach_h for item in items]))
        assert torch.equal(batch.s, torch.cat([item.s for item in items]))
        # pointers index the batch's nodes: each stays inside its own graph
        assert torch.all(batch.ptr[batch.batch] <= batch.pi) and torch.all(batch.pi < batch.ptr[batch.batch + 1])
        assert torch.equal(batch.edge_index - batch.ptr[:-1].repeat_interleave(n * n),
                           torch.cat([item.edge_index for item in items], dim=1))


def test_dataloader_offsets_edge_pointers_and_graph_hints(tmp_path):
    n = 5
    dataset = make(tmp_path, "floyd_warshall", num_samples=6, n=n, seed=1)
    batch = next(iter(DataLoader(dataset, batch_size=3)))
    items = [dataset[i] for i in range(3)]
    offsets = torch.arange(3).repeat_interleave(n * n) * n
    assert torch.equal(batch.Pi - offsets, torch.cat([item.Pi for item in items]))
    assert torch.equal(batch.Pi_h - offsets[:, None], torch.cat([item.Pi_h for item in items]))

    dataset = make(tmp_path, "strongly_connected_components", num_samples=6, n=n, seed=1)
    batch = next(iter(DataLoader(dataset, batch_size=3)))
    items = [dataset[i] for i in range(3)]
    assert tuple(batch.time.shape) == (3, dataset.max_steps)  # graph hints: one row per graph
    assert tuple(batch.phase.shape) == (3, dataset.max_steps)
    node_offsets = batch.ptr[batch.batch]
    assert torch.equal(batch.scc_id - node_offsets, torch.cat([item.scc_id for item in items]))
    assert torch.equal(batch.s_prev - node_offsets[:, None], torch.cat([item.s_prev for item in items]))
    # mask_one hints such as s are not offset
    assert torch.equal(batch.s, torch.cat([item.s for item in items]))


def test_dataloader_shuffled(tmp_path):
    dataset = make(tmp_path, "bfs", num_samples=20, n=8, seed=0)
    torch.manual_seed(0)
    seen = sorted(int(s) for batch in DataLoader(dataset, batch_size=4, shuffle=True) for s in batch.num_steps)
    assert seen == sorted(dataset.num_steps.tolist())


# --- transform, subsets, names ------------------------------------------------------------------

def test_transform_is_applied(tmp_path):
    def add_marker(data):
        data.marker = torch.tensor([7])
        data.pi = data.pi + 100
        return data

    plain = make(tmp_path, "bfs")
    dataset = make(tmp_path, "bfs", transform=add_marker)
    item = dataset[2]
    assert item.marker.tolist() == [7]
    assert torch.equal(item.pi, plain[2].pi + 100)
    assert torch.equal(dataset[2].pi, plain[2].pi + 100)  # applied once per access, not accumulated
    batch = next(iter(DataLoader(dataset, batch_size=4)))
    assert batch.marker.tolist() == [7, 7, 7, 7]
    assert torch.equal(dataset[:3][1].marker, torch.tensor([7]))


def test_subset_slice(tmp_path):
    dataset = make(tmp_path, "dfs")
    subset = dataset[:5]
    assert isinstance(subset, AlgorithmicReasoningDataset)
    assert len(subset) == 5
    np.testing.assert_array_equal(subset.num_steps, dataset.num_steps[:5])
    for i in range(5):
        assert torch.equal(subset[i].pi, dataset[i].pi)
        assert torch.equal(subset[i].color, dataset[i].color)
    assert len(dataset[-3:]) == 3
    assert torch.equal(dataset[-3:][0].A, dataset[NUM - 3].A)
    assert torch.equal(dataset[-1].A, dataset[NUM - 1].A)


@pytest.mark.parametrize("index", [[3, 0, 3], np.array([3, 0, 3]), torch.tensor([3, 0, 3])],
                         ids=["list", "numpy", "torch"])
def test_subset_by_index(tmp_path, index):
    dataset = make(tmp_path, "bfs")
    subset = dataset[index]
    assert len(subset) == 3
    for position, i in enumerate([3, 0, 3]):
        assert torch.equal(subset[position].pi, dataset[i].pi)
        assert int(subset[position].num_steps) == dataset.num_steps[i]


def test_shuffled_dataset(tmp_path):
    dataset = make(tmp_path, "bellman_ford")
    shuffled, perm = dataset.shuffle(return_perm=True)
    assert sorted(perm.tolist()) == list(range(NUM))
    for position, i in enumerate(perm.tolist()):
        assert torch.equal(shuffled[position].pi, dataset[i].pi)
        assert torch.equal(shuffled[position].d, dataset[i].d)
    np.testing.assert_array_equal(shuffled.num_steps, dataset.num_steps[perm.numpy()])
    np.testing.assert_array_equal(shuffled.targets()["pi"], dataset.targets()["pi"][perm.numpy()])


def test_bool_mask_subset(tmp_path):
    dataset = make(tmp_path, "bfs")
    mask = torch.zeros(NUM, dtype=torch.bool)
    mask[[1, 5]] = True
    subset = dataset[mask]
    assert len(subset) == 2
    assert torch.equal(subset[1].pi, dataset[5].pi)


@pytest.mark.parametrize("name", ["bfz", "BFS", "shortest_paths", ""])
def test_unknown_algorithm(tmp_path, name):
    with pytest.raises(ValueError, match="unknown algorithm") as info:
        AlgorithmicReasoningDataset(tmp_path, name, num_samples=2, n=4)
    for valid in ALGORITHMS:
        assert valid in str(info.value)
    assert not (tmp_path / "algorithmic_reasoning").exists()


@pytest.mark.parametrize("split", ["tran", "testing", "test_8", "TRAIN"])
def test_unknown_split(tmp_path, split):
    with pytest.raises(ValueError, match="unknown split") as info:
        AlgorithmicReasoningDataset(tmp_path, "bfs", split, num_samples=2, n=4)
    listed = str(info.value).split("valid splits: ")[1].split(" (")[0].split(", ")
    assert listed == ["train", "valid", "test", "test_16", "test_32", "test_64", "test_128"]
    assert "'val' is accepted" in str(info.value)


@pytest.mark.parametrize("alias", ["valid", "validation", "val"])
def test_split_aliases(tmp_path, alias):
    dataset = AlgorithmicReasoningDataset(tmp_path, "bfs", alias, num_samples=2, n=4)
    assert dataset.split == "valid"
    assert dataset.seed == 2  # CLRS-30's validation seed unless overridden
    assert dataset.processed_paths == AlgorithmicReasoningDataset(tmp_path, "bfs", "valid", num_samples=2,
                                                                  n=4).processed_paths  # one cache file
    assert [path.name.split("_")[0] for path in (tmp_path / "algorithmic_reasoning" / "bfs" /
                                                 "processed").glob("*.npz")] == ["valid"]


def test_clrs_spelling_val_reads_the_valid_split_config():
    from gnnbench.algo import CLRS30_SPLITS, resolve_split

    assert list(CLRS30_SPLITS) == ["train", "valid", "test"]
    assert CLRS30_SPLITS["val"] is CLRS30_SPLITS["valid"] and "val" in CLRS30_SPLITS
    assert resolve_split("val") == ("valid", CLRS30_SPLITS["valid"])
    assert (CLRS30_SPLITS["valid"].num_samples, CLRS30_SPLITS["valid"].n, CLRS30_SPLITS["valid"].seed) == (32, 16, 2)
    with pytest.raises(KeyError):
        CLRS30_SPLITS["vali"]


def test_split_defaults(tmp_path):
    dataset = AlgorithmicReasoningDataset(tmp_path, "bfs", "test_16", num_samples=3)
    assert (dataset.n, dataset.seed, len(dataset)) == (16, 3, 3)


def test_unknown_sampler_option(tmp_path):
    with pytest.raises(ValueError, match="unknown sampler option"):
        make(tmp_path, "bfs", sampler_options={"q": 0.5})


def test_empty_dataset(tmp_path):
    dataset = make(tmp_path, "bfs", num_samples=0)
    assert len(dataset) == 0
    assert dataset.max_steps == 0
    assert dataset.targets()["pi"].shape == (0, N)


@pytest.mark.parametrize("algorithm", ["bfs", "floyd_warshall", "bridges"])
def test_single_node_graphs(tmp_path, algorithm):
    dataset = make(tmp_path, algorithm, num_samples=3, n=1)
    traces = sample(algorithm, 3, n=1, seed=SEED)
    item = dataset[1]
    assert item.num_nodes == 1
    assert tuple(item.edge_index.shape) == (2, 1)
    assert_item_matches(item, traces[1], algorithm, 1, dataset.max_steps)


# --- items are fresh ------------------------------------------------------------------------------

def test_changing_an_item_in_place_never_changes_the_dataset(tmp_path):
    dataset = make(tmp_path, "dijkstra")  # float32 scalar inputs are stored float32: the case that could alias
    traces = sample("dijkstra", NUM, n=N, seed=SEED)
    item = dataset[3]
    for key in item.keys():
        if torch.is_tensor(item[key]):
            item[key].zero_() if item[key].dtype != torch.bool else item[key].fill_(False)
    assert_item_matches(dataset[3], traces[3], "dijkstra", N, dataset.max_steps)
    np.testing.assert_allclose(dataset.targets(Stage.INPUT)["A"][3], traces.inputs["A"][3], rtol=1e-6)


# --- PyTorch Geometric conventions ------------------------------------------------------------------

def test_constructor_follows_pyg_argument_order():
    import inspect

    from torch_geometric.datasets import TUDataset

    ours = inspect.signature(AlgorithmicReasoningDataset).parameters
    positional = [name for name, p in ours.items() if p.kind == p.POSITIONAL_OR_KEYWORD]
    assert positional == ["root", "algorithm", "split", "transform", "pre_transform", "pre_filter", "force_reload"]
    pyg = inspect.signature(TUDataset).parameters  # TUDataset(root, name, transform, pre_transform, pre_filter, ...)
    for name in ("transform", "pre_transform", "pre_filter", "force_reload"):
        assert ours[name].default == pyg[name].default, name
    assert ours["split"].default == "train"
    assert {name for name, p in ours.items() if p.kind == p.KEYWORD_ONLY} == {
        "num_samples", "n", "seed", "sampler_options", "pad_steps"}


def test_transform_is_the_fourth_positional_argument(tmp_path):
    dataset = AlgorithmicReasoningDataset(tmp_path, "bfs", "train", lambda data: data.update({"tag": 5}),
                                          num_samples=3, n=4)
    assert dataset[1].tag == 5


def _node_features(data):
    """A pre_transform as a PyG user writes one: CLRS inputs to x, the parent pointers to y."""
    data.x = torch.stack([data.pos, data.s], dim=1)
    data.y = data.pi.clone()
    return data


def test_num_features_and_classes_explain_what_to_use(tmp_path):
    dataset = make(tmp_path, "bfs")
    for name in ("num_features", "num_node_features", "num_edge_features", "num_classes"):
        with pytest.raises(AttributeError, match=r"dataset\.spec") as info:
            getattr(dataset, name)
        assert name in str(info.value) and "pi: node pointer" in str(info.value)


def test_num_features_and_classes_follow_pyg_once_items_have_x_and_y(tmp_path):
    dataset = make(tmp_path, "bfs", pre_transform=_node_features)
    assert dataset.num_features == dataset.num_node_features == 2
    # PyG's rule for integer labels: max + 1 over the whole dataset, computed here by hand from the traces
    traces = sample("bfs", NUM, n=N, seed=SEED)
    assert dataset.num_classes == int(max(traces[i].outputs["pi"].max() for i in range(NUM))) + 1


def test_pre_transform_runs_once_when_processing_and_is_cached(tmp_path):
    calls = []

    def counted(data):
        calls.append(1)
        return _node_features(data)

    dataset = make(tmp_path, "bfs", pre_transform=counted)
    assert len(calls) == NUM
    traces = sample("bfs", NUM, n=N, seed=SEED)
    for i in range(NUM):
        item = dataset[i]
        np.testing.assert_array_equal(item.y.numpy(), traces[i].outputs["pi"])
        np.testing.assert_array_equal(item.x[:, 1].numpy(), traces[i].inputs["s"])
    assert len(calls) == NUM  # access does not call it
    again = make(tmp_path, "bfs", pre_transform=counted)
    assert len(calls) == NUM  # the cache is reused for the same function
    assert_same_items(dataset, again)
    make(tmp_path, "bfs", pre_transform=counted, force_reload=True)
    assert len(calls) == 2 * NUM


@pytest.mark.parametrize("damage", ["flip", "delete"])
def test_a_damaged_pre_transform_cache_is_made_again_with_a_warning(tmp_path, damage):
    first = make(tmp_path, "bfs", pre_transform=_node_features)
    (cached,) = list(tmp_path.rglob("*.pre.pt"))
    if damage == "flip":
        data = bytearray(cached.read_bytes())
        data[len(data) // 2] ^= 0xFF
        cached.write_bytes(bytes(data))
    else:
        cached.unlink()
    with pytest.warns(CacheRebuiltWarning) as record:
        again = make(tmp_path, "bfs", pre_transform=_node_features)
    reason = "SHA-256 differs" if damage == "flip" else "missing"
    (message,) = [str(w.message) for w in record if w.category is CacheRebuiltWarning]
    assert f"{cached}: {reason}" in message and "preprocessing again" in message
    assert_same_items(first, again)


def test_a_different_pre_transform_processes_again_with_a_warning(tmp_path):
    make(tmp_path, "bfs", pre_transform=_node_features)

    def other(data):
        data.x = data.pos[:, None] * 2
        return data

    with pytest.warns(UserWarning, match="pre_transform differs") as record:
        changed = make(tmp_path, "bfs", pre_transform=other)
    assert "_node_features" in str(record[0].message) and "other" in str(record[0].message)
    traces = sample("bfs", NUM, n=N, seed=SEED)
    np.testing.assert_allclose(changed[2].x[:, 0].numpy(), traces[2].inputs["pos"] * 2, rtol=1e-6)
    assert "y" not in changed[2]
    with warnings.catch_warnings(record=True) as record:  # same function again: no warning, no work
        warnings.simplefilter("always")
        make(tmp_path, "bfs", pre_transform=other)
    assert not [w for w in record if "differs" in str(w.message)]
    # a lambda with other constants is another function, although PyG's repr comparison sees two "<lambda>"s
    with pytest.warns(UserWarning, match="pre_transform differs"):
        make(tmp_path, "bfs", pre_transform=lambda data: data.update({"x": data.pos[:, None] * 3}))
    with pytest.warns(UserWarning, match="pre_transform differs"):
        tripled = make(tmp_path, "bfs", pre_transform=lambda data: data.update({"x": data.pos[:, None] * 4}))
    np.testing.assert_allclose(tripled[0].x[:, 0].numpy(), traces[0].inputs["pos"] * 4, rtol=1e-6)


def test_pre_filter_keeps_items_and_runs_before_pre_transform(tmp_path):
    traces = sample("bfs", 20, n=8, seed=0)
    keep = [i for i in range(20) if traces[i].num_steps > 2]
    assert 0 < len(keep) < 20  # the case needs both kinds

    def long_traces(data):
        assert "x" not in data  # PyG filters before it pre-transforms
        return int(data.num_steps) > 2

    dataset = make(tmp_path, "bfs", num_samples=20, n=8, seed=0, pre_filter=long_traces,
                   pre_transform=_node_features)
    assert len(dataset) == len(keep)
    np.testing.assert_array_equal(dataset.num_steps, traces.lengths[keep])
    np.testing.assert_array_equal(dataset.targets()["pi"], traces.outputs["pi"][keep])
    for position, i in enumerate(keep):
        np.testing.assert_array_equal(dataset[position].y.numpy(), traces[i].outputs["pi"])
    with pytest.warns(UserWarning, match="pre_filter differs"):
        everything = make(tmp_path, "bfs", num_samples=20, n=8, seed=0, pre_filter=lambda data: True,
                          pre_transform=_node_features)
    assert len(everything) == 20


def test_pre_filter_alone_keeps_the_compact_storage(tmp_path):
    traces = sample("dijkstra", NUM, n=N, seed=SEED)
    threshold = int(np.median(traces.lengths))
    dataset = make(tmp_path, "dijkstra", pre_filter=lambda data: int(data.num_steps) > threshold)
    keep = [i for i in range(NUM) if traces[i].num_steps > threshold]
    assert 0 < len(dataset) == len(keep) < NUM
    assert dataset.max_steps == int(traces.lengths.max())  # padding follows every generated trace
    for position, i in enumerate(keep):
        assert_item_matches(dataset[position], traces[i], "dijkstra", N, dataset.max_steps)


def test_pre_transformed_items_are_fresh_batch_and_subset_like_pyg(tmp_path):
    dataset = make(tmp_path, "bfs", pre_transform=_node_features)
    item = dataset[4]
    item.x.zero_()
    item.pi.zero_()
    traces = sample("bfs", NUM, n=N, seed=SEED)
    np.testing.assert_array_equal(dataset[4].x[:, 0].numpy(), traces[4].inputs["pos"].astype(np.float32))
    batch = next(iter(DataLoader(dataset, batch_size=3)))
    assert batch.x.shape == (3 * N, 2) and batch.num_graphs == 3
    # pointer fields are still offset per graph after the pre_transform
    assert torch.equal(batch.pi - batch.ptr[batch.batch], torch.cat([torch.from_numpy(traces[i].outputs["pi"])
                                                                       for i in range(3)]))
    mask = torch.zeros(NUM, dtype=torch.bool)
    mask[[2, 7]] = True
    assert [int(d.num_steps) for d in dataset[mask]] == [traces[2].num_steps, traces[7].num_steps]
    shuffled, perm = dataset.shuffle(return_perm=True)
    assert torch.equal(shuffled[0].x, dataset[int(perm[0])].x)
    assert len(dataset[2:5]) == 3 and torch.equal(dataset[2:5][1].y, dataset[3].y)


def test_no_console_output_from_the_library(tmp_path, capfd, monkeypatch):
    monkeypatch.delenv("PYTEST_CURRENT_TEST")  # PyG prints "Processing..." only outside pytest
    make(tmp_path, "bfs", pre_transform=_node_features, pre_filter=lambda data: True)
    make(tmp_path, "bfs", force_reload=True)
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


# --- numeric arguments ------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, name", [
    ({"num_samples": -1}, "num_samples"), ({"num_samples": 2.5}, "num_samples"), ({"n": 0}, "n must"),
    ({"n": 1.5}, "n must"), ({"seed": -1}, "seed"), ({"seed": 2**32}, "seed"), ({"seed": "1"}, "seed"),
    ({"pad_steps": -2}, "pad_steps"), ({"pad_steps": 3.0}, "pad_steps"),
    ({"sampler_options": {"p": 1.5}}, "p must"), ({"sampler_options": {"p": [0.2, -0.1]}}, "p must"),
    ({"sampler_options": {"k": 0}}, "k must"), ({"sampler_options": {"eps": 2.0}}, "eps must"),
    ({"sampler_options": {"low": float("nan")}}, "low must"), ({"sampler_options": {"high": "1"}}, "high must"),
])
def test_numeric_arguments_are_checked(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=name):
        AlgorithmicReasoningDataset(tmp_path, "strongly_connected_components", "valid", **kwargs)
    assert not list(tmp_path.rglob("*.npz"))


@pytest.mark.parametrize("call, name", [
    (lambda: sample("bfs", 2, n=1.5), "n must"), (lambda: sample("bfs", 1.0, n=4), "num must"),
    (lambda: sample("bfs", -1, n=4), "num must"), (lambda: sample("bfs", 2, n=4, seed=1.5), "seed"),
    (lambda: sample("bfs", 2, n=4, seed=-1), "seed"), (lambda: sample("bfs", 2, n=4, p=float("nan")), "p must"),
    (lambda: sample("strongly_connected_components", 2, n=8, k=2.5), "k must"),
    (lambda: sample("dijkstra", 2, n=4, low="0"), "low must"), (lambda: sample("bfs", 2, n=4, directed=1), "directed"),
])
def test_sample_arguments_are_checked(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_run_algorithm_source_is_checked():
    from gnnbench.algo import run_algorithm

    for s in (1.5, True, -1, 3):
        with pytest.raises(ValueError, match="source node s"):
            run_algorithm("bfs", np.ones((3, 3)), s=s)


def test_sampler_options_as_numpy_values_still_work():
    a = sample("bfs", 3, n=5, seed=1, p=np.array([0.3]))
    b = sample("bfs", 3, n=5, seed=1, p=0.3)
    np.testing.assert_array_equal(a.inputs["adj"], b.inputs["adj"])


def test_pre_filter_and_pre_transform_match_pygs_own_recipe(tmp_path):
    """The same functions through a plain PyG InMemoryDataset (the tutorial's process(): filter, transform,
    save) give the same items."""
    from torch_geometric.data import InMemoryDataset

    raw = make(tmp_path / "raw", "bfs", num_samples=20, n=8, seed=0)

    def keep(data):
        return int(data.num_steps) > 2

    class Reference(InMemoryDataset):
        def __init__(self, root, pre_transform, pre_filter):
            super().__init__(str(root), None, pre_transform, pre_filter, log=False)
            self.load(self.processed_paths[0], data_cls=AlgorithmicReasoningData)

        @property
        def raw_file_names(self):
            return []

        @property
        def processed_file_names(self):
            return ["data.pt"]

        def process(self):
            data_list = [raw[i] for i in range(len(raw))]
            data_list = [data for data in data_list if self.pre_filter(data)]
            self.save([self.pre_transform(data) for data in data_list], self.processed_paths[0])

    reference = Reference(tmp_path / "reference", _node_features, keep)
    ours = make(tmp_path / "ours", "bfs", num_samples=20, n=8, seed=0, pre_transform=_node_features, pre_filter=keep)
    assert 0 < len(ours) == len(reference) < 20
    assert_same_items(ours, reference)
    assert ours.num_features == reference.num_features and ours.num_classes == reference.num_classes
    a, b = next(iter(DataLoader(ours, batch_size=5))), next(iter(DataLoader(reference, batch_size=5)))
    assert set(a.keys()) == set(b.keys())
    for key in a.keys():
        assert torch.equal(a[key], b[key]) if torch.is_tensor(a[key]) else a[key] == b[key], key
