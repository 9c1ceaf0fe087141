"""benchmarks/recipe_sweep.py trains its variants, ranks the validation rows and pairs them with the reference."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from llara.testing import dry_run_inputs

ROOT = Path(__file__).resolve().parents[2]

SWEEP = """
common: [model.prompt_mode=behavior, model.answer_token=interaction, train.schedule=direct,
         train.objective=listwise, train.sft_weight=1.0, train.epochs=1, train.batch_size=4,
         train.micro_batch_size=4, train.max_train_rows=8, train.eval_every=1, train.eval_rows=4]
reference: base
variants:
  base: []
  fast: [train.lr=1.0e-2]
"""


def test_the_sweep_trains_every_variant_and_compares_it_with_the_reference(tmp_path: Path) -> None:
    inputs = dry_run_inputs(tmp_path / "inputs")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(SWEEP)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, str(ROOT / "benchmarks/recipe_sweep.py"), str(sweep), "--data", str(inputs["data"]),
               "--sr", str(inputs["sr"]), "--base-model", str(inputs["model"]), "--out", str(out),
               "--parallel", "2", "--eval-batch", "4"]
    subprocess.run(command, check=True, env=env, capture_output=True, timeout=600)
    results = json.loads((out / "sweep.json").read_text())
    assert set(results) == {"base", "fast"}
    rows = len(results["base"]["hits"])
    for result in results.values():
        assert result["steps"] == 2 and [step for step, _ in result["curve"]] == [1, 2]
        assert len(result["hits"]) == rows > 0 and result["hr@1"] == sum(result["hits"]) / rows
    assert "paired" not in results["base"] and results["fast"]["paired"]["n"] == rows
    assert "| fast |" in (out / "sweep.md").read_text()
