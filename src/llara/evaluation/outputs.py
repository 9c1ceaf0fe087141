"""An evaluation's output files: ``predictions.parquet`` and ``metrics.json``, the checks that an output
folder holds nothing llara did not write, and the result record ``metrics.json`` holds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from llara.data.dataset import PreparedData
from llara.errors import LlaraError
from llara.paths import atomic_file, check_creatable

PREDICTIONS_FILE = "predictions.parquet"
METRICS_FILE = "metrics.json"


def check_output_folder(out_dir: str | Path, force: bool = False, override: str | None = "--force") -> None:
    """Refuse an ``out_dir`` that :func:`write_outputs` must not write into: one that is a file (or lies
    below one), or that holds a ``predictions.parquet`` or ``metrics.json`` llara did not write
    (:func:`is_predictions_file`, :func:`is_metrics_file`) unless ``force``. Other files there are never
    touched. ``override`` names the option that sets ``force`` (None: the caller has none).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise LlaraError(
            f"{out_dir} exists and is not a folder; --out names a folder for {PREDICTIONS_FILE} and {METRICS_FILE}"
        )
    check_creatable(out_dir)
    for name, is_ours in ((PREDICTIONS_FILE, is_predictions_file), (METRICS_FILE, is_metrics_file)):
        path = out_dir / name
        if path.is_dir():
            raise LlaraError(f"{path} is a folder, where the evaluation writes its {name}; choose another --out folder")
        if force or not (path.exists() or path.is_symlink()) or (path.is_file() and is_ours(path)):
            continue
        way_out = f", or pass {override} to replace it" if override else ""
        raise LlaraError(
            f"{path} exists and was not written by a llara evaluation; choose another --out folder{way_out}"
        )


def is_metrics_file(path: str | Path) -> bool:
    """Whether ``path`` is a ``metrics.json`` an evaluation wrote (:func:`evaluation_result`'s keys)."""
    path = Path(path)
    try:
        if path.stat().st_size > 16 * 2**20:  # ours are a few kB; do not read a large foreign file
            return False
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(record, dict) and {"model", "split", "rows", "metrics"} <= record.keys() and isinstance(
        record["metrics"], dict
    )


def is_predictions_file(path: str | Path) -> bool:
    """Whether ``path`` is a ``predictions.parquet`` an evaluation wrote (it has
    :func:`llara.evaluation.predictions.base_record`'s columns)."""
    import pyarrow.parquet as pq

    try:
        names = set(pq.read_schema(path).names)
    except Exception:  # not Parquet, unreadable: not ours
        return False
    return {"row", "user", "target", "history", "candidates"} <= names


def write_outputs(out_dir: str | Path, frame: pd.DataFrame, result: Mapping[str, Any]) -> None:
    """``predictions.parquet`` and ``metrics.json`` in ``out_dir``, each written atomically."""
    out_dir = Path(out_dir)
    with atomic_file(out_dir / PREDICTIONS_FILE, "wb") as handle:
        frame.to_parquet(handle, index=False)
    write_metrics(out_dir / METRICS_FILE, result)


def write_metrics(path: str | Path, result: Mapping[str, Any]) -> None:
    """An evaluation result (what :func:`llara.evaluation.evaluate.evaluate_model` returns) as indented JSON,
    written atomically."""
    with atomic_file(path) as handle:
        json.dump(result, handle, indent=2)
        handle.write("\n")


def evaluation_result(
    model: Mapping[str, Any], data: PreparedData, split: str, frame: pd.DataFrame, metrics: Mapping[str, Any]
) -> dict[str, Any]:
    """What ``metrics.json`` holds: the model, the data and its hash, the split, the row count, the metrics."""
    return {
        "model": dict(model),
        "data": str(data.root),
        "data_content_hash": data.manifest.get("content_hash"),
        "split": split,
        "rows": len(frame),
        "metrics": dict(metrics),
    }
