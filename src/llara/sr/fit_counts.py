"""Fitting a count-based recommender (``llara.sr.classic``): count the training rows, choose on validation.

Each of the model's hyperparameters (``SRConfig.decay``, ``alpha``, ``shrink``) is a list of values; every
combination is scored on all validation rows of the prepared folder (the extra windows too, when it was
prepared with ``val_windows``) and the best by validation HR@1 is kept (then MRR; then the earlier
combination in the lists' order). The counts are made once; each combination only rescales them, so the
whole search takes seconds. The checkpoint's config.json lists every combination's figures under
``training.grid``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from llara.config import SRConfig
from llara.data.dataset import PreparedData
from llara.data.holdout import held_out_rows
from llara.metrics import ranking_metrics, target_ranks
from llara.sr.checkpoint import save_sr
from llara.sr.classic import CountRecommender, ItemKNN
from llara.sr.evaluate import candidate_scores
from llara.sr.registry import CLASSIC
from llara.sr.samples import SplitTensors, split_tensors
from llara.sr.tune import combinations


def is_count_model(name: str) -> bool:
    """Whether ``name`` is a count-based recommender (fitted here rather than by gradient descent)."""
    return name in CLASSIC


def fit_count_model(config: SRConfig, data_dir: str | Path, out_dir: str | Path, force: bool = False) -> Path:
    """Fit ``config.model`` (pop, markov or itemknn) on ``data_dir`` into the checkpoint folder ``out_dir``."""
    started = time.perf_counter()
    data = PreparedData.load(data_dir)
    kept = ~held_out_rows(data.split("train")["user"], config.holdout_users, config.seed)
    train = split_tensors(data, "train", config.max_len, with_candidates=False, keep=kept)
    val = split_tensors(data, "val", config.max_len)
    counted = CLASSIC[config.model](data.num_items, 0, config.max_len).fit(train.history, train.lengths, train.target)
    grid = [_scored(model, val) for model in _grid_models(counted, config)]
    best = max(range(len(grid)), key=lambda index: (grid[index][0]["val_hr@1"], grid[index][0]["val_mrr"], -index))
    figures, chosen = grid[best]
    training = {
        "config": config.model_dump(mode="json"),
        "val_hr@1": figures["val_hr@1"],
        "chosen": chosen.hyperparameters(),
        "grid": [entry for entry, _ in grid],
        "train_rows": len(train),
        "val_rows": len(val),
        "seconds": time.perf_counter() - started,
    }
    return save_sr(chosen, out_dir, force=force, data_content_hash=data.manifest.get("content_hash"), training=training)


def _grid_models(counted: CountRecommender, config: SRConfig) -> list[CountRecommender]:
    """The fitted model under every combination of its hyperparameters' values in ``config``."""
    if not isinstance(counted, ItemKNN):
        return [counted]
    grid = {name: getattr(config, name) for name in type(counted).config_fields}
    return [counted.with_hyperparameters(**{**counted.hyperparameters(), **combo}) for combo in combinations(grid)]


def _scored(model: CountRecommender, val: SplitTensors) -> tuple[dict[str, Any], CountRecommender]:
    """The model's validation HR@1 and MRR next to its hyperparameters."""
    metrics = ranking_metrics(target_ranks(candidate_scores(model, val), val.target_pos.numpy()), ks=(1,))
    figures = {name: float(np.mean(metrics[name])) for name in ("hr@1", "mrr")}
    return {**model.hyperparameters(), "val_hr@1": figures["hr@1"], "val_mrr": figures["mrr"]}, model
