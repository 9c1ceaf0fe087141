"""The prepared-data folder every later stage reads: frozen samples, item catalog, manifest.

Layout of a prepared folder::

    manifest.json    source, domain, seed, protocol parameters, counts, per-file sha256, content hash,
                     and manifest_sha256 (over every other field, so no field can be edited unnoticed)
    items.parquet    item_id (int64, 0..N-1, dense), raw_id (string), title (string)
    train.parquet    one row per sample: user (string), history (list<int64>, oldest first, 1..H items),
    val.parquet        candidates (list<int64>, C items, target exactly once, shuffled), target (int64)
    test.parquet

Item ids are dense, so ``num_items`` doubles as the padding id for SR models (as in the authors' files).

Large splits stay compact: :class:`SampleArrays` holds a split as flat arrays and :func:`write_prepared`
writes it one row group at a time; :meth:`PreparedData.load` checks every file's sha256 but parses a split
only when it is first used, and :meth:`PreparedData.batches` reads one in record batches.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from llara.errors import LlaraError
from llara.paths import atomic_dir, check_replaceable, fields_sha256, file_sha256

FORMAT_VERSION = 1
#: the manifest field holding the sha256 of the manifest's other fields (:func:`manifest_digest`)
MANIFEST_DIGEST = "manifest_sha256"

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
SAMPLE_COLUMNS = ("user", "history", "candidates", "target")
ITEM_COLUMNS = ("item_id", "raw_id", "title")

_SAMPLE_SCHEMA = pa.schema(
    [
        ("user", pa.string()),
        ("history", pa.list_(pa.int64())),
        ("candidates", pa.list_(pa.int64())),
        ("target", pa.int64()),
    ]
)
_ITEM_SCHEMA = pa.schema([("item_id", pa.int64()), ("raw_id", pa.string()), ("title", pa.string())])
#: rows per Parquet row group: pyarrow's default, so a split written piece by piece has the bytes that one
#: ``pq.write_table`` of the whole split gives
ROW_GROUP_ROWS = 1024 * 1024
#: rows per record batch of :meth:`PreparedData.batches`
BATCH_ROWS = 65_536


@dataclass(frozen=True)
class SampleArrays:
    """One split's samples as flat arrays, a few bytes per row and no Python object per row.

    Row ``i``: user ``names[users[i]]``, history ``values[offsets[i]:offsets[i + 1]]`` (oldest first),
    candidates ``candidates[i]`` (a rows x C array), target ``targets[i]``.
    """

    names: np.ndarray  # user name per user code
    users: np.ndarray  # user code per row
    offsets: np.ndarray  # history offsets into values (len rows + 1)
    values: np.ndarray  # concatenated histories
    candidates: np.ndarray  # rows x candidates per row
    targets: np.ndarray  # item id per row

    def __len__(self) -> int:
        return len(self.targets)

    def rows(self, start: int, stop: int) -> SampleArrays:
        """Rows ``start`` to ``stop`` (exclusive; clipped to the split), their offsets starting at 0."""
        stop = min(stop, len(self))
        offsets = self.offsets[start : stop + 1]
        return SampleArrays(
            names=self.names,
            users=self.users[start:stop],
            offsets=offsets - offsets[0],
            values=self.values[offsets[0] : offsets[-1]],
            candidates=self.candidates[start:stop],
            targets=self.targets[start:stop],
        )

    def then(self, more: SampleArrays) -> SampleArrays:
        """These rows followed by ``more``'s (both with the same ``names``)."""
        return SampleArrays(
            names=self.names,
            users=np.concatenate([self.users, more.users]),
            offsets=np.concatenate([self.offsets, more.offsets[1:] + self.offsets[-1]]),
            values=np.concatenate([self.values, more.values]),
            candidates=np.concatenate([self.candidates, more.candidates]),
            targets=np.concatenate([self.targets, more.targets]),
        )

    def to_frame(self) -> pd.DataFrame:
        """The split as a DataFrame of the columns a loaded split has (lists as int64 arrays)."""
        width = self.candidates.shape[1]
        return pd.DataFrame(
            {
                "user": self.names[self.users].astype(object),
                "history": _list_column(self.offsets, self.values),
                "candidates": _list_column(np.arange(0, self.candidates.size + 1, width), self.candidates.ravel()),
                "target": self.targets.astype(np.int64),
            }
        )

    def to_arrow(self, metadata: Mapping[bytes, bytes] | None) -> pa.Table:
        """The split as an Arrow table of the sample schema, with ``metadata`` (pandas' column notes)."""
        width = self.candidates.shape[1]
        columns = [
            pa.array(self.names[self.users], pa.string()),
            _list_array(self.offsets, self.values),
            _list_array(np.arange(0, self.candidates.size + 1, width), self.candidates.ravel()),
            pa.array(self.targets.astype(np.int64)),
        ]
        return pa.Table.from_arrays(columns, schema=_SAMPLE_SCHEMA.with_metadata(metadata))


