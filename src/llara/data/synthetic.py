"""Planted-pattern datasets for tests, smoke runs and benchmarks (no files needed)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from llara.data.interactions import Interactions
from llara.errors import LlaraError

Pattern = Literal["successor", "random"]


def synthetic_interactions(
    num_users: int = 60,
    num_items: int = 40,
    seq_len: int = 15,
    pattern: Pattern = "successor",
    seed: int = 0,
) -> Interactions:
    """``num_users`` users with ``seq_len`` interactions each over items "0".."num_items-1" ("Item 7").

    ``successor``: a user starts at a random item i and continues i+1, i+2, ... (mod ``num_items``), so
    the next item is always the last one plus one. ``random``: items drawn uniformly without repeats.
    Raw ids are the integers themselves, so dense ids equal raw ids after preparation. As the reader of
    ``source: synthetic`` it reads no files: the options are these arguments.
    """
    if min(num_users, num_items, seq_len) < 1 or seq_len > num_items:
        raise LlaraError(
            f"synthetic data needs positive sizes and seq_len <= num_items, got num_users={num_users}, "
            f"num_items={num_items}, seq_len={seq_len}"
        )
    rng = np.random.default_rng(seed)
    if pattern == "successor":
        starts = rng.integers(0, num_items, size=num_users)
        items = (starts[:, None] + np.arange(seq_len)[None, :]) % num_items
    elif pattern == "random":
        items = np.argsort(rng.random((num_users, num_items)), axis=1)[:, :seq_len]
    else:
        raise LlaraError(f"unknown synthetic pattern {pattern!r}; use 'successor' or 'random'")
    table = pd.DataFrame(
        {
            "user": np.repeat(np.arange(num_users), seq_len).astype(str),
            "item": items.ravel().astype(str),
            "timestamp": np.tile(np.arange(seq_len, dtype=np.int64), num_users) + 1_000_000_000,
        }
    )
    ids = np.arange(num_items)
    catalog = pd.DataFrame({"item": ids.astype(str), "title": [f"Item {i}" for i in ids]})
    return Interactions(table=table, catalog=catalog, source="synthetic", domain="generic")
