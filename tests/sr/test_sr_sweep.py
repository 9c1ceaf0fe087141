"""benchmarks/sr_sweep.py trains each setting over seeds and pairs their validation hits."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from llara.errors import LlaraError
from llara.sr.evaluate import rank_split

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "sr_sweep.py"


def _script() -> dict:
    return runpy.run_path(str(SCRIPT))


def test_each_variant_is_its_own_setting_averaged_over_seeds(tiny_data, tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "sweep"
    args = ["base", "wide:dim=16,dropout=0.3", "--data", str(tiny_data.root), "--seeds", "2",
            "--set", "max_epochs=1", "--set", "dim=8", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *args])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    report = json.loads((out / "sweep.json").read_text())
    assert json.loads((out / "wide" / "seed-1" / "config.json").read_text())["dim"] == 16
    assert json.loads((out / "base" / "seed-0" / "config.json").read_text())["dim"] == 8
    hits = [rank_split(out / "wide" / f"seed-{s}", tiny_data, "val")[1] == 0 for s in (0, 1)]
    wide, base = report["variants"]["wide"], report["variants"]["base"]
    assert wide["hr@1"] == pytest.approx(np.mean(hits))
    assert wide["paired"]["delta"] == pytest.approx(wide["hr@1"] - base["hr@1"])
    assert base["paired"]["delta"] == 0 and base["hr@1_unseen_rows"] is None
    assert "| wide |" in capsys.readouterr().out


def test_a_variant_without_a_name_or_with_an_unknown_field_is_refused() -> None:
    variant_config = _script()["variant_config"]
    with pytest.raises(LlaraError, match="has no name"):
        variant_config(":dim=8", [])
    with pytest.raises(ValueError, match="dimension"):
        variant_config("bad:dimension=8", [])


def test_rows_early_stopping_saw_are_told_apart_on_a_wider_validation_folder(tiny_data, tmp_path) -> None:
    from llara.config import DataConfig
    from llara.data.prepare import prepare_dataset

    wider = prepare_dataset(DataConfig(source="synthetic", seed=0, val_windows=3), tmp_path / "val3")
    report = _script()["sweep"](["base"], ["max_epochs=1", "dim=8"], 1, tiny_data.root, wider.root, tmp_path / "s")
    seen = len(tiny_data.split("val"))
    assert report["rows_seen_by_early_stopping"] == seen and report["variants"]["base"]["rows"] > seen
    hits = rank_split(tmp_path / "s" / "base" / "seed-0", wider, "val", allow_data_mismatch=True)[1] == 0
    assert report["variants"]["base"]["hr@1_unseen_rows"] == pytest.approx(hits[seen:].mean())
