"""The evaluation harness: configs, the runner, the run record (``gnnbench run``)."""
