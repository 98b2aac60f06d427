"""The evaluation harness: configs, the runner, the run record (``gnnbench run``).

* :func:`resolve` — a shipped config (``"algo"``, ``"road"``), a TOML file or a run directory, with shortcut
  flags and ``key.sub=value`` overrides, into :class:`RunSpec` objects (:mod:`~gnnbench.harness.config`);
* :func:`run` — every seed of every spec into its run directory: resumable, sequential, in local processes
  (``jobs``) or on a Dask cluster (``scheduler``); :func:`run_seed` trains one seed (:mod:`~gnnbench.harness.runner`);
* :mod:`~gnnbench.harness.record` — the run directory's layout and record format, verification, summaries;
* :mod:`~gnnbench.harness.family` — the contract a benchmark family implements; :func:`register_family` adds one.

Names are imported on first use, so that reading configs does not import torch.
"""

from ..lazy import lazy_exports
_LAZY = {
    "RunSpec": "config", "register_family": "config", "resolve": "config",
    "HessianInputs": "family", "SeedContext": "family", "SeedOutcome": "family",
    "finished_seeds": "record", "summarize": "record", "verify_seed": "record",
    "RunResult": "runner", "run": "runner", "run_seed": "runner",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
