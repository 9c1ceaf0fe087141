"""Steam (Kang & McAuley): reviews + games metadata, one Python dict literal per line, usually gzipped.

The paper's filtering: users with fewer than ``min_reviews`` reviews are dropped, then a ``fraction`` of
the remaining users and of their games is sampled (``sample_seed``). Reviews of games absent from the
metadata (no title) are dropped first, since a title is needed in every prompt.
"""

from __future__ import annotations

import ast
import gzip
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from llara.data.interactions import Interactions, build_catalog, integer_ids, parse_timestamps, string_ids
from llara.errors import LlaraError

REVIEWS = "steam_reviews.json.gz"
GAMES = "steam_games.json.gz"


def _find(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    raise LlaraError(f"{folder / name} does not exist; Steam --path must hold {REVIEWS} and {GAMES}")


def iter_records(path: Path, keys: tuple[str, ...], required: tuple[str, ...]) -> Iterator[tuple[object, ...]]:
    """(line number, ``keys`` of each line's dict literal), absent keys as None.

    A line that is not a dict literal, or lacks a ``required`` key, is an error naming the line.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = ast.literal_eval(line)
            except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
                raise LlaraError(f"{path}, line {line_no}: not a Python dict literal") from exc
            if not isinstance(record, dict):
                raise LlaraError(f"{path}, line {line_no}: expected a dict, got {type(record).__name__}")
            missing = [k for k in required if record.get(k) is None]
            if missing:
                raise LlaraError(f"{path}, line {line_no}: missing field {missing[0]!r}")
            yield (line_no, *(record.get(k) for k in keys))


def read_games(path: Path) -> pd.DataFrame:
    """Game id -> title (``app_name``, else ``title``); games with neither are skipped."""
    rows = [
        (line, str(gid), name or title)
        for line, gid, name, title in iter_records(path, ("id", "app_name", "title"), ("id",))
        if (name or title)
    ]
    frame = pd.DataFrame(rows, columns=["line", "id", "title"])
    ids = integer_ids(frame["id"], path, "id", frame["line"].to_numpy())
    return build_catalog(ids, frame["title"], path, frame["line"].to_numpy())


def _sample(values: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    unique = np.unique(values)
    chosen = rng.choice(unique, size=int(round(len(unique) * fraction)), replace=False)
    return np.isin(values, chosen)


def read_steam(
    path: Path | None = None, min_reviews: int = 20, fraction: float = 1 / 3, sample_seed: int = 0
) -> Interactions:
    """Reviews (user = ``username``, item = ``product_id``, time = ``date``) filtered as in the paper."""
    if path is None:
        raise LlaraError("source 'steam' needs --path to a folder with steam_reviews.json.gz and steam_games.json.gz")
    if not 0 < fraction <= 1:
        raise LlaraError(f"option fraction must be in (0, 1], got {fraction}")
    games_path, reviews_path = _find(path, GAMES), _find(path, REVIEWS)
    catalog = read_games(games_path)
    fields = ("username", "product_id", "date")
    reviews = pd.DataFrame(list(iter_records(reviews_path, fields, fields)), columns=["line", *fields])
    lines = reviews["line"].to_numpy()
    table = pd.DataFrame(
        {
            "user": string_ids(reviews["username"], reviews_path, "username", lines),
            "item": integer_ids(reviews["product_id"], reviews_path, "product_id", lines),
            "timestamp": parse_timestamps(reviews["date"], reviews_path, "date", lines),
        }
    )
    table = table[table["item"].isin(catalog["item"])]
    counts = table["user"].map(table["user"].value_counts())
    table = table[counts >= min_reviews]
    rng = np.random.default_rng(sample_seed)
    table = table[_sample(table["user"].to_numpy(), fraction, rng)]
    table = table[_sample(table["item"].to_numpy(), fraction, rng)].reset_index(drop=True)
    return Interactions(table=table, catalog=catalog, source="steam", domain="games")
