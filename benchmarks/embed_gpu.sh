#!/usr/bin/env bash
# One-shot GPU run of benchmarks/embed_throughput.py on the device machine (a copy of the working tree, offline).
# Weights are random (throughput does not depend on their values), so nothing is downloaded. Needs torch with CUDA,
# torchvision, Pillow, pandas and pyarrow on that machine (printed first). Sized to finish in < 8 min:
#   1. CUDA: model only (ResNet-18 at 224, batch 256: fp32 baseline, fp16 + channels-last eager, torch.compile,
#      with on-device preprocessing) and end to end from 20,000 stored 256-px PNG crops, workers = cores;
#   2. the same on the CPU, smaller (batch 64, 4,096 crops).
# Targets (GPU): model only >= 40,000 images/s (the issue's H100 anchor), end to end >= 5,000 images/s.
# Usage (repo root): OUT=/some/dir bash benchmarks/embed_gpu.sh [extra embed_throughput.py args]
set -uo pipefail
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/embed_gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export GNNBENCH_OFFLINE=1
# The device image may lack pure-Python dependencies (platformdirs, pydantic): carry their wheels in .whl/
# (git-ignored; `pip download -d .whl platformdirs pydantic pydantic-core`) and they are installed aside here.
if compgen -G ".whl/*.whl" > /dev/null; then
  $PY -m pip install -q --no-index --no-deps --target /tmp/embed-site .whl/*.whl && export PYTHONPATH="/tmp/embed-site:$PYTHONPATH"
fi
$PY - <<'PYEOF' 2>&1 | tee "$OUT/environment.log"
import importlib, os, torch
print("torch", torch.__version__, "cuda", torch.version.cuda,
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NO GPU", "cores", os.cpu_count())
for name in ("torchvision", "PIL", "pandas", "pyarrow", "triton", "gnnbench"):
    try:
        module = importlib.import_module(name)
        print(name, getattr(module, "__version__", "?"))
    except Exception as exc:
        print(name, "MISSING:", exc)
PYEOF
nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm --format=csv,noheader 2>/dev/null
df -h /dev/shm /tmp 2>/dev/null  # DataLoader workers hand batches over in /dev/shm (~50 MB per batch of 256)
status=0
timeout 330 $PY benchmarks/embed_throughput.py --device cuda --out "$OUT/embed_gpu.json" "$@" \
    2>&1 | tee "$OUT/embed_gpu.log"
status=${PIPESTATUS[0]}
timeout 100 $PY benchmarks/embed_throughput.py --device cpu --batch-size 64 --iters 2 --repeats 3 --warmup 2 \
    --images 4096 --out "$OUT/embed_cpu.json" 2>&1 | tee "$OUT/embed_cpu.log"
exit "$status"
