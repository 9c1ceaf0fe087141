"""A variant trained with several seeds: per-row metrics averaged over its seeds, and their spread.

Every seed of a variant is scored on the same frozen rows, so each row has one value per seed. The
variant's figure is the mean over seeds; its 95% interval comes from the per-row means over seeds (a
normal interval: a row's mean hit is no longer 0 or 1), so it narrows with more rows and with more seeds;
the spread over seeds is their sample standard deviation. Paired comparisons use the same per-row means
(:mod:`llara.pipeline.comparisons`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from llara.errors import LlaraError
from llara.evaluation.evaluate import prediction_column, protocol_metrics
from llara.evaluation.outputs import PREDICTIONS_FILE
from llara.metrics import summarize


def per_row_metrics(run_dir: Path, metrics_path: str, protocol: str) -> pd.DataFrame | None:
    """One evaluation's per-row metrics under ``protocol`` (indexed by row), from the predictions beside
    its ``metrics.json``; metrics defined on a subset of rows (``hr@1_valid``) are left out. None when the
    evaluation has no predictions of that protocol."""
    path = run_dir / Path(metrics_path).parent / PREDICTIONS_FILE
    if not path.is_file():
        return None
    frame = pd.read_parquet(path)
    if prediction_column(protocol) not in frame.columns:
        return None
    every_row = {name: v for name, v in protocol_metrics(frame, protocol).items() if len(v) == len(frame)}
    return pd.DataFrame(every_row, index=pd.Index(frame["row"], name="row"))


def mean_over_seeds(run_dir: Path, metrics_paths: Sequence[str], protocol: str) -> pd.DataFrame | None:
    """Per-row metrics averaged over the seeds' evaluations (one ``metrics.json`` path per seed); None when
    one of them lacks the protocol. Seeds scored on different rows are an error."""
    frames = [per_row_metrics(run_dir, path, protocol) for path in metrics_paths]
    if not frames or any(frame is None for frame in frames):
        return None
    first = frames[0]
    for path, frame in zip(metrics_paths[1:], frames[1:]):
        if not frame.index.equals(first.index):
            raise LlaraError(
                f"{run_dir / path}: scored other rows than {run_dir / metrics_paths[0]}; seeds of one variant must "
                "be evaluated on the same rows (re-run `llara run`)"
            )
    columns = [name for name in first.columns if all(name in frame.columns for frame in frames)]
    return sum(frame[columns] for frame in frames) / len(frames)


def seed_mean_metrics(run_dir: Path, metrics_paths: Sequence[str], protocol: str) -> dict[str, dict[str, float]]:
    """Mean and 95% interval of each per-row metric averaged over the seeds (``llara.metrics.summarize``)."""
    means = mean_over_seeds(run_dir, metrics_paths, protocol)
    if means is None:
        raise LlaraError(f"{run_dir}: the seeds {', '.join(metrics_paths)} lack predictions of protocol {protocol!r}")
    return summarize({name: means[name].to_numpy() for name in means.columns})


def seed_spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1) of one metric over seeds; NaN std for a single seed."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise LlaraError("no seeds to summarise")
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else math.nan
