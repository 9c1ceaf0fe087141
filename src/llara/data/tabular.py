"""Your own data: interactions in CSV or Parquet plus a CSV of titles, with configurable column names.

Ids may be any text; timestamps are integers or ISO dates / date-times. Example (YAML ``data`` section)::

    source: tabular
    path: my/interactions.parquet
    options: {titles: my/items.csv, user_col: uid, item_col: sku, time_col: ts, domain: generic}
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from llara.data.domains import check_domain
from llara.data.interactions import (
    MISSING_TEXT,
    Interactions,
    build_catalog,
    parse_timestamps,
    require_columns,
    string_ids,
)
from llara.errors import LlaraError


def read_table_file(path: Path, sep: str = ",") -> pd.DataFrame:
    """A CSV (``sep``-separated, header line) or Parquet file, every column as text."""
    if not path.is_file():
        raise LlaraError(f"{path} does not exist")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path).astype(str)
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise LlaraError(
            f"{path}: cannot read it as {'Parquet' if path.suffix == '.parquet' else 'CSV'} ({exc})"
        ) from exc


def read_tabular(
    path: Path | None = None,
    titles: str | None = None,
    user_col: str = "user",
    item_col: str = "item",
    time_col: str = "timestamp",
    rating_col: str | None = None,
    title_item_col: str = "item",
    title_col: str = "title",
    sep: str = ",",
    domain: str = "generic",
) -> Interactions:
    """Interactions from ``path`` and titles from ``titles`` (CSV), columns named by the options."""
    if path is None or titles is None:
        raise LlaraError("source 'tabular' needs --path to the interactions and option titles=<CSV of item titles>")
    check_domain(domain, "option domain")
    frame = read_table_file(path, sep)
    columns = [user_col, item_col, time_col] + ([rating_col] if rating_col else [])
    require_columns(frame, columns, f"{path} (set options user_col/item_col/time_col to your column names)")
    titles_path = Path(titles).expanduser()
    names = read_table_file(titles_path, sep)
    require_columns(names, [title_item_col, title_col], f"{titles_path} (set options title_item_col/title_col)")
    table = pd.DataFrame(
        {
            "user": string_ids(frame[user_col], path, user_col, 2, MISSING_TEXT),
            "item": string_ids(frame[item_col], path, item_col, 2, MISSING_TEXT),
            "timestamp": parse_timestamps(frame[time_col], path, time_col, 2),
        }
    )
    if rating_col:
        table["rating"] = pd.to_numeric(frame[rating_col], errors="coerce").astype(float)
    item_ids = string_ids(names[title_item_col], titles_path, title_item_col, 2, MISSING_TEXT)
    catalog = build_catalog(item_ids, names[title_col], titles_path, 2)
    return Interactions(table=table, catalog=catalog, source="tabular", domain=domain)
