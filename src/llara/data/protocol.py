"""The LLaRA protocol: interactions -> frozen next-item samples (docs/method.md, "Data protocol").

* Item ids become dense 0..N-1 (raw ids sorted numerically when all are integers, else as text), so
  ML-100K raw id k becomes k-1 as in the authors' files. Only items that occur in the interactions count.
* Each user's interactions are sorted by time (stable: ties keep file order); a repeated (user, item)
  keeps its first occurrence, so a target is never in its own history.
* Users are shuffled with the seed and split by the ratios (validation and test sizes rounded, train
  takes the rest).
* Train rows: every prefix of a train user's sequence; val/test rows: the user's last item. The history
  is the last <= ``history_len`` items before the target; rows with fewer than ``min_history`` are dropped.
* Candidates (all splits, frozen): the target plus ``num_candidates - 1`` distinct items the user never
  interacted with, drawn uniformly, in random order.

Everything is vectorised with numpy; each random decision has its own stream derived from the seed, so
changing one split's rows does not move another split's candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from llara.data.interactions import Interactions
from llara.errors import LlaraError

SPLIT_STREAMS = {"split": 0, "train": 1, "val": 2, "test": 3}


@dataclass(frozen=True)
class ProtocolParams:
    """The protocol's knobs (defaults are the paper's)."""

    seed: int = 0
    history_len: int = 10
    min_history: int = 3
    num_candidates: int = 20
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)

    def check(self) -> None:
        """Raise a LlaraError for values the protocol cannot honour."""
        if self.min_history < 1 or self.history_len < self.min_history:
            raise LlaraError(
                f"need 1 <= min_history <= history_len, got min_history={self.min_history}, "
                f"history_len={self.history_len}"
            )
        if self.num_candidates < 2:
            raise LlaraError(f"num_candidates must be at least 2 (target + 1 negative), got {self.num_candidates}")
        if len(self.split) != 3 or min(self.split) < 0 or abs(sum(self.split) - 1.0) > 1e-6:
            raise LlaraError(f"split must be three non-negative ratios summing to 1, got {list(self.split)}")


@dataclass(frozen=True)
class Samples:
    """The protocol's output: the dense item table, the three splits and the counts."""

    items: pd.DataFrame
    splits: dict[str, pd.DataFrame]
    counts: dict[str, int]


def rng_for(seed: int, stream: str) -> np.random.Generator:
    """An independent random stream per purpose (``split``, ``train``, ``val``, ``test``)."""
    return np.random.default_rng([seed, SPLIT_STREAMS[stream]])


def sorted_ids(raw_ids: np.ndarray) -> np.ndarray:
    """Sorted unique raw ids: numerically when all are integers, else as text."""
    unique = np.unique(raw_ids.astype(str))
    as_int = pd.to_numeric(pd.Series(unique), errors="coerce")
    if as_int.notna().all() and (as_int == np.floor(as_int)).all():
        return unique[np.argsort(as_int.to_numpy(), kind="stable")]
    return unique


def build_samples(data: Interactions, params: ProtocolParams) -> Samples:
    """Apply the protocol to validated interactions."""
    params.check()
    data.validate()
    table = data.table
    raw_items = sorted_ids(table["item"].to_numpy())
    item_codes = _codes(raw_items, table["item"].to_numpy().astype(str))
    users = sorted_ids(table["user"].to_numpy())
    user_codes = _codes(users, table["user"].to_numpy().astype(str))

    order = np.lexsort((table["timestamp"].to_numpy(), user_codes))
    user_seq, item_seq = user_codes[order], item_codes[order]
    keep = _first_occurrences(user_seq, item_seq, len(raw_items))
    user_seq, item_seq = user_seq[keep], item_seq[keep]

    assignment = _assign_users(len(users), params)
    catalog = data.catalog.set_index("item")["title"]
    items = pd.DataFrame(
        {
            "item_id": np.arange(len(raw_items), dtype=np.int64),
            "raw_id": raw_items,
            "title": catalog.loc[raw_items].to_numpy(),
        }
    )
    seen = np.unique(user_seq.astype(np.int64) * len(raw_items) + item_seq)
    check_enough_items(np.bincount(user_seq, minlength=len(users)), len(raw_items), params.num_candidates, users)
    splits = {}
    for index, name in enumerate(("train", "val", "test")):
        rows = _rows(user_seq, item_seq, assignment == index, last_only=name != "train", params=params)
        splits[name] = sample_frame(rows, users, seen, len(raw_items), params, rng_for(params.seed, name))
    counts = {
        "users": int(len(users)),
        "items": int(len(raw_items)),
        "interactions": int(len(table)),
        "interactions_used": int(len(item_seq)),
        **{f"{name}_users": int((assignment == i).sum()) for i, name in enumerate(("train", "val", "test"))},
        **{f"{name}_rows": int(len(frame)) for name, frame in splits.items()},
    }
    return Samples(items=items, splits=splits, counts=counts)


