"""Every reader, on fixture files the tests write in the real formats (and the shared samples when present)."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llara.config import DataConfig
from llara.data.llara_files import load_pickled_frame
from llara.data.movielens import clean_title, read_raw_folder, read_recbole, recbole_folder
from llara.data.prepare import prepare_dataset
from llara.data.readers import read_source
from llara.errors import LlaraError

HAS_RECBOLE = importlib.util.find_spec("recbole") is not None


@pytest.mark.parametrize(
    ("raw", "title"),
    [
        ("Usual Suspects, The (1995)", "The Usual Suspects"),
        ("Grand Day Out, A (1992)", "A Grand Day Out"),
        ("American in Paris, An (1951)", "An American in Paris"),
        (
            "Land Before Time III: The Time of the Great Giving (1995) (V)",
            "Land Before Time III: The Time of the Great Giving",
        ),
        ("Toy Story", "Toy Story"),
        ("Seven (Se7en) (1995)", "Seven (Se7en)"),
    ],
)
def test_clean_title(raw, title):
    assert clean_title(raw) == title


def test_movielens_raw_folder(ml_raw_folder):
    data = read_source("movielens", ml_raw_folder)
    assert data.domain == "movies" and len(data.table) == 12 * 8
    titles = dict(zip(data.catalog["item"], data.catalog["title"]))
    assert titles["1"] == "The Usual Suspects" and titles["2"] == "Cité des enfants perdus, La"
    assert data.table["timestamp"].dtype == np.int64 and data.table["user"].iloc[0] == "1"


def test_movielens_raw_ids_map_to_k_minus_1(ml_raw_folder, tmp_path):
    prepared = prepare_dataset(DataConfig(path=str(ml_raw_folder), num_candidates=5), tmp_path / "p")
    assert prepared.items["raw_id"].tolist() == [str(k) for k in range(1, 20)]  # items 1..19 are rated
    assert prepared.titles[0] == "The Usual Suspects"


@pytest.mark.skipif(not HAS_RECBOLE, reason="recbole is not installed")
def test_ml100k_counts_from_recbole(tmp_path):
    prepared = prepare_dataset(DataConfig(), tmp_path / "ml")
    counts = prepared.manifest["counts"]
    assert (counts["users"], counts["items"], counts["interactions"]) == (943, 1682, 100_000)
    assert counts["val_rows"] in (94, 95) and counts["test_rows"] in (94, 95)
    assert counts["train_rows"] == len(prepared.split("train")) > 70_000
    assert prepared.domain == "movies" and prepared.titles[11] == "The Usual Suspects"  # raw id 12


@pytest.mark.skipif(not HAS_RECBOLE, reason="recbole is not installed")
def test_recbole_and_raw_titles_agree(shared_data):
    raw = read_raw_folder(shared_data / "ml-100k")
    packaged = read_recbole(recbole_folder())
    merged = raw.catalog.merge(packaged.catalog, on="item", suffixes=("_raw", "_recbole"))
    assert len(merged) == 1682
    differing = merged[merged["title_raw"] != merged["title_recbole"]]
    assert differing.empty, differing.head().to_dict("records")
    pd.testing.assert_frame_equal(
        raw.table[["user", "item", "timestamp"]], packaged.table[["user", "item", "timestamp"]]
    )


def _zip_folder(folder: Path, archive: Path) -> str:
    with zipfile.ZipFile(archive, "w") as zipped:
        for name in ("u.data", "u.item"):
            zipped.write(folder / name, f"ml-100k/{name}")
    return hashlib.sha256(archive.read_bytes()).hexdigest()


def test_movielens_download_checks_sha256_and_caches(ml_raw_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("LLARA_HOME", str(tmp_path / "home"))
    archive = tmp_path / "ml-100k.zip"
    digest = _zip_folder(ml_raw_folder, archive)
    options = {"url": archive.as_uri(), "checksum": f"sha256:{digest}"}
    data = read_source("movielens-download", None, options)
    assert len(data.table) == 96
    archive.unlink()  # the second read comes from the cache
    assert len(read_source("movielens-download", None, options).table) == 96


def test_movielens_download_refuses_a_wrong_digest(ml_raw_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("LLARA_HOME", str(tmp_path / "home"))
    archive = tmp_path / "ml-100k.zip"
    _zip_folder(ml_raw_folder, archive)
    with pytest.raises(LlaraError, match="sha256 is .* expected 0000"):
        read_source("movielens-download", None, {"url": archive.as_uri(), "checksum": "sha256:" + "0" * 64})
    leftovers = [p for p in (tmp_path / "home").rglob("*") if p.is_file()]
    assert leftovers == []


def _write_dict_lines(path: Path, records: list[dict]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for record in records:
            handle.write(repr(record) + "\n")  # Python literals: single quotes, True/False


def _steam_folder(root: Path) -> Path:
    root.mkdir()
    games = [{"id": str(100 + g), "app_name": f"Game {g}", "price": 9.99, "early_access": False} for g in range(40)]
    games.append({"id": "999", "title": "Only A Title"})
    games.append({"id": "777", "publisher": "no name at all"})
    reviews = []
    for user in range(9):
        count = 25 if user < 6 else 5  # users 6..8 fall under the 20-review threshold
        for k in range(count):
            reviews.append(
                {
                    "username": f"user {user}",
                    "product_id": str(100 + (user + k) % 40),
                    "date": f"2017-01-{1 + k % 28:02d}",
                    "text": "it's 'fine'",
                    "early_access": False,
                    "hours": 1.5,
                }
            )
    reviews.append({"username": "user 0", "product_id": "999", "date": "2018-01-01", "text": "x"})
    reviews.append({"username": "user 0", "product_id": "777", "date": "2018-01-02", "text": "untitled game"})
    _write_dict_lines(root / "steam_games.json.gz", games)
    _write_dict_lines(root / "steam_reviews.json.gz", reviews)
    return root


def test_steam_filtering(tmp_path):
    folder = _steam_folder(tmp_path / "steam")
    full = read_source("steam", folder, {"fraction": 1.0})
    assert full.domain == "games"
    assert sorted(full.table["user"].unique()) == [f"user {u}" for u in range(6)]
    assert "777" not in set(full.table["item"])  # no title in the metadata: dropped
    assert dict(zip(full.catalog["item"], full.catalog["title"]))["999"] == "Only A Title"
    assert len(full.table) == 6 * 25 + 1
    sampled = read_source("steam", folder, {"sample_seed": 1})
    assert sampled.table["user"].nunique() <= 2 and sampled.table["item"].nunique() <= 14
    again = read_source("steam", folder, {"sample_seed": 1})
    pd.testing.assert_frame_equal(sampled.table, again.table)


def test_steam_bad_line_names_the_line(tmp_path):
    folder = _steam_folder(tmp_path / "steam")
    with gzip.open(folder / "steam_reviews.json.gz", "at", encoding="utf-8") as handle:
        handle.write("{'username': 'x', 'product_id': \n")
    with gzip.open(folder / "steam_reviews.json.gz", "rt", encoding="utf-8") as handle:
        last = sum(1 for _ in handle)
    with pytest.raises(LlaraError, match=rf"steam_reviews.json.gz, line {last}: not a Python dict literal"):
        read_source("steam", folder)


def _lastfm_folder(root: Path) -> Path:
    root.mkdir()
    lines = ["userID\tartistID\ttagID\ttimestamp"]
    for user in range(2, 12):
        for k in range(25):
            artist = (user * 3 + k) % 60 + 1
            lines.append(f"{user}\t{artist}\t{k % 7}\t{1_200_000_000_000 + 86_400_000 * (k // 2)}")
            if k % 5 == 0:
                lines.append(f"{user}\t{artist}\t{k % 7 + 1}\t{1_200_000_000_000 + 86_400_000 * (k // 2)}")
    (root / "user_taggedartists-timestamps.dat").write_text("\n".join(lines) + "\n", encoding="utf-8")
    artists = ["id\tname\turl\tpictureURL"] + [
        f"{a}\tArtist {a} \u00e9\thttp://a/{a}\thttp://p/{a}" for a in range(1, 65)
    ]
    (root / "artists.dat").write_text("\n".join(artists) + "\n", encoding="utf-8")
    return root


def test_lastfm(tmp_path):
    folder = _lastfm_folder(tmp_path / "lastfm")
    data = read_source("lastfm", folder)
    assert data.domain == "music" and len(data.table) == 10 * 30
    assert data.table["timestamp"].iloc[0] == 1_200_000_000_000
    prepared = prepare_dataset(DataConfig(source="lastfm", path=str(folder)), tmp_path / "p")
    assert prepared.manifest["counts"]["interactions_used"] == 10 * 25  # repeated (user, artist) pairs kept once
    assert prepared.titles[0] == "Artist 7 \u00e9"  # the lowest artist id tagged
    for history, target in zip(prepared.split("train")["history"], prepared.split("train")["target"]):
        assert target not in history


def _tabular_files(root: Path, parquet: bool) -> tuple[Path, Path]:
    root.mkdir()
    rows = [
        (f"c{u}", f"sku-{(3 * u + k) % 40}", f"2021-03-{1 + k:02d}T10:00:00", 4.0) for u in range(10) for k in range(12)
    ]
    frame = pd.DataFrame(rows, columns=["uid", "sku", "when", "stars"])
    interactions = root / ("log.parquet" if parquet else "log.csv")
    frame.to_parquet(interactions) if parquet else frame.to_csv(interactions, index=False)
    titles = root / "items.csv"
    pd.DataFrame({"sku": [f"sku-{i}" for i in range(40)], "name": [f"Product {i}" for i in range(40)]}).to_csv(
        titles, index=False
    )
    return interactions, titles


@pytest.mark.parametrize("parquet", [False, True])
def test_tabular(tmp_path, parquet):
    interactions, titles = _tabular_files(tmp_path / "t", parquet)
    options = {
        "titles": str(titles),
        "user_col": "uid",
        "item_col": "sku",
        "time_col": "when",
        "rating_col": "stars",
        "title_item_col": "sku",
        "title_col": "name",
        "domain": "generic",
    }
    data = read_source("tabular", interactions, options)
    assert len(data.table) == 120 and data.table["rating"].eq(4.0).all()
    assert data.table["timestamp"].iloc[1] - data.table["timestamp"].iloc[0] == 86_400
    prepared = prepare_dataset(DataConfig(source="tabular", path=str(interactions), options=options), tmp_path / "p")
    assert prepared.items["raw_id"].tolist()[:3] == ["sku-0", "sku-1", "sku-10"]
    assert prepared.titles[2] == "Product 10"


def test_unknown_source_and_option(tmp_path):
    with pytest.raises(LlaraError, match="unknown data source 'nope'"):
        read_source("nope")
    with pytest.raises(LlaraError, match="does not take option.*colour.*it takes: num_users"):
        read_source("synthetic", None, {"colour": 1})
    with pytest.raises(LlaraError, match="source 'synthetic' reads no files"):
        read_source("synthetic", tmp_path)


# ---------------------------------------------------------------- the authors' processed files


def _authors_folder(root: Path, pairs: bool) -> Path:
    """A folder like the authors': 30 items (pad id 30), ML-style (item, rating) pairs or plain ids."""
    root.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for r in range(12):
        length = 2 if r == 0 else 3 + r % 8
        items = [int(i) for i in rng.permutation(30)[: length + 1]]
        seq = items[:length] + [30] * (10 - length)
        nxt = items[length]
        if pairs:
            seq, nxt = [(np.int64(i), np.int64(4)) for i in seq], (np.int64(nxt), np.int64(5))
        rows.append({"seq": seq, "len_seq": length, "next": nxt})
    frame = pd.DataFrame(rows)
    frame.to_pickle(root / "Test_data.df")
    frame.iloc[:5].to_pickle(root / "Val_data.df")
    if pairs:
        (root / "u.item").write_text(
            "\n".join(f"{i + 1}|Film {i}, The (1990)|x" for i in range(30)) + "\n", encoding="latin-1"
        )
    else:
        (root / "id2name.txt").write_text("\n".join(f"{i}::Game {i}" for i in range(30)) + "\n", encoding="utf-8")
    return root


