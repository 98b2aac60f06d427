"""Importing the DGL twins without DGL, or with a DGL whose import breaks, says which of the two and what to do.

Runs in every environment (no DGL needed): the import machinery is monkeypatched, so DGL is made missing
(``sys.modules["dgl"] = None``) or broken (a meta path finder whose ``dgl`` raises what DGL 2.1 raises with
torchdata >= 0.8).
"""

import importlib
import importlib.abc
import importlib.machinery
import sys
import tomllib
from pathlib import Path

import pytest

from gnnbench.datasets import dgl_environment
from gnnbench.datasets.dgl_environment import SUPPORTED_ENVIRONMENT, DGLBrokenError, DGLMissingError

TORCHDATA_ERROR = "No module named 'torchdata.datapipes'"


class _FailingDGL(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``dgl`` (so it counts as installed) and fails while executing it, as a broken install does."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def find_spec(self, fullname, path=None, target=None):
        return importlib.machinery.ModuleSpec(fullname, self) if fullname == "dgl" else None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        raise self.error


@pytest.fixture
def fresh_twins(monkeypatch):
    """Forget any imported ``dgl`` and ``gnnbench.datasets.dgl`` (monkeypatch puts them back afterwards)."""
    for name in list(sys.modules):
        if name == "dgl" or name.startswith("dgl.") or name == "gnnbench.datasets.dgl":
            monkeypatch.delitem(sys.modules, name)


def _versions(monkeypatch, **versions):
    monkeypatch.setattr(dgl_environment, "_version", lambda name: versions.get(name))


def _broken(monkeypatch, error):
    monkeypatch.setattr(sys, "meta_path", [_FailingDGL(error), *sys.meta_path])


def test_missing_dgl_says_not_installed_and_how_to_install(monkeypatch, fresh_twins):
    monkeypatch.setitem(sys.modules, "dgl", None)  # import dgl -> ModuleNotFoundError(name="dgl")
    with pytest.raises(DGLMissingError) as info:
        importlib.import_module("gnnbench.datasets.dgl")
    message = str(info.value)
    assert "needs DGL, which is not installed" in message
    assert SUPPORTED_ENVIRONMENT in message and 'pip install "gnnbench[dgl]"' in message
    assert "fails" not in message
    assert isinstance(info.value, ModuleNotFoundError) and info.value.name == "dgl"  # importorskip-friendly
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_broken_dgl_names_the_reason_not_install_dgl(monkeypatch, fresh_twins):
    """dgl 2.1.0 with torchdata 0.11 (what `gnnbench[dgl]` used to resolve to): installed, but its import fails."""
    _versions(monkeypatch, dgl="2.1.0", torch="2.2.1", torchdata="0.11.0", numpy="1.26.4")
    _broken(monkeypatch, ModuleNotFoundError(TORCHDATA_ERROR, name="torchdata.datapipes"))
    with pytest.raises(DGLBrokenError) as info:
        importlib.import_module("gnnbench.datasets.dgl")
    message = str(info.value)
    assert "DGL 2.1.0 is installed but `import dgl` fails" in message
    assert f"ModuleNotFoundError: {TORCHDATA_ERROR}" in message  # the original reason
    assert "Likely cause: torchdata 0.11.0 (0.8 removed torchdata.datapipes" in message
    assert "torch 2.2.1 (" not in message and "numpy 1.26.4 (" not in message  # both supported: not blamed
    assert "Installed: dgl 2.1.0, torch 2.2.1, torchdata 0.11.0, numpy 1.26.4" in message
    assert SUPPORTED_ENVIRONMENT in message and "not installed" not in message
    assert not isinstance(info.value, ModuleNotFoundError)  # not to be mistaken for "missing"
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


@pytest.mark.parametrize("torch, numpy, blamed", [
    ("2.2.1+cu121", "1.26.4", []),                 # the tested set (local version labels ignored)
    ("2.0.0", "1.24.0", []),                       # the lower end of DGL 2.1's torch range
    ("2.2.2", "1.26.4", ["torch 2.2.2"]),          # just past it: no GraphBolt library for 2.2.2
    ("1.13.1", "1.26.4", ["torch 1.13.1"]),
    ("2.14.1", "2.3.1", ["torch 2.14.1", "numpy 2.3.1"]),
])
def test_broken_dgl_blames_exactly_the_versions_outside_the_supported_set(monkeypatch, fresh_twins, torch, numpy,
                                                                          blamed):
    _versions(monkeypatch, dgl="2.1.0", torch=torch, torchdata="0.7.1", numpy=numpy)
    library = f"Cannot find DGL C++ graphbolt library at libgraphbolt_pytorch_{torch.split('+')[0]}.so"
    _broken(monkeypatch, FileNotFoundError(library))
    with pytest.raises(DGLBrokenError) as info:
        dgl_environment.import_dgl()
    message = str(info.value)
    assert f"FileNotFoundError: {library}" in message
    if blamed:
        causes = message.split("Likely cause: ")[1].split(". Installed:")[0]
        assert [cause.split(" (")[0] for cause in causes.split("; ")] == blamed
    else:
        assert "Likely cause" not in message


def test_dgl_extra_pins_the_supported_environment():
    """The extra admits the tested set (torch 2.2.1, dgl 2.1.0, torchdata 0.7.1, numpy 1.26) and excludes the
    versions with which `import dgl` fails; the core dependencies leave torch open."""
    requirements = pytest.importorskip("packaging.requirements")
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    extra = {req.name: req.specifier for req in map(requirements.Requirement, project["optional-dependencies"]["dgl"])}
    admitted = {"dgl": ["2.1.0"], "torch": ["2.0.0", "2.2.1"], "torchdata": ["0.5.0", "0.7.1"], "numpy": ["1.26.4"],
                "pyarrow": ["19.0.1", "25.0.0"]}
    excluded = {"dgl": ["1.0.0"], "torch": ["1.13.1", "2.2.2", "2.3.0", "2.14.1"], "torchdata": ["0.8.0", "0.11.0"],
                "numpy": ["2.0.0"], "pyarrow": ["26.0.1"]}  # pyarrow 26: "pyarrow requires NumPy 2.0 or newer"
    for name, versions in admitted.items():
        assert all(extra[name].contains(version) for version in versions), (name, extra[name])
    for name, versions in excluded.items():
        assert not any(extra[name].contains(version) for version in versions), (name, extra[name])
    assert {"pyyaml", "pydantic"} <= set(extra)  # imported by `import dgl`, undeclared by dgl 2.1.0
    core = {req.name: req.specifier for req in map(requirements.Requirement, project["dependencies"])}
    assert core["torch"].contains("2.14.1") and core["torch"].contains("2.2.1")
