"""Scoring the frozen candidates of a split with an SR model; metrics with confidence intervals.

The metrics.json of an SR checkpoint (``llara sr evaluate``, ``llara evaluate``) is written by
``llara.evaluation.evaluate``, in the same shape as a LLaRA model's; this module only scores.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llara.data.dataset import PreparedData
from llara.metrics import ranking_metrics, summarize, target_ranks
from llara.sr.base import SequentialRecommender
from llara.sr.samples import SplitTensors, split_tensors


@torch.no_grad()
def candidate_scores(model: SequentialRecommender, tensors: SplitTensors, batch_size: int = 1024) -> np.ndarray:
    """The model's score of every candidate of every row, ``[N, candidates]``."""
    was_training = model.training
    model.eval()
    scores = []
    for start in range(0, len(tensors), batch_size):
        rows = slice(start, start + batch_size)
        hidden = model.encode(tensors.history[rows], tensors.lengths[rows])
        scores.append(model.logits(hidden, tensors.candidates[rows]).numpy())
    model.train(was_training)
    return np.concatenate(scores)


def predict_ranks(model: SequentialRecommender, tensors: SplitTensors, batch_size: int = 1024) -> np.ndarray:
    """0-based rank of each row's target among its candidates (pessimistic ties)."""
    return target_ranks(candidate_scores(model, tensors, batch_size), tensors.target_pos.numpy())


def hit_rate_at_1(model: SequentialRecommender, tensors: SplitTensors) -> float:
    """Share of rows whose target scores strictly highest among its candidates."""
    return float((predict_ranks(model, tensors) == 0).mean())


def rank_split(
    checkpoint: str | Path, data: PreparedData, split: str, allow_data_mismatch: bool = False
) -> tuple[SequentialRecommender, np.ndarray]:
    """The checkpoint's model and the 0-based rank of each ``split`` row's target among its candidates.

    A checkpoint fitted on other prepared data than ``data`` is refused unless ``allow_data_mismatch``.
    """
    from llara.sr.checkpoint import fitted_data_hash, load_sr

    data.check_trained_on(fitted_data_hash(checkpoint), f"SR checkpoint {checkpoint}", allow_data_mismatch)
    model = load_sr(checkpoint, num_items=data.num_items)
    return model, predict_ranks(model, split_tensors(data, split, model.max_len))


def evaluate_sr(
    checkpoint: str | Path, data_dir: str | Path, split: str = "test", ks: Iterable[int] = (1, 3, 5, 10)
) -> dict[str, dict[str, float]]:
    """HR@k, NDCG@k and MRR (mean, 95% CI, n) of a checkpoint on a split's frozen candidates."""
    _, ranks = rank_split(checkpoint, PreparedData.load(data_dir), split)
    return summarize(ranking_metrics(ranks, ks))


def seed_summary(runs: Sequence[Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation over runs (e.g. seeds) of each metric's mean."""
    names = list(runs[0]) if runs else []
    out = {}
    for name in names:
        values = np.array([run[name]["mean"] for run in runs], dtype=np.float64)
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out[name] = {"mean": float(values.mean()), "std": std, "n": len(values)}
    return out
