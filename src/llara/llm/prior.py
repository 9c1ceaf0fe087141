"""The SR prior (``model.sr_prior``): the backbone's own candidate scores added to the LLM's verdicts.

Without it, a verdict model has to re-derive the SR backbone's score from the evidence tokens before it
can improve on it, and at a small budget it re-derives it with noise. With it, a candidate's ranking score
is ``verdict + scale * z``, where ``z`` is the backbone's score of the candidate standardised over the
row's candidates and ``scale`` is one trained weight: the LLM's verdict only has to learn the correction.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from llara.errors import LlaraError

#: the prior file of an export (the one trained weight)
PRIOR_FILE = "sr_prior.safetensors"


class SRPrior(nn.Module):
    """``scale * z``: the SR backbone's candidate scores standardised within each row, times a trained scale."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(scale)))

    def forward(self, scores: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """The prior ``[B, C]`` of SR ``scores`` ``[B, C]``; ``real`` marks the row's candidates (padding
        columns get 0 and do not enter the row's mean and standard deviation)."""
        return self.scale * standardise(scores.float(), real)


def standardise(scores: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Each row of ``scores`` minus its mean over ``real`` columns, over their standard deviation (1 where
    a row's scores are all equal); 0 outside ``real``."""
    weight = real.float()
    count = weight.sum(-1, keepdim=True).clamp(min=1)
    mean = (scores * weight).sum(-1, keepdim=True) / count
    centred = (scores - mean) * weight
    std = (centred.square().sum(-1, keepdim=True) / count).sqrt()
    return centred / torch.where(std > 0, std, torch.ones_like(std))


def load_prior(state: dict[str, torch.Tensor], path: Path) -> SRPrior:
    """An :class:`SRPrior` from its saved state (``path`` names the file in errors)."""
    scale = state.get("scale")
    if scale is None or scale.numel() != 1:
        raise LlaraError(f"{path} is not an SR prior (expected one value under the key scale)")
    return SRPrior(float(scale))
