"""Ranks, per-row ranking metrics and confidence intervals (llara.metrics)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llara.errors import LlaraError
from llara.metrics import gate_diagnostics, ranking_metrics, summarize, target_ranks, wilson_interval


def test_ranks_count_better_candidates():
    scores = np.array([[0.1, 0.9, 0.5], [3.0, 2.0, 1.0]])
    assert target_ranks(scores, np.array([2, 0])).tolist() == [1, 0]
    assert target_ranks(scores, np.array([0, 2])).tolist() == [2, 2]


def test_constant_scorer_gets_no_credit():
    ranks = target_ranks(np.zeros((4, 20)), np.array([0, 5, 10, 19]))
    assert ranks.tolist() == [19, 19, 19, 19]
    metrics = ranking_metrics(ranks, ks=(1, 10))
    assert metrics["hr@1"].sum() == 0 and metrics["hr@10"].sum() == 0 and metrics["ndcg@10"].sum() == 0


def test_ties_and_nans_count_against_the_target():
    scores = np.array([[1.0, 1.0, 0.0], [np.nan, 5.0, 1.0], [0.0, np.nan, 1.0]])
    assert target_ranks(scores, np.array([1, 1, 2])).tolist() == [1, 1, 1]
    assert target_ranks(scores, np.array([1, 1, 1])).tolist()[2] == 2  # a NaN target ranks last


def test_metric_values_by_formula():
    metrics = ranking_metrics(np.array([0, 2, 7, -1]), ks=(1, 5))
    assert metrics["hr@1"].tolist() == [1, 0, 0, 0]
    assert metrics["hr@5"].tolist() == [1, 1, 0, 0]
    assert metrics["ndcg@5"] == pytest.approx([1.0, 1 / math.log2(4), 0.0, 0.0])
    assert metrics["mrr"] == pytest.approx([1.0, 1 / 3, 1 / 8, 0.0])


def test_bad_shapes_and_positions():
    with pytest.raises(LlaraError, match="scores"):
        target_ranks(np.zeros(3), np.array([0]))
    with pytest.raises(LlaraError, match="target positions"):
        target_ranks(np.zeros((1, 3)), np.array([3]))


def test_wilson_interval_known_value_and_edges():
    low, high = wilson_interval(0.5, 100)
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    assert wilson_interval(0.0, 10)[0] == 0.0 and wilson_interval(0.0, 10)[1] > 0.0
    assert wilson_interval(1.0, 10)[1] == pytest.approx(1.0) and wilson_interval(1.0, 10)[0] < 1.0


def test_summarize_binary_and_continuous():
    hits = np.array([1.0] * 30 + [0.0] * 70)
    values = np.linspace(0.0, 1.0, 101)
    out = summarize({"hr@1": hits, "ndcg@5": values})
    assert out["hr@1"]["mean"] == pytest.approx(0.3) and out["hr@1"]["n"] == 100
    assert (out["hr@1"]["ci_low"], out["hr@1"]["ci_high"]) == pytest.approx(wilson_interval(0.3, 100))
    half = 1.959964 * values.std(ddof=1) / math.sqrt(101)
    assert out["ndcg@5"]["ci_low"] == pytest.approx(0.5 - half, abs=1e-6)
    assert out["ndcg@5"]["ci_high"] == pytest.approx(0.5 + half, abs=1e-6)


def test_summarize_refuses_empty():
    with pytest.raises(LlaraError, match="no rows"):
        summarize({"hr@1": np.array([])})


def test_gate_diagnostics_show_even_use_and_collapse():
    even = gate_diagnostics(np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1], [0.1, 0.1, 0.1, 0.7]]))
    assert even["mean_weights"] == pytest.approx([0.25] * 4) and even["entropy"] == pytest.approx(math.log(4))
    assert even["max_entropy"] == pytest.approx(math.log(4)) and (even["experts"], even["n"]) == (4, 4)
    collapsed = gate_diagnostics(np.array([[1.0, 0.0], [1.0, 0.0]]))
    assert collapsed["mean_weights"] == [1.0, 0.0] and collapsed["entropy"] == 0.0
    skewed = gate_diagnostics(np.array([[0.9, 0.1], [0.7, 0.3]]))
    assert skewed["entropy"] == pytest.approx(-(0.8 * math.log(0.8) + 0.2 * math.log(0.2)))
    with pytest.raises(LlaraError, match="rows, experts"):
        gate_diagnostics(np.zeros((0, 2)))


def test_mcnemar_exact_matches_hand_computed_binomial_tails() -> None:
    from llara.metrics import mcnemar_exact

    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 0) == pytest.approx(2 * 1 / 32)
    assert mcnemar_exact(1, 4) == pytest.approx(2 * (1 + 5) / 32)
    assert mcnemar_exact(3, 3) == 1.0


def test_paired_comparison_of_identical_and_shifted_rows() -> None:
    from llara.metrics import paired_comparison

    reference = np.array([1, 0, 0, 1, 0, 1, 0, 0] * 10, dtype=float)
    same = paired_comparison(reference, reference)
    assert same["delta"] == 0 and same["ci_low"] == 0 and same["ci_high"] == 0 and same["p_value"] == 1.0
    better = reference.copy()
    better[np.flatnonzero(reference == 0)[:20]] = 1
    result = paired_comparison(better, reference)
    assert result["delta"] == pytest.approx(20 / 80) and result["wins"] == 20 and result["losses"] == 0
    assert 0 < result["ci_low"] < result["delta"] < result["ci_high"] and result["p_value"] < 1e-5
    with pytest.raises(LlaraError, match="same rows"):
        paired_comparison(better, reference[:-1])
