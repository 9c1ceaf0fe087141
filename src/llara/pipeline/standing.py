"""Where each LLM variant stands: above the random-pick level, and against the best SR backbone.

The report says it in one sentence per LLM variant and protocol. Against random: the variant's 95%
interval of HR@1 lies above (or below) the random-pick level k/C, C being the rows' candidate count.
Against the best SR backbone (the SR variant with the highest HR@1): the paired comparison on the shared
rows (:func:`llara.pipeline.comparisons.compare`); its bootstrap interval excluding 0 decides, and when
the exact test (McNemar's, or the sign test over seeds) says otherwise at the 5% level the sentence says
the two disagree, so the reader treats the difference as borderline.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from llara.metrics import random_hit_ratio
from llara.pipeline.comparisons import HIT, SR_PROTOCOL, Comparison, candidate_counts, compare
from llara.pipeline.results import ResultRow, RunIndex, Summary, variant_groups


def best_sr(rows: Sequence[ResultRow]) -> ResultRow | None:
    """The SR variant with the highest HR@1, or None when the run has none."""
    sr_rows = [row for row in rows if row.kind == "sr" and HIT in row.metrics]
    return max(sr_rows, key=lambda row: row.metrics[HIT]["mean"], default=None)


def random_levels(counts: np.ndarray | None, metrics: Sequence[str]) -> dict[str, float]:
    """The random-pick level of each ``hr@k`` in ``metrics`` for rows with ``counts`` candidates."""
    if counts is None or counts.size == 0:
        return {}
    return {name: random_hit_ratio(counts, int(name.removeprefix("hr@"))) for name in metrics}


def relation(low: float, high: float, level: float) -> str:
    """``above`` / ``below`` when the interval [low, high] excludes ``level``, else ``not distinguishable from``."""
    if low > level:
        return "above"
    if high < level:
        return "below"
    return "not distinguishable from"


def standing_sentence(
    row: ResultRow, chance: float | None, best: ResultRow | None, comparison: Comparison | None
) -> str:
    """One sentence: the variant's HR@1, against random and against the best SR backbone."""
    hit: Summary = row.metrics[HIT]
    text = f"`{row.label}` ({row.protocol}): HR@1 {hit['mean']:.3f} [{hit['ci_low']:.3f}, {hit['ci_high']:.3f}]"
    if chance is not None:
        text += f" is {relation(hit['ci_low'], hit['ci_high'], chance)} random (a random pick: {chance:.3f})"
    if best is not None and comparison is not None:
        joint = " and" if chance is not None else " is"
        text += (
            f"{joint} {relation(comparison.ci_low, comparison.ci_high, 0.0)} the best SR backbone `{best.label}` "
            f"(HR@1 {best.metrics[HIT]['mean']:.3f}): paired ΔHR@1 {comparison.delta:+.3f} "
            f"[{comparison.ci_low:+.3f}, {comparison.ci_high:+.3f}], p = {comparison.p_value:.3g}"
        )
        if tests_disagree(comparison):
            text += " (the interval and the exact test disagree: a borderline difference)"
    return text + "."


def tests_disagree(comparison: Comparison, alpha: float = 0.05) -> bool:
    """True when the bootstrap interval and the exact test reach different verdicts at level ``alpha``."""
    interval_excludes_zero = comparison.ci_low > 0 or comparison.ci_high < 0
    return interval_excludes_zero != (comparison.p_value < alpha)


def standing_sentences(run_dir: Path, index: RunIndex, rows: Sequence[ResultRow]) -> list[str]:
    """One sentence per LLM variant and protocol (see the module docstring); empty without LLM variants."""
    chance = random_levels(candidate_counts(run_dir, index), [HIT]).get(HIT)
    best = best_sr(rows)
    groups = variant_groups(index)
    sentences = []
    for row in rows:
        if row.kind == "sr" or HIT not in row.metrics:
            continue
        comparison = (
            compare(run_dir, groups[row.variant], row.protocol, groups[best.variant], SR_PROTOCOL) if best else None
        )
        sentences.append(standing_sentence(row, chance, best, comparison))
    return sentences
