"""The ``amazon-sasrec`` reader (SASRec authors' ``user item`` logs), on small files the tests write."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli

from llara.config import DataConfig
from llara.data.amazon import read_amazon_sasrec
from llara.data.prepare import prepare_dataset
from llara.data.readers import READERS, read_source
from llara.errors import LlaraError

USERS = 20
PER_USER = 8
NUM_ITEMS = 50
FIELDS = "expected 2 whitespace-separated fields (user item), "


def _sequence(user: int) -> list[int]:
    """User ``user``'s items in time order: distinct, and not in numeric order."""
    return [(user * 7 + 37 * k) % NUM_ITEMS + 1 for k in range(PER_USER)]


def _log(root: Path, name: str = "Video.txt") -> Path:
    """A log whose lines interleave the users round-robin (line order is time order within each user)."""
    root.mkdir(parents=True, exist_ok=True)
    lines = [f"{user} {_sequence(user)[k]}" for k in range(PER_USER) for user in range(1, USERS + 1)]
    path = root / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_registered():
    assert READERS["amazon-sasrec"][:2] == ("amazon", "read_amazon_sasrec")


def test_counts_timestamps_and_titles(tmp_path):
    data = read_source("amazon-sasrec", _log(tmp_path / "raw"))
    table = data.table
    assert data.source == "amazon-sasrec" and data.domain == "generic"
    assert len(table) == USERS * PER_USER and table["user"].nunique() == USERS
    assert table["timestamp"].dtype == np.int64
    assert table["timestamp"].tolist() == list(range(USERS * PER_USER))  # the 0-based line index
    assert table[["user", "item"]].iloc[:3].values.tolist() == [["1", "8"], ["2", "15"], ["3", "22"]]
    assert table["user"].iloc[USERS] == "1" and table["item"].iloc[USERS] == "45"  # user 1's second item
    for user in (1, 9, 20):
        rows = table[table["user"] == str(user)]
        assert rows["item"].tolist() == [str(i) for i in _sequence(user)]
    occurring = sorted({i for user in range(1, USERS + 1) for i in _sequence(user)})
    assert data.catalog["item"].tolist() == [str(i) for i in occurring]  # only items that occur
    assert data.catalog["title"].tolist() == [f"Item {i}" for i in occurring]


def test_options_blank_lines_and_line_endings(tmp_path):
    path = tmp_path / "log.txt"
    path.write_bytes(b"1 5\n\n  2\t6 \r\n   \n1 007\n+3 5")
    data = read_amazon_sasrec(path, domain="games", title_prefix="Game").validate()
    assert data.domain == "games"
    assert data.table.values.tolist() == [["1", "5", 0], ["2", "6", 2], ["1", "7", 4], ["3", "5", 5]]
    assert dict(zip(data.catalog["item"], data.catalog["title"])) == {"5": "Game 5", "6": "Game 6", "7": "Game 7"}
    with pytest.raises(LlaraError, match="option domain 'films' is not one of"):
        read_amazon_sasrec(path, domain="films")


def test_folder_or_file(tmp_path):
    path = _log(tmp_path / "raw")
    (tmp_path / "raw" / "README.md").write_text("not a log\n")
    from_file, from_folder = read_source("amazon-sasrec", path), read_source("amazon-sasrec", tmp_path / "raw")
    assert from_folder.table.equals(from_file.table) and from_folder.catalog.equals(from_file.catalog)
    _log(tmp_path / "raw", "Beauty.txt")
    with pytest.raises(LlaraError, match=r"must hold exactly one \*\.txt file \(found Beauty.txt, Video.txt\)"):
        read_source("amazon-sasrec", tmp_path / "raw")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LlaraError, match=r"must hold exactly one \*\.txt file \(found none\)"):
        read_source("amazon-sasrec", tmp_path / "empty")
    with pytest.raises(LlaraError, match=r"nope\.txt does not exist"):
        read_source("amazon-sasrec", tmp_path / "nope.txt")
    with pytest.raises(LlaraError, match="source 'amazon-sasrec' needs --path"):
        read_source("amazon-sasrec")


