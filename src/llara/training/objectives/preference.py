"""``sdpo`` / ``dpo``: softmax direct preference optimisation against the row's own candidates.

S-DPO (Chen et al., NeurIPS 2024): with ``d(x) = log pi(x | prompt) - log pi_ref(x | prompt)`` (summed
answer log-likelihoods) for the target ``w`` and ``n`` negatives ``l_j`` drawn from the row's other
candidates, the loss is ``-log sigmoid(-log sum_j exp(beta * (d(l_j) - d(w))))``; with ``n = 1`` it is
DPO. The reference is the model the stage starts from: its scores of every candidate of every training
row are computed once (:func:`reference_scores`) and looked up, so a step runs one model. Negatives
are a pure function of (seed, step, row index), so a resumed run draws the same ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from llara.llm.precision import model_autocast
from llara.llm.packing import pack_candidates
from llara.training.objectives.base import ObjectiveContext, ObjectiveOutput, score_packed, target_sft


def sdpo_loss(
    forward: Callable[..., Any], model: Any, rows: Sequence[Mapping], context: ObjectiveContext
) -> ObjectiveOutput:
    """Softmax DPO with ``train.negatives`` negatives per row (+ ``sft_weight`` x target NLL)."""
    return _preference(forward, model, rows, context, context.config.negatives)


def dpo_loss(
    forward: Callable[..., Any], model: Any, rows: Sequence[Mapping], context: ObjectiveContext
) -> ObjectiveOutput:
    """DPO: softmax DPO with one negative."""
    return _preference(forward, model, rows, context, 1)


def softmax_dpo(policy: torch.Tensor, reference: torch.Tensor, beta: float) -> torch.Tensor:
    """Mean S-DPO loss for ``[B, 1 + n]`` summed log-likelihoods, the target in column 0."""
    margin = beta * (policy - reference)
    return -F.logsigmoid(-torch.logsumexp(margin[:, 1:] - margin[:, :1], dim=1)).mean()


def negative_columns(row: Mapping, count: int, seed: int, step: int, index: int) -> list[int]:
    """Positions in ``row["candidates"]`` of ``count`` negatives (never the target), drawn reproducibly."""
    candidates = [int(c) for c in row["candidates"]]
    others = [i for i, c in enumerate(candidates) if c != int(row["target"])]
    rng = np.random.default_rng([seed, step, index])
    return sorted(rng.choice(others, size=min(count, len(others)), replace=False).tolist())


def _preference(
    forward: Callable[..., Any], model: Any, rows: Sequence[Mapping], context: ObjectiveContext, count: int
) -> ObjectiveOutput:
    config = context.config
    columns = []
    for row, index in zip(rows, context.indices, strict=True):
        target = [int(c) for c in row["candidates"]].index(int(row["target"]))
        columns.append([target] + negative_columns(row, count, config.seed, context.step, int(index)))
    candidates = [[int(row["candidates"][c]) for c in cols] for row, cols in zip(rows, columns, strict=True)]
    scores, (tokens, positions) = score_packed(forward, model, rows, candidates, context)
    table = context.reference[context.mode].to(scores.total.device)
    picked = torch.as_tensor(columns, device=table.device)
    reference = table[torch.as_tensor(context.indices, device=table.device)].gather(1, picked)
    preference = softmax_dpo(scores.total, reference, config.beta)
    sft = target_sft(scores)
    wins = (scores.total[:, 1:] - reference[:, 1:] < (scores.total[:, :1] - reference[:, :1])).float().mean()
    logs = {"preference_loss": preference.detach(), "sft_loss": sft.detach(), "reward_accuracy": wins.detach()}
    return ObjectiveOutput(preference + config.sft_weight * sft, tokens, positions, logs)


@torch.no_grad()
def reference_scores(model: Any, rows: Sequence[Mapping], mode: str, batch_size: int, device: torch.device) -> torch.Tensor:
    """Summed answer log-likelihoods ``[rows, candidates]`` of every candidate under ``model`` (eval mode;
    under bf16 autocast for a bf16 base, as training computes the policy's)."""
    was_training = model.training
    model.eval()
    parts = []
    with model_autocast(model):
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            packed = pack_candidates(model, chunk, [row["candidates"] for row in chunk], mode=mode)
            parts.append(model(**{k: v.to(device) for k, v in packed.items()}).total.float().cpu())
    model.train(was_training)
    return torch.cat(parts)
