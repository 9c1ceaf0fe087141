"""The training-cost benchmarks (benchmarks/bench_objectives.py, bench_moe_lora.py) run on a tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_benchmark(script: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, str(ROOT / "benchmarks" / script), "--threads", "1", "--micro-batch", "2", *args]
    done = subprocess.run(command, check=True, env=env, capture_output=True, text=True, timeout=300)
    return json.loads(done.stdout)


@pytest.mark.parametrize("script", ["bench_objectives.py", "bench_moe_lora.py"])
def test_a_training_cost_benchmark_times_every_arm(script, tiny_data, tiny_llama, sr_checkpoint) -> None:
    common = ("--data", str(tiny_data.root), "--sr", str(sr_checkpoint), "--model", str(tiny_llama), "--rounds", "2")
    if script == "bench_objectives.py":
        arms = "sft-hybrid,listwise-behavior-interaction,verdict-behavior-interaction"
        result = run_benchmark(script, *common, "--arms", arms)
        assert list(result["arms"]) == arms.split(",")
        assert result["arms"]["sft-hybrid"]["cost_vs_sft_hybrid"] == 1.0
        without_sft = run_benchmark(script, *common, "--arms", "verdict-behavior-interaction")
        assert "cost_vs_sft_hybrid" not in without_sft["arms"]["verdict-behavior-interaction"]
    else:
        result = run_benchmark(script, *common, "--experts", "2")
        assert list(result["arms"]) == ["lora", "moe-lora"] and "moe_slowdown" in result
    assert result["measured_rows"] == 2
    assert all(arm["tokens_per_s"] > 0 and arm["s_per_row"] > 0 for arm in result["arms"].values())
