"""Paired comparisons of a run's variants against its reference variant, row by row.

Every variant of a run is scored on the same frozen rows, so two variants can be compared on each row:
the difference in HR@1 with a paired bootstrap 95% interval, and McNemar's exact test on the rows where
exactly one of them is right (``llara.metrics.paired_comparison``). Separate Wilson intervals cannot
tell two variants apart at about a hundred rows; paired tests use the fact that the rows are shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from llara.evaluation.evaluate import PREDICTIONS_FILE
from llara.metrics import paired_comparison
from llara.pipeline.results import RunIndex, VariantEntry

#: protocol -> per-row hit of the top answer, from an evaluation's predictions table
HIT_RULES = {
    "rank": lambda frame: frame["rank"] == 0,
    "generate": lambda frame: frame["pred"] == frame["target"],
}


@dataclass(frozen=True)
class Comparison:
    """HR@1 of ``variant`` minus HR@1 of ``reference`` under ``protocol``, on the same ``n`` rows."""

    variant: str
    reference: str
    protocol: str
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    wins: int
    losses: int
    n: int


def row_hits(run_dir: Path, entry: VariantEntry, protocol: str) -> pd.Series | None:
    """Per-row 0/1 hits of a variant under ``protocol``, indexed by row, or None if it has none."""
    if entry.metrics is None:
        return None
    path = run_dir / Path(entry.metrics).parent / PREDICTIONS_FILE
    if not path.is_file() or protocol not in HIT_RULES:
        return None
    frame = pd.read_parquet(path)
    needed = {"rank"} if protocol == "rank" else {"pred", "target"}
    if not needed <= set(frame.columns):
        return None
    return HIT_RULES[protocol](frame).astype(float).set_axis(frame["row"])


def compare_with_reference(run_dir: Path, index: RunIndex, reference: str, protocol: str = "rank") -> list[Comparison]:
    """Every other variant against ``reference`` under ``protocol`` (variants lacking it are skipped)."""
    entries = {entry.name: entry for entry in index.variants}
    if reference not in entries:
        return []
    base = row_hits(run_dir, entries[reference], protocol)
    if base is None:
        return []
    out = []
    for entry in index.variants:
        hits = row_hits(run_dir, entry, protocol) if entry.name != reference else None
        if hits is None:
            continue
        shared = base.index.intersection(hits.index)
        result = paired_comparison(np.asarray(hits[shared]), np.asarray(base[shared]))
        out.append(Comparison(entry.name, reference, protocol, **result))
    return out


def comparison_table(comparisons: list[Comparison]) -> str:
    """A markdown table of paired comparisons (empty string when there are none)."""
    if not comparisons:
        return ""
    lines = [
        f"| variant | ΔHR@1 vs {comparisons[0].reference} ({comparisons[0].protocol}) | paired 95% CI | "
        "McNemar p | rows only it gets right / only the reference does |",
        "|---|---|---|---|---|",
    ]
    for c in comparisons:
        lines.append(
            f"| {c.variant} | {c.delta:+.3f} | [{c.ci_low:+.3f}, {c.ci_high:+.3f}] | {c.p_value:.3g} | "
            f"{c.wins} / {c.losses} |"
        )
    return "\n".join(lines)
