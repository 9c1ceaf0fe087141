"""benchmarks/compare_predictions.py pairs prediction files row by row, within a row range."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pandas as pd
import pytest

from llara.errors import LlaraError
from llara.metrics import paired_comparison

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "compare_predictions.py"


def _predictions(path: Path, ranks: list[int]) -> Path:
    pd.DataFrame({"row": list(range(len(ranks)))[::-1], "rank": ranks[::-1]}).to_parquet(path)  # stored out of order
    return path


def _run(monkeypatch, args: list[str]) -> None:
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *args])
    runpy.run_path(str(SCRIPT), run_name="__main__")


def test_the_comparison_pairs_rows_within_the_range(tmp_path, monkeypatch, capsys) -> None:
    ref = _predictions(tmp_path / "ref.parquet", [0, 3, 0, 0, 1, 0, 2, 5])
    new = _predictions(tmp_path / "new.parquet", [4, 0, 0, 0, 0, 0, 0, 0])
    out = tmp_path / "cmp.json"
    _run(monkeypatch, [f"ref={ref}", f"new={new}", "--rows", "2:", "--out", str(out)])
    results = json.loads(out.read_text())
    assert results["ref"]["rows"] == results["new"]["rows"] == 6  # rows 2..7
    assert results["ref"]["hr@1"] == pytest.approx(3 / 6) and results["new"]["hr@1"] == pytest.approx(1.0)
    expected = paired_comparison([1.0] * 6, [1, 1, 0, 1, 0, 0])
    assert results["new"]["paired"] == pytest.approx(expected)
    assert results["new"]["paired"]["wins"] == 3 and results["new"]["paired"]["losses"] == 0
    assert "| new | 6 | 1.000" in capsys.readouterr().out
    _run(monkeypatch, [f"ref={ref}", f"new={new}", "--rows", ":2", "--out", str(out)])  # the end is excluded
    results = json.loads(out.read_text())
    assert results["ref"]["rows"] == 2 and results["ref"]["hr@1"] == results["new"]["hr@1"] == 0.5


def test_files_over_different_rows_are_refused(tmp_path, monkeypatch) -> None:
    ref = _predictions(tmp_path / "ref.parquet", [0, 1, 2])
    short = _predictions(tmp_path / "short.parquet", [0, 1])
    with pytest.raises(LlaraError, match="does not hold the same rows"):
        _run(monkeypatch, [f"ref={ref}", f"short={short}"])


def test_a_folder_names_its_predictions_file_and_a_missing_one_is_named(tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "a").mkdir()
    _predictions(tmp_path / "a" / "predictions.parquet", [0, 1, 0])
    _run(monkeypatch, [f"a={tmp_path / 'a'}", f"b={tmp_path / 'a' / 'predictions.parquet'}"])
    assert "| b | 3 | 0.667" in capsys.readouterr().out
    with pytest.raises(LlaraError, match=r"empty[/\\]predictions.parquet does not exist"):
        (tmp_path / "empty").mkdir()
        _run(monkeypatch, [f"a={tmp_path / 'a'}", f"b={tmp_path / 'empty'}"])
