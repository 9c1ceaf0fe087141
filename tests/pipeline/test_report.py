"""The report: Markdown and rich tables, plots, from a hand-made run folder (no training)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from helpers import run_cli
from rich.console import Console

from llara.errors import LlaraError
from llara.metrics import ranking_metrics, summarize
from llara.pipeline import plots
from llara.pipeline.report import format_summary, rich_table, write_report
from llara.pipeline.results import ResultRow, VariantLog, read_jsonl

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


def _drawn_plots(run_dir, monkeypatch) -> dict:
    """The report's figures by file name, drawn but not written."""
    drawn = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.update({path.name: fig}) or path)
    write_report(run_dir)
    return drawn


def _horizontal_lines(figure) -> dict[str, float]:
    """Label -> y of each horizontal line on the figure's axes."""
    lines = figure.axes[0].lines
    return {line.get_label(): line.get_ydata()[0] for line in lines if len(set(line.get_ydata())) == 1}


@pytest.fixture
def validated_run(run_dir):
    """The run folder with validation HR@1 in the training log and SASRec's predictions on 20 candidates."""
    records = [{"step": s, "loss": 1.0 / s, "mode": "hybrid"} for s in range(1, 31)]
    records += [{"step": s, "val_hr@1": hr} for s, hr in ((10, 0.2), (20, 0.3), (30, 0.35))]
    (run_dir / "stages/train-llara/log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    pd.DataFrame({"row": np.arange(50), "target": 0, "candidates": [list(range(20))] * 50,
                  "rank": np.arange(50) % 20}).to_parquet(run_dir / "stages/eval-sasrec/predictions.parquet")
    return run_dir


def test_the_validation_plot_marks_the_best_sr_pick_and_the_random_pick(validated_run, monkeypatch):
    index = json.loads((validated_run / "run.json").read_text())
    index |= {"reference": "sasrec", "reference_pick": {"rule": "best-sr", "variant": "sasrec", "val_hr@1": 0.4567,
                                                         "candidates": {"sasrec": 0.4567}}}
    (validated_run / "run.json").write_text(json.dumps(index))
    figure = _drawn_plots(validated_run, monkeypatch)["validation_hr1.png"]
    lines = _horizontal_lines(figure)
    assert lines["random pick HR@1 (0.050)"] == pytest.approx(1 / 20)
    assert lines["reference backbone sasrec: validation HR@1 (0.457)"] == pytest.approx(0.4567)
    legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert "random pick HR@1 (0.050)" in legend and "reference backbone sasrec: validation HR@1 (0.457)" in legend
    plots._pyplot().close(figure)


def test_the_validation_plot_reads_a_named_sr_reference_from_its_checkpoint(validated_run, monkeypatch):
    checkpoint = validated_run / "stages" / "sr-sasrec"  # the run folder has moved: the recorded path is stale
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps({"format": "llara-sr", "training": {"val_hr@1": 0.4321}}))
    (checkpoint / "model.safetensors").write_bytes(b"")
    metrics = validated_run / "stages/eval-sasrec/metrics.json"
    recorded = {**json.loads(metrics.read_text()), "model": {"sr_checkpoint": "/gone/runs/demo/stages/sr-sasrec"}}
    metrics.write_text(json.dumps(recorded))
    figure = _drawn_plots(validated_run, monkeypatch)["validation_hr1.png"]  # reference: the first variant
    assert _horizontal_lines(figure)["reference backbone sasrec: validation HR@1 (0.432)"] == pytest.approx(0.4321)
    plots._pyplot().close(figure)


def test_the_validation_plot_has_no_reference_line_without_a_recorded_figure(validated_run, monkeypatch):
    figure = _drawn_plots(validated_run, monkeypatch)["validation_hr1.png"]
    assert list(_horizontal_lines(figure)) == ["random pick HR@1 (0.050)"]
    plots._pyplot().close(figure)


def test_the_hit_ratio_legend_covers_no_bar(tmp_path, monkeypatch):
    """High HR@5 bars leave no free corner inside the axes: the legend sits outside them."""
    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig) or path)

    def summary(mean: float) -> dict:
        return {"mean": mean, "ci_low": mean - 0.1, "ci_high": min(1.0, mean + 0.06), "n": 94}

    rows = [ResultRow(name, kind, "", "rank", {"hr@1": summary(hr1), "hr@5": summary(0.88)})
            for name, kind, hr1 in [("sasrec", "sr", 0.43), ("llara", "llara", 0.40), ("text", "llara", 0.40),
                                    ("hybrid", "llara", 0.40)]]
    plots.plot_hr_at_k(rows, tmp_path / "hr.png", {"hr@1": 0.05, "hr@5": 0.25}, rows[0])
    figure = drawn[0]
    axes = figure.axes[0]
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    legend = axes.get_legend().get_window_extent(renderer)
    bars = [patch.get_window_extent(renderer) for patch in axes.patches]
    assert len(bars) == 2 * len(rows)
    assert not [bar for bar in bars if bar.overlaps(legend)]
    assert not legend.overlaps(axes.get_window_extent(renderer))  # beside the axes, not on them
    plots._pyplot().close(figure)
