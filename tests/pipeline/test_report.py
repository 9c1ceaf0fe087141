"""The report: Markdown and rich tables, plots, from a hand-made run folder (no training)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import run_cli
from rich.console import Console

from llara.errors import LlaraError
from llara.metrics import ranking_metrics, summarize
from llara.pipeline import plots
from llara.pipeline.report import format_summary, rich_table, write_report
from llara.pipeline.results import VariantLog, read_jsonl

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _metrics(ranks: list[int]) -> dict:
    per_row = ranking_metrics(np.array(ranks), ks=(1, 5))
    return summarize({k: v for k, v in per_row.items() if k in ("hr@1", "hr@5", "ndcg@5")})


@pytest.fixture
def run_dir(tmp_path):
    """A run folder as the pipeline leaves it: index, metrics, one training log, config."""
    rng = np.random.default_rng(0)
    entries = []
    for name, kind, protocols in [("sasrec", "sr", ["rank"]), ("llara", "llara", ["generate", "rank"])]:
        path = tmp_path / "stages" / f"eval-{name}" / "metrics.json"
        path.parent.mkdir(parents=True)
        metrics = {protocol: _metrics(rng.integers(-1, 20, size=50).tolist()) for protocol in protocols}
        path.write_text(json.dumps({"rows": 50, "metrics": metrics}))
        entries.append({"name": name, "kind": kind, "description": f"{kind} thing",
                        "metrics": path.relative_to(tmp_path).as_posix(),
                        "train_log": "stages/train-llara/log.jsonl" if kind == "llara" else None,
                        "behavioral": kind == "llara", "schedule": "curriculum" if kind == "llara" else None})
    log = tmp_path / "stages" / "train-llara" / "log.jsonl"
    log.parent.mkdir(parents=True)
    modes = ["text"] * 20 + ["hybrid"] * 20
    lines = [json.dumps({"step": s, "loss": 3.0 / s, "mode": modes[s - 1]}) for s in range(1, 41)]
    log.write_text("\n".join(lines) + "\n{\"step\": 41, \"lo")  # a half-written last line is skipped
    (tmp_path / "run.json").write_text(json.dumps({"name": "demo", "created": "now", "variants": entries}))
    (tmp_path / "config.yaml").write_text("name: demo\n")
    return tmp_path


def test_format_summary_shows_mean_and_interval():
    assert format_summary({"mean": 0.44214, "ci_low": 0.3, "ci_high": 0.55, "n": 95}) == "0.4421 [0.3000, 0.5500]"
    assert format_summary(None) == "–"


def test_report_has_table_plots_and_config(run_dir):
    report, rows = write_report(run_dir)
    assert [(r.variant, r.protocol) for r in rows] == [("sasrec", "rank"), ("llara", "generate"), ("llara", "rank")]
    text = report.read_text()
    hr1 = json.loads((run_dir / "stages/eval-llara/metrics.json").read_text())["metrics"]["rank"]["hr@1"]
    assert f"| llara | rank | – | {format_summary(hr1)} |" in text
    assert "name: demo" in text
    for png in ("learning_curves", "schedule", "hr_at_k"):
        path = run_dir / "plots" / f"{png}.png"
        assert path.read_bytes()[:8] == PNG_MAGIC
        assert path.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"  # the same figure for a paper
        assert f"(plots/{png}.png)" in text


def test_report_shows_the_gate_diagnostics_of_moe_lora_variants(run_dir):
    assert "Gate diagnostics" not in write_report(run_dir)[0].read_text()
    path = run_dir / "stages/eval-llara/metrics.json"
    gate = {"experts": 2, "mean_weights": [0.75, 0.25], "entropy": 0.5623, "max_entropy": 0.6931, "n": 50}
    path.write_text(json.dumps({**json.loads(path.read_text()), "gate": gate}))
    text = write_report(run_dir)[0].read_text()
    assert "## Gate diagnostics (MoE-LoRA)" in text
    assert "| llara | 2 | 0.750, 0.250 | 0.562 (0.693) | 50 |" in text
    assert "| sasrec | " not in text.split("## Gate diagnostics")[1].split("##")[0]


def test_plots_skipped_without_training_logs(run_dir):
    index = json.loads((run_dir / "run.json").read_text())
    for entry in index["variants"]:
        entry["train_log"] = None
    (run_dir / "run.json").write_text(json.dumps(index))
    report, _ = write_report(run_dir)
    assert not (run_dir / "plots" / "learning_curves.png").exists()
    assert "hr_at_k.png" in report.read_text()


def test_terminal_table_shows_every_mean(run_dir):
    _, rows = write_report(run_dir)
    console = Console(record=True, width=80)
    console.print(rich_table(rows))
    terminal = console.export_text()
    for row in rows:
        for name in ("hr@1", "hr@5", "ndcg@5"):
            assert f"{row.metrics[name]['mean']:.4f}" in terminal
            low, high = (f"{row.metrics[name][k]:.2f}".removeprefix("0") for k in ("ci_low", "ci_high"))
            assert f"{low}–{high}" in terminal


def test_missing_run_folder_is_a_clear_error(tmp_path):
    with pytest.raises(LlaraError, match="not a run folder"):
        write_report(tmp_path)


def test_a_training_log_may_end_half_written_but_not_break_in_the_middle(tmp_path, caplog):
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo\n\n')
    assert read_jsonl(log) == [{"step": 1}, {"step": 2}]
    assert "line 3" in caplog.text
    log.write_text('{"step": 1}\n{"step": 2, "lo\n{"step": 3}\n')
    with pytest.raises(LlaraError, match="line 2"):
        read_jsonl(log)


@pytest.mark.parametrize(("schedule", "reference"), [("curriculum", True), ("two-stage", False)])
def test_the_schedule_plot_shows_t_over_T_for_curriculum_runs_only(tmp_path, monkeypatch, schedule, reference):
    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig) or path)
    records = [{"step": s, "mode": "hybrid" if s > 5 else "text"} for s in range(1, 11)]
    plots.plot_schedule([VariantLog("v", records, behavioral=True, schedule=schedule)], tmp_path / "s.png")
    labels = [line.get_label() for line in drawn[0].axes[0].lines]
    assert ("curriculum p(t) = t/T" in labels) == reference
    plots._pyplot().close(drawn[0])


def test_rolling_mean():
    np.testing.assert_allclose(plots.rolling_mean([1.0, 3.0, 5.0, 7.0], 2), [1.0, 2.0, 4.0, 6.0])
    assert plots.rolling_mean([], 3).size == 0


def test_report_command_redraws_and_prints(run_dir, capsys):
    assert run_cli(["report", str(run_dir)]) == 0
    assert "llara" in capsys.readouterr().out and (run_dir / "report.md").is_file()
