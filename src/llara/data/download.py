"""Fetch a zip once, check its digest, unpack it under ``data_home()/downloads``; later calls reuse it."""

from __future__ import annotations

import hashlib
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from llara.errors import LlaraError
from llara.paths import atomic_dir, atomic_file, data_home

ALGORITHMS = ("sha256", "md5")


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _split_checksum(checksum: str) -> tuple[str, str]:
    algorithm, sep, expected = checksum.partition(":")
    if not sep or algorithm not in ALGORITHMS or not expected:
        raise LlaraError(f"checksum {checksum!r} must look like 'sha256:<hex>' (or 'md5:<hex>')")
    return algorithm, expected.lower()


def fetch_zip(url: str, checksum: str, name: str) -> Path:
    """Download ``url`` (http(s) or file://), verify ``checksum``, unpack to ``data_home()/downloads/name``.

    Returns the unpacked folder. A digest mismatch deletes the download and raises a LlaraError; the cache
    is written atomically, so an interrupted run leaves nothing behind.
    """
    algorithm, expected = _split_checksum(checksum)
    target = data_home() / "downloads" / name
    if (target / ".complete").is_file():
        return target
    archive = data_home() / "downloads" / f"{name}.zip"
    try:
        with urllib.request.urlopen(url, timeout=60) as response, atomic_file(archive, "wb") as out:
            shutil.copyfileobj(response, out)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise LlaraError(f"could not download {url}: {exc}; pass --path to a local copy instead") from exc
    actual = file_digest(archive, algorithm)
    if actual != expected:
        archive.unlink()
        raise LlaraError(f"{url}: {algorithm} is {actual}, expected {expected}; the download is corrupt or changed")
    with atomic_dir(target) as tmp:
        try:
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(tmp)
        except zipfile.BadZipFile as exc:
            raise LlaraError(f"{url}: not a zip archive ({exc})") from exc
        (tmp / ".complete").write_text(f"{algorithm}:{actual}\n", encoding="utf-8")
    archive.unlink()
    return target