@pytest.mark.parametrize("pairs", [True, False])
def test_authors_files(tmp_path, pairs):
    folder = _authors_folder(tmp_path / "steam", pairs)
    source = pd.read_pickle(folder / "Test_data.df")
    prepared = prepare_dataset(DataConfig(source="llara", path=str(folder)), tmp_path / "p")
    test = prepared.split("test")
    assert len(test) == 11 and prepared.manifest["counts"]["test_dropped_short"] == 1
    assert len(prepared.split("train")) == 0 and len(prepared.split("val")) == 4
    assert prepared.domain == ("movies" if pairs else "games")
    assert prepared.titles[0] == ("The Film 0" if pairs else "Game 0")
    for (_, row), original in zip(test.iterrows(), source.iloc[1:].itertuples()):
        seq = [int(v[0]) if pairs else int(v) for v in original.seq[: original.len_seq]]
        target = int(original.next[0]) if pairs else int(original.next)
        assert row["history"].tolist() == seq and row["target"] == target
        assert len(set(row["candidates"])) == 20 and list(row["candidates"]).count(target) == 1
        assert not (set(row["candidates"]) - {target}) & set(seq)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_authors_files_refuse_foreign_pickles(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "Test_data.df"
    path.write_bytes(pickle.dumps(pd.DataFrame({"seq": [_Evil(marker)], "len_seq": [1], "next": [1]})))
    with pytest.raises(LlaraError, match=r"refused to unpickle (builtins|io)\.open"):
        load_pickled_frame(path)
    assert not marker.exists()
    path.write_bytes(pickle.dumps({"not": "a frame"}))
    with pytest.raises(LlaraError, match="holds a dict, expected a pandas DataFrame"):
        load_pickled_frame(path)


@pytest.mark.parametrize(("name", "rows", "domain"), [("movielens", 95, "movies"), ("steam", 1186, "games")])
def test_authors_samples(shared_data, tmp_path, name, rows, domain):
    prepared = prepare_dataset(DataConfig(source="llara", path=str(shared_data / "llara" / name)), tmp_path / name)
    assert len(prepared.split("test")) == rows and prepared.domain == domain
    test = prepared.split("test")
    assert all(t in c and t not in h for h, c, t in zip(test["history"], test["candidates"], test["target"]))
