"""Source names -> reader functions. Every reader returns a validated :class:`Interactions`.

Readers are imported lazily so ``llara --help`` stays fast and one broken source does not stop others.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from llara.data.interactions import Interactions
from llara.errors import LlaraError

#: source name -> (module under llara.data, function, one-line description)
READERS: dict[str, tuple[str, str, str]] = {
    "movielens": (
        "movielens",
        "read_movielens",
        "ML-100K: the recbole copy, or --path to a raw folder (u.data, u.item)",
    ),
    "movielens-download": ("movielens", "download_movielens", "ML-100K zip from GroupLens (sha256 checked, cached)"),
    "steam": ("steam", "read_steam", "Steam reviews + games (steam_reviews.json.gz, steam_games.json.gz)"),
    "lastfm": ("lastfm", "read_lastfm", "LastFM HetRec 2011 (user_taggedartists-timestamps.dat, artists.dat)"),
    "amazon-sasrec": (
        "amazon",
        "read_amazon_sasrec",
        "a SASRec-preprocessed log (e.g. Amazon Video.txt: `user item` per line, in time order; titles synthesised)",
    ),
    "tabular": ("tabular", "read_tabular", "your CSV/Parquet interactions + CSV titles (--path to the interactions)"),
    "synthetic": ("synthetic", "synthetic_interactions", "planted-pattern data for tests and smoke runs"),
}


def _resolve(source: str) -> Callable[..., Interactions]:
    if source not in READERS:
        raise LlaraError(f"unknown data source {source!r}; known: {', '.join([*READERS, 'llara'])}")
    module, function, _ = READERS[source]
    return getattr(importlib.import_module(f"llara.data.{module}"), function)


def read_source(source: str, path: str | Path | None = None, options: Mapping[str, Any] | None = None) -> Interactions:
    """Read ``source`` (a name from :data:`READERS`) from ``path`` with reader ``options``; validated.

    Unknown option names are an error listing the ones the reader accepts; a ``path`` is an error for a
    reader that takes none (it reads no files).
    """
    reader = _resolve(source)
    options = dict(options or {})
    parameters = inspect.signature(reader).parameters
    accepted = [name for name in parameters if name != "path"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise LlaraError(
            f"source {source!r} does not take option(s) {', '.join(unknown)}; it takes: {', '.join(accepted) or 'none'}"
        )
    if "path" in parameters:
        options["path"] = Path(path).expanduser() if path is not None else None
    elif path is not None:
        raise LlaraError(f"source {source!r} reads no files; drop --path and set it up with options")
    return reader(**options).validate()
