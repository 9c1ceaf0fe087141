"""Seeds in a run: aggregation over seeds, paired comparisons of per-row means, the standing sentences and
the marks of the hit-ratio plot, on a hand-made run folder (no training)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from llara.evaluation.evaluate import rank_metrics
from llara.metrics import Z_95, mcnemar_exact, summarize
from llara.pipeline import plots
from llara.pipeline.comparisons import Comparison, compare_with_reference
from llara.pipeline.report import format_summary, write_report
from llara.pipeline.results import load_index, load_results
from llara.pipeline.standing import relation, standing_sentence, standing_sentences

ROWS = 300
#: variant -> (kind, {seed: share of rows whose target is ranked first}); None: a variant without seeds
VARIANTS = {
    "sasrec": ("sr", {0: 0.5, 1: 0.45, 2: 0.55}),
    "llara": ("llara", {0: 0.9, 1: 0.8}),
    "zero-shot": ("zero-shot", {None: 0.0}),
}


def _ranks(rng: np.random.Generator, hit_share: float) -> np.ndarray:
    return np.where(rng.random(ROWS) < hit_share, 0, rng.integers(1, 20, size=ROWS))


@pytest.fixture
def seeded_run(tmp_path: Path) -> Path:
    """A run folder: sasrec with 3 seeds, llara with 2, zero-shot without; rank predictions on 300 rows."""
    rng = np.random.default_rng(0)
    entries = []
    for name, (kind, seeds) in VARIANTS.items():
        for seed, share in seeds.items():
            folder = tmp_path / "stages" / (f"eval-{name}" + ("" if seed is None else f"-seed{seed}"))
            folder.mkdir(parents=True)
            ranks = _ranks(rng, share)
            pd.DataFrame({"row": np.arange(ROWS), "target": 0, "candidates": [list(range(20))] * ROWS,
                          "rank": ranks}).to_parquet(folder / "predictions.parquet")
            metrics = {"rank": summarize(rank_metrics(ranks))}
            (folder / "metrics.json").write_text(json.dumps({"rows": ROWS, "metrics": metrics}))
            entries.append({"name": name, "kind": kind, "description": kind, "seed": seed,
                            "metrics": (folder / "metrics.json").relative_to(tmp_path).as_posix()})
    index = {"name": "seeds", "created": "now", "variants": entries, "reference": "sasrec"}
    (tmp_path / "run.json").write_text(json.dumps(index))
    return tmp_path


def _hits(run_dir: Path, name: str) -> np.ndarray:
    """Per-row hit averaged over the variant's seeds, recomputed from the predictions."""
    paths = sorted((run_dir / "stages").glob(f"eval-{name}*/predictions.parquet"))
    return np.mean([pd.read_parquet(path)["rank"].to_numpy() == 0 for path in paths], axis=0)


def _seed_metrics(run_dir: Path, name: str) -> list[dict]:
    paths = sorted((run_dir / "stages").glob(f"eval-{name}-seed*/metrics.json"))
    return [json.loads(path.read_text())["metrics"]["rank"] for path in paths]


def test_a_seeded_variant_is_one_row_summarising_the_per_row_means_over_its_seeds(seeded_run):
    rows = {row.variant: row for row in load_results(seeded_run, load_index(seeded_run))}
    assert list(rows) == ["sasrec", "llara", "zero-shot"]
    llara = rows["llara"]
    assert [seed.seed for seed in llara.seeds] == [0, 1] and llara.label == "llara (2 seeds)"
    assert [seed.metrics for seed in llara.seeds] == _seed_metrics(seeded_run, "llara")
    hits = _hits(seeded_run, "llara")
    hr1 = llara.metrics["hr@1"]
    assert hr1["mean"] == pytest.approx(np.mean([m["hr@1"]["mean"] for m in _seed_metrics(seeded_run, "llara")]))
    half = Z_95 * hits.std(ddof=1) / math.sqrt(ROWS)  # a normal interval over the per-row means
    assert (hr1["ci_low"], hr1["ci_high"], hr1["n"]) == pytest.approx((hits.mean() - half, hits.mean() + half, ROWS))
    assert rows["zero-shot"].seeds == () and rows["zero-shot"].metrics["hr@1"]["mean"] == 0.0