def _codes(sorted_values: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position of each value in ``sorted_values`` (which may be in numeric, not text, order)."""
    sorter = np.argsort(sorted_values)
    return sorter[np.searchsorted(sorted_values, values, sorter=sorter)].astype(np.int64)


def _first_occurrences(user_seq: np.ndarray, item_seq: np.ndarray, num_items: int) -> np.ndarray:
    """Mask keeping each (user, item) pair's first occurrence in the time-sorted order."""
    keys = user_seq.astype(np.int64) * num_items + item_seq
    _, first = np.unique(keys, return_index=True)
    keep = np.zeros(len(keys), dtype=bool)
    keep[first] = True
    return keep


def _assign_users(num_users: int, params: ProtocolParams) -> np.ndarray:
    """0/1/2 (train/val/test) per user code, from a seeded permutation."""
    n_val = int(round(num_users * params.split[1]))
    n_test = int(round(num_users * params.split[2]))
    n_train = num_users - n_val - n_test
    labels = np.repeat(np.array([0, 1, 2], dtype=np.int8), [n_train, n_val, n_test])
    assignment = np.empty(num_users, dtype=np.int8)
    assignment[rng_for(params.seed, "split").permutation(num_users)] = labels
    return assignment


def check_enough_items(per_user: np.ndarray, num_items: int, num_candidates: int, users: np.ndarray) -> None:
    """Every user needs ``num_candidates - 1`` items they never interacted with (``per_user`` = their counts)."""
    if not len(per_user):
        return
    worst = int(np.argmax(per_user))
    if num_items - per_user[worst] < num_candidates - 1:
        raise LlaraError(
            f"too few items for {num_candidates - 1} negatives: user {str(users[worst])!r} interacted with "
            f"{per_user[worst]} of {num_items} items; lower --num-candidates or use more items"
        )


@dataclass(frozen=True)
class RowBatch:
    """Samples before candidates: user code, target and history (as a flattened list column) per row."""

    users: np.ndarray  # user code per row
    targets: np.ndarray  # item code per row
    offsets: np.ndarray  # history offsets into values (len rows + 1)
    values: np.ndarray  # concatenated histories


def _rows(
    user_seq: np.ndarray, item_seq: np.ndarray, in_split: np.ndarray, last_only: bool, params: ProtocolParams
) -> RowBatch:
    """Target positions and their histories for the users in ``in_split`` (a per-user mask)."""
    starts = np.r_[0, np.flatnonzero(np.diff(user_seq)) + 1] if len(user_seq) else np.zeros(0, dtype=np.int64)
    ends = np.r_[starts[1:], len(user_seq)]
    user_start = np.repeat(starts, ends - starts)
    position = np.arange(len(user_seq)) - user_start
    eligible = in_split[user_seq] & (position >= params.min_history)
    if last_only:
        is_last = np.zeros(len(user_seq), dtype=bool)
        is_last[ends - 1] = True
        eligible &= is_last
    targets = np.flatnonzero(eligible)
    first = np.maximum(user_start[targets], targets - params.history_len)
    lengths = targets - first
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int32)
    gather = np.repeat(first - offsets[:-1], lengths) + np.arange(offsets[-1])
    return RowBatch(users=user_seq[targets], targets=item_seq[targets], offsets=offsets, values=item_seq[gather])


def sample_frame(
    rows: RowBatch,
    users: np.ndarray,
    seen: np.ndarray,
    num_items: int,
    params: ProtocolParams,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """The split's DataFrame: user names, histories, shuffled candidates (target + negatives), targets.

    ``seen``: sorted ``user code * num_items + item`` keys of everything each user interacted with.
    """
    negatives = draw_negatives(rows.users, seen, num_items, params.num_candidates - 1, rng)
    candidates = rng.permuted(np.column_stack([rows.targets, negatives]).astype(np.int64), axis=1)
    return pd.DataFrame(
        {
            "user": users[rows.users].astype(object),
            "history": _list_column(rows.offsets, rows.values),
            "candidates": _list_column(
                np.arange(0, candidates.size + 1, params.num_candidates, dtype=np.int32), candidates.ravel()
            ),
            "target": rows.targets.astype(np.int64),
        }
    )


def _list_column(offsets: np.ndarray, values: np.ndarray) -> np.ndarray:
    """An object array of int64 arrays (what Parquet list columns load back as)."""
    column = np.empty(len(offsets) - 1, dtype=object)
    column[:] = np.split(values.astype(np.int64), offsets[1:-1])
    return column


def draw_negatives(
    row_users: np.ndarray, seen: np.ndarray, num_items: int, k: int, rng: np.random.Generator
) -> np.ndarray:
    """``k`` distinct items per row, uniform over the items that row's user never interacted with.

    ``seen`` holds the sorted keys ``user * num_items + item`` of all interactions. Rejection sampling,
    vectorised: draw a block per pending row, drop seen items and repeats (keeping the earliest), keep
    the first ``k``; rows still short draw again. The caller guarantees every user has >= k unseen items.
    """
    chosen = np.full((len(row_users), k), -1, dtype=np.int64)
    pending = np.arange(len(row_users))
    while pending.size:
        draws = rng.integers(0, num_items, size=(pending.size, 2 * k), dtype=np.int64)
        keys = row_users[pending, None].astype(np.int64) * num_items + draws
        hit = np.searchsorted(seen, keys).clip(max=max(len(seen) - 1, 0))
        draws[seen[hit] == keys] = -1
        merged = _unique_in_order(np.concatenate([chosen[pending], draws], axis=1))
        chosen[pending] = merged[:, :k]
        pending = pending[(merged[:, :k] < 0).any(axis=1)]
    return chosen


def _unique_in_order(block: np.ndarray) -> np.ndarray:
    """Per row: drop -1 and repeated values (keeping first occurrences), valid values first, order kept."""
    order = np.argsort(block, axis=1, kind="stable")
    ranked = np.take_along_axis(block, order, axis=1)
    repeat = np.zeros_like(ranked, dtype=bool)
    repeat[:, 1:] = ranked[:, 1:] == ranked[:, :-1]
    invalid = np.empty_like(repeat)
    np.put_along_axis(invalid, order, repeat | (ranked < 0), axis=1)
    block = np.where(invalid, -1, block)
    compact = np.argsort(invalid, axis=1, kind="stable")
    return np.take_along_axis(block, compact, axis=1)
