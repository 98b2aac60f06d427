"""Hessian-based bounds against exact dense Hessians, and the report record."""

from __future__ import annotations

import json
import math

import pytest
import torch

from gnnbench.hessian import bounds, report
from hessian_references import dense_hessian


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)).double()
    initial = {name: value.detach().clone() for name, value in model.named_parameters()}
    x = torch.randn(24, 3, dtype=torch.float64)
    y = (x[:, 0] + 0.3 * torch.randn(24, dtype=torch.float64) > 0).long()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(60):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    train = [(x[i:i + 6], y[i:i + 6]) for i in range(0, 18, 6)]
    test = [(x[18:], y[18:])]

    def loss_fn(batch):
        return torch.nn.functional.cross_entropy(model(batch[0]), batch[1])

    return model, initial, loss_fn, train, test


def _exact_hessian(model, loss_fn, batch):
    """Dense Hessian of the batch loss over the flat parameters, by torch.autograd.functional.hessian."""
    return dense_hessian(model, *batch)


def _exact_layer_terms(model, initial, loss_fn, batch):
    """{layer: (v_i^T H_ii v_i, Tr H_ii)} for layers "0" and "2" (module groups) on one batch."""
    names = [name for name, _ in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])
    sizes = [p.numel() for _, p in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]

    def f(vector):
        pieces = torch.split(vector, sizes)
        params = {name: piece.reshape(shape) for name, piece, shape in zip(names, pieces, shapes)}
        out = torch.func.functional_call(model, params, (batch[0],))
        return torch.nn.functional.cross_entropy(out, batch[1])

    hessian = torch.autograd.functional.hessian(f, flat)
    v = torch.cat([(p.detach() - initial[n]).reshape(-1) for n, p in model.named_parameters()])
    result, start = {}, 0
    layer_sizes = {"0": sizes[0] + sizes[1], "2": sizes[2] + sizes[3]}
    for layer, size in layer_sizes.items():
        block = hessian[start:start + size, start:start + size]
        piece = v[start:start + size]
        result[layer] = (float(piece @ block @ piece), float(torch.trace(block)))
        start += size
    return result


def test_formulas_by_hand():
    bound, gap, negative = bounds.ju_li_zhang(0.5, {"a": 4.0, "b": 9.0, "c": -1.0}, n=100, loss_bound=4.0,
                                              epsilon=0.1)
    assert gap == pytest.approx(1.1 * 2.0 * (2.0 + 3.0) / 10.0) and negative == 1
    assert bound == pytest.approx(1.1 * 0.5 + gap)
    assert bounds.trace_radius(2.0, {"a": 3.0, "b": 1.0}, {"a": 1.0, "b": 2.0}, n=20) == pytest.approx(
        2.0 * math.sqrt(4.0 * 5.0 / 20))
    with pytest.raises(ValueError, match="different layers"):
        bounds.trace_radius(1.0, {"a": 1.0}, {"b": 1.0}, n=2)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        bounds.ju_li_zhang(0.1, {"a": 1.0}, n=0, loss_bound=1.0)
    with pytest.raises(ValueError, match="loss_bound must be a finite number > 0"):
        bounds.ju_li_zhang(0.1, {"a": 1.0}, n=3, loss_bound=0.0)
    with pytest.raises(ValueError, match="epsilon"):
        bounds.ju_li_zhang(0.1, {"a": 1.0}, n=3, loss_bound=1.0, epsilon=-0.1)
    with pytest.raises(ValueError, match="n must be an integer"):
        bounds.trace_radius(1.0, {"a": 1.0}, {"a": 1.0}, n=2.5)


