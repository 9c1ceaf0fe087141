"""Choosing a neural backbone's settings on validation rows: one model per combination, the best kept.

``sr.tune`` maps SRConfig fields to the values to try (e.g. ``{dropout: [0.1, 0.3, 0.5], dim: [64, 128]}``).
Every combination, in the order the lists give, is trained into ``OUT.tune/<field=value,...>/`` (each one
resumable, and reused when it is finished) with early stopping on the validation rows; the one with the best
validation HR@1 (ties: the earlier) is copied to ``OUT``. With ``sr.tune_budget_s`` no further combination
starts once that many seconds have passed; the trained ones compete and the rest are recorded as skipped.
The chosen checkpoint's config.json holds, under ``tune``, every combination's figure, the choice and the
skipped combinations. Test rows are never read. ``sr.l2_grid`` is the one-field case kept for its own
folder and record names (``OUT.l2-grid/l2=<value>/``, ``l2_grid``).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llara.config import SRConfig
from llara.sr.checkpoint import load_sr, read_sr_config, save_sr


def combinations(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in the order the lists give (the last field varies fastest)."""
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(grid[name] for name in names))]


def label(combination: dict[str, Any]) -> str:
    """A combination as a folder name: ``dim=128,dropout=0.3``."""
    return ",".join(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"
                    for name, value in combination.items())


def train_grid(
    config: SRConfig,
    combos: list[dict[str, Any]],
    grid_dir: Path,
    train: Callable[[SRConfig, Path], Path],
    budget_s: float | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int, Path]:
    """Train ``config`` under each combination (``train(config, folder)``) until the budget is spent.

    Returns every trained combination with its ``val_hr@1``, the skipped combinations, and the index and
    folder of the best one (ties: the earlier).
    """
    started = time.perf_counter()
    trained: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    folders: list[Path] = []
    for combination in combos:
        if budget_s is not None and trained and time.perf_counter() - started > budget_s:
            skipped.append(combination)
            continue
        single = SRConfig.model_validate(
            {**config.model_dump(), **combination, "tune": {}, "tune_budget_s": None, "l2_grid": []}
        )
        folders.append(train(single, grid_dir / label(combination)))
        trained.append({**combination, "val_hr@1": float(read_sr_config(folders[-1])["training"]["val_hr@1"])})
    best = max(range(len(trained)), key=lambda index: (trained[index]["val_hr@1"], -index))
    return trained, skipped, best, folders[best]


def tune_sr(
    config: SRConfig, data_dir: str | Path, out_dir: str | Path, train: Callable[..., Path], force: bool = False,
    **train_options: Any,
) -> Path:
    """Train every combination of ``config.tune`` (see the module) with ``train`` (``llara.sr.train.train_sr``);
    ``out_dir`` gets the best by validation HR@1."""
    out_dir = Path(out_dir)
    trained, skipped, best, chosen_dir = train_grid(
        config, combinations(config.tune), out_dir.with_name(out_dir.name + ".tune"),
        lambda single, folder: train(single, data_dir, folder, **train_options), config.tune_budget_s,
    )
    chosen = read_sr_config(chosen_dir)
    record = {
        "grid": trained,
        "chosen": {name: value for name, value in trained[best].items() if name != "val_hr@1"},
        "skipped": skipped,
        "budget_s": config.tune_budget_s,
    }
    return save_sr(load_sr(chosen_dir), out_dir, force=force, data_content_hash=chosen.get("data_content_hash"),
                   training=chosen["training"], tune=record)
