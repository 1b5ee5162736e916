#!/usr/bin/env bash
# One-command GPU check: what can fail on a GPU box, each step named; a failed step does not stop the rest.
#
#   bash scripts/gpu_check.sh            # from the repository root, venv active (or .venv present)
#
# 1. smoke: a tiny run on cuda in bf16 + compile against fp32 eager, single and packed
#    (finite, learning, within tolerance; python -m engine.gpucheck smoke);
# 2. placement: one run per visible GPU at the same time through the local executor, each
#    on its own GPU (python -m engine.gpucheck placement);
# 3. compilation: ten configurations in one process, compiled with inductor; none may fall
#    back to eager (python -m engine.gpucheck compile);
# 4. data: the paper profile's FineWeb shards and tokenizer present and well-formed
#    (python -m engine data fineweb --check; `python -m engine data fineweb` downloads them);
# 5. memory: the paper profile's dry run, every configuration at its planned micro-batch for
#    3 steps on this machine's GPUs (python -m engine sweep --profile paper --dry-run);
# 6. bench: reports/bench/bench-cuda.json (engine vs plain step, tokens/s without compile time).
# Nothing here writes to the results cache. Commit reports/bench/bench-cuda.json afterwards.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'error: no CUDA device visible to torch; run this on a GPU machine')" || exit 2
SIZES="${GPU_CHECK_SIZES:-3M,15M}"
failed=()

step() {  # step NAME COMMAND...: run it, say how it ended, go on
  local name=$1; shift
  echo "== $name: $*"
  if "$@"; then echo "== $name: ok"; else echo "== $name: FAILED (exit $?)"; failed+=("$name"); fi
}

step smoke python -m engine.gpucheck smoke
step placement python -m engine.gpucheck placement
step compile python -m engine.gpucheck compile
step data python -m engine data fineweb --check
step memory python -m engine sweep --profile paper --dry-run --steps 3
step bench python -m engine bench --device cuda --sizes "$SIZES" --steps 10 --repeats 3 --out reports/bench

if [ ${#failed[@]} -eq 0 ]; then echo "gpu check: every step ok"; exit 0; fi
echo "gpu check: FAILED steps: ${failed[*]}"
exit 1