@pytest.mark.parametrize(
    ("content", "line", "problem"),
    [
        (b"1 2\n3\n4 5\n", 2, FIELDS + "found 1 in '3'"),
        (b"1 2\n3 4 5\n", 2, FIELDS + "found 3 in '3 4 5'"),
        (b"1 2 9\n3 4 5\n", 1, FIELDS + "found 3 in '1 2 9'"),  # an extra field on every line
        (b"1 2\r3 4\n", 1, FIELDS + "found 4 in '1 2\\r3 4'"),  # a lone carriage return does not end a line
        (b"1 2\n\n1 3\nx 4\n", 4, "field 'user': id 'x' is not an integer"),
        (b"1 2\n3 4.0\n", 2, "field 'item': id '4.0' is not an integer"),
        (b'1 2\n"3" 4\n', 2, "field 'user': id '\"3\"' is not an integer"),
        (b"1 2\n0 4\n", 2, "field 'user': id 0 is below 1"),
        (b"1 2\n3 4\n3 -4\n", 3, "field 'item': id -4 is below 1"),
        (b"1 2\n3 12345678901234567890\n", 2, "the ids in '3 12345678901234567890' do not fit a 64-bit integer"),
        (b"1 2\n3 4\n5 \xff\n", 3, "not UTF-8 text"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, content, line, problem):
    path = tmp_path / "Video.txt"
    path.write_bytes(content)
    with pytest.raises(LlaraError, match=re.escape(f"{path}, line {line}: {problem}")):
        read_source("amazon-sasrec", path)


def test_empty_file(tmp_path):
    path = tmp_path / "Video.txt"
    path.write_text("\n  \n")
    with pytest.raises(LlaraError, match="holds no interactions"):
        read_source("amazon-sasrec", path)


def test_prepare_keeps_file_order(tmp_path):
    path = _log(tmp_path / "raw")
    prepared = prepare_dataset(DataConfig(source="amazon-sasrec", path=str(path)), tmp_path / "p")
    counts = prepared.manifest["counts"]
    assert (counts["users"], counts["interactions"]) == (USERS, USERS * PER_USER)
    # 16 / 2 / 2 users; a training user gives targets at positions 3..7, a held-out user its last item
    assert (counts["train_rows"], counts["val_rows"], counts["test_rows"]) == (16 * 5, 2, 2)
    assert [len(prepared.split(name)) for name in ("train", "val", "test")] == [80, 2, 2]
    raw_ids = prepared.items["raw_id"].astype(int).tolist()
    assert prepared.titles == [f"Item {i}" for i in raw_ids]
    for name in ("val", "test"):
        for row in prepared.split(name).itertuples():
            sequence = _sequence(int(row.user))
            assert [raw_ids[i] for i in row.history] == sequence[:-1]
            assert raw_ids[row.target] == sequence[-1]
    train = prepared.split("train")
    assert train["user"].nunique() == 16
    for row in train.itertuples():
        sequence = _sequence(int(row.user))
        position = len(row.history)
        assert [raw_ids[i] for i in row.history] == sequence[:position] and raw_ids[row.target] == sequence[position]

def test_cli_prepare(tmp_path, capsys):
    path = _log(tmp_path / "raw")
    out = tmp_path / "cli"
    args = ["data", "prepare", "amazon-sasrec", "--path", str(path), "-O", "domain=games", "--out", str(out)]
    assert run_cli(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"] == "amazon-sasrec" and manifest["domain"] == "games"
    assert manifest["counts"]["test_rows"] == 2
    capsys.readouterr()
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2\n1 two\n")
    assert run_cli(["data", "prepare", "amazon-sasrec", "--path", str(bad), "--out", str(tmp_path / "x")]) == 1
    assert "bad.txt, line 2: field 'item': id 'two' is not an integer" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
