"""The report's catalog-wide section: every order of the retrieved items, the blend's weight, and
paired comparisons of the orders on the same rows.

Read from each variant's catalog-wide evaluation (``llara.evaluation.catalog``): its ``metrics.json``
(one section per order: ``sr``, ``llm``, ``blend``) and ``predictions.parquet`` (the target's position per order).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from llara.evaluation.catalog import catalog_metrics
from llara.evaluation.outputs import PREDICTIONS_FILE
from llara.metrics import paired_comparison
from llara.pipeline.results import RunIndex, VariantEntry, format_summary, read_json

ORDER_NAMES = {"sr": "SR alone", "llm": "SR retrieval + LLM re-rank", "blend": "blend of both"}
#: (header, metric) columns of the catalog-wide table
COLUMNS = (("HR@1", "hr@1"), ("HR@5", "hr@5"), ("HR@10", "hr@10"), ("NDCG@5", "ndcg@5"), ("NDCG@10", "ndcg@10"))
#: (order, the order it is compared with) on the same rows
PAIRS = (("llm", "sr"), ("blend", "sr"), ("blend", "llm"))
PAIRED_METRICS = ("hr@10", "ndcg@10")

INTRO = (
    "Every test row ranked over the whole catalog: the variant's SR backbone retrieves its top {n} items "
    "(items of the row's history excluded), then the LLM re-ranks them; a target outside the retrieved "
    "items is a miss. *SR alone* is the retrieval order, the same task without the LLM. Mean with 95% "
    "confidence interval."
)


def catalog_section(run_dir: Path, index: RunIndex) -> list[str]:
    """Markdown lines of the section (none when no variant was evaluated catalog-wide)."""
    entries = [entry for entry in index.variants if entry.catalog]
    if not entries:
        return []
    results = {entry.name: read_json(run_dir / entry.catalog) for entry in entries}
    retrieved = sorted({str(result["catalog"]["retrieve"]) for result in results.values()})
    headers = ["Variant", "Order", *(header for header, _ in COLUMNS), "n"]
    lines = ["## Catalog-wide", "", INTRO.format(n=" / ".join(retrieved)), ""]
    lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for name, result in results.items():
        for order, metrics in result["metrics"].items():
            cells = [format_summary(metrics.get(metric)) for _, metric in COLUMNS]
            lines.append(f"| {name} | {_order_label(order, result['catalog'])} | {' | '.join(cells)} | "
                         f"{metrics['hr@1']['n']} |")
    lines.append("")
    lines += _blend_lines(results)
    lines += _paired_lines(run_dir, entries)
    return lines


def _order_label(order: str, catalog: dict[str, Any]) -> str:
    label = ORDER_NAMES.get(order, order)
    if order == "blend" and catalog.get("blend"):
        label += f" (SR weight {catalog['blend']['weight']:g})"
    return f"**{label}**" if order == catalog.get("final") else label


def _blend_lines(results: dict[str, dict[str, Any]]) -> list[str]:
    """The weight each blend chose on validation rows, and the validation curve it chose from."""
    lines = []
    for name, result in results.items():
        choice = result["catalog"].get("blend")
        if not choice:
            continue
        curve = ", ".join(f"{point['weight']:g}: {point['value']:.4f}" for point in choice["grid"])
        lines += [
            f"`{name}` blends the z-scored LLM and SR scores (per row) as (1 - w) LLM + w SR; w = "
            f"{choice['weight']:g} had the best {choice['metric'].upper()} on {choice['rows']} validation rows "
            f"(w = 0 is the LLM alone, w = 1 the SR alone; validation {choice['metric'].upper()} by w: {curve}). "
            "What each part contributes: the blend against each of its parts below.",
            "",
        ]
    return lines


def _paired_lines(run_dir: Path, entries: list[VariantEntry]) -> list[str]:
    """Each order against the one it refines on the same rows: paired bootstrap CI and exact p."""
    lines = []
    for entry in entries:
        frame = pd.read_parquet(run_dir / Path(entry.catalog).parent / PREDICTIONS_FILE)
        for order, reference in PAIRS:
            if f"{order}_rank" not in frame.columns or f"{reference}_rank" not in frame.columns:
                continue
            mine = catalog_metrics(frame[f"{order}_rank"].to_numpy())
            theirs = catalog_metrics(frame[f"{reference}_rank"].to_numpy())
            cells = []
            for metric in PAIRED_METRICS:
                c = paired_comparison(mine[metric], theirs[metric])
                cells.append(f"{c['delta']:+.4f} [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}], p {c['p_value']:.3g}")
            lines.append(f"| {entry.name} | {ORDER_NAMES[order]} vs {ORDER_NAMES[reference]} | {' | '.join(cells)} |")
    if not lines:
        return []
    header = "| Variant | Comparison | ΔHR@10, paired 95% CI, McNemar p | ΔNDCG@10, paired 95% CI, sign-test p |"
    intro = ("Paired on the same rows (10,000 bootstrap resamples); an interval that excludes 0 is a "
             "difference the rows support.")
    return ["### Catalog-wide paired comparisons", "", intro, "", header, "|---|---|---|---|", *lines, ""]