def test_quadratic_bound_uses_the_exact_max_over_batches(trained):
    model, initial, loss_fn, train, test = trained
    report_ = bounds.hessian_bound(model, loss_fn, initial, train_data=train, test_data=test, n=18)
    exact = [_exact_layer_terms(model, initial, loss_fn, batch) for batch in train]
    for layer in ("0", "2"):
        assert report_.terms["H_i"][layer] == pytest.approx(max(terms[layer][0] for terms in exact), rel=1e-8)
    train_losses = [float(loss_fn(batch)) for batch in train]
    assert report_.train_loss == pytest.approx(sum(train_losses) / 3)
    assert report_.terms["loss_bound_C"] == pytest.approx(max(train_losses))
    assert report_.measured_gap == pytest.approx(float(loss_fn(test[0])) - report_.train_loss)
    expected, _, _ = bounds.ju_li_zhang(report_.train_loss, report_.terms["H_i"], 18, max(train_losses), 0.1)
    assert report_.bound_on_test_loss == pytest.approx(expected)
    assert report_.terms["num_matvecs"] == 3 * 2  # one product per layer and batch
    assert "maximum over batches in place of over single examples" in report_.approximations
    json.dumps(report_.to_dict())


def test_trace_forms_use_radius_times_max_trace(trained):
    model, initial, loss_fn, train, test = trained
    exact = [_exact_layer_terms(model, initial, loss_fn, batch) for batch in train]
    radii = bounds.radii_squared(model, initial, ["0", "2"])
    # 32 parameters: Hutch++ with 96 products per batch (288 in all) sketches 32 rows, which span the space: exact,
    # with 32 + 32 products per batch spent
    report_ = bounds.hessian_bound(model, loss_fn, initial, train_data=train, n=18, form="trace", num_matvecs=288)
    assert report_.terms["num_matvecs"] == 3 * 64
    for layer in ("0", "2"):
        max_trace = max(terms[layer][1] for terms in exact)
        assert report_.terms["max_trace_i"][layer] == pytest.approx(max_trace, rel=1e-8)
        assert report_.terms["H_i"][layer] == pytest.approx(radii[layer] * max_trace, rel=1e-8)
    radius_report = bounds.trace_radius_bound(model, loss_fn, initial, train_data=train, test_data=test, n=18,
                                              num_matvecs=288)
    traces = {layer: max(terms[layer][1] for terms in exact) for layer in ("0", "2")}
    largest = max(float(loss_fn(batch)) for batch in train)
    expected = bounds.trace_radius(largest, traces, {k: math.sqrt(v) for k, v in radii.items()}, 18)
    assert radius_report.bound_on_gap == pytest.approx(expected, rel=1e-8)
    assert radius_report.bound_on_gap == pytest.approx(  # by hand: max loss * sqrt(sum T_i * sum r_i^2 / n)
        largest * math.sqrt(sum(traces.values()) * sum(radii.values()) / 18), rel=1e-8)


def test_old_argument_order_still_works_with_a_deprecation_warning(trained):
    model, initial, loss_fn, train, test = trained
    new = bounds.hessian_bound(model, loss_fn, initial, train_data=train, n=18)
    with pytest.warns(DeprecationWarning, match=r"hessian_bound\(model, initial, loss_fn, \.\.\.\) is deprecated"):
        old = bounds.hessian_bound(model, initial, loss_fn, train_data=train, n=18)
    assert old.to_dict() == new.to_dict()
    with pytest.warns(DeprecationWarning, match="trace_radius_bound"):
        old = bounds.trace_radius_bound(model, initial, loss_fn, train_data=train, n=18, num_matvecs=30)
    assert old.bound_on_gap == bounds.trace_radius_bound(model, loss_fn, initial, train_data=train, n=18,
                                                         num_matvecs=30).bound_on_gap
    with pytest.raises(TypeError, match="initial must be a state dict or a module"):
        bounds.hessian_bound(model, loss_fn, 3.0, train_data=train, n=18)


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 0}, "n must be an integer >= 1"), ({"n": 18.0}, "n must be an integer"),
    ({"n": 18, "epsilon": -1}, "epsilon"), ({"n": 18, "loss_bound": 0}, "loss_bound"),
    ({"n": 18, "form": "spectral"}, "form must be one of"),
    ({"n": 18, "form": "trace", "num_matvecs": 0}, "num_matvecs must be an integer >= 3"),
    ({"n": 18, "form": "trace", "num_matvecs": 6}, "num_matvecs=6 is too small for 3 batches"),
])
def test_bound_arguments_are_checked(trained, kwargs, message):
    model, initial, loss_fn, train, _ = trained
    with pytest.raises(ValueError, match=message):
        bounds.hessian_bound(model, loss_fn, initial, train_data=train, **kwargs)
    with pytest.raises(ValueError, match="train_data has no batches"):
        bounds.trace_radius_bound(model, loss_fn, initial, train_data=[], n=18)


