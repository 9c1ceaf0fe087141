#!/usr/bin/env bash
# GPU side of the reproduction (docs/gpu.md), one command: unpack the bundle, install its wheels, train
# SmolLM2 LLaRA on the full ML-100K training split, evaluate both protocols and SASRec on the test rows.
#
#   scripts/gpu_run.sh OUT [--bundle gpu_bundle] [--budget-min 8.5]
#   scripts/gpu_run.sh OUT --dry-run             the bundle of `scripts/gpu_repro.sh --dry-run`, on the CPU
#
# OUT (a new folder) receives report.md, metrics.json, throughput.jsonl, throughput.json, train/, eval-*/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/gpu_run.sh OUT [--dry-run] [--bundle DIR] [--budget-min MINUTES]}
shift
bundle=gpu_bundle
args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --bundle) bundle=$2; shift 2 ;;
        --dry-run) bundle=${bundle/#gpu_bundle/gpu_bundle-dry}; args+=("$1"); shift ;;
        *) args+=("$1"); shift ;;
    esac
done
PY=${PYTHON:-}
if [[ -z "$PY" ]]; then
    if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=$(command -v python || command -v python3); fi
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PYTHONPATH=src "$PY" -m llara.pipeline.bundle unpack "$bundle"
export PYTHONPATH="src:$bundle/site${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m llara.pipeline.gpu_repro run --bundle "$bundle" --out "$out" "${args[@]}"
