"""Paired comparisons of a run's variants against its reference variant, row by row.

Every variant of a run is scored on the same frozen rows, so two variants can be compared on each row:
the difference in HR@1 with a paired bootstrap 95% interval, and an exact test on the rows where they
differ (``llara.metrics.paired_comparison``). Separate Wilson intervals cannot tell two variants apart at
about a hundred rows; paired tests use the fact that the rows are shared.

A variant with several seeds enters with its per-row hit averaged over the seeds
(:mod:`llara.pipeline.seeds`). The bootstrap resamples rows of those means as it does 0/1 hits. McNemar's
test needs 0/1 outcomes, so between averaged rows the exact p-value is the sign test on the rows where the
means differ (``wins`` vs ``losses`` under Binomial(n, 1/2)): the same formula, which is McNemar's test
when both sides have one seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from llara.evaluation.outputs import PREDICTIONS_FILE
from llara.metrics import paired_comparison
from llara.pipeline.results import ResultRow, RunIndex, VariantEntry, variant_groups
from llara.pipeline.seeds import mean_over_seeds

HIT = "hr@1"
#: the one protocol every variant has: SR backbones only rank
SR_PROTOCOL = "rank"


@dataclass(frozen=True)
class Comparison:
    """HR@1 of ``variant`` under ``protocol`` minus HR@1 of ``reference`` under ``reference_protocol``, on the
    same ``n`` rows."""

    variant: str
    reference: str
    protocol: str
    reference_protocol: str
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    wins: int
    losses: int
    n: int


def row_hits(run_dir: Path, entries: list[VariantEntry], protocol: str) -> pd.Series | None:
    """Per-row HR@1 of a variant under ``protocol`` (0/1, or the mean over its seeds), indexed by row;
    None if it lacks the protocol."""
    if any(entry.metrics is None for entry in entries):
        return None
    means = mean_over_seeds(run_dir, [entry.metrics for entry in entries], protocol)
    return None if means is None else means[HIT]


def compare(
    run_dir: Path,
    variant: list[VariantEntry],
    protocol: str,
    reference: list[VariantEntry],
    reference_protocol: str | None = None,
) -> Comparison | None:
    """``variant`` under ``protocol`` against ``reference`` under ``reference_protocol`` (default: the same)
    on their shared rows; None when either lacks its protocol."""
    reference_protocol = reference_protocol or protocol
    base = row_hits(run_dir, reference, reference_protocol)
    return None if base is None else _paired(run_dir, variant, protocol, base, reference[0].name, reference_protocol)


def _paired(
    run_dir: Path, variant: list[VariantEntry], protocol: str, base: pd.Series, reference: str, reference_protocol: str
) -> Comparison | None:
    """``variant`` under ``protocol`` against the reference's per-row hits ``base``, on their shared rows."""
    hits = row_hits(run_dir, variant, protocol)
    if hits is None:
        return None
    shared = base.index.intersection(hits.index)
    result = paired_comparison(np.asarray(hits[shared]), np.asarray(base[shared]))
    return Comparison(variant[0].name, reference, protocol, reference_protocol, **result)


def compare_with_reference(
    run_dir: Path, index: RunIndex, reference: str, protocol: str = SR_PROTOCOL
) -> list[Comparison]:
    """Every other variant under ``protocol`` against ``reference`` under the same protocol, or under
    ranking when the reference lacks it (an SR backbone only ranks); variants lacking ``protocol`` are
    skipped. The reference's predictions are read once."""
    groups = variant_groups(index)
    if reference not in groups:
        return []
    reference_protocol = protocol
    base = row_hits(run_dir, groups[reference], protocol)
    if base is None:
        reference_protocol = SR_PROTOCOL
        base = row_hits(run_dir, groups[reference], SR_PROTOCOL)
    if base is None:
        return []
    out = []
    for name, entries in groups.items():
        if name == reference:
            continue
        if (result := _paired(run_dir, entries, protocol, base, reference, reference_protocol)) is not None:
            out.append(result)
    return out


def comparison_table(comparisons: list[Comparison]) -> str:
    """A markdown table of paired comparisons (empty string when there are none)."""
    if not comparisons:
        return ""
    lines = [
        f"| variant ({comparisons[0].protocol}) | ΔHR@1 vs {comparisons[0].reference} "
        f"({comparisons[0].reference_protocol}) | paired 95% CI | "
        "exact p (McNemar; sign test over seeds) | rows only it gets right / only the reference does |",
        "|---|---|---|---|---|",
    ]
    for c in comparisons:
        lines.append(
            f"| {c.variant} | {c.delta:+.3f} | [{c.ci_low:+.3f}, {c.ci_high:+.3f}] | {c.p_value:.3g} | "
            f"{c.wins} / {c.losses} |"
        )
    return "\n".join(lines)


def candidate_counts(run_dir: Path, index: RunIndex) -> np.ndarray | None:
    """The candidate count of each evaluated row (from the first evaluation with predictions)."""
    for entry in index.variants:
        if entry.metrics is None:
            continue
        path = run_dir / Path(entry.metrics).parent / PREDICTIONS_FILE
        if path.is_file():
            candidates = pd.read_parquet(path, columns=["candidates"])["candidates"]
            return np.array([len(c) for c in candidates], dtype=np.int64)
    return None
