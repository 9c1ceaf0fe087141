"""Ranking metrics per row and their means with 95% confidence intervals.

Shared by every evaluator (SR baselines, LLaRA's ranking and generation protocols):

1. :func:`target_ranks` turns candidate scores into the 0-based rank of the target;
2. :func:`ranking_metrics` turns ranks into per-row arrays (``hr@k``, ``ndcg@k``, ``mrr``);
3. :func:`summarize` turns any per-row arrays into ``{name: {mean, ci_low, ci_high, n}}``.

:func:`gate_diagnostics` summarises how a MoE-LoRA gate spreads rows over its experts.

A rank of ``-1`` means "the target was not ranked" (e.g. a generated answer that names no candidate):
it scores 0 on every metric, so such rows count in the denominator, as in the paper's HitRatio@1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

from llara.errors import LlaraError

Z_95 = 1.959963984540054
#: the metrics a ranking evaluation shows first (the SR commands' tables, their seed summaries)
HEADLINE = ("hr@1", "hr@5", "ndcg@5", "ndcg@10", "mrr")


def target_ranks(scores: np.ndarray, target_pos: np.ndarray) -> np.ndarray:
    """0-based rank of each row's target among its candidates (higher score = better).

    Ties are broken pessimistically: every other candidate scoring the same as the target counts as
    ranked above it, so a constant scorer ranks every target last and earns no credit (NaN scores,
    anywhere in a row, count against the target too).
    Accepts numpy arrays or CPU torch tensors: ``scores`` [B, C], ``target_pos`` [B] (column indices).
    """
    scores = np.asarray(scores, dtype=np.float64)
    target_pos = np.asarray(target_pos, dtype=np.int64)
    if scores.ndim != 2 or target_pos.shape != (scores.shape[0],):
        raise LlaraError(f"target_ranks needs scores [B, C] and target_pos [B]; got {scores.shape}, {target_pos.shape}")
    if ((target_pos < 0) | (target_pos >= scores.shape[1])).any():
        raise LlaraError(f"target positions must lie in 0..{scores.shape[1] - 1}")
    target_scores = scores[np.arange(len(scores)), target_pos][:, None]
    not_below = (scores >= target_scores) | np.isnan(scores) | np.isnan(target_scores)
    return not_below.sum(axis=1).astype(np.int64) - 1


def ranking_metrics(ranks: np.ndarray, ks: Iterable[int] = (1, 3, 5, 10)) -> dict[str, np.ndarray]:
    """Per-row ``hr@k`` (0/1), ``ndcg@k`` (one relevant item: 1/log2(rank+2) inside the top k) and ``mrr``."""
    ranks = np.asarray(ranks, dtype=np.int64)
    ranked = ranks >= 0
    gain = np.where(ranked, 1.0 / np.log2(np.maximum(ranks, 0) + 2.0), 0.0)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        inside = ranked & (ranks < k)
        out[f"hr@{k}"] = inside.astype(np.float64)
        out[f"ndcg@{k}"] = np.where(inside, gain, 0.0)
    out["mrr"] = np.where(ranked, 1.0 / (np.maximum(ranks, 0) + 1.0), 0.0)
    return out


def summarize(per_row: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Mean and 95% confidence interval of each per-row metric.

    Arrays holding only 0 and 1 get a Wilson score interval (sound at small n and at 0 or 1);
    other arrays get a normal interval, mean +- 1.96 * sample std / sqrt(n), clipped to the data range.
    """
    return {name: _summarize_one(name, np.asarray(values, dtype=np.float64)) for name, values in per_row.items()}


def _summarize_one(name: str, values: np.ndarray) -> dict[str, float]:
    n = int(values.size)
    if n == 0:
        raise LlaraError(f"metric {name!r} has no rows to summarize (empty split?)")
    mean = float(values.mean())
    if np.isin(values, (0.0, 1.0)).all():
        low, high = wilson_interval(mean, n)
    else:
        half = Z_95 * float(values.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0
        low, high = max(mean - half, float(values.min())), min(mean + half, float(values.max()))
    return {"mean": mean, "ci_low": low, "ci_high": high, "n": n}


def gate_diagnostics(weights: np.ndarray) -> dict[str, float | int | list[float]]:
    """How a MoE-LoRA gate uses its experts over rows, from the per-row weights ``[N, K]``.

    ``mean_weights``: the mean weight of each expert; ``entropy``: the entropy (nats) of that mean,
    ``max_entropy`` (ln K) when the experts are used evenly and 0 when the gate collapsed onto one.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 2 or not weights.size:
        raise LlaraError(f"gate weights must be a non-empty [rows, experts] array, got shape {weights.shape}")
    mean = weights.mean(axis=0)
    used = mean[mean > 0]
    return {
        "experts": int(weights.shape[1]),
        "mean_weights": mean.tolist(),
        "entropy": float(-(used * np.log(used)).sum()),
        "max_entropy": math.log(weights.shape[1]),
        "n": int(weights.shape[0]),
    }


def wilson_interval(p: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``p`` observed over ``n`` trials."""
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def random_hit_ratio(candidate_counts: np.ndarray, k: int) -> float:
    """HR@k of a uniformly random ranking (the random-pick level): min(k, C) / C per row of C candidates,
    averaged over the rows (1/20 for HR@1 of 20 candidates)."""
    counts = np.asarray(candidate_counts, dtype=np.float64)
    if counts.size == 0 or (counts < 1).any():
        raise LlaraError("the random-pick level needs at least one row, each with at least one candidate")
    return float((np.minimum(k, counts) / counts).mean())


def paired_comparison(
    variant: np.ndarray, reference: np.ndarray, resamples: int = 10_000, seed: int = 0
) -> dict[str, float]:
    """How a variant differs from a reference on the same rows (per-row 0/1 hits or any per-row metric).

    ``delta``: mean(variant - reference); ``ci_low`` / ``ci_high``: its paired bootstrap 95% interval
    (rows resampled together, ``resamples`` times, seeded); ``p_value``: McNemar's exact two-sided test
    on the discordant rows (for 0/1 values; a sign test on the non-zero differences otherwise);
    ``wins`` / ``losses``: rows where only the variant / only the reference is better.
    """
    variant, reference = np.asarray(variant, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if variant.shape != reference.shape or variant.ndim != 1 or variant.size == 0:
        raise LlaraError(
            f"a paired comparison needs two per-row arrays over the same rows; got shapes {variant.shape} "
            f"and {reference.shape}"
        )
    diff = variant - reference
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(resamples, diff.size))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    wins, losses = int((diff > 0).sum()), int((diff < 0).sum())
    return {
        "delta": float(diff.mean()),
        "ci_low": float(low),
        "ci_high": float(high),
        "p_value": mcnemar_exact(wins, losses),
        "wins": wins,
        "losses": losses,
        "n": int(diff.size),
    }


def mcnemar_exact(wins: int, losses: int) -> float:
    """Two-sided exact McNemar p-value: discordant pairs split ``wins`` / ``losses`` under Binomial(n, 1/2)."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2.0 * tail)
