"""Summaries of a prepared folder, as plain data (the CLI renders them as tables).

Each split is read from its file in record batches (:meth:`PreparedData.batches`), so summarising a
folder takes memory for one batch and the distinct users and targets, not for the whole split.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llara.data.dataset import SPLITS, PreparedData


def split_stats(data: PreparedData, name: str) -> dict[str, Any]:
    """Rows, users, history lengths and candidate-set size of one split."""
    rows = history_sum = 0
    history_min, history_max = np.iinfo(np.int64).max, 0
    users, targets, sizes = [], [], set()
    for batch in data.batches(name):
        lengths = pc.list_value_length(batch.column("history")).to_numpy()
        if len(lengths):
            history_min, history_max = min(history_min, int(lengths.min())), max(history_max, int(lengths.max()))
        rows, history_sum = rows + batch.num_rows, history_sum + int(lengths.sum())
        sizes |= set(pc.unique(pc.list_value_length(batch.column("candidates"))).to_pylist())
        users.append(pc.unique(batch.column("user")))
        targets.append(pc.unique(batch.column("target")))
    return {
        "rows": rows,
        "users": _distinct(users),
        "mean_history": history_sum / rows if rows else 0.0,
        "min_history": history_min if rows else 0,
        "max_history": history_max,
        "candidates": ",".join(str(s) for s in sorted(sizes)) or "-",
        "distinct_targets": _distinct(targets),
    }


def _distinct(parts: list[pa.Array]) -> int:
    """How many distinct values the arrays hold together."""
    return pc.count_distinct(pa.chunked_array(parts)).as_py() if parts else 0


def dataset_stats(data: PreparedData) -> dict[str, Any]:
    """Source facts from the manifest plus per-split statistics."""
    manifest = data.manifest
    return {
        "source": manifest.get("source"),
        "domain": data.domain,
        "items": data.num_items,
        "seed": manifest.get("seed"),
        "protocol": {"split_by": "users", **manifest.get("protocol", {})},  # folders from before split_by: users
        "counts": manifest.get("counts", {}),
        "content_hash": str(manifest.get("content_hash", ""))[:16],
        "splits": {name: split_stats(data, name) for name in SPLITS},
    }
