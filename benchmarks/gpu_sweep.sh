#!/usr/bin/env bash
# One GPU-machine command: the recipe sweep on validation rows (benchmarks/recipe_sweep.py, all variants
# side by side on the one GPU), then the full-data reproduction (scripts/gpu_run.sh) with the time left.
# Needs gpu_bundle/ (scripts/gpu_repro.sh) on the machine; optional wheels in .whl/ override its packages.
#
#   benchmarks/gpu_sweep.sh OUT [SWEEP_FILE] [COMMAND_SECONDS]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: benchmarks/gpu_sweep.sh OUT [SWEEP_FILE] [COMMAND_SECONDS]}
sweep=${2:-benchmarks/sweeps/evidence-recipe.yaml}
limit=${3:-570}
mkdir -p "$out"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
PY=$(command -v python3)
site=$(mktemp -d)
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
fi
PYTHONPATH=src "$PY" -m llara.pipeline.bundle unpack gpu_bundle || exit 1
export PYTHONPATH="src:$site:gpu_bundle/site"
"$PY" -c "import torch, transformers, peft; print(torch.__version__, transformers.__version__, peft.__version__, torch.cuda.get_device_name())"
payload=gpu_bundle/payload
model=$("$PY" -c "from pathlib import Path; from llara.pipeline.gpu_repro import model_folder; print(model_folder(Path('$payload/model')))")
work=$(mktemp -d)
OMP_NUM_THREADS=1 timeout $((limit * 55 / 100)) "$PY" benchmarks/recipe_sweep.py "$sweep" --data "$payload/data" \
    --sr "$payload/sr" --base-model "$model" --out "$work/sweep" --parallel 12 --max-minutes 3.0
cp "$work"/sweep/sweep.md "$work"/sweep/sweep.json "$out"/ 2>/dev/null
tar czf "$out/sweep.tgz" --exclude=checkpoints --exclude=export -C "$work" sweep
budget=$("$PY" -c "print(max(2.5, ($limit - $SECONDS) / 60 - 0.3))")
echo "reproduction budget: $budget minutes"
scripts/gpu_run.sh "$work/repro" --budget-min "$budget"
cp "$work"/repro/report.md "$work"/repro/metrics.json "$work"/repro/throughput.json "$out"/ 2>/dev/null
tar czf "$out/repro.tgz" --exclude=checkpoints --exclude=export --exclude=payload -C "$work" repro
nvidia-smi --query-gpu=name,memory.total --format=csv
