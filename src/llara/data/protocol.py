"""The LLaRA protocol: interactions -> frozen next-item samples (docs/method.md, "Data protocol").

* Item ids become dense 0..N-1 (raw ids sorted numerically when all are integers, else as text), so
  ML-100K raw id k becomes k-1 as in the authors' files. Only items that occur in the interactions count.
* Each user's interactions are sorted by time (stable: ties keep file order); a repeated (user, item)
  keeps its first occurrence, so a target is never in its own history.
* ``split_by="users"`` (the paper's): users are shuffled with the seed and split by the ratios
  (validation and test sizes rounded, train takes the rest). Train rows: every prefix of a train user's
  sequence; val/test rows: the user's last item. With ``val_windows`` k > 1, each validation user also
  gives its k - 1 windows before the last, appended after the last-item rows with their own candidate
  stream, so the last-item rows (and their candidates) are those of k = 1.
* ``split_by="leave-one-out"``: every user with at least ``min_history + 2`` interactions gives one test
  row (their last item), one validation row (the item before it) and training rows whose targets come
  before both, so no training row contains either target; other users give no rows.
* The history is the last <= ``history_len`` items before the target; rows with fewer than
  ``min_history`` are dropped.
* Candidates (all splits, frozen): the target plus ``num_candidates - 1`` distinct items the user never
  interacted with, drawn uniformly, in random order.

Everything is vectorised with numpy; each random decision has its own stream derived from the seed, so
changing one split's rows does not move another split's candidates. Memory stays bounded: ids are int32
where they fit, a split's samples are flat arrays (:class:`~llara.data.dataset.SampleArrays`) and the
per-row work runs in blocks of :data:`CHUNK_ROWS` rows, drawing the random numbers in the order one block
of all rows would (so the block size never changes a candidate).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import get_args

import numpy as np
import pandas as pd

from llara.config import SplitBy
from llara.data.dataset import SPLITS, SampleArrays
from llara.data.interactions import Interactions
from llara.errors import LlaraError

SPLIT_STREAMS = {"split": 0, "train": 1, "val": 2, "test": 3, "val-earlier": 4}
SPLIT_BY: tuple[str, ...] = get_args(SplitBy)
#: rows per block of the per-row work (histories, negatives, candidate shuffles): bounds its memory (about
#: 50 MB for 20 candidates); 16k rows drew negatives faster than 32k-128k (cache-sized blocks)
CHUNK_ROWS = 16_384


@dataclass(frozen=True)
class ProtocolParams:
    """The protocol's knobs (defaults are the paper's)."""

    seed: int = 0
    history_len: int = 10
    min_history: int = 3
    num_candidates: int = 20
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_by: SplitBy = "users"
    val_windows: int = 1

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
        if self.split_by not in SPLIT_BY:
            raise LlaraError(f"split_by must be one of {', '.join(SPLIT_BY)}, got {self.split_by!r}")
        if self.val_windows < 1:
            raise LlaraError(f"val_windows must be at least 1, got {self.val_windows}")
        if self.val_windows > 1 and self.split_by != "users":
            raise LlaraError(
                f"val_windows={self.val_windows} needs split_by=users: with {self.split_by} a validation user's "
                "earlier windows are training rows"
            )


@dataclass(frozen=True)
class Samples:
    """The protocol's output: the dense item table, the three splits and the counts.

    The splits are DataFrames from :func:`build_samples`, :class:`SampleArrays` from
    :func:`build_sample_arrays`; :func:`~llara.data.dataset.write_prepared` takes either.
    """

    items: pd.DataFrame
    splits: dict[str, pd.DataFrame | SampleArrays]
    counts: dict[str, int]


def rng_for(seed: int, stream: str) -> np.random.Generator:
    """An independent random stream per purpose (``split``, ``train``, ``val``, ``test``, ``val-earlier``)."""
    return np.random.default_rng([seed, SPLIT_STREAMS[stream]])


def sorted_ids(raw_ids: np.ndarray) -> np.ndarray:
    """Sorted unique raw ids: numerically when all are integers, else as text."""
    unique = np.unique(raw_ids.astype(str))
    as_int = pd.to_numeric(pd.Series(unique), errors="coerce")
    if as_int.notna().all() and (as_int == np.floor(as_int)).all():
        return unique[np.argsort(as_int.to_numpy(), kind="stable")]
    return unique


def id_dtype(bound: int) -> np.dtype:
    """The compact integer type for values in ``0..bound``: int32 where it fits, else int64."""
    return np.dtype(np.int32 if bound <= np.iinfo(np.int32).max else np.int64)


def build_samples(data: Interactions, params: ProtocolParams) -> Samples:
    """Apply the protocol to validated interactions; the splits as DataFrames (as a prepared split loads)."""
    samples = build_sample_arrays(data, params)
    return replace(samples, splits={name: split.to_frame() for name, split in samples.splits.items()})


def build_sample_arrays(data: Interactions, params: ProtocolParams) -> Samples:
    """Apply the protocol to validated interactions; the splits as :class:`SampleArrays` (what
    ``llara data prepare`` writes: a few bytes per row)."""
    params.check()
    data.validate()
    log = DenseLog.of(data.table)
    user_seq, item_seq, users, num_items = log.user_seq, log.item_seq, log.users, len(log.items)
    catalog = data.catalog.set_index("item")["title"]
    items = pd.DataFrame(
        {
            "item_id": np.arange(num_items, dtype=np.int64),
            "raw_id": log.items,
            "title": catalog.loc[log.items].to_numpy(),
        }
    )
    seen = np.unique(user_seq.astype(np.int64) * num_items + item_seq)
    check_enough_items(np.bincount(user_seq, minlength=len(users)), num_items, params.num_candidates, users)
    positions = SequencePositions.of(user_seq)
    if params.split_by == "users":
        targets, split_users = _user_split_targets(positions, user_seq, len(users), params)
    else:
        targets, split_users = _leave_one_out_targets(positions, user_seq, params)

    def split(stream: str) -> SampleArrays:
        """The samples whose targets ``targets[stream]`` marks, candidates drawn from that stream."""
        rows = _rows(user_seq, item_seq, positions, targets[stream], params)
        return sample_arrays(rows, users, seen, num_items, params, rng_for(params.seed, stream))

    splits = {name: split(name) for name in SPLITS}
    if "val-earlier" in targets:
        splits["val"] = splits["val"].then(split("val-earlier"))
    counts = {
        "users": int(len(users)),
        "items": num_items,
        "interactions": int(len(data.table)),
        "interactions_used": int(len(item_seq)),
        **{f"{name}_users": split_users[name] for name in SPLITS},
        **{f"{name}_rows": len(rows) for name, rows in splits.items()},
    }
    return Samples(items=items, splits=splits, counts=counts)


@dataclass(frozen=True)
class DenseLog:
    """The interactions as dense codes, sorted by user then time (stable), each (user, item) pair's first
    occurrence only."""

    users: np.ndarray  # raw user id per user code (sorted_ids order)
    items: np.ndarray  # raw item id per item code (sorted_ids order)
    user_seq: np.ndarray  # user code per interaction
    item_seq: np.ndarray  # item code per interaction

    @classmethod
    def of(cls, table: pd.DataFrame) -> DenseLog:
        """The dense log of an interactions table (columns user, item, timestamp)."""
        items, item_codes = _dense_ids(table["item"])
        users, user_codes = _dense_ids(table["user"])
        order = np.lexsort((table["timestamp"].to_numpy(), user_codes))
        user_seq, item_seq = user_codes[order], item_codes[order]
        keep = _first_occurrences(user_seq, item_seq, len(items))
        return cls(users=users, items=items, user_seq=user_seq[keep], item_seq=item_seq[keep])


def _dense_ids(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The column's :func:`sorted_ids` and each value's position among them, found per distinct value
    (one hash pass over the column instead of a sort of its text)."""
    codes, uniques = pd.factorize(column, use_na_sentinel=False)
    distinct = np.asarray(uniques, dtype=object).astype(str)
    ordered = sorted_ids(distinct)
    return ordered, _codes(ordered, distinct)[codes]


