"""`llara run` with `eval.candidates: [frozen, retrieved]`: catalog-wide stages and the report's section."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from llara.config import RunConfig, load_config
from llara.pipeline.run import run_pipeline

CATALOG_RUN = """
name: catalog
data: {{source: synthetic, options: {{num_users: 40, num_items: 30, seq_len: 8}}}}
sr: {{max_epochs: 2, batch_size: 64}}
model: {{base_model: {llm}, lora_r: 4, prompt_mode: behavior}}
train: {{max_train_rows: 8, batch_size: 4, micro_batch_size: 4, epochs: 1, schedule: direct}}
eval: {{batch_size: 4, protocols: [rank]}}
variants:
  - {{name: sasrec, kind: sr}}
  - {{name: llara, kind: llara}}
  - {{name: zero-shot, kind: zero-shot}}
"""


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from llara.testing import create_tiny_llama

    return create_tiny_llama(tmp_path_factory.mktemp("llm") / "tiny", [f"Item {i}" for i in range(30)])


def test_a_run_adds_catalog_stages_and_reuses_its_frozen_evaluations(tmp_path: Path, tiny_llm: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(CATALOG_RUN.format(llm=tiny_llm))
    quiet, run_dir = Console(quiet=True), tmp_path / "run"
    run_pipeline(load_config(path, cls=RunConfig), run_dir, console=quiet, progress=False)
    overrides = ["eval.candidates=[frozen, retrieved]", "eval.blend=weighted", "eval.blend_grid=[0.0, 0.5, 1.0]"]
    second = run_pipeline(load_config(path, overrides, cls=RunConfig), run_dir, console=quiet, progress=False)
    ran = {stage.name for stage in second.stages if stage.action != "reused"}
    assert ran == {"catalog-sasrec", "catalog-llara"}  # no catalog for the zero-shot LLM: it has no backbone

    sasrec = json.loads((run_dir / "stages/catalog-sasrec/metrics.json").read_text())
    llara = json.loads((run_dir / "stages/catalog-llara/metrics.json").read_text())
    assert list(sasrec["metrics"]) == ["sr"] and list(llara["metrics"]) == ["sr", "llm", "blend"]
    assert llara["metrics"]["sr"] == sasrec["metrics"]["sr"]  # the export retrieves with the run's SASRec
    assert llara["catalog"]["retrieve"] == 20 and llara["catalog"]["blend"]["weight"] in (0.0, 0.5, 1.0)
    report = second.report.read_text()
    assert "## Catalog-wide" in report and "| sasrec | **SR alone** |" in report
    assert "| llara | SR retrieval + LLM re-rank |" in report and "### Catalog-wide paired comparisons" in report
    assert "validation rows" in report and "| llara | blend of both vs SR alone |" in report
    assert "| llara | rank |" in report  # the frozen table stays

    only = run_pipeline(
        load_config(path, ["eval.candidates=retrieved"], cls=RunConfig), run_dir, console=quiet, progress=False
    )
    assert not any(stage.name.startswith("eval-") for stage in only.stages)
    assert "## Catalog-wide" in only.report.read_text()
