"""Fresh candidates for training rows every epoch (``train.candidate_draw: per-epoch``).

The prepared data freezes each row's 19 negatives once. The LLaRA authors' data loader instead drew new
ones every time it loaded a row, so every epoch showed new candidate sets. :class:`EpochCandidates` does
the same reproducibly: row ``r`` in epoch ``e`` gets its negatives from a generator seeded with
``(seed, e, r)``, so a resumed run, another process count or another batch order draws the same sets.

The negatives of a row are distinct, never its target, and drawn uniformly from a pool:

* ``unseen``: items that occur in none of the user's training rows (as history or target);
* ``window``: items not in the row's shown history (the authors' rule).

The target takes a uniformly drawn position among the candidates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from llara.errors import LlaraError


@dataclass
class EpochCandidates:
    """Per-epoch candidate sets for the training ``rows`` (``user``, ``history``, ``candidates``, ``target``)."""

    rows: pd.DataFrame
    num_items: int
    pool: str = "unseen"
    seed: int = 0
    _seen: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.pool not in ("unseen", "window"):
            raise LlaraError(f"train.negative_pool {self.pool!r} is not one of unseen, window")
        if self.pool == "unseen":
            self._seen = _items_per_user(self.rows)

    def candidates(self, position: int, row: Mapping, epoch: int) -> np.ndarray:
        """The candidates of row ``position`` (its place in ``rows``) in ``epoch``: the target and
        ``len(row["candidates"]) - 1`` fresh negatives, in a drawn order."""
        rng = np.random.default_rng([self.seed, epoch, position])
        target = int(row["target"])
        count = len(row["candidates"]) - 1
        excluded = self._excluded(row, target)
        if self.num_items - len(excluded) < count:
            raise LlaraError(
                f"training row {position} (user {row.get('user')}) leaves {self.num_items - len(excluded)} items to "
                f"draw {count} negatives from (train.negative_pool={self.pool}); use train.candidate_draw=frozen"
            )
        negatives = _draw_distinct(rng, self.num_items, excluded, count)
        drawn = np.insert(negatives, rng.integers(count + 1), target)
        return drawn.astype(np.asarray(row["candidates"]).dtype, copy=False)

    def _excluded(self, row: Mapping, target: int) -> np.ndarray:
        """Sorted unique item ids a negative of ``row`` must not be."""
        if self.pool == "window":
            return np.union1d(np.asarray(row["history"], dtype=np.int64), [target])
        return np.union1d(self._seen[str(row["user"])], [target])


def _items_per_user(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """Every item in each user's training rows (histories and targets), sorted and unique."""
    frame = rows[["user", "history", "target"]]
    items = frame["history"].explode().dropna().astype(np.int64)
    pairs = pd.concat([
        pd.DataFrame({"user": frame["user"].loc[items.index].astype(str).to_numpy(), "item": items.to_numpy()}),
        pd.DataFrame({"user": frame["user"].astype(str).to_numpy(), "item": frame["target"].astype(np.int64)}),
    ])
    return {user: np.unique(group.to_numpy()) for user, group in pairs.groupby("user")["item"]}


def _draw_distinct(rng: np.random.Generator, num_items: int, excluded: np.ndarray, count: int) -> np.ndarray:
    """``count`` distinct ids from ``[0, num_items)`` outside the sorted ``excluded``, uniformly, in draw order."""
    chosen: list[int] = []
    taken: set[int] = set()
    while len(chosen) < count:
        draws = rng.integers(0, num_items, size=2 * (count - len(chosen)) + 8)
        allowed = draws[~np.isin(draws, excluded, assume_unique=False)]
        for item in allowed.tolist():
            if item not in taken:
                taken.add(item)
                chosen.append(item)
                if len(chosen) == count:
                    break
    return np.asarray(chosen, dtype=np.int64)
