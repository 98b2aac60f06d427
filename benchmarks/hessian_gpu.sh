#!/usr/bin/env bash
# One-shot GPU run of benchmarks/hessian.py on the device machine (a copy of the working tree, offline).
# The baseline is PyHessian 0.1 from PyPI (pyhessian/hessian.py as at upstream commit 8a61d6c), which is not in that
# machine's image: install it here (pip install pyhessian==0.1), copy the package into the ignored folder .whl/
#   mkdir -p .whl && cp -r "$(python -c 'import pyhessian, os; print(os.path.dirname(pyhessian.__file__))')" .whl/
# and carry ".whl"; without it the benchmark times its re-implementation of PyHessian's trace loop (and says so).
# The speed target is the public gnnbench.hessian.trace() at its defaults (100 products in all, per-layer traces
# from the same probes) against PyHessian's trace(maxIter=100): >= 10x on the GPU.
# Usage (repo root): bash benchmarks/hessian_gpu.sh [extra hessian.py args, e.g. --headline-only]
set -uo pipefail
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/hessian_gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
$PY -m pip install -q -e . --no-deps --no-build-isolation >/dev/null 2>&1 || echo "pip install -e . failed (offline?); using PYTHONPATH=src"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
[ -d .whl/pyhessian ] && export PYTHONPATH="$PWD/.whl:$PYTHONPATH"
$PY - <<'PYEOF'
import importlib, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NO GPU")
for name in ("torch_geometric", "pyhessian", "gnnbench"):
    try:
        m = importlib.import_module(name)
        print(name, getattr(m, "__version__", "?"), m.__file__)
    except Exception as exc:
        print(name, "MISSING:", exc)
PYEOF
nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm --format=csv,noheader 2>/dev/null
$PY benchmarks/hessian.py --device cuda --json "$OUT/hessian_gpu.json" "$@" 2>&1 | tee "$OUT/hessian_gpu.log"
exit "${PIPESTATUS[0]}"
