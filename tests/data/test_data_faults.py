"""Faults around prepared folders: foreign --out folders, swapped or damaged files, full disks, NaN ids."""

from __future__ import annotations

import errno
import json
import shutil
import time
from pathlib import Path

import pytest
from helpers import run_cli

from llara.config import DataConfig
from llara.data.dataset import PreparedData
from llara.data.prepare import prepare_dataset
from llara.data.readers import read_source
from llara.errors import LlaraError


def synthetic_args(out: Path, *extra: str) -> list[str]:
    return ["data", "prepare", "synthetic", "--out", str(out), "-O", "num_users=30", *extra]


def test_prepare_refuses_a_folder_that_is_not_ours_and_replaces_its_own(tmp_path, capsys):
    out = tmp_path / "mine"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("keep me")
    (out / "sub" / "keep.txt").write_text("me too")
    assert run_cli(synthetic_args(out)) == 1
    err = capsys.readouterr().err
    assert "is not a previous prepared data folder" in err and "--force" in err
    assert (out / "notes.txt").read_text() == "keep me" and (out / "sub" / "keep.txt").is_file()
    assert run_cli(synthetic_args(tmp_path / "fresh")) == 0
    assert run_cli(synthetic_args(tmp_path / "fresh", "--seed", "3")) == 0  # a prepared folder is ours to replace
    assert PreparedData.load(tmp_path / "fresh").manifest["seed"] == 3
    assert run_cli(synthetic_args(out, "--force")) == 0
    assert not (out / "notes.txt").exists() and PreparedData.load(out).num_items == 40


def test_a_file_swapped_in_from_another_folder_is_refused(tiny_data, tmp_path):
    other = prepare_dataset(DataConfig(source="synthetic", seed=1), tmp_path / "seed1")
    copy = Path(shutil.copytree(tiny_data.root, tmp_path / "copy"))
    shutil.copy(other.root / "test.parquet", copy / "test.parquet")
    with pytest.raises(LlaraError, match=r"test.parquet is not the file this folder was prepared with"):
        PreparedData.load(copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["test.parquet"] = json.loads((other.root / "manifest.json").read_text())["files"]["test.parquet"]
    (copy / "manifest.json").write_text(json.dumps(manifest))  # hashes edited to match, content hash not
    with pytest.raises(LlaraError, match="content_hash does not match"):
        PreparedData.load(copy)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda root: (root / "manifest.json").write_text(""), "manifest.json is damaged"),
        (lambda root: (root / "manifest.json").write_text("{}"), "does not list the sha256"),
        (lambda root: (root / "train.parquet").write_bytes(b"PAR1 truncated"), "sha256 differs"),
        (lambda root: (root / "items.parquet").unlink(), "items.parquet is missing"),
    ],
)
def test_a_damaged_folder_is_one_line(tiny_data, tmp_path, capsys, damage, message):
    copy = Path(shutil.copytree(tiny_data.root, tmp_path / "copy"))
    damage(copy)
    assert run_cli(["data", "stats", str(copy)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_hash_verification_keeps_loading_fast(tiny_data):
    started = time.perf_counter()
    for _ in range(5):
        PreparedData.load(tiny_data.root)
    assert (time.perf_counter() - started) / 5 < 0.5  # figures for ML-100K: docs/reliability.md


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EFBIG])
def test_a_full_disk_is_one_line_and_leaves_no_temporaries(tmp_path, capsys, monkeypatch, code):
    import pyarrow.parquet as pq

    def full(*args, **kwargs):
        raise OSError(code, "No space left on device" if code == errno.ENOSPC else "File too large")

    monkeypatch.setattr(pq, "write_table", full)
    assert run_cli(synthetic_args(tmp_path / "out")) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "free some space or write elsewhere" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("missing", ["NaN", "nan", "None", "null", " <NA> "])
def test_a_missing_value_is_no_user_id(tmp_path, missing):
    log = tmp_path / "log.csv"
    rows = [f"u{u},i{(u + k) % 9},{k}" for u in range(6) for k in range(5)]
    rows[7] = f"{missing},i3,2"
    log.write_text("user,item,timestamp\n" + "\n".join(rows) + "\n")
    (tmp_path / "titles.csv").write_text("item,title\n" + "".join(f"i{i},Item {i}\n" for i in range(9)))
    with pytest.raises(LlaraError, match=rf"log.csv, line 9, field 'user': the id '{missing.strip()}' marks a missing"):
        read_source("tabular", log, {"titles": str(tmp_path / "titles.csv")})
