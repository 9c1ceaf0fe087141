"""The LLaRA authors' processed files: pickled DataFrames, loaded without running arbitrary pickle code.

A folder holds ``train_data.df`` / ``Val_data.df`` / ``Test_data.df`` (columns ``seq``: 10 ids right-padded
with the pad id = number of items, ``len_seq``, ``next``; MovieLens stores ``(item, rating)`` pairs) and
titles in ``u.item`` (MovieLens, raw id k = item k-1) or ``id2name.txt`` (``id::name``, ids 0..N-1).
Their split is kept; rows with ``len_seq < min_history`` are dropped (as the authors' loader does), and
candidates are drawn with the seed from items outside the row's sequence and target, then frozen.
"""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path

import numpy as np
import pandas as pd

from llara.data.dataset import SAMPLE_COLUMNS
from llara.data.domains import check_domain
from llara.data.movielens import clean_title
from llara.data.protocol import ProtocolParams, RowBatch, Samples, check_enough_items, rng_for, sample_frame
from llara.errors import LlaraError

SPLIT_FILES = {"train": "train_data.df", "val": "Val_data.df", "test": "Test_data.df"}

#: the only globals a pickled DataFrame of plain values needs (pandas 1.x to 3.x, numpy 1.x and 2.x)
ALLOWED_GLOBALS = frozenset(
    {
        ("builtins", "slice"),
        ("builtins", "bytearray"),
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("pandas", "DataFrame"),
        ("pandas", "Series"),
        ("pandas", "Index"),
        ("pandas", "RangeIndex"),
        ("pandas", "StringDtype"),
        ("pandas.arrays", "ArrowStringArray"),
        ("pandas.core.arrays.string_", "StringDtype"),
        ("pandas.core.arrays.string_arrow", "ArrowStringArray"),
        ("pyarrow.lib", "_restore_array"),
        ("pyarrow.lib", "py_buffer"),
        ("pyarrow.lib", "type_for_alias"),
        ("pandas.core.frame", "DataFrame"),
        ("pandas.core.series", "Series"),
        ("pandas.core.indexes.base", "Index"),
        ("pandas.core.indexes.base", "_new_Index"),
        ("pandas.core.indexes.range", "RangeIndex"),
        ("pandas.core.internals.managers", "BlockManager"),
        ("pandas.core.internals.managers", "SingleBlockManager"),
        ("pandas.core.internals.blocks", "new_block"),
        ("pandas._libs.internals", "_unpickle_block"),
    }
)


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS`; anything else is refused."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in ALLOWED_GLOBALS:
            raise _Refused(f"{module}.{name}")
        if module.startswith("numpy.core."):
            try:  # numpy 2 renamed numpy.core to numpy._core
                return getattr(importlib.import_module(module.replace("numpy.core.", "numpy._core.")), name)
            except ImportError:
                pass
        return getattr(importlib.import_module(module), name)


class _Refused(Exception):
    pass


def load_pickled_frame(path: Path) -> pd.DataFrame:
    """A pickled DataFrame of plain values; any other global in the pickle is refused with a LlaraError."""
    if not path.is_file():
        raise LlaraError(f"{path} does not exist")
    try:
        with open(path, "rb") as handle:
            frame = _RestrictedUnpickler(handle).load()
    except _Refused as refused:
        raise LlaraError(
            f"{path}: refused to unpickle {refused}: only pandas DataFrames of plain values are loaded "
            "(the file may be malicious or not one of the LLaRA authors' files)"
        ) from refused
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError, ValueError) as exc:
        raise LlaraError(f"{path}: not a readable pickled DataFrame ({type(exc).__name__}: {exc})") from exc
    if not isinstance(frame, pd.DataFrame):
        raise LlaraError(f"{path}: holds a {type(frame).__name__}, expected a pandas DataFrame")
    missing = [c for c in ("seq", "len_seq", "next") if c not in frame.columns]
    if missing:
        raise LlaraError(f"{path}: missing column(s) {', '.join(missing)}; expected seq, len_seq, next")
    return frame


def read_titles(folder: Path) -> tuple[pd.DataFrame, str]:
    """The item table (item_id, raw_id, title) from ``u.item`` or ``id2name.txt``, and the file's kind."""
    if (folder / "u.item").is_file():
        path = folder / "u.item"
        lines = path.read_text(encoding="ISO-8859-1").splitlines()
        pairs = [line.split("|")[:2] for line in lines if line.strip()]
        first_id = 1
    elif (folder / "id2name.txt").is_file():
        path = folder / "id2name.txt"
        lines = path.read_text(encoding="utf-8").splitlines()
        pairs = [line.split("::", 1) for line in lines if line.strip()]
        first_id = 0
    else:
        raise LlaraError(f"{folder}: no titles file; the authors' folders hold u.item or id2name.txt")
    for line, pair in enumerate(pairs, start=1):
        if len(pair) < 2 or not pair[0].strip().isdigit() or int(pair[0]) != line - 1 + first_id:
            raise LlaraError(f"{path}, line {line}: expected id {line - 1 + first_id} then a title, got {pair!r}")
    titles = [clean_title(t) if path.name == "u.item" else t.strip() for _, t in pairs]
    items = pd.DataFrame(
        {"item_id": np.arange(len(pairs), dtype=np.int64), "raw_id": [p[0].strip() for p in pairs], "title": titles}
    )
    return items, path.name


def _item(value: object) -> int:
    """An item id, from a plain id or an ``(item, rating)`` pair."""
    return int(value[0]) if isinstance(value, (tuple, list, np.ndarray)) else int(value)


def _parse_rows(
    frame: pd.DataFrame, path: Path, num_items: int, min_history: int
) -> tuple[list[list[int]], np.ndarray, np.ndarray]:
    """Rows with ``len_seq >= min_history``: the real sequence (first len_seq ids), target, row index.

    Short rows are skipped before they are checked (the authors' files hold all-padding rows there).
    """
    sequences, targets, index = [], [], []
    for position, (seq, length, nxt) in enumerate(zip(frame["seq"], frame["len_seq"], frame["next"])):
        if int(length) < min_history:
            continue
        if int(length) > len(seq):
            raise LlaraError(
                f"{path}, row {position}, field 'len_seq': {length} exceeds the sequence length {len(seq)}"
            )
        try:
            items = [_item(v) for v in list(seq)[: int(length)]]
            target = _item(nxt)
        except (TypeError, ValueError, IndexError) as exc:
            raise LlaraError(f"{path}, row {position}: malformed seq/next ({exc})") from exc
        bad = [i for i in [*items, target] if not 0 <= i < num_items]
        if bad:
            raise LlaraError(f"{path}, row {position}: item id {bad[0]} outside 0..{num_items - 1} (the titles file)")
        sequences.append(items)
        targets.append(target)
        index.append(frame.index[position])
    return sequences, np.asarray(targets, dtype=np.int64), np.asarray(index)


def _split_frame(path: Path, split: str, num_items: int, params: ProtocolParams) -> tuple[pd.DataFrame, int]:
    """One split file as samples; also how many rows were dropped for a short history."""
    frame = load_pickled_frame(path)
    sequences, targets, index = _parse_rows(frame, path, num_items, params.min_history)
    histories = [s[-params.history_len :] for s in sequences]
    lengths = np.array([len(h) for h in histories], dtype=np.int64)
    codes = np.arange(len(sequences), dtype=np.int64)
    seen_lists = [np.unique(np.asarray([*s, t], dtype=np.int64)) for s, t in zip(sequences, targets)]
    names = np.array([f"{split}-{i}" for i in index], dtype=object)
    check_enough_items(np.array([len(s) for s in seen_lists], dtype=np.int64), num_items, params.num_candidates, names)
    seen = np.unique(np.repeat(codes, [len(s) for s in seen_lists]) * num_items + _concat(seen_lists))
    rows = RowBatch(
        users=codes, targets=targets, offsets=np.r_[0, np.cumsum(lengths)].astype(np.int32), values=_concat(histories)
    )
    samples = sample_frame(rows, names, seen, num_items, params, rng_for(params.seed, split))
    return samples, len(frame) - len(samples)


def _concat(lists: list) -> np.ndarray:
    return np.concatenate([np.asarray(x, dtype=np.int64) for x in lists]) if lists else np.zeros(0, dtype=np.int64)


def _infer_domain(folder: Path, titles_file: str) -> str:
    if titles_file == "u.item":
        return "movies"
    name = folder.resolve().name.lower()
    return "games" if "steam" in name else "music" if "lastfm" in name else "generic"


def convert_authors_files(
    path: str | Path | None, params: ProtocolParams, domain: str | None = None
) -> tuple[Samples, str]:
    """The authors' folder as our samples (their split kept). Absent split files become empty splits;
    ``Test_data.df`` is required. ``domain`` defaults to movies (u.item), games/music by folder name."""
    if path is None:
        raise LlaraError("source 'llara' needs --path to a folder with the authors' Test_data.df (and titles)")
    folder = Path(path).expanduser()
    if not (folder / SPLIT_FILES["test"]).is_file():
        raise LlaraError(f"{folder / SPLIT_FILES['test']} does not exist; --path must be an authors' data folder")
    if domain is not None:
        check_domain(domain, "option domain")
    items, titles_file = read_titles(folder)
    splits: dict[str, pd.DataFrame] = {}
    counts: dict[str, int] = {"items": len(items)}
    for split, filename in SPLIT_FILES.items():
        if (folder / filename).is_file():
            splits[split], counts[f"{split}_dropped_short"] = _split_frame(folder / filename, split, len(items), params)
        else:
            splits[split] = pd.DataFrame({c: pd.Series([], dtype=object) for c in SAMPLE_COLUMNS}).astype(
                {"target": np.int64}
            )
        counts[f"{split}_rows"] = len(splits[split])
    return Samples(items=items, splits=splits, counts=counts), domain or _infer_domain(folder, titles_file)
