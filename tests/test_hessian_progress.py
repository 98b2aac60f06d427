"""The Hessian estimators' ``progress=`` option: a bar of Hessian-vector products on stderr, nothing without it."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from gnnbench.hessian import eigenvalues, report, spectral_density, trace  # noqa: E402

SPEC = '''
import torch

torch.manual_seed(1)
X = torch.randn(24, 3)
Y = (X[:, 0] > 0).long()


def build_model():
    return torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))


def loss(model, batch):
    return torch.nn.functional.cross_entropy(model(batch[0]), batch[1])


def train_batches():
    return [(X[i:i + 8], Y[i:i + 8]) for i in range(0, 16, 8)]


def test_batches():
    return [(X[16:], Y[16:])]


num_train_examples = 16
'''


def _model_and_loss():
    torch.manual_seed(0)
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    model = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1))  # 31 parameters
    return model, lambda: torch.nn.functional.mse_loss(model(x), y)


class RecordingBar:
    """Stands in for tqdm: records the bar's description, total and updates."""

    bars: list[RecordingBar] = []

    def __init__(self, *, total=None, desc=None, disable=False, **options) -> None:
        self.total, self.desc, self.disable, self.updates = total, desc, disable, []
        RecordingBar.bars.append(self)

    def update(self, n=1) -> None:
        self.updates.append(n)

    def __enter__(self) -> RecordingBar:
        return self

    def __exit__(self, *exc) -> None:
        pass


@pytest.fixture
def recorded(monkeypatch):
    import tqdm.auto

    RecordingBar.bars = []
    monkeypatch.setattr(tqdm.auto, "tqdm", RecordingBar)
    return RecordingBar.bars


def test_progress_writes_a_bar_of_matvecs_to_stderr_and_nothing_without(capfd):
    model, loss = _model_and_loss()
    capfd.readouterr()
    quiet = trace(model, loss, num_matvecs=12, seed=0)
    assert capfd.readouterr() == ("", "")
    shown = trace(model, loss, num_matvecs=12, seed=0, progress=True)
    out, err = capfd.readouterr()
    assert out == "" and "Hessian trace (hutchinson)" in err and "/12" in err and "matvec" in err
    assert shown.total == quiet.total  # the bar changes nothing but the output
    spectral_density(model, loss, num_runs=2, num_steps=5, progress=True)
    assert "Hessian spectral density" in capfd.readouterr().err
    spectral_density(model, loss, num_runs=2, num_steps=5)
    eigenvalues(model, loss, k=1, num_matvecs=20)
    assert capfd.readouterr() == ("", "")


def test_the_bars_count_every_product(recorded):
    model, loss = _model_and_loss()
    batches = [None, None, None]  # three batches: the products are split over them, the bar counts them all
    result = trace(model, lambda batch: loss(), data=batches, num_matvecs=12, seed=0, progress=True)
    density = spectral_density(model, loss, num_runs=3, num_steps=4, seed=0, progress=True)
    values = eigenvalues(model, loss, k=2, num_matvecs=40, seed=0, progress=True)
    trace_bar, density_bar, eigen_bar = recorded
    assert trace_bar.total == 12 and sum(trace_bar.updates) == result.num_matvecs == 12
    # 3 runs x 4 Lanczos steps on a 31-dimensional Hessian: no early stop, 12 products
    assert density_bar.total == 12 and sum(density_bar.updates) == density.num_matvecs == 12
    assert eigen_bar.total == 40 and 2 <= sum(eigen_bar.updates) <= 40 and len(values) == 2
    assert not any(bar.disable for bar in recorded)
    trace(model, loss, num_matvecs=6)
    assert recorded[-1].disable  # off by default in the library


def test_report_and_the_cli_show_progress_unless_asked_not_to(tmp_path, capfd, recorded):
    from gnnbench.cli import main

    spec = tmp_path / "spec.py"
    spec.write_text(SPEC)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    torch.save(model.state_dict(), tmp_path / "trained.pt")
    argv = ["hessian", "report", "--spec", str(spec), "--checkpoint", str(tmp_path / "trained.pt"),
            "--out", str(tmp_path / "record.json"), "--num-matvecs", "8", "--top-k", "2"]
    assert main(argv) == 0
    described = [bar.desc for bar in recorded]
    assert described == ["Hessian trace (hutch++)", "Hessian eigenvalues", "Hessian spectral density"]
    assert not any(bar.disable for bar in recorded)
    assert sum(recorded[0].updates) == 8  # the trace's products, all counted
    recorded.clear()
    assert main([*argv, "--no-progress"]) == 0
    assert len(recorded) == 3 and all(bar.disable for bar in recorded)
    capfd.readouterr()
    batches = [(torch.randn(8, 3), torch.randint(0, 2, (8,)))]
    record = report(model, lambda batch: torch.nn.functional.cross_entropy(model(batch[0]), batch[1]),
                    data=batches, num_matvecs=6, top_k=1, density_runs=1, density_steps=3)
    assert record["matvecs"]["trace"] == 6 and all(bar.disable for bar in recorded[3:])  # default: off