def test_paired_comparisons_use_the_per_row_means_over_seeds(seeded_run):
    comparisons = {c.variant: c for c in compare_with_reference(seeded_run, load_index(seeded_run), "sasrec")}
    diff = _hits(seeded_run, "llara") - _hits(seeded_run, "sasrec")
    llara = comparisons["llara"]
    assert llara.delta == pytest.approx(diff.mean()) and llara.ci_low < diff.mean() < llara.ci_high
    assert (llara.wins, llara.losses, llara.n) == ((diff > 0).sum(), (diff < 0).sum(), ROWS)
    assert llara.p_value == mcnemar_exact(llara.wins, llara.losses)  # the sign test on the differing rows


def test_the_report_shows_each_seed_interval_and_the_mean_and_std_over_seeds(seeded_run):
    text = write_report(seeded_run)[0].read_text()
    seeds = _seed_metrics(seeded_run, "llara")
    for seed, metrics in enumerate(seeds):
        assert f"| llara | rank | {seed} | {format_summary(metrics['hr@1'])} |" in text
    values = [m["hr@1"]["mean"] for m in seeds]
    assert f"| llara | rank | mean ± std | {np.mean(values):.4f} ± {np.std(values, ddof=1):.4f} |" in text
    assert "| llara (2 seeds) | rank |" in text and "| zero-shot | rank |" in text


def test_each_llm_variant_gets_one_sentence_against_random_and_the_best_sr_backbone(seeded_run):
    sentences = standing_sentences(seeded_run, load_index(seeded_run), load_results(seeded_run, load_index(seeded_run)))
    llara, zero_shot = sentences
    assert llara.startswith("`llara (2 seeds)` (rank): HR@1 ") and "is above random (a random pick: 0.050)" in llara
    assert "and above the best SR backbone `sasrec (3 seeds)`" in llara
    assert "is below random" in zero_shot and "below the best SR backbone" in zero_shot
    assert "## Where each LLM variant stands" in write_report(seeded_run)[0].read_text()


def test_relation_to_a_level_needs_the_interval_to_exclude_it():
    assert relation(0.2, 0.4, 0.05) == "above" and relation(0.0, 0.03, 0.05) == "below"
    assert relation(0.01, 0.2, 0.05) == "not distinguishable from"


def test_a_sentence_flags_an_interval_and_an_exact_test_that_disagree():
    def sentence(ci_high: float, p_value: float) -> str:
        row = SimpleNamespace(label="llara", protocol="rank", metrics={"hr@1": {"mean": 0.41, "ci_low": 0.38, "ci_high": 0.45}})
        best = SimpleNamespace(label="caser", metrics={"hr@1": {"mean": 0.44}})
        comparison = Comparison("llara", "caser", "rank", "rank", -0.027, -0.054, ci_high, p_value, 207, 226, 943)
        return standing_sentence(row, 0.05, best, comparison)

    assert "not distinguishable from the best SR backbone" in sentence(0.001, 0.015)
    assert "disagree: a borderline difference" in sentence(0.001, 0.015)
    assert "disagree" not in sentence(0.001, 0.4) and "disagree" not in sentence(-0.002, 0.015)
    assert "below the best SR backbone" in sentence(-0.002, 0.015)


def test_the_hit_ratio_plot_marks_the_random_pick_levels_and_the_best_sr_backbone(seeded_run, monkeypatch):
    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append((path.name, fig)) or path)
    write_report(seeded_run)
    figure = dict(drawn)["hr_at_k.png"]
    lines = {line.get_label(): line.get_ydata()[0] for line in figure.axes[0].lines}
    assert lines["random pick HR@1 (0.050)"] == pytest.approx(1 / 20)
    assert lines["random pick HR@5 (0.250)"] == pytest.approx(5 / 20)
    sasrec = load_results(seeded_run, load_index(seeded_run))[0].metrics["hr@1"]["mean"]
    assert lines[f"best SR backbone sasrec HR@1 ({sasrec:.3f})"] == pytest.approx(sasrec)
    plots._pyplot().close(figure)
