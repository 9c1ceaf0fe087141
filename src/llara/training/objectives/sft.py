"""``sft``: causal-LM cross-entropy on the answer tokens (title, terminator, end of sequence), as the paper."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from llara.llm.device import to_device
from llara.training.objectives.base import ObjectiveContext, ObjectiveOutput


def sft_loss(
    forward: Callable[..., Any], model: Any, rows: Sequence[Mapping], context: ObjectiveContext
) -> ObjectiveOutput:
    """Mean cross-entropy over the answer tokens of the micro-batch (labels from the prompt length)."""
    batch = model.encode_training(rows, context.mode)
    loss = forward(**to_device(batch, context.device)).loss
    mask = batch["attention_mask"]
    return ObjectiveOutput(loss, int(mask.sum()), mask.numel())
