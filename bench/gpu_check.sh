#!/usr/bin/env bash
# The CUDA paths on a lent GPU machine, in one short run (about 3 minutes on one H200 after the install):
# the environment, the CUDA tests (tests/test_cuda.py: probe, features, trunk, training, evaluation, DDP with
# two GPUs), then a 2-minute CIFAR-10 budget when the data is there. Usage: bash bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}; mkdir -p "$OUT"
[ -x .venv/bin/python ] || { python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]'; }
.venv/bin/python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.device_count())"
.venv/bin/python -m pytest tests/test_cuda.py -q -p no:cacheprovider -rs 2>&1 | tee "$OUT/test_cuda.txt"
if [ -f ../shared/data/cifar10/cifar10-jpg.zip ]; then
  .venv/bin/imagefit train --dataset ../shared/data/cifar10/cifar10-jpg.zip --accelerator gpu --time-budget 2m \
      --runs-dir "$OUT/runs" --name c10-gpu --no-progress 2>&1 | tail -8 | tee "$OUT/cifar10_2m.txt"
fi
