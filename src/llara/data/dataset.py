"""The prepared-data folder every later stage reads: frozen samples, item catalog, manifest.

Layout of a prepared folder::

    manifest.json    source, domain, seed, protocol parameters, counts, per-file sha256, content hash,
                     and manifest_sha256 (over every other field, so no field can be edited unnoticed)
    items.parquet    item_id (int64, 0..N-1, dense), raw_id (string), title (string)
    train.parquet    one row per sample: user (string), history (list<int64>, oldest first, 1..H items),
    val.parquet        candidates (list<int64>, C items, target exactly once, shuffled), target (int64)
    test.parquet

Item ids are dense, so ``num_items`` doubles as the padding id for SR models (as in the authors' files).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
        if name not in self.splits:
            raise LlaraError(f"{self.root}: no split {name!r}; known: {', '.join(self.splits)}")
        return self.splits[name]

    @classmethod
    def load(cls, root: str | Path) -> PreparedData:
        """Load a folder written by :func:`write_prepared`; clear errors for anything missing or changed.

        Every file is checked against the sha256 the manifest records for it (each file is read once,
        then hashed and parsed from memory), so a file swapped in from another folder is refused.
        """
        root = Path(root)
        manifest = read_manifest(root)
        items = _read_table(root / "items.parquet", ITEM_COLUMNS, manifest)
        splits = {name: _read_table(root / f"{name}.parquet", SAMPLE_COLUMNS, manifest) for name in SPLITS}
        return cls(root=root, manifest=manifest, items=items, splits=splits)


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


def _read_table(path: Path, columns: tuple[str, ...], manifest: Mapping[str, Any]) -> pd.DataFrame:
    """One Parquet file of the folder, after checking it against the manifest's sha256."""
    if not path.is_file():
        raise LlaraError(f"{path} is missing; the prepared folder is incomplete: prepare it again")
    raw = path.read_bytes()
    if hashlib.sha256(raw).hexdigest() != manifest["files"][path.name]:
        raise LlaraError(
            f"{path} is not the file this folder was prepared with (its sha256 differs from manifest.json): "
            "it was changed, damaged or copied from another folder; prepare the folder again"
        )
    try:
        frame = pq.read_table(pa.BufferReader(raw)).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise LlaraError(f"{path} is not a readable Parquet file ({exc}); prepare the folder again") from exc
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise LlaraError(f"{path} lacks column(s) {', '.join(missing)}")
    return frame


def write_prepared(
    root: str | Path,
    items: pd.DataFrame,
    splits: Mapping[str, pd.DataFrame],
    manifest: Mapping[str, Any],
    force: bool = False,
) -> PreparedData:
    """Write a prepared folder atomically (byte-identical for identical inputs) and return it loaded.

    ``manifest`` holds source, domain, seed, protocol and counts; file hashes and the content hash
    are added here. An existing ``root`` is replaced only when it is empty or a prepared folder
    (or with ``force``).
    """
    root = Path(root)
    check_replaceable(root, is_prepared_folder, "prepared data folder", force)
    with atomic_dir(root) as tmp:
        files = {"items.parquet": pa.Table.from_pandas(items[list(ITEM_COLUMNS)], _ITEM_SCHEMA, preserve_index=False)}
        for name in SPLITS:
            frame = splits[name][list(SAMPLE_COLUMNS)]
            files[f"{name}.parquet"] = pa.Table.from_pandas(frame, _SAMPLE_SCHEMA, preserve_index=False)
        hashes = {}
        for filename, table in files.items():
            pq.write_table(table, tmp / filename, compression="zstd")
            hashes[filename] = file_sha256(tmp / filename)
        full = {"format_version": FORMAT_VERSION, **manifest, "files": hashes, "content_hash": content_hash(hashes)}
        full.pop(MANIFEST_DIGEST, None)
        full[MANIFEST_DIGEST] = manifest_digest(json.loads(json.dumps(full)))  # as a reader will parse it
        (tmp / "manifest.json").write_text(json.dumps(full, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return PreparedData.load(root)
