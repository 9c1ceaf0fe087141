"""The training-cost benchmarks (benchmarks/bench_objectives.py, bench_moe_lora.py, bench_train.py) run on a tiny model."""

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


def test_the_precision_benchmark_times_each_arm_against_the_matmul_peaks(tiny_data, tiny_llama, sr_checkpoint, tmp_path) -> None:
    from helpers import tiny_train_overrides

    from llara.config import dump_config, load_config

    stage = tmp_path / "stage"
    stage.mkdir()
    config = load_config(None, tiny_train_overrides(tiny_data.root, tiny_llama, sr_checkpoint, stage))
    (stage / "config.yaml").write_text(dump_config(config))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_train.py"), "--stage", str(stage), "--steps", "3",
               "--warm-up", "1", "--threads", "1", "--arm", "fp32=model.dtype=float32 train.mixed_precision=no",
               "--arm", "auto=model.dtype=auto train.mixed_precision=auto", "--out", str(tmp_path / "bench.json")]
    done = subprocess.run(command, check=True, env={**env, "LLARA_NATIVE_BF16": "1"}, capture_output=True, text=True,
                          timeout=300)
    result = json.loads((tmp_path / "bench.json").read_text())
    assert list(result["arms"]) == ["fp32", "auto"]
    assert result["arms"]["auto"]["dtype"] == "bfloat16" and result["arms"]["fp32"]["dtype"] == "float32"
    assert all(arm["tokens_per_s"] > 0 and arm["measured_steps"] == 2 for arm in result["arms"].values())
    assert result["matmul_gflops"]["bf16"] > 0 and result["arms"]["fp32"]["vs_first_arm"] == 1.0
    assert "| auto | bfloat16 / bf16 |" in done.stdout
