"""The LLaRA authors' processed files: pickled DataFrames, loaded without running arbitrary pickle code.

A folder holds ``train_data.df`` / ``Val_data.df`` / ``Test_data.df`` (columns ``seq``: 10 ids right-padded
with the pad id = number of items, ``len_seq``, ``next``; MovieLens stores ``(item, rating)`` pairs) and
titles in ``u.item`` (MovieLens, raw id k = item k-1) or ``id2name.txt`` (``id::name``, ids 0..N-1).
Their split is kept; rows with ``len_seq < min_history`` are dropped (as the authors' loader does), and
candidates are drawn with the seed from items outside the row's sequence and target, then frozen.

The pickles are read by :class:`_FrameUnpickler` (pure Python, see :mod:`llara.safe_pickle`): only
:data:`ALLOWED_GLOBALS` are resolved; classes are only created empty and then given their state, and the
functions a pickle may call are checked first (:func:`_call_policies`). Everything that allocates in
proportion to a number the pickle states (an array's shape, a dtype's size, a bytearray's length, an
Arrow array's length, an index's data) is charged to a budget of 2 x the file's size + 64 MiB before
it is built, and the rows' histories may hold at most :func:`_max_history_ids` ids in all (rows can
share one list, so their sum is not bounded by the file). Running out of memory anyway is a one-line
error naming the file.
"""

from __future__ import annotations

import importlib
import math
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llara.data.dataset import SAMPLE_COLUMNS
from llara.data.domains import check_domain
from llara.data.movielens import clean_title
from llara.data.protocol import ProtocolParams, RowBatch, Samples, check_enough_items, rng_for, sample_arrays
from llara.errors import LlaraError
from llara.safe_pickle import AllocationBudget, BudgetExceeded, HookedUnpickler, budget_for

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


def _resolve(module: str, name: str) -> Any:
    if module.startswith("numpy.core."):
        try:  # numpy 2 renamed numpy.core to numpy._core
            return getattr(importlib.import_module(module.replace("numpy.core.", "numpy._core.")), name)
        except ImportError:
            pass
    return getattr(importlib.import_module(module), name)


class _Refused(Exception):
    pass


