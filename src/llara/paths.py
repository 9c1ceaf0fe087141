"""Where llara keeps downloads and converted models, how it writes files atomically, how it keeps two
runs out of one output folder (``output_lock``) and decides what it may replace, and how it reads its
JSON-lines logs back (tolerating the last line a killed writer tore)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from llara.errors import LlaraError

logger = logging.getLogger(__name__)

#: the lock file :func:`output_lock` keeps in an output folder while a command writes there
LOCK_FILE = ".llara.lock"

#: what follows ``.<target name>.`` in the name of a temporary that atomic_file / atomic_dir make
_TEMPORARY = re.compile(r"(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp|old-(?P<old>\d+)")


def data_home() -> Path:
    """The cache folder for downloads and converted models: ``$LLARA_HOME`` or ``~/.cache/llara``."""
    return Path(os.environ.get("LLARA_HOME", Path.home() / ".cache" / "llara")).expanduser()


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w", **open_kwargs) -> Iterator:
    """Open a temporary file beside ``path``; on success rename it over ``path``, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with open(tmp, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; the result gets the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    remove_stale_temporaries(path)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` whole, else it is removed.

    A crash inside the block leaves ``path`` as it was (old content or absent), never half-written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; a finished folder gets the usual mode
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    remove_stale_temporaries(path)


def _temporary_prefix(path: Path) -> str:
    """``.<name>.<pid>.``: the temporary names who made them, so a later run can tell stale ones."""
    return f".{path.name}.{os.getpid()}."


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete what atomic writes of ``path`` left beside it when their process was killed; return them.

    Only names of the form atomic_file / atomic_dir give temporaries of ``path`` (``.<name>.<pid>.*.tmp``
    and ``.<name>.old-<pid>``) are considered, and only those whose process no longer runs on this machine.
    """
    path = Path(path)
    prefix = f".{path.name}."
    removed = []
    for entry in path.parent.iterdir() if path.parent.is_dir() else ():
        match = _TEMPORARY.fullmatch(entry.name[len(prefix) :]) if entry.name.startswith(prefix) else None
        if match is None or _running(int(match["pid"] or match["old"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
        removed.append(entry)
    return removed


def _running(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def check_replaceable(
    path: str | Path, is_ours: Callable[[Path], bool], what: str, force: bool = False, override: str | None = "--force"
) -> None:
    """Refuse to write ``what`` over ``path`` unless it is absent, empty, a previous ``what`` or ``force`` is set.

    Writers replace their output folder whole, so a folder that ``is_ours`` does not recognise (the
    user's own files) must never be taken over silently. ``override`` names the option that sets
    ``force`` in the error message (None: the command has none).
    """
    path = Path(path)
    if force or not path.exists():
        return
    if not path.is_dir():
        raise LlaraError(f"{path} exists and is not a folder; choose another output folder")
    if next((entry for entry in path.iterdir() if entry.name != LOCK_FILE), None) is None or is_ours(path):
        return
    way_out = f", or pass {override} to use it anyway (its content may be deleted)" if override else " or empty it"
    raise LlaraError(f"{path} already exists and is not a previous {what}; choose another output folder{way_out}")


def check_file_replaceable(
    path: str | Path, is_ours: Callable[[Path], bool], what: str, force: bool = False, override: str | None = "--force"
) -> None:
    """Refuse to write ``what`` over the file ``path`` unless it is absent, a previous ``what`` or ``force``
    is set; a folder at ``path`` is always refused (nothing is written into or over it).

    ``override`` names the option that sets ``force`` in the error message (None: the command has none).
    """
    path = Path(path)
    if path.is_dir():
        raise LlaraError(f"{path} is a folder; name a file to write the {what} to")
    if force or not (path.exists() or path.is_symlink()) or (path.is_file() and is_ours(path)):
        return
    way_out = f", or pass {override} to replace it" if override else ""
    raise LlaraError(f"{path} already exists and is not a previous {what}; choose another file{way_out}")


def check_creatable(folder: str | Path) -> None:
    """Refuse a folder path that cannot be created because an existing part of it is a file."""
    folder = Path(folder).absolute()
    for part in (folder, *folder.parents):
        if part.exists():
            if not part.is_dir():
                raise LlaraError(f"{part} is a file, so {folder} cannot be a folder; choose another output path")
            return


@contextlib.contextmanager
def output_lock(folder: str | Path) -> Iterator[Path]:
    """Hold ``folder``'s lock file (:data:`LOCK_FILE`) inside the block, so no second llara command
    writes there at the same time; the folder (and any missing parent) is created if absent, and removed
    again if left empty.

    The lock file is created atomically (``O_CREAT | O_EXCL``) and holds the holder's PID, host name and
    start time as JSON. A second writer gets a one-line :class:`LlaraError` naming the holder's PID. A lock
    whose process no longer runs on this host (a killed run) is taken over with a warning; one held from
    another host is never taken over. The lock is released when the block ends, also on an exception.
    """
    folder = Path(folder)
    created = _missing_folders(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise LlaraError(f"{folder} exists and is not a folder; choose another output folder") from exc
    lock = folder / LOCK_FILE
    mine = _acquire(lock, folder)
    try:
        yield lock
    finally:
        with contextlib.suppress(OSError):
            if _read_lock(lock) == mine:  # not if someone deleted it and another run took it since
                lock.unlink()
        _remove_if_empty(created)


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_if_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first), stopping at the first one that is not empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _acquire(lock: Path, folder: Path, attempts: int = 5) -> str:
    """Create ``lock`` with this process's record and return its text, taking over a stale one."""
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    mine = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started, "time": time.time()})
    for _ in range(attempts):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            held = _read_lock(lock, wait=True)
            if held is None:  # released meanwhile
                continue
            holder = _lock_record(held)
            if holder is None:
                raise LlaraError(
                    f"{folder} has an unreadable lock file {lock}; if no llara command is writing there, delete it"
                ) from None
            if holder["host"] != socket.gethostname() or _running(holder["pid"]):
                raise LlaraError(
                    f"{folder} is in use by another llara command (PID {holder['pid']} on {holder['host']}, "
                    f"started {holder.get('started', '?')}); wait for it to finish or choose another output "
                    f"folder (if that process is gone, delete {lock})"
                ) from None
            logger.warning("%s: taking over the lock of PID %d, which no longer runs", folder, holder["pid"])
            _set_aside(lock, held)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(mine)
        return mine
    raise LlaraError(f"could not lock {folder}: other llara commands keep taking its lock {lock}")


def _read_lock(lock: Path, wait: bool = False) -> str | None:
    """The text of a lock file (None if absent); with ``wait``, give a just-created, still empty one up to
    a second to get its content."""
    deadline = time.monotonic() + (1.0 if wait else 0.0)
    while True:
        try:
            text = lock.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        if text or time.monotonic() >= deadline:
            return text
        time.sleep(0.05)


def _lock_record(text: str) -> dict[str, Any] | None:
    """A lock file's record, or None when it is not one (damaged, empty, hand-made)."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return None
    valid = isinstance(record, dict) and isinstance(record.get("pid"), int) and record["pid"] > 0 and isinstance(record.get("host"), str)
    return record if valid else None


def _set_aside(lock: Path, stale: str) -> None:
    """Remove the stale lock whose text is ``stale``, and only it: if another process took it over in the
    meantime, its fresh lock is put back."""
    aside = lock.with_name(f"{lock.name}.{os.getpid()}.stale")
    try:
        os.rename(lock, aside)
    except FileNotFoundError:  # another process removed it first
        return
    if aside.read_text(encoding="utf-8") != stale:
        with contextlib.suppress(FileExistsError):
            os.link(aside, lock)
    aside.unlink()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines file.

    A malformed last line (a write cut short by a crash) is skipped with a warning naming it; a malformed
    line before the last is an error naming it.
    """
    lines = enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1)
    numbered = [(number, line) for number, line in lines if line.strip()]
    records = []
    for number, line in numbered:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if number != numbered[-1][0]:
                raise LlaraError(f"{path}, line {number}: not valid JSON ({exc}); the log is damaged") from exc
            logger.warning("%s, line %d: skipped a half-written last line", path, number)
    return records


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (read in blocks)."""
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def fields_sha256(fields: Mapping[str, Any], without: str) -> str:
    """sha256 of a JSON mapping's canonical form (sorted keys, compact), leaving out its own digest field
    ``without``: what an export's ``llara.json`` and a prepared folder's manifest record about themselves."""
    kept = {key: value for key, value in fields.items() if key != without}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
