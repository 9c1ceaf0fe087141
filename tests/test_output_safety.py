"""Output folders and files under concurrent runs and foreign content: one writer per folder
(`llara.paths.output_lock`), and `--out` of `llara evaluate` / `llara sr evaluate` never replacing a
file llara did not write."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from helpers import crash_after_checkpoint, run_cli, tiny_train_overrides

from llara.config import RunConfig, load_config
from llara.errors import LlaraError
from llara.paths import LOCK_FILE, check_replaceable, output_lock

#: holds the lock of the folder argv[1] until killed
HOLD_LOCK = """
import sys, time
from llara.paths import output_lock
with output_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(300)
"""


@contextlib.contextmanager
def held_by_another_process(folder: Path) -> Iterator[int]:
    """Inside the block another process holds ``folder``'s lock; yields its PID. It is killed at the end
    (as by ``kill -9``: its lock file stays behind, stale)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


def dead_pid() -> int:
    """The PID of a process that has ended."""
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    return ended.pid


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err, err
    return err


# ------------------------------------------------------------------ the lock itself


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path) -> None:
    out = tmp_path / "out"
    with output_lock(out) as lock:
        assert lock == out / LOCK_FILE
        record = json.loads(lock.read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname() and record["started"]
        with pytest.raises(LlaraError, match=f"is in use by another llara command \\(PID {os.getpid()} ") as caught:
            with output_lock(out):
                pass
        assert "\n" not in str(caught.value)
    assert not (out / LOCK_FILE).exists()
    with held_by_another_process(out) as pid:
        with pytest.raises(LlaraError, match=f"PID {pid} on {socket.gethostname()}"):
            with output_lock(out):
                pass
        assert json.loads((out / LOCK_FILE).read_text())["pid"] == pid  # the holder's lock is left alone


def test_a_failed_run_leaves_no_empty_folders_it_created(tmp_path) -> None:
    out = tmp_path / "new" / "deeper" / "out"
    with pytest.raises(LlaraError, match="failed"), output_lock(out):
        raise LlaraError("failed")
    assert sorted(tmp_path.iterdir()) == []  # out and both parents it had to create are gone
    (tmp_path / "mine").mkdir()
    with output_lock(tmp_path / "mine" / "out") as lock:
        (lock.parent / "result.json").write_text("{}")
    assert sorted(p.name for p in (tmp_path / "mine" / "out").iterdir()) == ["result.json"]  # a result is kept


def test_a_stale_lock_is_taken_over_but_not_one_from_another_host(tmp_path, caplog) -> None:
    out = tmp_path / "out"
    out.mkdir()
    pid = dead_pid()
    (out / LOCK_FILE).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "earlier"}))
    with output_lock(out) as lock:
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert f"taking over the lock of PID {pid}" in caplog.text
    assert sorted(p.name for p in out.iterdir()) == []  # nothing left beside it either
    with held_by_another_process(out) as holder:  # killed at the end: its lock file stays, stale
        pass
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == holder
    with output_lock(out):
        pass
    (out / LOCK_FILE).write_text(json.dumps({"pid": pid, "host": "another-machine", "started": "earlier"}))
    with pytest.raises(LlaraError, match=f"PID {pid} on another-machine"):
        with output_lock(out):
            pass
    (out / LOCK_FILE).write_text("not a lock")
    with pytest.raises(LlaraError, match="unreadable lock file"):
        with output_lock(out):
            pass


def test_the_lock_is_released_after_an_exception(tmp_path) -> None:
    kept, created = tmp_path / "kept", tmp_path / "created"
    kept.mkdir()
    for folder in (kept, created):
        with pytest.raises(RuntimeError), output_lock(folder):
            raise RuntimeError("the command failed")
        assert not (folder / LOCK_FILE).exists()
    assert kept.is_dir() and not created.exists()  # a folder the lock made and nothing filled goes again
    with output_lock(kept):
        pass
    (tmp_path / "file").write_text("mine")
    with pytest.raises(LlaraError, match="exists and is not a folder"):
        with output_lock(tmp_path / "file"):
            pass


def test_a_lock_file_does_not_make_a_folder_foreign(tmp_path) -> None:
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname()}))
    check_replaceable(tmp_path, lambda path: False, "thing")  # only a lock inside: empty
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(LlaraError, match="is not a previous thing"):
        check_replaceable(tmp_path, lambda path: False, "thing")


# ------------------------------------------------------------------ where llara takes it


