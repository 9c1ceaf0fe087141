"""A split of a prepared data folder as tensors: padded histories, candidates, targets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from llara.data.dataset import PreparedData
from llara.errors import LlaraError
from llara.sr.base import pad_histories


@dataclass(frozen=True)
class SplitTensors:
    """One split, ready for an SR model: ``history`` is right-padded ``[N, max_len]`` (canonical windows)."""

    history: torch.Tensor
    lengths: torch.Tensor
    target: torch.Tensor
    candidates: torch.Tensor | None
    target_pos: torch.Tensor | None

    def __len__(self) -> int:
        return len(self.target)


def split_tensors(
    data: PreparedData, split: str, max_len: int, with_candidates: bool = True, keep: np.ndarray | None = None
) -> SplitTensors:
    """Tensors of ``split`` (only the rows where the boolean mask ``keep`` is True, when given); clear errors
    for empty splits, empty histories and out-of-range ids."""
    frame = data.split(split)
    where = f"{data.root / (split + '.parquet')}"
    if keep is not None:
        frame = frame[keep].reset_index(drop=True)
        where += " (rows kept for the backbone)"
    if len(frame) == 0:
        raise LlaraError(f"{where} has no rows")
    histories = [np.asarray(h, dtype=np.int64) for h in frame["history"]]
    targets = frame["target"].to_numpy(dtype=np.int64)
    empty = [i for i, h in enumerate(histories) if len(h) == 0]
    if empty:
        raise LlaraError(f"{where}: row {empty[0]} has an empty history; every sample needs at least one item")
    _check_ids(where, "target", targets, data.num_items)
    _check_ids(where, "history", np.concatenate(histories), data.num_items)
    history = pad_histories(histories, max_len, data.num_items)
    lengths = torch.as_tensor([min(len(h), max_len) for h in histories], dtype=torch.long)
    target = torch.tensor(targets)
    if not with_candidates:
        return SplitTensors(history, lengths, target, None, None)
    candidates = _candidates(where, frame["candidates"], data.num_items)
    hits = candidates == target[:, None]
    if not bool((hits.sum(dim=1) == 1).all()):
        row = int((hits.sum(dim=1) != 1).nonzero()[0])
        raise LlaraError(f"{where}: row {row} does not hold its target exactly once among its candidates")
    return SplitTensors(history, lengths, target, candidates, hits.long().argmax(dim=1))


def _candidates(where: str, column, num_items: int) -> torch.Tensor:
    sizes = {len(c) for c in column}
    if len(sizes) != 1:
        raise LlaraError(f"{where}: candidate lists differ in length ({sorted(sizes)}); prepare the data again")
    array = np.stack([np.asarray(c, dtype=np.int64) for c in column])
    _check_ids(where, "candidates", array, num_items)
    return torch.as_tensor(array)


def _check_ids(where: str, field: str, ids: np.ndarray, num_items: int) -> None:
    bad = (ids < 0) | (ids >= num_items)
    if bad.any():
        raise LlaraError(f"{where}: {field} holds id {int(ids[bad][0])} outside 0..{num_items - 1}")