def test_radii_follow_the_operator_layer_names():
    from torch_geometric.nn import GCNConv

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = GCNConv(3, 4)
            self.scale = torch.nn.Parameter(torch.ones(1))

    model = Net()
    start = {name: torch.zeros_like(value) for name, value in model.named_parameters()}
    radii = bounds.radii_squared(model, start, ["conv.lin", "conv", "<root>"])
    assert radii["conv.lin"] == pytest.approx(float(model.conv.lin.weight.pow(2).sum()))
    assert radii["conv"] == pytest.approx(float(model.conv.bias.pow(2).sum()))
    assert radii["<root>"] == pytest.approx(1.0)
    with pytest.raises(KeyError, match="no parameter belongs"):
        bounds.radii_squared(model, start, ["nothing"])
    with pytest.raises(KeyError, match="conv.bias"):
        bounds.displacement(model, {k: v for k, v in start.items() if k != "conv.bias"})
    with pytest.raises(ValueError, match="shape"):
        bounds.displacement(model, {**start, "scale": torch.zeros(2)})


def test_report_record_and_plots(trained, tmp_path):
    model, initial, loss_fn, train, test = trained
    # 288 products: 96 per batch, Hutch++ resolves the 32-parameter Hessian exactly (64 products per batch)
    record = report(model, loss_fn, data=train, initial=initial, test_data=test, n=18, num_matvecs=288, top_k=3,
                    density_runs=2, density_steps=10, path=tmp_path / "report.json", plots_dir=tmp_path / "plots")
    on_disk = json.loads((tmp_path / "report.json").read_text())
    exact = [_exact_layer_terms(model, initial, loss_fn, batch) for batch in train]
    for layer in ("0", "2"):
        traces = [terms[layer][1] for terms in exact]
        assert on_disk["trace"]["max"]["per_layer"][layer] == pytest.approx(max(traces), rel=1e-8)
        assert on_disk["trace"]["mean"]["per_layer"][layer] == pytest.approx(sum(traces) / 3, rel=1e-8)
    spectrum = torch.linalg.eigvalsh(_exact_hessian(model, loss_fn, train[0]))
    assert on_disk["top_eigenvalues"] == pytest.approx(spectrum.flip(0)[:3].tolist(), rel=1e-3)
    assert set(on_disk["bounds"]) == {"ju_li_zhang_2022", "trace_radius"}
    assert on_disk["bounds"]["trace_radius"]["terms"]["T_i"] == pytest.approx(on_disk["trace"]["max"]["per_layer"])
    assert on_disk["settings"]["seed"] == 0 and on_disk["settings"]["num_matvecs"] == 288
    matvecs = on_disk["matvecs"]
    assert matvecs["trace"] == 3 * 64 and matvecs["spectral_density"] == 2 * 10 and matvecs["bounds"] == 3 * 2
    assert 3 <= matvecs["eigenvalues"] <= 300 and matvecs["total"] == sum(v for k, v in matvecs.items() if k != "total")
    assert record["trace"]["mean"]["total"] == on_disk["trace"]["mean"]["total"]
    assert (tmp_path / "plots" / "per_layer_trace.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "eigenvalue_density.png").stat().st_size > 1000


SPEC = '''
import torch

torch.manual_seed(3)
X = torch.randn(40, 3)
Y = (X[:, 0] > 0).long()


def build_model():
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))


def loss(model, batch):
    return torch.nn.functional.cross_entropy(model(batch[0]), batch[1])


def train_batches():
    return [(X[i:i + 10], Y[i:i + 10]) for i in range(0, 30, 10)]


def test_batches():
    return [(X[30:], Y[30:])]


num_train_examples = 30
'''


def test_hessian_report_command_measures_a_checkpoint(tmp_path, capsys):
    from gnnbench.cli import main

    spec = tmp_path / "spec.py"
    spec.write_text(SPEC)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    torch.save(model.state_dict(), tmp_path / "initial.pt")
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1)
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, tmp_path / "trained.pt")
    out = tmp_path / "record.json"
    assert main(["hessian", "report", "--spec", str(spec), "--checkpoint", str(tmp_path / "trained.pt"),
                 "--initial", str(tmp_path / "initial.pt"), "--out", str(out), "--num-matvecs", "12",
                 "--top-k", "2"]) == 0
    printed = capsys.readouterr().out
    assert "Hessian trace" in printed and "ju_li_zhang_2022: bound on the gap" in printed
    record = json.loads(out.read_text())
    # 12 products in all over 3 batches, Hutch++: 4 per batch (sketch 1, basis 1, 2 probes)
    assert record["matvecs"]["trace"] == 12 and record["trace"]["mean"]["num_matvecs"] == 12
    assert f"Hessian-vector products: trace 12, eigenvalues {record['matvecs']['eigenvalues']}" in printed
    assert len(record["top_eigenvalues"]) == 2 and set(record["bounds"]) == {"ju_li_zhang_2022", "trace_radius"}
    assert record["bounds"]["trace_radius"]["terms"]["n"] == 30
    bad = tmp_path / "bad.py"
    bad.write_text("def build_model():\n    pass\n")
    assert main(["hessian", "report", "--spec", str(bad), "--checkpoint", str(tmp_path / "trained.pt")]) == 2
    assert "does not define loss, train_batches" in capsys.readouterr().err
    assert main(["hessian", "report", "--spec", str(spec), "--checkpoint", str(tmp_path / "none.pt")]) == 2


