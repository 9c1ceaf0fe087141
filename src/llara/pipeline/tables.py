"""A run's tables as files for a paper: CSV for further analysis, LaTeX (booktabs) for the manuscript.

``llara report`` writes them into the run's ``tables/`` folder, rebuilt with the report:

* ``results.csv`` / ``results.tex``: one line per variant and protocol, each metric's mean with its 95%
  interval (the CSV has the bounds in ``<metric>_ci_low`` / ``<metric>_ci_high`` columns);
* ``paired.csv`` / ``paired.tex``: each variant's HR@1 minus the reference variant's on the same rows,
  with the paired bootstrap interval and the exact p-value (``llara.pipeline.comparisons``).

In the LaTeX results table the best mean of each metric column is bold; it needs ``\\usepackage{booktabs}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from llara.paths import atomic_file
from llara.pipeline.comparisons import Comparison
from llara.pipeline.results import ResultRow, Summary

TABLES_DIR = "tables"
TABLE_FILES = ("results.csv", "results.tex", "paired.csv", "paired.tex")
#: LaTeX's special characters and how to write them literally
_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def results_frame(rows: Sequence[ResultRow], metrics: Sequence[str]) -> pd.DataFrame:
    """One line per variant and protocol: ``n`` and, for each of ``metrics``, its mean and 95% interval
    (empty where the protocol lacks the metric)."""
    records = []
    for row in rows:
        record: dict[str, object] = {"variant": row.label, "kind": row.kind, "protocol": row.protocol, "n": row.rows}
        for name in metrics:
            summary = row.metrics.get(name) or {}
            record.update({name: summary.get("mean"), f"{name}_ci_low": summary.get("ci_low"),
                           f"{name}_ci_high": summary.get("ci_high")})
        records.append(record)
    return pd.DataFrame.from_records(records, columns=_result_columns(metrics))


def paired_frame(comparisons: Sequence[Comparison]) -> pd.DataFrame:
    """One line per paired comparison, every field of :class:`~llara.pipeline.comparisons.Comparison`."""
    return pd.DataFrame.from_records([asdict(c) for c in comparisons], columns=list(Comparison.__dataclass_fields__))


def results_latex(rows: Sequence[ResultRow], columns: Sequence[tuple[str, str]]) -> str:
    """A booktabs table: variant, protocol, ``mean [low, high]`` per (header, metric) column that any row
    has, the best mean of each column in bold."""
    columns = [(header, name) for header, name in columns if any(name in row.metrics for row in rows)]
    best = {name: max(row.metrics[name]["mean"] for row in rows if name in row.metrics) for _, name in columns}
    frame = pd.DataFrame(
        [[latex_escape(row.label), row.protocol,
          *(_latex_cell(row.metrics.get(name), best[name]) for _, name in columns), str(row.rows or "")]
         for row in rows],
        columns=["Variant", "Protocol", *(latex_escape(header) for header, _ in columns), "$n$"],
    )
    return frame.to_latex(index=False, escape=False, column_format="ll" + "r" * (len(columns) + 1))


def paired_latex(comparisons: Sequence[Comparison]) -> str:
    """A booktabs table of paired comparisons: ΔHR@1 against the reference, its interval, p, rows won / lost."""
    frame = pd.DataFrame(
        [[latex_escape(c.variant), c.protocol, latex_escape(f"{c.reference} ({c.reference_protocol})"),
          f"${c.delta:+.3f}$", f"$[{c.ci_low:+.3f}, {c.ci_high:+.3f}]$", f"{c.p_value:.3g}", f"{c.wins} / {c.losses}",
          str(c.n)] for c in comparisons],
        columns=["Variant", "Protocol", "Reference", r"$\Delta$HR@1", "95\\% CI", "$p$", "Wins / losses", "$n$"],
    )
    return frame.to_latex(index=False, escape=False, column_format="lll" + "r" * 5)


def write_tables(
    run_dir: Path, rows: Sequence[ResultRow], comparisons: Sequence[Comparison], columns: Sequence[tuple[str, str]]
) -> list[Path]:
    """Write the results (and, when there are any, the paired comparisons) as CSV and LaTeX into
    ``run_dir/tables``, removing a table an earlier report wrote that this one has no rows for; return the
    paths written."""
    folder = run_dir / TABLES_DIR
    texts = {"results.csv": results_frame(rows, [name for _, name in columns]).to_csv(index=False)}
    if rows:
        texts["results.tex"] = results_latex(rows, columns)
    if comparisons:
        texts["paired.csv"] = paired_frame(comparisons).to_csv(index=False)
        texts["paired.tex"] = paired_latex(comparisons)
    for name, text in texts.items():
        with atomic_file(folder / name, encoding="utf-8") as handle:
            handle.write(text)
    for name in set(TABLE_FILES) - set(texts):
        (folder / name).unlink(missing_ok=True)
    return [folder / name for name in texts]


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters written literally."""
    return "".join(_LATEX_ESCAPES.get(char, char) for char in text)


def _latex_cell(summary: Summary | None, best: float) -> str:
    """``0.4421 {\\scriptsize [0.3450, 0.5427]}``: the interval in a smaller font, the mean bold when it is
    the column's best."""
    if summary is None:
        return "--"
    mean = f"{summary['mean']:.4f}"
    mean = rf"\textbf{{{mean}}}" if summary["mean"] == best else mean
    return rf"{mean} {{\scriptsize [{summary['ci_low']:.4f}, {summary['ci_high']:.4f}]}}"


def _result_columns(metrics: Sequence[str]) -> list[str]:
    bounds = [column for name in metrics for column in (name, f"{name}_ci_low", f"{name}_ci_high")]
    return ["variant", "kind", "protocol", "n", *bounds]
