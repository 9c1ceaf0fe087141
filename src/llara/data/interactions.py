"""The one table every reader produces: who interacted with what and when, plus the item catalog.

Readers parse their raw format into an :class:`Interactions`; the protocol (``protocol.py``) turns it
into frozen next-item samples. The helpers below turn raw columns into the canonical types with errors
that name the file, line and field.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
import numpy as np
import pandas as pd

from llara.data.domains import check_domain
from llara.errors import LlaraError

TABLE_COLUMNS = ("user", "item", "timestamp")
#: how spreadsheets, pandas and Parquet-to-text conversions spell a missing value (casefolded)
MISSING_TEXT = ("nan", "none", "null", "<na>", "nat")


@dataclass(frozen=True)
class Interactions:
    """One source's interactions and catalog.

    ``table``: columns ``user`` (str), ``item`` (str raw id), ``timestamp`` (int64), optionally
    ``rating`` (float), in file order (ties in time keep this order).
    ``catalog``: one row per item, ``item`` (str raw id) and ``title`` (str), plus any metadata.
    """

    table: pd.DataFrame
    catalog: pd.DataFrame
    source: str
    domain: str = "generic"

    def validate(self) -> Interactions:
        """Check the contract above; raise a LlaraError naming the first problem. Returns ``self``."""
        where = f"source {self.source!r}"
        check_domain(self.domain, f"{where}: domain")
        _require_columns(self.table, TABLE_COLUMNS, f"{where} interactions")
        _require_columns(self.catalog, ("item", "title"), f"{where} catalog")
        if self.table.empty:
            raise LlaraError(f"{where}: the dataset is empty (no interactions left to use)")
        if self.table["timestamp"].dtype != np.int64:
            raise LlaraError(f"{where}: timestamps must be int64, got {self.table['timestamp'].dtype}")
        duplicated = self.catalog["item"].duplicated()
        if duplicated.any():
            raise LlaraError(f"{where}: catalog lists item {self.catalog['item'][duplicated].iloc[0]!r} twice")
        titles = self.catalog["title"]
        blank = titles.isna() | (titles.astype(str).str.strip() == "")
        if blank.any():
            raise LlaraError(f"{where}: item {self.catalog['item'][blank].iloc[0]!r} has an empty title")
        missing = ~self.table["item"].isin(self.catalog["item"])
        if missing.any():
            raise LlaraError(
                f"{where}: item {self.table['item'][missing].iloc[0]!r} appears in the interactions "
                "but has no title in the catalog; add it to the titles file"
            )
        return self


def _require_columns(frame: pd.DataFrame, columns: tuple[str, ...], where: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise LlaraError(f"{where}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, frame.columns))}")


def require_columns(frame: pd.DataFrame, columns: list[str] | tuple[str, ...], path: object) -> None:
    """Raise a LlaraError naming ``path`` when ``frame`` lacks any of ``columns``."""
    _require_columns(frame, tuple(columns), str(path))


def _line(position: int, lines: int | np.ndarray) -> int:
    """The file line of the value at ``position``."""
    return int(lines + position) if np.isscalar(lines) else int(np.asarray(lines)[position])


def integer_ids(values: pd.Series, path: object, field: str, lines: int | np.ndarray = 1) -> pd.Series:
    """Raw ids as canonical strings ("007" -> "7"); a non-integer id is an error naming its line.

    ``lines``: the file line of ``values.iloc[0]`` (2 for a CSV with a header), or of every value.
    """
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() | (numbers != np.floor(numbers))
    if bad.any():
        position = int(np.flatnonzero(bad.to_numpy())[0])
        raise LlaraError(
            f"{path}, line {_line(position, lines)}, field {field!r}: id {values.iloc[position]!r} is not an integer"
        )
    return numbers.astype(np.int64).astype(str)


def string_ids(
    values: pd.Series, path: object, field: str, lines: int | np.ndarray = 1, missing: Collection[str] = ()
) -> pd.Series:
    """Raw ids as stripped strings; a missing or blank id, or one that spells a missing value (``missing``,
    compared casefolded, e.g. :data:`MISSING_TEXT`), is an error naming its line."""
    text = values.astype("string").str.strip()
    bad = (text.isna() | (text == "") | text.str.casefold().isin(list(missing))).fillna(True)
    if bad.any():
        position = int(np.flatnonzero(bad.to_numpy())[0])
        value = text.iloc[position]
        problem = "the id is empty" if pd.isna(value) or not value else f"the id {value!r} marks a missing value"
        raise LlaraError(f"{path}, line {_line(position, lines)}, field {field!r}: {problem}")
    return text.astype(object).astype(str)


def parse_timestamps(values: pd.Series, path: object, field: str, lines: int | np.ndarray = 1) -> pd.Series:
    """Integer timestamps (numbers, or dates / date-times as text -> seconds since 1970), as int64.

    A value that is neither, or a column mixing numbers and dates, is an error naming the line.
    """
    numbers = pd.to_numeric(values, errors="coerce")
    is_number = (numbers.notna() & (numbers == np.floor(numbers))).to_numpy()
    if is_number.all():
        return numbers.astype(np.int64)
    dates = pd.to_datetime(values.astype("string"), errors="coerce", format="ISO8601", utc=True)
    is_date = dates.notna().to_numpy() & ~is_number
    if is_date.all():
        seconds = dates.dt.tz_convert(None).to_numpy().astype("datetime64[s]").astype(np.int64)
        return pd.Series(seconds, index=values.index)
    neither = ~(is_number | is_date)
    position = int(np.flatnonzero(neither if neither.any() else is_number)[0])
    problem = "is neither an integer nor a date (YYYY-MM-DD[ HH:MM:SS])" if neither.any() else "is a number among dates"
    raise LlaraError(
        f"{path}, line {_line(position, lines)}, field {field!r}: timestamp {values.iloc[position]!r} {problem}"
    )


def build_catalog(items: pd.Series, titles: pd.Series, path: object, lines: int | np.ndarray = 1) -> pd.DataFrame:
    """A catalog from parallel id / title columns: exact repeats collapse, conflicting titles are an error."""
    frame = pd.DataFrame({"item": items.to_numpy(), "title": titles.astype(str).str.strip().to_numpy()})
    frame = frame.drop_duplicates()
    clash = frame["item"].duplicated(keep=False)
    if clash.any():
        item = frame["item"][clash].iloc[0]
        names = frame["title"][frame["item"] == item].tolist()[:2]
        line = _line(int(np.flatnonzero((items == item).to_numpy())[1]), lines)
        raise LlaraError(f"{path}, line {line}: item id {item!r} appears twice with different titles {names}")
    return frame.reset_index(drop=True)


def move_article(title: str) -> str:
    """'Usual Suspects, The' -> 'The Usual Suspects' (also ', A' and ', An')."""
    for article in ("The", "A", "An"):
        suffix = f", {article}"
        if title.endswith(suffix):
            return f"{article} {title[: -len(suffix)]}"
    return title