def test_a_second_training_run_into_the_same_folder_is_refused(
    tiny_data, tiny_llama, sr_checkpoint, tmp_path, capsys
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("name: first\n")  # a run in progress: its config and log
    (out / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    overrides = tiny_train_overrides(tiny_data.root, tiny_llama, sr_checkpoint, out)
    with held_by_another_process(out) as pid:
        assert run_cli(["train", "--no-progress", *overrides]) == 1
        assert f"is in use by another llara command (PID {pid} " in one_line_error(capsys)
    assert (out / "config.yaml").read_text() == "name: first\n"
    assert (out / "metrics.jsonl").read_text() == '{"step": 1, "loss": 1.0}\n'


def test_training_holds_the_lock_for_the_whole_run_and_releases_it(
    tiny_data, tiny_llama, sr_checkpoint, tmp_path, monkeypatch
) -> None:
    from llara.training import checkpointing
    from llara.training.loop import train

    out = tmp_path / "run"
    config = load_config(None, tiny_train_overrides(tiny_data.root, tiny_llama, sr_checkpoint, out))
    with pytest.raises(KeyboardInterrupt), crash_after_checkpoint(2):
        train(config, progress=False)
    assert not (out / LOCK_FILE).exists()  # released by the failed run
    holders = []
    real = checkpointing.save_checkpoint

    def save_and_look(root: Path, *args, **kwargs):
        holders.append(json.loads((out / LOCK_FILE).read_text())["pid"])
        return real(root, *args, **kwargs)

    monkeypatch.setattr(checkpointing, "save_checkpoint", save_and_look)
    export = train(config, resume=True, progress=False)
    assert holders == [os.getpid(), os.getpid()]  # steps 4 and 6, while the run writes
    assert not (out / LOCK_FILE).exists()
    assert not [p for p in out.rglob("*") if p.name.startswith(LOCK_FILE)]
    assert (export / "llara.json").is_file()


def test_a_second_llara_run_into_the_same_run_folder_is_refused(tmp_path) -> None:
    from llara.pipeline.run import run_pipeline

    run_dir = tmp_path / "run"
    with held_by_another_process(run_dir) as pid:
        with pytest.raises(LlaraError, match=f"PID {pid} "):
            run_pipeline(RunConfig(), run_dir, force=["no-such-stage"], progress=False)
    with pytest.raises(LlaraError, match="matches no stage"):  # unlocked: it gets as far as its first check
        run_pipeline(RunConfig(), run_dir, force=["no-such-stage"], progress=False)
    assert not (run_dir / LOCK_FILE).exists()


# ------------------------------------------------------------------ --out of the evaluations


def test_sr_evaluate_replaces_only_its_own_metrics_file(tiny_data, sr_checkpoint, tmp_path, capsys) -> None:
    mine = tmp_path / "results.json"
    mine.write_text('{"my": "numbers"}\n')
    args = ["sr", "evaluate", "--checkpoint", str(sr_checkpoint), "--data", str(tiny_data.root), "--out"]
    assert run_cli([*args, str(mine)]) == 1
    err = one_line_error(capsys)
    assert "is not a previous metrics file" in err and "pass --force to replace it" in err
    assert mine.read_text() == '{"my": "numbers"}\n'
    assert run_cli([*args, str(mine), "--force"]) == 0
    assert json.loads(mine.read_text())["split"] == "test"
    assert run_cli([*args, str(mine)]) == 0  # now a metrics file llara wrote: replaced again
    capsys.readouterr()
    folder = tmp_path / "folder"
    folder.mkdir()
    for extra in ([], ["--force"]):
        assert run_cli([*args, str(folder), *extra]) == 1
        assert "is a folder" in one_line_error(capsys)
    assert list(folder.iterdir()) == []
    assert run_cli([*args, str(mine / "below-a-file.json")]) == 1
    assert "is a file" in one_line_error(capsys)


def test_evaluate_adds_its_files_and_never_replaces_the_users(tiny_data, sr_checkpoint, tmp_path, capsys) -> None:
    args = ["evaluate", "--checkpoint", str(sr_checkpoint), "--data", str(tiny_data.root), "--out"]
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    (out / "metrics.json").write_text('{"accuracy": 0.9}\n')
    assert run_cli([*args, str(out)]) == 1
    assert "metrics.json exists and was not written by a llara evaluation" in one_line_error(capsys)
    (out / "metrics.json").unlink()
    pd.DataFrame({"user": ["a"], "score": [1.0]}).to_parquet(out / "predictions.parquet")
    assert run_cli([*args, str(out)]) == 1
    assert "predictions.parquet exists and was not written by a llara evaluation" in one_line_error(capsys)
    assert list(pd.read_parquet(out / "predictions.parquet").columns) == ["user", "score"]
    (out / "predictions.parquet").unlink()
    assert run_cli([*args, str(out)]) == 0
    assert run_cli([*args, str(out)]) == 0  # its own files: replaced
    assert json.loads((out / "metrics.json").read_text())["split"] == "test"
    assert (out / "notes.txt").read_text() == "keep me"
    (out / "metrics.json").write_text("{}")
    assert run_cli([*args, str(out), "--force"]) == 0
    assert json.loads((out / "metrics.json").read_text())["split"] == "test"
    capsys.readouterr()
    a_file = tmp_path / "a-file"
    a_file.write_text("mine")
    assert run_cli([*args, str(a_file)]) == 1
    assert "exists and is not a folder" in one_line_error(capsys)
    assert a_file.read_text() == "mine"