def _list_column(offsets: np.ndarray, values: np.ndarray) -> np.ndarray:
    """An object array of int64 arrays (what Parquet list columns load back as)."""
    column = np.empty(len(offsets) - 1, dtype=object)
    column[:] = np.split(values.astype(np.int64), offsets[1:-1])
    return column


def _list_array(offsets: np.ndarray, values: np.ndarray) -> pa.ListArray:
    """An Arrow list<int64> array from offsets into values."""
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values.astype(np.int64)))


class SplitFiles(Mapping[str, pd.DataFrame]):
    """The splits of a prepared folder, each parsed from its file on first use (then kept).

    The bytes parsed are checked against the manifest's sha256 again, so a file changed after
    :meth:`PreparedData.load` checked it is refused.
    """

    def __init__(self, root: Path, manifest: Mapping[str, Any]) -> None:
        self._root, self._manifest = root, manifest
        self._loaded: dict[str, pd.DataFrame] = {}

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in SPLITS:
            raise KeyError(name)
        if name not in self._loaded:
            path = self._root / f"{name}.parquet"
            self._loaded[name] = _parse(_verified_bytes(path, self._manifest), path, SAMPLE_COLUMNS)
        return self._loaded[name]

    def __contains__(self, name: object) -> bool:
        return name in SPLITS

    def __iter__(self) -> Iterator[str]:
        return iter(SPLITS)

    def __len__(self) -> int:
        return len(SPLITS)


