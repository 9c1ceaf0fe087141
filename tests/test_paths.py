"""Atomic writes: a later successful write removes what killed writes of the same target left behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llara.errors import LlaraError
from llara.paths import atomic_dir, atomic_file, check_replaceable

#: above Linux's largest pid (2**22), so no process has it: a temporary named with it is stale
DEAD_PID = 2**22 + 1


def leftovers(folder: Path, target: str) -> dict[str, Path]:
    """Temporaries beside ``folder / target``: a killed writer's, a running writer's, and look-alikes."""
    made = {
        "stale dir": folder / f".{target}.{DEAD_PID}.k3j_x9ab.tmp",
        "stale old": folder / f".{target}.old-{DEAD_PID}",
        "live dir": folder / f".{target}.{os.getpid()}.abcdefgh.tmp",
        "other target": folder / f".other.{DEAD_PID}.abcdefgh.tmp",
        "no pid": folder / f".{target}.abcdefgh.tmp",
    }
    for path in made.values():
        path.mkdir(parents=True)
        (path / "part.bin").write_bytes(b"half")
    made["stale file"] = folder / f".{target}.{DEAD_PID}.q1w2e3r4.tmp"
    made["stale file"].write_text("half")
    return made


@pytest.mark.parametrize("kind", ["dir", "file"])
def test_a_successful_write_removes_only_its_own_stale_temporaries(tmp_path: Path, kind: str) -> None:
    made = leftovers(tmp_path, "export")
    if kind == "dir":
        with atomic_dir(tmp_path / "export") as tmp:
            (tmp / "model.bin").write_bytes(b"ok")
    else:
        with atomic_file(tmp_path / "export") as handle:
            handle.write("ok")
    gone = {name for name, path in made.items() if not path.exists()}
    assert gone == {"stale dir", "stale old", "stale file"}
    assert (tmp_path / "export").exists()


def test_a_failed_write_keeps_the_old_content_and_removes_its_temporary(tmp_path: Path) -> None:
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "v1").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "export") as tmp:
        (tmp / "v2").write_text("new")
        raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
    assert (tmp_path / "export" / "v1").read_text() == "old"


def test_only_empty_or_recognised_folders_are_replaceable(tmp_path: Path) -> None:
    def ours(path: Path) -> bool:
        return (path / "manifest.json").is_file()

    check_replaceable(tmp_path / "absent", ours, "thing")
    (tmp_path / "empty").mkdir()
    check_replaceable(tmp_path / "empty", ours, "thing")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "manifest.json").write_text("{}")
    check_replaceable(tmp_path / "mine", ours, "thing")
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("x")
    with pytest.raises(LlaraError, match="is not a previous thing; choose another output folder, or pass --force"):
        check_replaceable(tmp_path / "theirs", ours, "thing")
    check_replaceable(tmp_path / "theirs", ours, "thing", force=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(LlaraError, match="is not a folder"):
        check_replaceable(tmp_path / "file", ours, "thing")
