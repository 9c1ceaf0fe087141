"""ML-100K from the recbole package (offline default), a raw GroupLens folder, or a verified download.

Titles follow docs/method.md: the trailing " (YYYY)" goes, a trailing ", The" / ", A" / ", An" moves to the front.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pandas as pd

from llara.data.download import fetch_zip
from llara.data.interactions import Interactions, build_catalog, integer_ids, move_article, parse_timestamps
from llara.errors import LlaraError

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
#: the digest GroupLens' archive is published with (md5; files.grouplens.org lists no sha256)
GROUPLENS_CHECKSUM = "md5:0e33842e24a9c977be4e0107933c0723"
#: the trailing year, and the " (V)" (video release) that follows it in one ML-100K title
_YEAR = re.compile(r"\s*\(\d{4}\)(\s*\(V\))?\s*$")
#: recbole's copy misspells item 267's title
_RECBOLE_TYPOS = {"unkonwn": "unknown"}


def clean_title(raw: str) -> str:
    """'Usual Suspects, The (1995)' -> 'The Usual Suspects'."""
    return move_article(_YEAR.sub("", raw.strip()).strip())


def recbole_folder() -> Path:
    """recbole's bundled ``dataset_example/ml-100k`` (located without importing recbole)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise LlaraError(
            "ML-100K needs the recbole package (`pip install --no-deps recbole==1.2.1`) or --path to a folder "
            "with u.data and u.item"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / "ml-100k"


def _require_file(path: Path) -> Path:
    if not path.is_file():
        raise LlaraError(f"{path} does not exist; check --path")
    return path


def read_recbole(folder: Path) -> Interactions:
    """``ml-100k.inter`` + ``ml-100k.item`` (atomic files with typed headers, tab-separated)."""
    inter_path = _require_file(folder / "ml-100k.inter")
    item_path = _require_file(folder / "ml-100k.item")
    inter = pd.read_csv(inter_path, sep="\t", dtype=str, keep_default_na=False)
    inter.columns = [c.split(":")[0] for c in inter.columns]
    items = pd.read_csv(item_path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    items.columns = [c.split(":")[0] for c in items.columns]
    items["movie_title"] = items["movie_title"].replace(_RECBOLE_TYPOS)
    return _assemble(inter, "user_id", "item_id", "timestamp", inter_path, items, "movie_title", item_path, 2)


def read_raw_folder(folder: Path) -> Interactions:
    """GroupLens' ``u.data`` (tab-separated, no header) and ``u.item`` ('|'-separated, ISO-8859-1)."""
    if not folder.is_dir():
        raise LlaraError(f"{folder} is not a folder; ML-100K --path must hold u.data and u.item")
    data_path = _require_file(folder / "u.data")
    item_path = _require_file(folder / "u.item")
    inter = pd.read_csv(data_path, sep="\t", header=None, dtype=str, keep_default_na=False)
    if inter.shape[1] != 4:
        raise LlaraError(
            f"{data_path}: expected 4 tab-separated fields (user, item, rating, timestamp), got {inter.shape[1]}"
        )
    inter.columns = ["user_id", "item_id", "rating", "timestamp"]
    items = pd.read_csv(
        item_path, sep="|", header=None, dtype=str, keep_default_na=False, encoding="ISO-8859-1", quoting=3
    )
    if items.shape[1] < 2:
        raise LlaraError(f"{item_path}: expected '|'-separated fields (id|title|...), got {items.shape[1]}")
    items = items.rename(columns={0: "item_id", 1: "movie_title"})
    return _assemble(inter, "user_id", "item_id", "timestamp", data_path, items, "movie_title", item_path, 1)


def _assemble(
    inter: pd.DataFrame,
    user: str,
    item: str,
    timestamp: str,
    inter_path: Path,
    items: pd.DataFrame,
    title: str,
    item_path: Path,
    first_line: int,
) -> Interactions:
    table = pd.DataFrame(
        {
            "user": integer_ids(inter[user], inter_path, user, first_line),
            "item": integer_ids(inter[item], inter_path, item, first_line),
            "timestamp": parse_timestamps(inter[timestamp], inter_path, timestamp, first_line),
            "rating": pd.to_numeric(inter["rating"], errors="coerce").astype(float),
        }
    )
    item_ids = integer_ids(items["item_id"], item_path, "item_id", first_line)
    catalog = build_catalog(item_ids, items[title].map(clean_title), item_path, first_line)
    return Interactions(table=table, catalog=catalog, source="movielens", domain="movies")


def read_movielens(path: Path | None = None) -> Interactions:
    """ML-100K: recbole's copy when ``path`` is None, else a raw folder (u.data, u.item) or recbole-style folder."""
    if path is None:
        return read_recbole(recbole_folder())
    if (path / "ml-100k.inter").is_file():
        return read_recbole(path)
    return read_raw_folder(path)


def download_movielens(
    path: Path | None = None, url: str = GROUPLENS_URL, checksum: str = GROUPLENS_CHECKSUM
) -> Interactions:
    """ML-100K zip from ``url`` (checked against ``checksum``, 'sha256:<hex>'), cached under data_home()."""
    if path is not None:
        raise LlaraError("source 'movielens-download' takes no --path; use source 'movielens' for a local folder")
    name = f"ml-100k-{checksum.partition(':')[2][:12]}"
    folder = fetch_zip(url, checksum, name)
    inner = [p.parent for p in sorted(folder.rglob("u.data"))]
    if not inner:
        raise LlaraError(f"{url}: the archive holds no u.data")
    return read_raw_folder(inner[0])
