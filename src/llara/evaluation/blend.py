"""One order from two scores of the same candidates: the LLM's and the SR backbone's.

Each score is standardised within its row (z-score over the row's candidates: mean 0, standard
deviation 1; a row whose scores are all equal becomes all 0), so the weight is the SR's share whatever
the two scales are (summed log-likelihoods, per-token means, logits):

    blended = (1 - w) * z(LLM score) + w * z(SR score)

``w = 0`` orders by the LLM, ``w = 1`` by the SR backbone. Equal blended scores keep the candidates'
given order (the retrieval order, best SR score first).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llara.errors import LlaraError


def standardize(scores: np.ndarray) -> np.ndarray:
    """``scores`` minus their mean, divided by their standard deviation (all 0 when they are all equal)."""
    scores = np.asarray(scores, dtype=np.float64)
    spread = scores.std()
    return np.zeros_like(scores) if spread == 0 else (scores - scores.mean()) / spread


def blend(llm: np.ndarray, sr: np.ndarray, weight: float) -> np.ndarray:
    """``(1 - weight) * z(llm) + weight * z(sr)`` (see the module docstring)."""
    if not 0.0 <= weight <= 1.0:
        raise LlaraError(f"the SR weight of a blend must lie in [0, 1], got {weight}")
    return (1.0 - weight) * standardize(llm) + weight * standardize(sr)


def order(scores: np.ndarray) -> np.ndarray:
    """Candidate positions best first; equal scores keep their given order."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def target_position(items: Sequence[int], scores: np.ndarray, target: int) -> int:
    """0-based position of ``target`` once ``items`` are ordered by ``scores``; -1 when it is not among them."""
    ranked = [items[i] for i in order(scores)]
    return ranked.index(target) if target in ranked else -1