def _count(value: Any, what: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
        raise _Refused(f"{what} {value!r} (expected a count)")
    return int(value)


def _shape_bytes(shape: Any, dtype: Any, what: str) -> int:
    """Bytes of an array of ``shape`` and ``dtype`` (both as a pickle states them)."""
    if not isinstance(shape, tuple) or not isinstance(dtype, np.dtype):
        raise _Refused(f"{what} with shape {shape!r} and dtype {dtype!r}")
    return math.prod(_count(n, f"{what}: dimension") for n in shape) * dtype.itemsize


def _bytearray(budget: AllocationBudget, args: tuple) -> bytearray:
    """``bytearray`` of bytes or a str stated in the pickle, never of a length (``bytearray(2**38)``)."""
    if not (len(args) == 1 and isinstance(args[0], (bytes, bytearray))) and not (
        len(args) in (2, 3) and all(isinstance(a, str) for a in args)
    ):
        raise _Refused(f"builtins.bytearray of {', '.join(type(a).__name__ for a in args) or 'nothing'}")
    budget.charge(len(args[0]), "a bytearray")
    return bytearray(*args)


def _reconstruct(real: Callable) -> Callable:
    def call(budget: AllocationBudget, args: tuple) -> Any:
        if len(args) != 3 or args[0] is not np.ndarray or not isinstance(args[2], (bytes, str)):
            raise _Refused(f"numpy _reconstruct of {args!r:.200}")
        budget.charge(_shape_bytes(args[1], np.dtype(args[2]), "an array"), "an array")
        return real(*args)

    return call


def _scalar(real: Callable) -> Callable:
    def call(budget: AllocationBudget, args: tuple) -> Any:
        if not args or not isinstance(args[0], np.dtype):
            raise _Refused(f"numpy scalar of {args!r:.200}")
        budget.charge(args[0].itemsize, "a numpy scalar")
        return real(*args)

    return call


def _new_index(real: Callable) -> Callable:
    """``_new_Index(cls, d)`` for an Index of data in the pickle (same dtype) or a (lazy) RangeIndex."""

    def call(budget: AllocationBudget, args: tuple) -> Any:
        if len(args) != 2 or not isinstance(args[1], dict):
            raise _Refused(f"pandas _new_Index of {args!r:.200}")
        cls, state = args
        if cls is pd.RangeIndex and set(state) <= {"start", "stop", "step", "name"}:
            return real(cls, state)
        data = state.get("data")
        if cls is not pd.Index or not set(state) <= {"data", "name", "dtype"} or not hasattr(data, "dtype"):
            raise _Refused(f"pandas _new_Index of {getattr(cls, '__name__', cls)!r} with {sorted(state)}")
        array_types = (np.ndarray, pd.api.extensions.ExtensionArray)
        if not isinstance(data, array_types) or state.get("dtype", data.dtype) != data.dtype:
            raise _Refused(f"pandas _new_Index of a {type(data).__name__} as {state.get('dtype')!r}")
        budget.charge(len(data) * max(getattr(data.dtype, "itemsize", 8), 8), "an index")
        return real(cls, state)

    return call


def _arrow_lengths(data: Any, depth: int = 0) -> int:
    """The elements an Arrow array's pickled state declares, children and dictionary included."""
    if depth > 64 or not isinstance(data, tuple) or len(data) < 7 or not isinstance(data[5], (list, tuple)):
        raise _Refused("pyarrow _restore_array of a malformed array state")
    nested = [*data[5], *([data[6]] if data[6] is not None else [])]
    return _count(data[1], "an Arrow array of length") + sum(_arrow_lengths(d, depth + 1) for d in nested)


def _restore_array(real: Callable) -> Callable:
    """An Arrow array, charged 8 bytes per declared element (a null array needs no buffer at all, but
    pandas turns it into one pointer per element), and validated (its buffers must hold its length)."""

    def call(budget: AllocationBudget, args: tuple) -> Any:
        if len(args) != 1:
            raise _Refused("pyarrow _restore_array of more than one argument")
        budget.charge(8 * _arrow_lengths(args[0]), "an Arrow array")
        array = real(*args)
        array.validate(full=True)
        return array

    return call


def _py_buffer(real: Callable) -> Callable:
    def call(budget: AllocationBudget, args: tuple) -> Any:
        if len(args) != 1 or not isinstance(args[0], (bytes, bytearray, memoryview, pickle.PickleBuffer)):
            raise _Refused("pyarrow py_buffer of something other than bytes")
        return real(*args)

    return call


def _fixed_arity(real: Callable, counts: tuple[int, ...]) -> Callable:
    def call(budget: AllocationBudget, args: tuple) -> Any:
        if len(args) not in counts:
            raise _Refused(f"{getattr(real, '__qualname__', real)} with {len(args)} arguments")
        return real(*args)

    return call


def _plain(real: Callable) -> Callable:
    return lambda budget, args: real(*args)


#: the callables of :data:`ALLOWED_GLOBALS` a pickle may call, and how each is checked (classes absent:
#: DataFrame, Series, Index, RangeIndex, ndarray and ArrowStringArray are only created empty, NEWOBJ)
_POLICIES: dict[tuple[str, str], Callable[[Callable], Callable]] = {
    ("builtins", "slice"): _plain,
    ("builtins", "bytearray"): lambda real: _bytearray,
    ("numpy", "dtype"): _plain,  # a dtype is at most 2 GiB wide; what is built of it is charged
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy._core.numeric", "_frombuffer"): _plain,  # a view of a buffer the pickle holds
    ("pandas", "StringDtype"): _plain,
    ("pandas.core.arrays.string_", "StringDtype"): _plain,
    ("pyarrow.lib", "_restore_array"): _restore_array,
    ("pyarrow.lib", "py_buffer"): _py_buffer,
    ("pyarrow.lib", "type_for_alias"): _plain,
    ("pandas.core.indexes.base", "_new_Index"): _new_index,
    # verify_integrity (the third argument) stays on: blocks must match the axes
    ("pandas.core.internals.managers", "BlockManager"): lambda real: _fixed_arity(real, (2,)),
    ("pandas.core.internals.managers", "SingleBlockManager"): lambda real: _fixed_arity(real, (2,)),
    ("pandas.core.internals.blocks", "new_block"): _plain,
    ("pandas._libs.internals", "_unpickle_block"): _plain,
}


class _FrameUnpickler(HookedUnpickler):
    """Resolves only :data:`ALLOWED_GLOBALS`, calls only :data:`_POLICIES` (checked, within ``budget``),
    creates classes only empty, and charges every array's state to ``budget`` before it is set."""

    def __init__(self, data: bytes, budget: AllocationBudget) -> None:
        super().__init__(data)
        self.budget = budget
        self.callables: dict[int, tuple[Any, Callable]] = {}

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in ALLOWED_GLOBALS:
            raise _Refused(f"{module}.{name}")
        real = _resolve(module, name)
        key = (module.replace("numpy.core.", "numpy._core."), name)
        if key in _POLICIES:
            self.callables[id(real)] = (real, _POLICIES[key](real))
        return real

    def call(self, func: Any, args: tuple) -> Any:
        known = self.callables.get(id(func))
        if known is None or known[0] is not func:
            what = f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', type(func).__name__)}"
            raise _Refused(f"a call of {what} (classes are only created empty, then given their state)")
        return known[1](self.budget, args)

    def new(self, cls: Any, args: tuple, kwargs: dict) -> Any:
        if args or kwargs:
            raise _Refused(f"{getattr(cls, '__qualname__', cls)} created with arguments")
        return super().new(cls, args, kwargs)

    def check_build(self, inst: Any, state: Any) -> None:
        if isinstance(inst, np.ndarray):  # (version, shape, dtype, is_fortran, data) or without the version
            fields = state[1:] if isinstance(state, tuple) and len(state) == 5 else state
            if not isinstance(fields, tuple) or len(fields) != 4:
                raise _Refused("an array state that is not numpy's")
            self.budget.charge(_shape_bytes(fields[0], fields[1], "an array"), "an array")


#: what reading a malformed pickle of allowed globals may raise (pandas, numpy and pyarrow raise many
#: kinds on malformed state); refusals and LlaraErrors are handled before
_UNREADABLE = (Exception,)


def load_pickled_frame(path: Path) -> pd.DataFrame:
    """A pickled DataFrame of plain values; any other global in the pickle is refused with a LlaraError,
    and so is one asking for more memory than :func:`llara.safe_pickle.budget_for` its size."""
    if not path.is_file():
        raise LlaraError(f"{path} does not exist")
    try:
        data = path.read_bytes()
        frame = _FrameUnpickler(data, AllocationBudget(budget_for(len(data)))).load()
        if not isinstance(frame, pd.DataFrame):
            raise LlaraError(f"{path}: holds a {type(frame).__name__}, expected a pandas DataFrame")
        missing = [c for c in ("seq", "len_seq", "next") if c not in frame.columns]
    except LlaraError:
        raise
    except _Refused as refused:
        raise LlaraError(
            f"{path}: refused to unpickle {refused}: only pandas DataFrames of plain values are loaded "
            "(the file may be malicious or not one of the LLaRA authors' files)"
        ) from refused
    except BudgetExceeded as exc:
        raise LlaraError(f"{path}: {exc} (the file may be malicious or not one of the LLaRA authors' files)") from exc
    except MemoryError as exc:
        raise LlaraError(f"{path}: ran out of memory while unpickling it (a hostile or damaged file?)") from exc
    except _UNREADABLE as exc:
        message = str(exc).splitlines()[0][:300] if str(exc) else ""
        raise LlaraError(f"{path}: not a readable pickled DataFrame ({type(exc).__name__}: {message})") from exc
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


def _max_history_ids(file_size: int) -> int:
    """The most history ids all rows of a file may hold together: its memory budget at 8 bytes an id."""
    return budget_for(file_size) // 8


def _parse_rows(
    frame: pd.DataFrame, path: Path, num_items: int, min_history: int, max_ids: int | None = None
) -> tuple[list[list[int]], np.ndarray, np.ndarray]:
    """Rows with ``len_seq >= min_history``: the real sequence (first len_seq ids), target, row index.

    Short rows are skipped before they are checked (the authors' files hold all-padding rows there).
    The kept histories may hold at most ``max_ids`` ids in all (rows of a pickle may share one list).
    """
    sequences, targets, index = [], [], []
    total = 0
    for position, (seq, length, nxt) in enumerate(zip(frame["seq"], frame["len_seq"], frame["next"])):
        try:
            length = int(length)
        except (TypeError, ValueError, OverflowError) as exc:
            raise LlaraError(f"{path}, row {position}, field 'len_seq': {length!r} is not a length") from exc
        if length < min_history:
            continue
        try:
            size = len(seq)
        except TypeError as exc:
            raise LlaraError(
                f"{path}, row {position}, field 'seq': expected a sequence of item ids, got {seq!r:.80}"
            ) from exc
        if length > size:
            raise LlaraError(f"{path}, row {position}, field 'len_seq': {length} exceeds the sequence length {size}")
        total += length
        if max_ids is not None and total > max_ids:
            raise LlaraError(
                f"{path}, row {position}: the histories hold more than {max_ids:,} ids in all, more than a file "
                "of this size can describe without rows sharing one list; refused"
            )
        try:
            head = seq[:length] if isinstance(seq, (list, tuple, np.ndarray)) else list(seq)[:length]
            items = [_item(v) for v in head]
            target = _item(nxt)
        except (TypeError, ValueError, IndexError, OverflowError) as exc:
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
    try:
        sequences, targets, index = _parse_rows(
            frame, path, num_items, params.min_history, _max_history_ids(path.stat().st_size)
        )
    except MemoryError as exc:
        raise LlaraError(f"{path}: ran out of memory while reading its rows (a hostile or damaged file?)") from exc
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
    samples = sample_arrays(rows, names, seen, num_items, params, rng_for(params.seed, split)).to_frame()
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
