"""The prepared-data folder every later stage reads: frozen samples, item catalog, manifest.

Layout of a prepared folder::

    manifest.json    source, domain, seed, protocol parameters, counts, per-file sha256, content hash
    items.parquet    item_id (int64, 0..N-1, dense), raw_id (string), title (string)
    train.parquet    one row per sample: user (string), history (list<int64>, oldest first, 1..H items),
    val.parquet        candidates (list<int64>, C items, target exactly once, shuffled), target (int64)
    test.parquet

Item ids are dense, so ``num_items`` doubles as the padding id for SR models (as in the authors' files).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from llara.errors import LlaraError
from llara.paths import atomic_dir

FORMAT_VERSION = 1
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


@dataclass(frozen=True)
class PreparedData:
    """A loaded prepared-data folder."""

    root: Path
    manifest: dict[str, Any]
    items: pd.DataFrame
    splits: dict[str, pd.DataFrame]

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

    def split(self, name: str) -> pd.DataFrame:
        """The samples of one split (train, val or test)."""
        if name not in self.splits:
            raise LlaraError(f"{self.root}: no split {name!r}; known: {', '.join(self.splits)}")
        return self.splits[name]

    @classmethod
    def load(cls, root: str | Path) -> PreparedData:
        """Load a folder written by :func:`write_prepared`; clear errors for anything missing."""
        root = Path(root)
        manifest_path = root / "manifest.json"
        if not manifest_path.is_file():
            raise LlaraError(
                f"{root} is not a prepared data folder (no manifest.json); run `llara data prepare` first"
            )
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        items = _read_table(root / "items.parquet", ITEM_COLUMNS)
        splits = {name: _read_table(root / f"{name}.parquet", SAMPLE_COLUMNS) for name in SPLITS}
        return cls(root=root, manifest=manifest, items=items, splits=splits)


def _read_table(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise LlaraError(f"{path} is missing; the prepared folder is incomplete: prepare it again")
    frame = pq.read_table(path).to_pandas()
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise LlaraError(f"{path} lacks column(s) {', '.join(missing)}")
    return frame


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_prepared(
    root: str | Path,
    items: pd.DataFrame,
    splits: Mapping[str, pd.DataFrame],
    manifest: Mapping[str, Any],
) -> PreparedData:
    """Write a prepared folder atomically (byte-identical for identical inputs) and return it loaded.

    ``manifest`` holds source, domain, seed, protocol and counts; file hashes and the content hash
    are added here.
    """
    root = Path(root)
    with atomic_dir(root) as tmp:
        files = {"items.parquet": pa.Table.from_pandas(items[list(ITEM_COLUMNS)], _ITEM_SCHEMA, preserve_index=False)}
        for name in SPLITS:
            frame = splits[name][list(SAMPLE_COLUMNS)]
            files[f"{name}.parquet"] = pa.Table.from_pandas(frame, _SAMPLE_SCHEMA, preserve_index=False)
        hashes = {}
        for filename, table in files.items():
            pq.write_table(table, tmp / filename, compression="zstd")
            hashes[filename] = _sha256(tmp / filename)
        content_hash = hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()
        full = {"format_version": FORMAT_VERSION, **manifest, "files": hashes, "content_hash": content_hash}
        (tmp / "manifest.json").write_text(json.dumps(full, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return PreparedData.load(root)
