"""Compare ranking predictions of several models on the same rows, paired, against the first one.

Each argument ``LABEL=PATH`` names a ``predictions.parquet`` written by ``llara evaluate --protocol rank``
on the same prepared folder and split, or the folder holding it (what ``llara evaluate --out`` names).
``--rows START:END`` keeps the rows numbered START to END - 1 (for instance ``94:`` keeps the earlier
windows of a ``data.val_windows`` validation split and leaves out the last-item rows that training's
keep-best already chose on, so the comparison is not biased by that choice).
Printed (and written to ``--out`` as JSON): HR@1 with its Wilson interval per model, and the paired
difference from the first model (bootstrap 95% interval, McNemar's exact p). Usage::

    python benchmarks/compare_predictions.py ref=A/predictions.parquet new=B --rows 94:
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from llara.errors import LlaraError
from llara.metrics import paired_comparison, ranking_metrics, wilson_interval


def row_range(text: str) -> range:
    """``START:END`` (either side may be empty; END excluded) as a range of row numbers."""
    start, _, end = text.partition(":")
    return range(int(start) if start else 0, int(end) if end else sys.maxsize)


def predictions_file(path: Path) -> Path:
    """``path`` itself, or the ``predictions.parquet`` inside it when it is a folder."""
    file = path / "predictions.parquet" if path.is_dir() else path
    if not file.is_file():
        raise LlaraError(f"{file} does not exist: name a predictions.parquet or the folder llara evaluate wrote")
    return file


def hits_at_1(path: Path, rows: range) -> pd.Series:
    """Per-row 0/1 hits at rank 1 of one predictions file, indexed by row number, for the rows in ``rows``."""
    frame = pd.read_parquet(path, columns=["row", "rank"]).set_index("row").sort_index()
    inside = frame.loc[(frame.index >= rows.start) & (frame.index < rows.stop), "rank"]
    return pd.Series(ranking_metrics(inside.to_numpy(), ks=(1,))["hr@1"], index=inside.index)


def compare(files: dict[str, Path], rows: range) -> dict[str, dict[str, Any]]:
    """Per model: rows, HR@1, its interval and (after the first) the paired comparison with the first."""
    hits = {label: hits_at_1(path, rows) for label, path in files.items()}
    reference_label, reference = next(iter(hits.items()))
    results: dict[str, dict[str, Any]] = {}
    for label, values in hits.items():
        if not values.index.equals(reference.index):
            raise LlaraError(f"{files[label]} does not hold the same rows as {files[reference_label]}")
        if values.empty:
            raise LlaraError(f"{files[label]} has no rows in the range asked for")
        rate = float(values.mean())
        results[label] = {"rows": int(values.size), "hr@1": rate, "ci": list(wilson_interval(rate, values.size))}
        if label != reference_label:
            results[label]["paired"] = paired_comparison(values.to_numpy(), reference.to_numpy())
    return results


def render(results: dict[str, dict[str, Any]]) -> str:
    """The comparison as a Markdown table."""
    reference = next(iter(results))
    lines = [f"| model | rows | HR@1 [95% CI] | Δ vs {reference} [95% CI] | McNemar p (wins / losses) |",
             "|---|---|---|---|---|"]
    for label, result in results.items():
        paired = result.get("paired")
        delta = "reference" if paired is None else f"{paired['delta']:+.3f} [{paired['ci_low']:+.3f}, {paired['ci_high']:+.3f}]"
        p = "" if paired is None else f"{paired['p_value']:.2g} ({paired['wins']} / {paired['losses']})"
        low, high = result["ci"]
        lines.append(f"| {label} | {result['rows']} | {result['hr@1']:.3f} [{low:.3f}, {high:.3f}] | {delta} | {p} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("predictions", nargs="+", help="LABEL=PATH of a predictions.parquet or its folder; the first is the reference")
    parser.add_argument("--rows", type=row_range, default=row_range(":"), help="START:END row numbers (default: all)")
    parser.add_argument("--out", type=Path, help="also write the results here as JSON")
    args = parser.parse_args()
    files = {}
    for spec in args.predictions:
        label, sep, path = spec.partition("=")
        if not sep or not label or not path:
            parser.error(f"{spec!r} is not LABEL=PATH")
        files[label] = predictions_file(Path(path))
    results = compare(files, args.rows)
    print(render(results), end="")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=float) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
