"""Summaries of a prepared folder, as plain data (the CLI renders them as tables)."""

from __future__ import annotations

from typing import Any

import numpy as np

from llara.data.dataset import SPLITS, PreparedData


def split_stats(data: PreparedData, name: str) -> dict[str, Any]:
    """Rows, users, history lengths and candidate-set size of one split."""
    frame = data.split(name)
    lengths = np.fromiter((len(h) for h in frame["history"]), dtype=np.int64, count=len(frame))
    sizes = {len(c) for c in frame["candidates"]}
    return {
        "rows": len(frame),
        "users": int(frame["user"].nunique()),
        "mean_history": float(lengths.mean()) if len(lengths) else 0.0,
        "min_history": int(lengths.min()) if len(lengths) else 0,
        "max_history": int(lengths.max()) if len(lengths) else 0,
        "candidates": ",".join(str(s) for s in sorted(sizes)) or "-",
        "distinct_targets": int(frame["target"].nunique()),
    }


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
