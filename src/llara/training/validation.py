"""Validation during training: answer-token loss and HR@1 on the validation split, over all processes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from llara.config import TrainConfig
from llara.llm.device import to_device
from llara.llm.model import LlaraModel
from llara.llm.tokens import IGNORE_INDEX


def validate(
    model: LlaraModel, wrapped: Any, accelerator: Any, rows: pd.DataFrame, tc: TrainConfig
) -> tuple[float, float]:
    """Answer-token loss and HR@1 (``validate_by``: the model's own ranking score, or the greedy answer
    matched to a candidate) on the validation split ``rows`` (``eval_rows`` rows), over all processes;
    ``wrapped`` is ``model`` as ``accelerator`` prepared it."""
    acc = accelerator
    if tc.eval_rows:
        rows = rows.head(tc.eval_rows)
    mine = rows.iloc[acc.process_index :: acc.num_processes]
    total = torch.zeros(3, device=acc.device)  # loss x tokens, tokens, hits
    wrapped.eval()
    with torch.no_grad():
        for start in range(0, len(mine), tc.micro_batch_size):
            part = mine.iloc[start : start + tc.micro_batch_size].to_dict("records")
            batch = to_device(model.encode_training(part), acc.device)
            count = (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
            picks = validation_picks(model, part, tc.validate_by)
            hits = sum(int(pick == row["target"]) for row, pick in zip(part, picks))
            total += torch.stack([wrapped(**batch).loss.float() * count, count.float(), torch.tensor(float(hits))])
    total = acc.reduce(total, reduction="sum")
    return (total[0] / total[1].clamp(min=1)).item(), (total[2] / max(len(rows), 1)).item()


def validation_picks(model: LlaraModel, rows: list[dict[str, Any]], validate_by: str) -> list[int]:
    """The candidate ``model`` picks for each row (-1: a generated answer that names none)."""
    from llara.evaluation.generation import generate_answers
    from llara.evaluation.predictions import match_answer
    from llara.evaluation.ranking import ranking_scores

    if validate_by == "generate":
        answers = generate_answers(model, rows, len(rows))
        return [match_answer(model, row["candidates"], answer)["pred"] for row, answer in zip(rows, answers)]
    scores = ranking_scores(model, rows, len(rows))
    return [int(row["candidates"][int(np.argmax(s))]) for row, s in zip(rows, scores)]