def test_hessian_diffusion_command_on_the_demo_region(tmp_path, capsys):
    from gnnbench.cli import main

    assert main(["hessian", "diffusion", "--state", "DEMO", "--root", str(tmp_path / "road"), "--rule", "sum"]) == 0
    out = capsys.readouterr().out
    assert "sum: sigma_max" in out and "l=6" in out


# ------------------------------------------------------------------- bounds below the measured gap (issue 10, item 8)


def _flipped(batches):
    """The same inputs with the other label: a trained classifier's loss on them is far above its training loss."""
    return [(x, 1 - y) for x, y in batches]


def _stderr(values):
    mean = sum(values) / len(values)
    return math.sqrt(sum((value - mean) ** 2 for value in values) / (len(values) - 1) / len(values))


def test_a_bound_below_the_measured_gap_is_flagged_with_its_causes(trained):
    """W = W0 (no displacement): the Ju-Li-Zhang bound on the gap reduces to eps * train loss and the trace-radius
    bound to 0, while flipped test labels make the measured gap large: both bounds are below it."""
    model, _, loss_fn, train, _ = trained
    start = {name: value.detach().clone() for name, value in model.named_parameters()}
    test = _flipped(train)
    with torch.no_grad():
        train_losses = [float(loss_fn(batch)) for batch in train]
        test_losses = [float(loss_fn(batch)) for batch in test]
    train_loss, test_loss = sum(train_losses) / 3, sum(test_losses) / 3
    gap = test_loss - train_loss
    assert 0.1 * train_loss < gap  # by construction, by hand: the bounds below (0.1 * train loss and 0) miss the gap
    quadratic = bounds.hessian_bound(model, loss_fn, start, train_data=train, test_data=test, n=18)
    radius = bounds.trace_radius_bound(model, loss_fn, start, train_data=train, test_data=test, n=18,
                                       num_matvecs=30)
    assert quadratic.bound_on_gap == pytest.approx(0.1 * train_loss) and radius.bound_on_gap == 0.0
    for result, name in ((quadratic, "C"), (radius, "max loss")):
        assert result.measured_gap == pytest.approx(gap) and result.bound_holds is False
        note = result.note
        assert note.startswith(f"the bound on the gap ({result.bound_on_gap:.4g}) is below the measured gap "
                               f"({gap:.4g})")
        # the test loss leaves the range the bound assumes (the largest training batch loss)
        assert f"reaches {max(test_losses):.4g}, above {name} = {max(train_losses):.4g}" in note
        assert f"from 3 test batches, with standard error {_stderr(test_losses):.2g}" in note
        assert "over 3 training batches, not over single examples" in note
        assert "probability 1 - delta" in note
        assert result.to_dict()["bound_holds"] is False and result.to_dict()["note"] == note
    assert "lower-order term xi" in quadratic.note


