"""Several frozen SR backbones read as one source of evidence for the LLM's behavioral tokens.

A :class:`BackboneStack` concatenates its members' history states and their candidates' output rows, so an
interaction vector (state times output row, elementwise) holds every member's score terms side by side:
each member's block sums to that member's score. User tokens, interaction answer tokens and MoE-LoRA
gates read a stack exactly as they read a single backbone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from llara.errors import LlaraError
from llara.sr.base import SequentialRecommender


class BackboneStack(nn.Module):
    """Frozen SR backbones over the same items; ``members[0]`` is the primary one (retrieval, item vectors)."""

    def __init__(self, members: Sequence[SequentialRecommender]) -> None:
        super().__init__()
        if not members:
            raise LlaraError("a backbone stack needs at least one SR backbone")
        counts = {member.num_items for member in members}
        if len(counts) != 1:
            raise LlaraError(f"the evidence backbones must cover the same items; their item counts: {sorted(counts)}")
        self.members = nn.ModuleList(members)
        self.num_items = members[0].num_items
        #: histories are padded to the longest window any member reads; each member keeps its own last items
        self.max_len = max(member.max_len for member in members)

    def hidden_size(self) -> int:
        """Width of the concatenated state."""
        return sum(member.hidden_size() for member in self.members)

    def hidden(self, history: torch.Tensor) -> torch.Tensor:
        """Every member's state after each history ``[B, L]``, concatenated ``[B, hidden_size()]``."""
        return torch.cat([member.hidden(history) for member in self.members], dim=-1)

    def output_rows(self, items: torch.Tensor) -> torch.Tensor:
        """Every member's output row of ``items``, concatenated in the order of :meth:`hidden`."""
        return torch.cat([member.output_rows(items) for member in self.members], dim=-1)
