"""LastFM HetRec 2011 (last.fm 2k): tag assignments with timestamps, artist names.

``user_taggedartists-timestamps.dat`` (userID, artistID, tagID, timestamp in ms) and ``artists.dat``
(id, name, url, pictureURL), tab-separated with a header line. One tag assignment is one interaction;
the protocol keeps each (user, artist) pair's first occurrence.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from llara.data.interactions import Interactions, build_catalog, integer_ids, parse_timestamps, require_columns
from llara.errors import LlaraError

TAGS = "user_taggedartists-timestamps.dat"
ARTISTS = "artists.dat"


def _read_tsv(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise LlaraError(f"{path} does not exist; LastFM --path must hold {TAGS} and {ARTISTS}")
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3, encoding_errors="replace")
    require_columns(frame, columns, path)
    return frame


def read_lastfm(path: Path | None = None) -> Interactions:
    """Users, artists and tagging times (ms since 1970) from a HetRec 2011 last.fm folder."""
    if path is None:
        raise LlaraError(f"source 'lastfm' needs --path to the HetRec 2011 folder ({TAGS}, {ARTISTS})")
    tags_path, artists_path = path / TAGS, path / ARTISTS
    tags = _read_tsv(tags_path, ["userID", "artistID", "timestamp"])
    artists = _read_tsv(artists_path, ["id", "name"])
    table = pd.DataFrame(
        {
            "user": integer_ids(tags["userID"], tags_path, "userID", 2),
            "item": integer_ids(tags["artistID"], tags_path, "artistID", 2),
            "timestamp": parse_timestamps(tags["timestamp"], tags_path, "timestamp", 2),
        }
    )
    catalog = build_catalog(integer_ids(artists["id"], artists_path, "id", 2), artists["name"], artists_path, 2)
    return Interactions(table=table, catalog=catalog, source="lastfm", domain="music")