def test_the_note_gives_the_bound_at_two_standard_errors_of_the_traces(trained):
    """Stochastic traces: the note gives the bound recomputed with each T_i two standard errors higher, checked by
    hand from the report's terms; n is huge so that the bound is far below the flipped-label gap."""
    model, initial, loss_fn, train, _ = trained
    test = _flipped(train)[:1]
    n = 10**9
    result = bounds.trace_radius_bound(model, loss_fn, initial, train_data=train, test_data=test, n=n,
                                       method="hutchinson", num_matvecs=30, seed=4)
    terms = result.terms
    assert result.bound_holds is False and all(terms["T_i_stderr"][layer] > 0 for layer in ("0", "2"))
    upper = terms["max_loss"] * math.sqrt(sum(terms["T_i"][layer] + 2 * terms["T_i_stderr"][layer]
                                              for layer in ("0", "2")) * sum(terms["r_i_squared"].values()) / n)
    assert f"at two standard errors above them the bound on the gap would be {upper:.4g}" in result.note
    assert "from a single test batch, so its noise is unknown" in result.note
    jlz = bounds.hessian_bound(model, loss_fn, initial, train_data=train, test_data=test, n=n, form="trace",
                               method="hutchinson", num_matvecs=30, seed=4)
    widened = {layer: jlz.terms["radius_squared_i"][layer] * (jlz.terms["max_trace_i"][layer]
                                                              + 2 * jlz.terms["trace_stderr_i"][layer])
               for layer in ("0", "2")}
    upper = 0.1 * jlz.train_loss + 1.1 * math.sqrt(jlz.terms["loss_bound_C"]) * sum(
        math.sqrt(max(value, 0.0)) for value in widened.values()) / math.sqrt(n)
    assert jlz.bound_holds is False and f"the bound on the gap would be {upper:.4g}" in jlz.note


def test_a_bound_that_holds_has_no_note(trained):
    """Test batches equal to the training batches: the measured gap is exactly 0 and both bounds are >= 0."""
    model, initial, loss_fn, train, _ = trained
    for result in (bounds.hessian_bound(model, loss_fn, initial, train_data=train, test_data=train, n=18),
                   bounds.trace_radius_bound(model, loss_fn, initial, train_data=train, test_data=train, n=18,
                                             num_matvecs=30)):
        assert result.measured_gap == 0.0 and result.bound_on_gap > 0
        assert result.bound_holds is True and result.note is None
    without_test = bounds.hessian_bound(model, loss_fn, initial, train_data=train, n=18)
    assert without_test.measured_gap is None and without_test.bound_holds is None and without_test.note is None


