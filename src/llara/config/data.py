"""The ``data`` section: the raw source and the sampling protocol."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from llara.config.base import SplitBy, StrictModel


class DataConfig(StrictModel):
    """Which raw source to read and the protocol parameters (docs/method.md, "Data protocol")."""

    source: str = Field(
        "movielens",
        description="the raw source: movielens (without a path: the recbole package's copy), movielens-download, "
        "steam, lastfm, amazon-sasrec, tabular, synthetic, or llara (the LLaRA authors' processed files, their "
        "split kept)",
    )
    path: str | None = Field(None, description="the raw data file or folder; null: the source's default")
    seed: int = Field(0, description="seed of the user split and of the frozen candidate draws")
    history_len: int = Field(10, description="most history items per sample (the last ones before the target)")
    min_history: int = Field(3, description="fewest history items per sample; shorter samples are dropped")
    num_candidates: int = Field(
        20, description="candidates per sample: the target plus num_candidates - 1 items the user never had"
    )
    split_by: SplitBy = Field(
        "users",
        description="users (the paper's: users split by the shares in split, one validation or test row per "
        "held-out user) or leave-one-out (every user's last item is a test row, the one before it a "
        "validation row, the earlier ones training rows; needs min_history + 2 interactions per user)",
    )
    split: tuple[float, float, float] = Field(
        (0.8, 0.1, 0.1),
        description="train, validation and test shares of the users (they sum to 1; split_by: users only)",
    )
    val_windows: int = Field(
        1,
        ge=1,
        description="validation rows per validation user: 1 (the paper's: their last item) or k > 1 (also the "
        "k - 1 windows before it, appended after the last-item rows, for a larger, less noisy validation set; "
        "split_by: users only)",
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="the reader's keyword options, e.g. {titles: items.csv, user_col: uid} for tabular",
    )
