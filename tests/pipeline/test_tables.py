"""The run's tables as CSV and LaTeX files (``llara.pipeline.tables``), from hand-made results."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from llara.pipeline.comparisons import Comparison
from llara.pipeline.report import write_report
from llara.pipeline.results import ResultRow
from llara.pipeline.tables import (
    TABLES_DIR,
    latex_escape,
    paired_frame,
    paired_latex,
    results_frame,
    results_latex,
    write_tables,
)

COLUMNS = [("ValidRatio", "valid_ratio"), ("HR@1", "hr@1"), ("HR@5", "hr@5")]


def _summary(mean: float, n: int = 94) -> dict:
    return {"mean": mean, "ci_low": mean - 0.1, "ci_high": mean + 0.1, "n": n}


@pytest.fixture
def rows() -> list[ResultRow]:
    return [
        ResultRow("sasrec", "sr", "SASRec", "rank", {"hr@1": _summary(0.4255), "hr@5": _summary(0.9043)}),
        ResultRow("llara_v2", "llara", "LLaRA", "generate", {"valid_ratio": _summary(0.89), "hr@1": _summary(0.117)}),
        ResultRow("llara_v2", "llara", "LLaRA", "rank", {"hr@1": _summary(0.4468), "hr@5": _summary(0.8936)}),
    ]


@pytest.fixture
def comparisons() -> list[Comparison]:
    return [Comparison("llara_v2", "sasrec", "rank", "rank", 0.0213, -0.05, 0.09, 0.6875, 6, 4, 94)]


def test_results_csv_holds_every_mean_and_bound(rows):
    frame = pd.read_csv(io.StringIO(results_frame(rows, ["valid_ratio", "hr@1", "hr@5"]).to_csv(index=False)))
    assert list(frame.columns[:4]) == ["variant", "kind", "protocol", "n"]
    assert frame["hr@1"].tolist() == [0.4255, 0.117, 0.4468]
    assert frame["hr@1_ci_low"].tolist() == pytest.approx([0.3255, 0.017, 0.3468])
    assert frame["hr@5_ci_high"].iloc[0] == pytest.approx(1.0043)
    assert frame["hr@5"].isna().tolist() == [False, True, False]  # generation has no HR@5
    assert frame["n"].tolist() == [94, 94, 94]


def test_latex_results_bold_each_columns_best_and_escape_names(rows):
    text = results_latex(rows, COLUMNS)
    lines = text.splitlines()
    assert lines[0] == r"\begin{tabular}{llrrrr}" and r"\toprule" in lines and r"\bottomrule" in lines
    body = lines[lines.index(r"\midrule") + 1:lines.index(r"\bottomrule")]
    assert len(body) == 3
    assert body[0].startswith(r"sasrec & rank & -- & 0.4255 {\scriptsize [0.3255, 0.5255]} & ")
    assert r"\textbf{0.9043}" in body[0] and r"\textbf{0.4468}" in body[2] and r"\textbf{0.8900}" in body[1]
    assert body[2].startswith(r"llara\_v2 & rank")
    assert sum(line.count(r"\textbf") for line in body) == 3  # one best per metric column


def test_latex_results_leave_out_a_metric_no_row_has(rows):
    header = results_latex(rows, [*COLUMNS, ("NDCG@10", "ndcg@10")]).splitlines()[2]
    assert "NDCG@10" not in header and "HR@5" in header


def test_paired_tables_carry_every_comparison_field(comparisons):
    frame = pd.read_csv(io.StringIO(paired_frame(comparisons).to_csv(index=False)))
    assert frame.to_dict("records") == [
        {"variant": "llara_v2", "reference": "sasrec", "protocol": "rank", "reference_protocol": "rank",
         "delta": 0.0213, "ci_low": -0.05, "ci_high": 0.09, "p_value": 0.6875, "wins": 6, "losses": 4, "n": 94}
    ]
    row = paired_latex(comparisons).splitlines()[4]
    assert row == r"llara\_v2 & rank & sasrec (rank) & $+0.021$ & $[-0.050, +0.090]$ & 0.688 & 6 / 4 & 94 \\"


def test_latex_escape_writes_special_characters_literally():
    assert latex_escape("a_b & 50% #1 $x {y} ~z^") == r"a\_b \& 50\% \#1 \$x \{y\} \textasciitilde{}z\textasciicircum{}"
    assert latex_escape("back\\slash") == r"back\textbackslash{}slash"


def test_write_tables_writes_files_and_drops_a_stale_paired_table(tmp_path, rows, comparisons):
    written = write_tables(tmp_path, rows, comparisons, COLUMNS)
    folder = tmp_path / TABLES_DIR
    assert sorted(p.name for p in written) == ["paired.csv", "paired.tex", "results.csv", "results.tex"]
    assert sorted(p.name for p in folder.iterdir()) == ["paired.csv", "paired.tex", "results.csv", "results.tex"]
    write_tables(tmp_path, rows, [], COLUMNS)
    assert sorted(p.name for p in folder.iterdir()) == ["results.csv", "results.tex"]


def test_the_report_writes_the_tables_and_names_them(tmp_path):
    entry = tmp_path / "stages" / "eval-sasrec" / "metrics.json"
    entry.parent.mkdir(parents=True)
    entry.write_text(json.dumps({"rows": 94, "metrics": {"rank": {"hr@1": _summary(0.4255)}}}))
    index = {"name": "demo", "created": "now", "variants": [
        {"name": "sasrec", "kind": "sr", "description": "SASRec", "metrics": "stages/eval-sasrec/metrics.json"}]}
    (tmp_path / "run.json").write_text(json.dumps(index))
    report, _ = write_report(tmp_path)
    assert "`tables/results.csv`, `tables/results.tex`" in report.read_text()
    assert pd.read_csv(tmp_path / TABLES_DIR / "results.csv")["hr@1"].tolist() == [0.4255]
