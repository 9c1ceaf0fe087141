"""sr.tune: one model per combination, the best on validation kept, a time budget (llara.sr.tune)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llara.config import DataConfig, SRConfig
from llara.sr.evaluate import evaluate_sr
from llara.sr.train import train_sr
from llara.sr.tune import combinations, label

FAST = {"model": "gru4rec", "batch_size": 32, "max_epochs": 4, "patience": 4}


@pytest.fixture(scope="module")
def successor_data(tmp_path_factory) -> Path:
    from llara.data.prepare import prepare_dataset

    config = DataConfig(source="synthetic", seed=0, options={"num_users": 200, "num_items": 30, "seq_len": 10})
    return prepare_dataset(config, tmp_path_factory.mktemp("successor") / "data").root


def test_combinations_follow_the_lists_and_label_their_folders():
    combos = combinations({"dim": [32, 64], "dropout": [0.1, 0.3]})
    assert combos == [{"dim": 32, "dropout": 0.1}, {"dim": 32, "dropout": 0.3},
                      {"dim": 64, "dropout": 0.1}, {"dim": 64, "dropout": 0.3}]
    assert label(combos[1]) == "dim=32,dropout=0.3"


def test_tune_keeps_the_best_on_validation_and_records_every_combination(successor_data, tmp_path):
    config = SRConfig(**FAST, tune={"lr": [1e-6, 1e-2]})
    checkpoint = train_sr(config, successor_data, tmp_path / "tuned", progress=False)
    record = json.loads((checkpoint / "config.json").read_text())
    grid = record["tune"]["grid"]
    assert [entry["lr"] for entry in grid] == [1e-6, 1e-2]
    assert grid[1]["val_hr@1"] > grid[0]["val_hr@1"]
    assert record["tune"]["chosen"] == {"lr": 1e-2} and record["tune"]["skipped"] == []
    assert record["training"]["config"]["lr"] == 1e-2 and record["training"]["config"]["tune"] == {}
    assert record["training"]["val_hr@1"] == grid[1]["val_hr@1"]
    assert (tmp_path / "tuned.tune" / "lr=1e-06" / "model.safetensors").is_file()
    assert evaluate_sr(checkpoint, successor_data, split="val")["hr@1"]["mean"] == pytest.approx(grid[1]["val_hr@1"])


def test_the_budget_stops_new_combinations_after_the_first(successor_data, tmp_path):
    config = SRConfig(**FAST, tune={"dropout": [0.0, 0.2, 0.4]}, tune_budget_s=1e-9)
    checkpoint = train_sr(config, successor_data, tmp_path / "budget", progress=False)
    record = json.loads((checkpoint / "config.json").read_text())["tune"]
    assert [entry["dropout"] for entry in record["grid"]] == [0.0]
    assert record["skipped"] == [{"dropout": 0.2}, {"dropout": 0.4}]


def test_a_finished_combination_is_reused(successor_data, tmp_path):
    config = SRConfig(**FAST, tune={"lr": [1e-2]})
    train_sr(config, successor_data, tmp_path / "once", progress=False)
    weights = tmp_path / "once.tune" / "lr=0.01" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    train_sr(config, successor_data, tmp_path / "once", progress=False, resume=True)
    assert weights.stat().st_mtime_ns == stamp


@pytest.mark.parametrize("grid, message", [
    ({"colour": [1]}, "cannot be tuned"), ({"seed": [1, 2]}, "cannot be tuned"),
    ({"dropout": [1.5]}, "less than 1"), ({"dim": []}, "lists no values"),
])
def test_bad_grids_are_refused(grid, message):
    with pytest.raises(ValueError, match=message):
        SRConfig(tune=grid)
