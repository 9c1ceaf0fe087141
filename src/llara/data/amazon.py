"""Logs preprocessed by the SASRec authors (Kang & McAuley), e.g. Amazon Video Games ``Video.txt``.

One interaction per line, ``user item``: two integer ids (1 and up) separated by whitespace. Each user's
lines are in time order and there are no timestamps and no titles, so the line's 0-based index in the
file is its timestamp (the protocol's stable time sort then keeps the file order of every user) and each
item that occurs gets the title ``"<title_prefix> <id>"``. Blank lines are skipped. Example::

    llara data prepare amazon-sasrec --path Video.txt -O domain=games --out data/amazon-video
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from llara.data.domains import check_domain
from llara.data.interactions import Interactions
from llara.errors import LlaraError

SOURCE = "amazon-sasrec"
#: one well-formed line: two non-negative integer ids of at most 18 digits (they fit an int64)
_LINE = r"^\s*\+?([0-9]{1,18})\s+\+?([0-9]{1,18})\s*$"
_FIELDS = ("user", "item")


def _find_file(path: Path) -> Path:
    """``path`` itself, or the one ``*.txt`` file in the folder ``path``."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise LlaraError(f"{path} does not exist; source {SOURCE!r} needs --path to a `user item` text file")
    found = sorted(path.glob("*.txt"))
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise LlaraError(
            f"{path} must hold exactly one *.txt file (found {names}); pass --path to the file itself"
        )
    return found[0]


def _line_problem(line: str) -> str:
    """Why ``line`` is not a ``user item`` line (it is not blank)."""
    fields = line.split()
    if len(fields) != 2:
        return f"expected 2 whitespace-separated fields (user item), found {len(fields)} in {line.strip()!r}"
    for name, value in zip(_FIELDS, fields):
        if not re.fullmatch(r"[+-]?[0-9]+", value):
            return f"field {name!r}: id {value!r} is not an integer"
        if int(value) < 1:
            return f"field {name!r}: id {value} is below 1 (SASRec ids start at 1)"
    return f"the ids in {line.strip()!r} do not fit a 64-bit integer"


def _parse_fast(raw: bytes) -> pd.DataFrame | None:
    """The ids (columns user, item; int64), one row per line, when every line is well formed and none is
    blank; else None, and :func:`_parse_exact` finds the first bad line."""
    lines = raw.count(b"\n") + (0 if raw.endswith(b"\n") or not raw else 1)
    try:
        frame = pd.read_csv(
            io.BytesIO(raw),
            sep=r"\s+",
            header=None,
            names=list(_FIELDS),
            dtype=str,
            skip_blank_lines=False,
            na_filter=False,
            quoting=csv.QUOTE_NONE,
            encoding="utf-8",
        )
    except (ValueError, UnicodeDecodeError):  # pandas' parser errors are ValueErrors
        return None
    if not lines or len(frame) != lines or not isinstance(frame.index, pd.RangeIndex):
        return None  # an extra field on the first line turns into an index; a lone \r into a line
    for name in _FIELDS:
        text = frame[name]
        if not (text.str.isascii() & text.str.isdigit() & text.str.len().between(1, 18)).all():
            return None
    numbers = frame.astype(np.int64)
    return None if (numbers < 1).to_numpy().any() else numbers


def _parse_exact(raw: bytes, file: Path) -> pd.DataFrame:
    """The ids (columns user, item; int64) indexed by 0-based line, blank lines skipped; the first bad
    line is a LlaraError naming ``file`` and the line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise LlaraError(f"{file}, line {line}: not UTF-8 text ({exc.reason})") from exc
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start another
    series = pd.Series(lines, dtype=object)
    ids = series.str.extract(_LINE)
    matched = ids[0].notna().to_numpy()
    blank = ~matched & series.str.strip().eq("").to_numpy()
    bad = np.flatnonzero(~matched & ~blank)
    if bad.size:
        raise LlaraError(f"{file}, line {bad[0] + 1}: {_line_problem(lines[bad[0]])}")
    numbers = ids[matched].astype(np.int64)  # at most 18 digits each: no overflow
    numbers.columns = list(_FIELDS)
    below = np.flatnonzero((numbers < 1).any(axis=1).to_numpy())
    if below.size:
        position = int(numbers.index[below[0]])
        raise LlaraError(f"{file}, line {position + 1}: {_line_problem(lines[position])}")
    return numbers


def read_amazon_sasrec(path: Path | None = None, domain: str = "generic", title_prefix: str = "Item") -> Interactions:
    """Interactions from a SASRec-preprocessed ``user item`` log: ``path`` is the file or a folder holding
    exactly one ``*.txt`` file.

    Timestamps are the 0-based line indices (file order is time order); the catalog holds every item that
    occurs, titled ``"<title_prefix> <id>"`` (e.g. "Item 42"); ``domain`` names the kind of item
    (``games`` for Amazon Video Games). A line without exactly two integer ids >= 1 is an error naming
    the file and line.
    """
    if path is None:
        raise LlaraError(f"source {SOURCE!r} needs --path to the `user item` text file (e.g. Video.txt)")
    check_domain(domain, "option domain")
    file = _find_file(Path(path))
    raw = file.read_bytes()
    numbers = _parse_fast(raw)
    if numbers is None:
        numbers = _parse_exact(raw, file)
    if numbers.empty:
        raise LlaraError(f"{file} holds no interactions (expected `user item` lines)")
    table = pd.DataFrame(
        {
            "user": numbers["user"].astype(str).array,  # .array: no Python string object per line
            "item": numbers["item"].astype(str).array,
            "timestamp": numbers.index.to_numpy().astype(np.int64),
        }
    )
    items = np.unique(numbers["item"].to_numpy())
    prefix = str(title_prefix).strip()
    catalog = pd.DataFrame({"item": items.astype(str), "title": [f"{prefix} {item}".strip() for item in items]})
    return Interactions(table=table, catalog=catalog, source=SOURCE, domain=domain)
