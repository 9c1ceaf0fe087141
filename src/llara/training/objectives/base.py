"""What every training objective receives and returns."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from llara.config import TrainConfig
from llara.llm.device import to_device
from llara.llm.heads import AnswerScores
from llara.llm.packing import pack_candidates, real_token_count


@dataclass
class ObjectiveContext:
    """The micro-batch's circumstances: prompt mode, global step, config, the rows' indices in the
    training set, the device, and (for preference objectives) the reference scores per prompt mode,
    ``[training rows, candidates]`` aligned with each row's ``candidates``."""

    mode: str
    step: int
    config: TrainConfig
    indices: np.ndarray
    device: torch.device
    reference: Mapping[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class ObjectiveOutput:
    """The loss to back-propagate, the real tokens it read and the positions it ran (padding included),
    and values to log (detached)."""

    loss: torch.Tensor
    tokens: int
    positions: int
    logs: dict[str, torch.Tensor] = field(default_factory=dict)


def score_packed(
    forward: Callable[..., Any],
    model: Any,
    rows: Sequence[Mapping],
    candidates: Sequence[Sequence[int]],
    context: ObjectiveContext,
    scored: torch.Tensor | None = None,
) -> tuple[AnswerScores, tuple[int, int]]:
    """Answer log-likelihoods of ``candidates[b]`` after row ``b``'s prompt (one packed forward pass),
    and the (real tokens, positions) the pass ran; with ``scored`` (``[B, C]`` booleans) the
    log-likelihoods of only those candidates are computed (the others read 0)."""
    packed = pack_candidates(model, rows, candidates, mode=context.mode)
    if scored is not None:
        packed["scored_candidates"] = scored
    scores = forward(**to_device(packed, context.device))
    return scores, (real_token_count(packed), packed["input_ids"].numel())


def target_sft(scores: AnswerScores, target: int | torch.Tensor = 0) -> torch.Tensor:
    """Mean negative log-likelihood per answer token of the target column ``target`` (per row)."""
    index = torch.as_tensor(target, device=scores.total.device).expand(len(scores.total))[:, None]
    return -(scores.total.gather(1, index) / scores.count.gather(1, index)).mean()