def test_report_and_harness_column_carry_the_flag_per_bound(trained):
    from gnnbench.harness.hessian_column import column

    model, _, loss_fn, train, _ = trained
    start = {name: value.detach().clone() for name, value in model.named_parameters()}
    record = report(model, loss_fn, data=train, initial=start, test_data=_flipped(train), n=18, num_matvecs=30,
                    top_k=1, density_runs=1, density_steps=4)
    compact = column(record, train_batches=3, test_batches=3)
    for name in ("ju_li_zhang_2022", "trace_radius"):
        full = record["bounds"][name]
        assert full["bound_holds"] is False and full["bound_on_gap"] < full["measured_gap"]
        assert compact["bounds"][name]["bound_holds"] is False
        assert compact["bounds"][name]["note"] == full["note"] and "is below the measured gap" in full["note"]
    record = report(model, loss_fn, data=train, initial=start, test_data=train, n=18, num_matvecs=30, top_k=1,
                    density_runs=1, density_steps=4)
    compact = column(record, train_batches=3, test_batches=3)
    assert all(entry["bound_holds"] is True and entry["note"] is None for entry in compact["bounds"].values())


# A classifier of Y = [x_0 > 0] with weights set by hand: tanh(5 x_0) in the first hidden unit, logits -/+ 5 h_0.
FITTED = '''
import torch


def fitted_model():
    model = build_model()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model[0].weight[0, 0] = 5.0
        model[2].weight[0, 0], model[2].weight[1, 0] = -5.0, 5.0
    return model
'''


@pytest.mark.parametrize("test_batches, warned", [("[(X[30:], 1 - Y[30:])]", True), ("train_batches()", False)],
                         ids=["flipped_test_labels", "test_equals_train"])
def test_hessian_report_command_warns_when_a_bound_is_below_the_gap(tmp_path, capsys, test_batches, warned):
    """The checkpoint is its own starting point (W = W0): the bounds on the gap are 0.1 * train loss and 0. With
    flipped test labels the measured gap is far above both (a warning line after each bound's line); with the
    training batches as test batches the gap is exactly 0 and no warning is printed."""
    from gnnbench.cli import main

    spec = tmp_path / "spec.py"
    spec.write_text(SPEC.replace("return [(X[30:], Y[30:])]", f"return {test_batches}") + FITTED)
    namespace: dict = {}
    exec(compile(spec.read_text(), str(spec), "exec"), namespace)
    model = namespace["fitted_model"]()
    torch.save(model.state_dict(), tmp_path / "model.pt")
    with torch.no_grad():
        train_losses = [float(namespace["loss"](model, batch)) for batch in namespace["train_batches"]()]
        test_losses = [float(namespace["loss"](model, batch)) for batch in namespace["test_batches"]()]
        gap = sum(test_losses) / len(test_losses) - sum(train_losses) / 3
    assert main(["hessian", "report", "--spec", str(spec), "--checkpoint", str(tmp_path / "model.pt"),
                 "--initial", str(tmp_path / "model.pt"), "--out", str(tmp_path / "record.json"),
                 "--num-matvecs", "12", "--top-k", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    warnings_ = [line for line in lines if line.startswith("  warning: ")]
    expected = {"ju_li_zhang_2022": 0.1 * sum(train_losses) / 3 < gap, "trace_radius": 0.0 < gap}
    assert all(value is warned for value in expected.values())  # the construction, by hand
    assert len(warnings_) == (2 if warned else 0)
    record = json.loads((tmp_path / "record.json").read_text())
    for name, below in expected.items():
        assert record["bounds"][name]["bound_holds"] is (not below)
        bound_line = lines.index(next(line for line in lines if line.startswith(f"{name}: bound on the gap")))
        if below:  # the warning follows its bound's line
            assert lines[bound_line + 1] == f"  warning: {record['bounds'][name]['note']}"
            assert f"measured gap ({gap:.4g})" in lines[bound_line + 1]
