#!/usr/bin/env bash
# One-command GPU check: a short CUDA smoke run through the GPU path, then the CUDA bench.
#
#   bash scripts/gpu_check.sh            # from the repository root, venv active (or .venv present)
#
# 1. the GPU-path tests (tests/engine/test_precision.py) and a 60-step tiny run on cuda in
#    bf16 + compile (the CUDA default), single and packed, each checked finite and learning
#    against the same run in fp32 eager on the same GPU;
# 2. `python -m engine bench --device cuda` writing reports/bench/bench-cuda.json
#    (engine vs plain step, tokens/s, MFU, packed rows, step breakdown).
# Commit reports/bench/bench-cuda.json afterwards. Nothing here writes to the results cache.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'error: no CUDA device visible to torch; run this on a GPU machine')"
SIZES="${GPU_CHECK_SIZES:-3M,15M,50M}"
echo "== smoke: tiny runs on cuda, bf16+compile vs fp32 eager, single and packed"
python -m engine.gpucheck
echo "== bench: sizes $SIZES"
python -m engine bench --device cuda --sizes "$SIZES" --steps 10 --repeats 3 --out reports/bench
