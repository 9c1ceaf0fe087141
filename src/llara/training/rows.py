"""Which rows of the prepared data a run trains on: the training split, narrowed by ``train.sr_unseen_rows``,
``train.last_rows`` and ``train.max_train_rows``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from llara.config import TrainConfig
from llara.data.holdout import held_out_rows, last_rows
from llara.errors import LlaraError

if TYPE_CHECKING:
    from llara.data.dataset import PreparedData


def candidate_rows(data: PreparedData, tc: TrainConfig) -> pd.DataFrame:
    """The training split; with ``train.sr_unseen_rows`` only the rows of the users the SR backbone left
    out, with ``train.last_rows`` only each user's last rows."""
    frame = data.split("train")
    if tc.sr_unseen_rows:
        frame = sr_unseen_rows(frame, tc.sr_checkpoint)
    if tc.last_rows:
        frame = frame[last_rows(frame["user"], tc.last_rows)].reset_index(drop=True)
    return frame


def sr_unseen_rows(frame: pd.DataFrame, sr_checkpoint: str | Path | None) -> pd.DataFrame:
    """The training rows of the users ``sr_checkpoint`` left out of its training (``sr.holdout_users``),
    with a clear error for a checkpoint that left out nobody."""
    from llara.sr.checkpoint import read_sr_config

    if sr_checkpoint is None:
        raise LlaraError("train.sr_unseen_rows needs train.sr_checkpoint: the backbone whose held-out users to train on")
    fitted = read_sr_config(sr_checkpoint).get("training", {}).get("config", {})
    share = float(fitted.get("holdout_users", 0.0))
    if share == 0:
        raise LlaraError(
            f"train.sr_unseen_rows: the SR checkpoint {sr_checkpoint} trained on every training user; "
            "train it with sr.holdout_users > 0"
        )
    return frame[held_out_rows(frame["user"], share, int(fitted.get("seed", 0)))].reset_index(drop=True)


def _training_rows(frame: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    """The training rows, or a seeded subset of ``limit`` of them (kept in their original order)."""
    if limit is None or limit >= len(frame):
        return frame.reset_index(drop=True)
    keep = np.sort(np.random.default_rng([seed, 11]).choice(len(frame), size=limit, replace=False))
    return frame.iloc[keep].reset_index(drop=True)