@dataclass(frozen=True)
class PreparedData:
    """A loaded prepared-data folder (its splits are parsed on first use: :class:`SplitFiles`)."""

    root: Path
    manifest: dict[str, Any]
    items: pd.DataFrame
    splits: Mapping[str, pd.DataFrame]

    @property
    def num_items(self) -> int:
        """Number of items; also the padding id."""
        return len(self.items)

    @property
    def titles(self) -> list[str]:
        """Item titles indexed by dense item id."""
        return self.items["title"].tolist()

    @property
    def domain(self) -> str:
        """The prompt domain: movies, games, music or generic."""
        return str(self.manifest.get("domain", "generic"))

    def check_trained_on(self, recorded: str | None, what: str, allow_mismatch: bool = False) -> None:
        """Refuse ``what`` (a checkpoint) whose recorded data hash is not this folder's content hash.

        ``recorded`` is None for checkpoints that record none (imported ones): those pass. ``allow_mismatch``
        is the override for users who know both folders hold the same items with the same ids.
        """
        own = self.manifest.get("content_hash")
        if allow_mismatch or recorded is None or recorded == own:
            return
        raise LlaraError(
            f"{what} was trained on other prepared data (content hash {str(recorded)[:12]}) than {self.root} "
            f"({str(own)[:12]}); use it with the folder it was trained on, or pass --allow-data-mismatch "
            "if you know both hold the same items with the same ids"
        )

    def split(self, name: str) -> pd.DataFrame:
        """The samples of one split (train, val or test)."""
        return self.splits[self.split_name(name)]

    def batches(self, name: str, rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        """The rows of one split's file as Arrow record batches of at most ``rows`` rows (memory bounded by
        the file's size plus one row group, whatever the split's size)."""
        path = self.root / f"{self.split_name(name)}.parquet"
        try:
            parquet = pq.ParquetFile(pa.BufferReader(_verified_bytes(path, self.manifest)))
            _require_columns(parquet.schema_arrow.names, SAMPLE_COLUMNS, path)
            yield from parquet.iter_batches(batch_size=rows, columns=list(SAMPLE_COLUMNS))
        except (pa.ArrowException, OSError) as exc:
            raise _unreadable(path, exc) from exc

    def split_name(self, name: str) -> str:
        """``name`` when it is a split of this folder, else a LlaraError listing the splits."""
        if name not in self.splits:
            raise LlaraError(f"{self.root}: no split {name!r}; known: {', '.join(self.splits)}")
        return name

    @classmethod
    def load(cls, root: str | Path) -> PreparedData:
        """Load a folder written by :func:`write_prepared`; clear errors for anything missing or changed.

        Every file is checked against the sha256 the manifest records for it, so a file swapped in from
        another folder is refused here; a file is parsed from the very bytes that were hashed (the items
        now, each split when first used).
        """
        root = Path(root)
        manifest = read_manifest(root)
        items = _parse(_verified_bytes(root / "items.parquet", manifest), root / "items.parquet", ITEM_COLUMNS)
        for name in SPLITS:
            _check_file(root / f"{name}.parquet", manifest)
        return cls(root=root, manifest=manifest, items=items, splits=SplitFiles(root, manifest))


def read_manifest(root: Path) -> dict[str, Any]:
    """The manifest of a prepared folder, checked to record a hash per file that hashes to its content hash."""
    path = root / "manifest.json"
    if not path.is_file():
        raise LlaraError(f"{root} is not a prepared data folder (no manifest.json); run `llara data prepare` first")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LlaraError(f"{path} is damaged ({exc}); prepare the folder again") from exc
    files = manifest.get("files") if isinstance(manifest, dict) else None
    expected = {"items.parquet", *(f"{name}.parquet" for name in SPLITS)}
    if not isinstance(files, dict) or set(files) != expected:
        raise LlaraError(f"{path} does not list the sha256 of {', '.join(sorted(expected))}; prepare the folder again")
    if manifest.get("content_hash") != content_hash(files):
        raise LlaraError(f"{path}: its content_hash does not match its file hashes (edited?); prepare the folder again")
    recorded = manifest.get(MANIFEST_DIGEST)
    if recorded is None:
        log.warning("%s records no %s (prepared by an older llara): its other fields cannot be verified", path,
                    MANIFEST_DIGEST)
    elif recorded != manifest_digest(manifest):
        raise LlaraError(
            f"{path} was edited after the folder was prepared (its {MANIFEST_DIGEST} does not match its fields, "
            "e.g. counts or seed); prepare the folder again"
        )
    return manifest


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """sha256 of a manifest's canonical JSON without its own :data:`MANIFEST_DIGEST` field."""
    return fields_sha256(manifest, without=MANIFEST_DIGEST)


def is_prepared_folder(path: Path) -> bool:
    """Whether ``path`` holds a manifest that a prepared folder writes (its other files may be damaged)."""
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(manifest, dict) and "format_version" in manifest and "content_hash" in manifest


def content_hash(file_hashes: Mapping[str, str]) -> str:
    """The one hash naming a prepared folder: sha256 of its per-file sha256 map (canonical JSON)."""
    return hashlib.sha256(json.dumps(dict(file_hashes), sort_keys=True).encode()).hexdigest()


def _check_file(path: Path, manifest: Mapping[str, Any]) -> None:
    """Refuse a missing ``path``, or one whose sha256 is not the one the manifest records for it."""
    _require_file(path)
    _check_digest(path, file_sha256(path), manifest)


def _verified_bytes(path: Path, manifest: Mapping[str, Any]) -> bytes:
    """The bytes of one file of the folder, after checking them against the manifest's sha256."""
    _require_file(path)
    raw = path.read_bytes()
    _check_digest(path, hashlib.sha256(raw).hexdigest(), manifest)
    return raw


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise LlaraError(f"{path} is missing; the prepared folder is incomplete: prepare it again")


def _check_digest(path: Path, digest: str, manifest: Mapping[str, Any]) -> None:
    if digest != manifest["files"][path.name]:
        raise LlaraError(
            f"{path} is not the file this folder was prepared with (its sha256 differs from manifest.json): "
            "it was changed, damaged or copied from another folder; prepare the folder again"
        )


def _parse(raw: bytes, path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """A Parquet file's bytes as a DataFrame that has ``columns``."""
    try:
        frame = pq.read_table(pa.BufferReader(raw)).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise _unreadable(path, exc) from exc
    _require_columns(frame.columns, columns, path)
    return frame


def _unreadable(path: Path, exc: Exception) -> LlaraError:
    return LlaraError(f"{path} is not a readable Parquet file ({exc}); prepare the folder again")


def _require_columns(found: Iterable[str], columns: tuple[str, ...], path: Path) -> None:
    missing = [c for c in columns if c not in set(found)]
    if missing:
        raise LlaraError(f"{path} lacks column(s) {', '.join(missing)}")


def write_prepared(
    root: str | Path,
    items: pd.DataFrame,
    splits: Mapping[str, pd.DataFrame | SampleArrays],
    manifest: Mapping[str, Any],
    force: bool = False,
) -> PreparedData:
    """Write a prepared folder atomically (byte-identical for identical inputs) and return it loaded.

    A split is a DataFrame or :class:`SampleArrays` (written one row group at a time; the same bytes as
    its DataFrame). ``manifest`` holds source, domain, seed, protocol and counts; file hashes and the
    content hash are added here. An existing ``root`` is replaced only when it is empty or a prepared
    folder (or with ``force``).
    """
    root = Path(root)
    check_replaceable(root, is_prepared_folder, "prepared data folder", force)
    with atomic_dir(root) as tmp:
        _write_frame(items[list(ITEM_COLUMNS)], _ITEM_SCHEMA, tmp / "items.parquet")
        for name in SPLITS:
            _write_split(splits[name], tmp / f"{name}.parquet")
        hashes = {file: file_sha256(tmp / file) for file in (f"{name}.parquet" for name in ("items", *SPLITS))}
        full = {"format_version": FORMAT_VERSION, **manifest, "files": hashes, "content_hash": content_hash(hashes)}
        full.pop(MANIFEST_DIGEST, None)
        full[MANIFEST_DIGEST] = manifest_digest(json.loads(json.dumps(full)))  # as a reader will parse it
        (tmp / "manifest.json").write_text(json.dumps(full, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return PreparedData.load(root)


def _write_frame(frame: pd.DataFrame, schema: pa.Schema, path: Path) -> None:
    pq.write_table(pa.Table.from_pandas(frame, schema, preserve_index=False), path, compression="zstd")


def _write_split(split: pd.DataFrame | SampleArrays, path: Path) -> None:
    """One split's file; :class:`SampleArrays` go in pieces of one row group each, with the pandas
    metadata a DataFrame of the same rows would carry (so the bytes are the same)."""
    if isinstance(split, pd.DataFrame):
        _write_frame(split[list(SAMPLE_COLUMNS)], _SAMPLE_SCHEMA, path)
        return
    first = pa.Table.from_pandas(split.rows(0, 1).to_frame(), _SAMPLE_SCHEMA, preserve_index=False)
    with pq.ParquetWriter(path, first.schema, compression="zstd") as writer:
        for start in range(0, max(len(split), 1), ROW_GROUP_ROWS):
            writer.write_table(split.rows(start, start + ROW_GROUP_ROWS).to_arrow(first.schema.metadata))
