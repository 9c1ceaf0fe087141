"""The report: Markdown and rich tables, plots, from a hand-made run folder (no training)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rich.console import Console

from llara.errors import LlaraError
from llara.metrics import ranking_metrics, summarize
from llara.plots import rolling_mean
from llara.report import format_summary, markdown_table, rich_table, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _metrics(ranks: list[int]) -> dict:
    per_row = ranking_metrics(np.array(ranks), ks=(1, 5))
    return summarize({k: v for k, v in per_row.items() if k in ("hr@1", "hr@5", "ndcg@5")})


@pytest.fixture
def run_dir(tmp_path):
    """A run folder as the pipeline leaves it: index, metrics, one training log, config."""
    rng = np.random.default_rng(0)
    entries = []
    for name, kind, protocols in [("sasrec", "sr", ["score"]), ("llara", "llara", ["generate", "rank"])]:
        evaluations = {}
        for protocol in protocols:
            path = tmp_path / "stages" / f"eval-{name}-{protocol}" / "metrics.json"
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps(_metrics(rng.integers(-1, 20, size=50).tolist())))
            evaluations[protocol] = path.relative_to(tmp_path).as_posix()
        entries.append({"name": name, "kind": kind, "description": f"{kind} thing", "evaluations": evaluations,
                        "train_log": "stages/train-llara/log.jsonl" if kind == "llara" else None})
    log = tmp_path / "stages" / "train-llara" / "log.jsonl"
    log.parent.mkdir(parents=True)
    lines = [json.dumps({"step": s, "loss": 3.0 / s, "hybrid_fraction": s / 40}) for s in range(1, 41)]
    log.write_text("\n".join(lines) + "\n{\"step\": 41, \"lo")  # a half-written last line is skipped
    (tmp_path / "run.json").write_text(json.dumps({"name": "demo", "created": "now", "variants": entries}))
    (tmp_path / "config.yaml").write_text("name: demo\n")
    return tmp_path


def test_format_summary_shows_mean_and_interval():
    assert format_summary({"mean": 0.44214, "ci_low": 0.3, "ci_high": 0.55, "n": 95}) == "0.4421 [0.3000, 0.5500]"
    assert format_summary(None) == "–"


def test_report_has_table_plots_and_config(run_dir):
    report, rows = write_report(run_dir)
    assert [(r.variant, r.protocol) for r in rows] == [("sasrec", "score"), ("llara", "generate"), ("llara", "rank")]
    text = report.read_text()
    hr1 = json.loads((run_dir / "stages/eval-llara-rank/metrics.json").read_text())["hr@1"]
    assert f"| llara | rank | – | {format_summary(hr1)} |" in text
    assert "name: demo" in text
    for png in ("learning_curves", "schedule", "hr_at_k"):
        path = run_dir / "plots" / f"{png}.png"
        assert path.read_bytes()[:8] == PNG_MAGIC
        assert f"(plots/{png}.png)" in text


def test_plots_skipped_without_training_logs(run_dir):
    index = json.loads((run_dir / "run.json").read_text())
    for entry in index["variants"]:
        entry["train_log"] = None
    (run_dir / "run.json").write_text(json.dumps(index))
    report, _ = write_report(run_dir)
    assert not (run_dir / "plots" / "learning_curves.png").exists()
    assert "hr_at_k.png" in report.read_text()


def test_tables_agree(run_dir):
    _, rows = write_report(run_dir)
    console = Console(record=True, width=250)
    console.print(rich_table(rows))
    terminal = console.export_text()
    for line in markdown_table(rows).splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert all(cell in terminal for cell in cells)


def test_missing_run_folder_is_a_clear_error(tmp_path):
    with pytest.raises(LlaraError, match="not a run folder"):
        write_report(tmp_path)


def test_rolling_mean():
    np.testing.assert_allclose(rolling_mean([1.0, 3.0, 5.0, 7.0], 2), [1.0, 2.0, 4.0, 6.0])
    assert rolling_mean([], 3).size == 0
