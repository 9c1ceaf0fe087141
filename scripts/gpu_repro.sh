#!/usr/bin/env bash
# CPU side of the GPU reproduction (docs/gpu.md): write the bundle that travels to the GPU machine.
#
#   scripts/gpu_repro.sh [--bundle DIR] [--data PREPARED] [--sr SR_CHECKPOINT] [--model GGUF_OR_FOLDER] [--no-wheels]
#   scripts/gpu_repro.sh --dry-run [--bundle DIR]    the tiny model, planted data, untrained SASRec; no wheels
#
# Default bundle: gpu_bundle/ (git-ignored), as part-1/, part-2/, ... of at most 60 MiB each: one transfer
# per part. Without --data it prepares ML-100K; without --sr it trains SASRec on the CPU (minutes);
# the model defaults to the packaged SmolLM2 GGUF (94 MB: two parts). Then, on the GPU machine:
#   scripts/gpu_run.sh OUT
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[[ -x "$PY" ]] || PY=python3

if [[ "${1:-}" == "--dry-run" ]]; then
    shift
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    "$PY" -c "import sys; from llara.testing import dry_run_inputs; dry_run_inputs(sys.argv[1])" "$work"
    "$PY" -m llara.pipeline.gpu_repro prepare --bundle gpu_bundle-dry --model "$work/model" --data "$work/data" \
        --sr "$work/sr" --no-wheels "$@"
else
    "$PY" -m llara.pipeline.gpu_repro prepare "$@"
fi
