#!/usr/bin/env bash
# GPU readiness (issue 22, item 8): the CUDA-marked tests, then the gpt2 Monitor bench on the
# GPU, in under 8 minutes; everything it prints also goes to files under OUT.
#
#   bash benchmarks/device_check.sh [OUT]      (default OUT: benchmarks/results/device_check)
#
# Without a CUDA device the tests skip and the bench is not run (exit status 0), so the
# script can be checked on a CPU machine. PYTHON picks the interpreter (default: python).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/results/device_check}
PY=${PYTHON:-python}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
start=$(date +%s)

"$PY" - <<'PYEOF' | tee "$OUT/device.txt"
import os, torch
print("date", __import__("datetime").datetime.now().isoformat(timespec="seconds"))
print("torch", torch.__version__, "cuda", torch.version.cuda)
print("cuda_available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0))
    print("memory_gb", round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
print("load_average", os.getloadavg())
PYEOF

# 1. the CUDA-marked tests (products, a tracker measurement, a Monitor: GPU against CPU)
timeout 200 "$PY" -m pytest -q -p no:cacheprovider -m cuda -rs tests/ \
    2>&1 | tee "$OUT/cuda_tests.txt"

# 2. the gpt2 (124M) Monitor bench with AdamW: a cold first measurement and warm ones
if "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    timeout 180 "$PY" -m eoskit bench monitor --settings gpt2 --optimizers adamw --every 5 \
        --steps 17 --device cuda --json "$OUT/monitor_gpt2.json" \
        --markdown "$OUT/monitor_gpt2.md" 2>&1 | tee "$OUT/monitor_gpt2.log"
    # 3. the same with the lean tracker (memory: the GPU's allocated peak), no references
    timeout 90 "$PY" -m eoskit bench monitor --settings gpt2 --optimizers adamw --every 5 \
        --steps 12 --device cuda --mode lean --no-references \
        --json "$OUT/monitor_gpt2_lean.json" 2>&1 | tee "$OUT/monitor_gpt2_lean.log"
else
    echo "no CUDA device: the gpt2 bench was not run" | tee "$OUT/monitor_gpt2.log"
fi
echo "device_check: $(( $(date +%s) - start )) s" | tee -a "$OUT/device.txt"
