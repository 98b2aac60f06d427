"""Hessian measurements of trained models: trace and eigenvalue estimators, Hessian-based generalization
bounds, reports, and flat-minima training (noise stability optimization, :mod:`gnnbench.hessian.nso`)."""
