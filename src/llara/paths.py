"""Where llara keeps downloads and converted models, how it writes files atomically, and how it reads
its JSON-lines logs back (tolerating the last line a killed writer tore)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from llara.errors import LlaraError

logger = logging.getLogger(__name__)

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
    if next(path.iterdir(), None) is None or is_ours(path):
        return
    way_out = f", or pass {override} to use it anyway (its content may be deleted)" if override else " or empty it"
    raise LlaraError(f"{path} already exists and is not a previous {what}; choose another output folder{way_out}")


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
