"""benchmarks/bench_eval.py runs end to end on a tiny export: speeds, the constrained time ratio, quality."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import torch

from llara.config import ModelConfig
from llara.llm.model import LlaraModel

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_eval.py"


def test_bench_eval_on_a_tiny_export(tiny_llama, tiny_data, tmp_path, monkeypatch, capsys) -> None:
    torch.manual_seed(0)
    model = LlaraModel.from_config(
        ModelConfig(base_model=str(tiny_llama), prompt_mode="hybrid"), tiny_data,
        item_embeddings=torch.randn(tiny_data.num_items, 16),
    )
    export = model.save(tmp_path / "export")
    out = tmp_path / "bench.json"
    argv = ["bench_eval.py", "--data", str(tiny_data.root), "--checkpoint", str(export), "--rows", "3",
            "--naive-rows", "1", "--batch-size", "2", "--repeats", "1", "--threads", "1", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.syspath_prepend(str(SCRIPT.parent))  # its sibling peaks.py
    runpy.run_path(str(SCRIPT), run_name="__main__")
    figures = json.loads(out.read_text())
    expected = {"generate", "generate_constrained", "rank_packed", "rank_own_score", "rank_expanded", "naive",
                "evaluate_all"}
    assert set(figures["wall_s_per_row"]) == expected
    assert figures["matmul_gflops"]["fp32"] > 0 and figures["matmul_gflops"]["bf16"] > 0
    assert 0 < figures["rank_packed_share_of_bf16_peak"] and figures["dtype"] == "float32"
    assert figures["constrained_over_generate"]["wall"] > 0
    assert figures["quality"]["generate-constrained"]["valid_ratio"]["mean"] == 1.0
    assert figures["quality"]["generate"]["hr@1"]["n"] == 3
    assert "| generate-constrained | 1.000 |" in capsys.readouterr().out
