"""The token side of a LLaRA model: its placeholder tokens in the tokenizer and the embedding matrices,
and the padded tensors a batch of sample rows becomes.

:func:`add_placeholder_tokens` and :func:`resize_for_placeholders` prepare a base model for the
placeholders of :mod:`llara.llm.prompts`; :func:`encode` tokenises rows' prompts (and answers) and pads
them into ``input_ids``, ``attention_mask``, ``behavior_ids`` (the item id at each placeholder) and answer
``labels``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from llara.errors import LlaraError
from llara.llm import prompts

#: the label of a token the loss ignores (prompt tokens and padding)
IGNORE_INDEX = -100


def add_placeholder_tokens(tokenizer: Any, text_placeholder: bool = False) -> list[int]:
    """Add the placeholder special tokens (and, with ``text_placeholder``, :data:`~llara.llm.prompts.TEXT_PLACEHOLDER`)
    to ``tokenizer`` if missing; return the ids of :data:`~llara.llm.prompts.PLACEHOLDER_TOKENS`."""
    wanted = [*prompts.PLACEHOLDER_TOKENS, *([prompts.TEXT_PLACEHOLDER] if text_placeholder else [])]
    missing = [t for t in wanted if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    return tokenizer.convert_tokens_to_ids(list(prompts.PLACEHOLDER_TOKENS))


def resize_for_placeholders(llm: nn.Module, tokenizer: Any) -> None:
    """Grow the embeddings to the tokenizer; new rows get the mean of the old rows (deterministic).

    Placeholder input rows are always replaced by projected vectors; their output rows only matter for
    generation, where the mean keeps them unremarkable.
    """
    old = llm.get_input_embeddings().weight.shape[0]
    if len(tokenizer) <= old:
        return
    llm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        for matrix in _embedding_matrices(llm):
            matrix[old:] = matrix[:old].mean(dim=0, keepdim=True)


def _embedding_matrices(llm: nn.Module) -> list[torch.Tensor]:
    inputs = llm.get_input_embeddings().weight
    outputs = llm.get_output_embeddings()
    if outputs is None or outputs.weight is inputs:
        return [inputs]
    return [inputs, outputs.weight]


def encode(
    model: Any, rows: Sequence[Mapping], mode: str, side: str, answers: bool = False
) -> dict[str, torch.Tensor]:
    """The padded batch of ``rows``' prompts in prompt ``mode`` for ``model`` (a ``LlaraModel``), padded on
    the ``left`` or ``right``: ``input_ids``, ``attention_mask``, ``behavior_ids``, ``history`` (when the
    model reads the rows' histories) and, with ``answers`` (each row's target + eos after its prompt),
    ``labels`` on the answer tokens only."""
    prompt_ids = [_prompt_ids(model, row, mode) for row in rows]
    answer_ids = [_answer_ids(model, int(row["target"]), mode) for row in rows] if answers else [None] * len(rows)
    input_ids, attention, labels = _pad(model.tokenizer.pad_token_id, prompt_ids, answer_ids, side)
    items = [item for row in rows for item in prompts.behavior_items(row, mode, model.user_token)]
    out = {
        "input_ids": input_ids,
        "attention_mask": attention,
        "behavior_ids": _behavior_ids(input_ids, model.placeholder_ids, items),
    }
    history = model.histories(rows)
    if history is not None:
        out["history"] = history
    if answers:
        out["labels"] = labels
    return out


def _prompt_ids(model: Any, row: Mapping, mode: str) -> list[int]:
    text = prompts.render_prompt(row, model.titles, mode, model.domain, model.user_token, model.text_placeholder)
    return model.tokenizer(text, add_special_tokens=True)["input_ids"]


def _answer_ids(model: Any, item_id: int, mode: str) -> list[int]:
    ids = model.tokenizer(model.answer_text(item_id, mode), add_special_tokens=False)["input_ids"]
    return ids + [model.tokenizer.eos_token_id]


def _pad(
    pad_token_id: int, prompt_ids: Sequence[list[int]], answer_ids: Sequence[list[int] | None], side: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad prompt(+answer) sequences into ``input_ids``, ``attention_mask`` and ``labels`` ``[B, T]``
    (the answer tokens' ids, :data:`IGNORE_INDEX` elsewhere), padded on the ``left`` or ``right``."""
    if side not in ("left", "right"):
        raise LlaraError(f"padding_side must be 'left' or 'right', not {side!r}")
    full = [p + (a or []) for p, a in zip(prompt_ids, answer_ids)]
    width = max(len(s) for s in full)
    batch = len(full)
    input_ids = torch.full((batch, width), pad_token_id, dtype=torch.long)
    attention = torch.zeros((batch, width), dtype=torch.long)
    labels = torch.full((batch, width), IGNORE_INDEX, dtype=torch.long)
    for b, (seq, prompt) in enumerate(zip(full, prompt_ids)):
        start = width - len(seq) if side == "left" else 0
        input_ids[b, start : start + len(seq)] = torch.tensor(seq)
        attention[b, start : start + len(seq)] = 1
        labels[b, start + len(prompt) : start + len(seq)] = input_ids[b, start + len(prompt) : start + len(seq)]
    return input_ids, attention, labels


def _behavior_ids(input_ids: torch.Tensor, placeholder_ids: Sequence[int], items: Sequence[int]) -> torch.Tensor:
    """Item ids at placeholder positions (``items``, in prompt order), -1 elsewhere."""
    behavior = torch.full_like(input_ids, -1)
    positions = torch.isin(input_ids, torch.tensor(placeholder_ids))
    if int(positions.sum()) != len(items):
        raise LlaraError(
            f"prompts hold {int(positions.sum())} placeholder tokens but the rows name {len(items)} items; "
            "do item titles contain the placeholder strings "
            f"{', '.join(prompts.PLACEHOLDER_TOKENS)}?"
        )
    if items:
        behavior[positions] = torch.tensor(items, dtype=torch.long)
    return behavior