@dataclass(frozen=True)
class SequencePositions:
    """Where each interaction of the user-then-time sorted log sits in its user's sequence."""

    user_start: np.ndarray  # index of the user's first interaction, per interaction
    position: np.ndarray  # 0-based position from the start of the user's sequence
    remaining: np.ndarray  # interactions of the same user after this one (0: the user's last)

    @classmethod
    def of(cls, user_seq: np.ndarray) -> SequencePositions:
        """The positions of a log sorted by user (then time)."""
        dtype = id_dtype(len(user_seq))
        starts = np.r_[0, np.flatnonzero(np.diff(user_seq)) + 1] if len(user_seq) else np.zeros(0, dtype=np.int64)
        ends = np.r_[starts[1:], len(user_seq)]
        user_start = np.repeat(starts.astype(dtype), ends - starts)
        user_end = np.repeat(ends.astype(dtype), ends - starts)
        index = np.arange(len(user_seq), dtype=dtype)
        return cls(user_start=user_start, position=index - user_start, remaining=user_end - 1 - index)


def _user_split_targets(
    positions: SequencePositions, user_seq: np.ndarray, num_users: int, params: ProtocolParams
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """The paper's split: per split, a mask of the interactions that are targets, and its user count."""
    assignment = _assign_users(num_users, params)
    train, val, test = (assignment[user_seq] == index for index in range(len(SPLITS)))
    long_enough = positions.position >= params.min_history
    is_last = positions.remaining == 0
    targets = {"train": train & long_enough, "val": val & long_enough & is_last, "test": test & long_enough & is_last}
    if params.val_windows > 1:
        earlier = (positions.remaining >= 1) & (positions.remaining < params.val_windows)
        targets["val-earlier"] = val & long_enough & earlier
    return targets, {name: int((assignment == index).sum()) for index, name in enumerate(SPLITS)}


def _leave_one_out_targets(
    positions: SequencePositions, user_seq: np.ndarray, params: ProtocolParams
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Leave-one-out: the last interaction of every eligible user is a test target, the one before it a
    validation target, and the earlier ones (with ``min_history`` items before them) training targets.

    Eligible users have ``min_history + 2`` interactions or more (so they have both a validation and a
    test row); a training target precedes both, so neither ever appears in a training row.
    """
    length = positions.position + positions.remaining + 1
    eligible = length >= params.min_history + 2
    targets = {
        "train": eligible & (positions.remaining >= 2) & (positions.position >= params.min_history),
        "val": eligible & (positions.remaining == 1),
        "test": eligible & (positions.remaining == 0),
    }
    return targets, {name: int(np.unique(user_seq[mask]).size) for name, mask in targets.items()}


def _codes(sorted_values: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position of each value in ``sorted_values`` (which may be in numeric, not text, order)."""
    sorter = np.argsort(sorted_values)
    return sorter[np.searchsorted(sorted_values, values, sorter=sorter)].astype(id_dtype(len(sorted_values)))


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
    user_seq: np.ndarray,
    item_seq: np.ndarray,
    positions: SequencePositions,
    is_target: np.ndarray,
    params: ProtocolParams,
) -> RowBatch:
    """The rows whose targets ``is_target`` marks, each with the last <= ``history_len`` items before it."""
    targets = np.flatnonzero(is_target)
    first = np.maximum(positions.user_start[targets], targets - params.history_len)
    offsets = np.r_[0, np.cumsum(targets - first)]
    values = np.empty(offsets[-1], dtype=item_seq.dtype)
    for start, stop in _blocks(len(targets)):
        gather = np.repeat(first[start:stop] - offsets[start:stop], targets[start:stop] - first[start:stop])
        gather += np.arange(offsets[start], offsets[stop])
        values[offsets[start] : offsets[stop]] = item_seq[gather]
    return RowBatch(
        users=user_seq[targets],
        targets=item_seq[targets],
        offsets=offsets.astype(id_dtype(offsets[-1])),
        values=values,
    )


def _blocks(rows: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of consecutive blocks of at most :data:`CHUNK_ROWS` rows."""
    return [(start, min(start + CHUNK_ROWS, rows)) for start in range(0, rows, CHUNK_ROWS)]


def sample_arrays(
    rows: RowBatch,
    users: np.ndarray,
    seen: np.ndarray,
    num_items: int,
    params: ProtocolParams,
    rng: np.random.Generator,
) -> SampleArrays:
    """The split's samples: ``rows`` with shuffled candidates (target + negatives); ``users`` names the
    user codes.

    ``seen``: sorted ``user code * num_items + item`` keys of everything each user interacted with. The
    negatives of all rows are drawn first, then each row's candidates are shuffled, row after row.
    """
    candidates = np.empty((len(rows.targets), params.num_candidates), dtype=id_dtype(num_items))
    candidates[:, 0] = rows.targets
    _fill_negatives(candidates[:, 1:], rows.users, seen, num_items, rng)
    for start, stop in _blocks(len(candidates)):
        rng.permuted(candidates[start:stop], axis=1, out=candidates[start:stop])
    return SampleArrays(
        names=users,
        users=rows.users,
        offsets=rows.offsets,
        values=rows.values,
        candidates=candidates,
        targets=rows.targets,
    )


def draw_negatives(
    row_users: np.ndarray, seen: np.ndarray, num_items: int, k: int, rng: np.random.Generator
) -> np.ndarray:
    """``k`` distinct items per row, uniform over the items that row's user never interacted with
    (a rows x k array, int32 where the ids fit).

    ``seen`` holds the sorted keys ``user * num_items + item`` of all interactions. Rejection sampling,
    vectorised: draw a block per pending row, drop seen items and repeats (keeping the earliest), keep
    the first ``k``; rows still short draw again. The caller guarantees every user has >= k unseen items.
    """
    chosen = np.empty((len(row_users), k), dtype=id_dtype(num_items))
    _fill_negatives(chosen, row_users, seen, num_items, rng)
    return chosen


def _fill_negatives(
    chosen: np.ndarray, row_users: np.ndarray, seen: np.ndarray, num_items: int, rng: np.random.Generator
) -> None:
    """Fill ``chosen`` (rows x k) as :func:`draw_negatives` returns it: each round draws for every row
    still short, block by block in row order, so the random numbers come in the order one block of all
    pending rows would draw them."""
    chosen.fill(-1)
    pending = np.arange(len(row_users), dtype=id_dtype(len(row_users)))
    while pending.size:
        blocks = [pending[start:stop] for start, stop in _blocks(pending.size)]
        pending = np.concatenate([_draw_round(chosen, rows, row_users, seen, num_items, rng) for rows in blocks])


def _draw_round(
    chosen: np.ndarray,
    rows: np.ndarray,
    row_users: np.ndarray,
    seen: np.ndarray,
    num_items: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """One round of rejection sampling for ``rows``: ``2 k`` draws each, merged into ``chosen``; returns
    the rows that are still short."""
    k = chosen.shape[1]
    draws = rng.integers(0, num_items, size=(rows.size, 2 * k), dtype=np.int64)
    keys = row_users[rows, None].astype(np.int64) * num_items + draws
    hit = np.searchsorted(seen, keys).clip(max=max(len(seen) - 1, 0))
    draws[seen[hit] == keys] = -1
    merged = _unique_in_order(np.concatenate([chosen[rows], draws.astype(chosen.dtype)], axis=1))[:, :k]
    chosen[rows] = merged
    return rows[(merged < 0).any(axis=1)]


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
