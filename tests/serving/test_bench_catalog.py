"""benchmarks/bench_catalog.py runs end to end on a tiny random model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_catalog_benchmark_runs_on_a_tiny_model(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = tmp_path / "figures.json"
    command = [sys.executable, str(ROOT / "benchmarks/bench_catalog.py"), "--tiny", "--requests", "3",
               "--max-rows", "4", "--blend-rows", "4", "--threads", "1", "--out", str(out)]
    subprocess.run(command, check=True, env=env, capture_output=True, timeout=300)
    figures = json.loads(out.read_text())
    assert set(figures["quality"]["metrics"]) == {"sr", "llm", "blend"}
    assert set(figures["quality"]["paired"]) == {"llm - sr", "blend - sr", "blend - llm"}
    assert figures["serving"]["requests"] == 3 and 0 < figures["serving"]["retrieval_share"] < 1
