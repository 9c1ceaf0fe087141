"""Hostile authors' data files (``llara data prepare llara``): memory bombs and malformed rows are one-line
errors naming the file, refused before they allocate (llara.data.llara_files, llara.safe_pickle)."""

from __future__ import annotations

import json
import pickle
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llara.config import DataConfig
from llara.data import llara_files
from llara.data.llara_files import load_pickled_frame
from llara.data.prepare import prepare_dataset
from llara.errors import LlaraError

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS bounds the address space on Linux only")


class Call:
    """Pickles as ``func(*args)`` (then ``BUILD`` with ``state`` when given): any call a pickle can ask for."""

    def __init__(self, func, args: tuple, state=None) -> None:
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def _reconstruct():
    from numpy._core.multiarray import _reconstruct as real

    return real


def authors_folder(root: Path, test_file: bytes) -> Path:
    """An authors'-style folder: ``Test_data.df`` holding ``test_file`` and 30 titles."""
    root.mkdir()
    (root / "Test_data.df").write_bytes(test_file)
    (root / "id2name.txt").write_text("\n".join(f"{i}::Game {i}" for i in range(30)) + "\n", encoding="utf-8")
    return root


PREPARE_CAPPED = """
import json, resource, sys, time
from llara.cli import main
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # after the imports
start = time.perf_counter()
try:
    main(["data", "prepare", "llara", "--path", sys.argv[1], "--out", sys.argv[2]])
    code = 0
except SystemExit as exc:
    code = exc.code
growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
print(json.dumps({"code": code, "seconds": time.perf_counter() - start, "growth_mib": growth}))
"""


def prepare_capped(folder: Path, out: Path, cap: int = 2**30, timeout: float = 60) -> tuple[dict, str]:
    """``llara data prepare llara`` on ``folder`` in a child capped at ``cap`` bytes of address space (a
    bomb fails fast there); its report and its stderr."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    done = subprocess.run(
        [sys.executable, "-c", PREPARE_CAPPED, str(folder), str(out)],
        capture_output=True, text=True, timeout=timeout, preexec_fn=limit,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


BOMBS = {
    # the reported 39-byte file: bytearray(2**38) allocated (and zeroed) 256 GiB
    "bytearray": Call(bytearray, (2**38,)),
    # an empty array given a 2**30-slot object state holding one value (numpy allocates, then complains)
    "array state": Call(_reconstruct(), (np.ndarray, (0,), b"b"), (1, (2**30,), np.dtype("O"), False, [1])),
    # numpy's own reconstruct asked for a 16 GiB array
    "array shape": Call(_reconstruct(), (np.ndarray, (2**34,), b"b")),
    # DataFrame(0, index, columns) fills 2**20 x 2**20 cells from two lazy RangeIndexes
    "frame call": Call(pd.DataFrame, (0, pd.RangeIndex(2**20), pd.RangeIndex(2**20))),
}


@linux_only
@pytest.mark.parametrize("bomb", list(BOMBS))
def test_memory_bombs_are_one_line_and_allocate_nothing(tmp_path, bomb):
    data = pickle.dumps(BOMBS[bomb], protocol=4)
    assert len(data) < 300
    folder = authors_folder(tmp_path / "bomb", data)
    report, stderr = prepare_capped(folder, tmp_path / "out")
    assert report["code"] == 1 and stderr.count("\n") == 1, stderr[-3000:]
    assert str(folder / "Test_data.df") in stderr and "refused" in stderr, stderr
    assert report["growth_mib"] < 300 and report["seconds"] < 20, report


@linux_only
def test_rows_sharing_one_long_list_are_refused_by_their_total_length(tmp_path):
    """100,000 rows whose ``seq`` is one list of 10,000 ids (a memo reference each; 1.8 MB in all) would
    copy 10**9 ids; the histories may hold (2 x the file size + 64 MiB) / 8 ids in all."""
    shared = [i % 30 for i in range(10_000)]
    rows = 100_000
    frame = pd.DataFrame({"seq": [shared] * rows, "len_seq": [len(shared)] * rows, "next": [1] * rows})
    folder = authors_folder(tmp_path / "shared", pickle.dumps(frame, protocol=5))
    assert (folder / "Test_data.df").stat().st_size < 2 * 2**20
    report, stderr = prepare_capped(folder, tmp_path / "out", timeout=40)
    assert report["code"] == 1 and stderr.count("\n") == 1, stderr[-3000:]
    assert "the histories hold more than" in stderr and str(folder / "Test_data.df") in stderr, stderr
    assert report["growth_mib"] < 300 and report["seconds"] < 20, report


def test_an_arrow_array_is_charged_by_its_declared_length(tmp_path):
    """A null Arrow array needs no buffer for any length: 2**40 elements cost nothing until pandas
    converts them, so its declared length is charged (8 bytes each) before it is built."""
    pa = pytest.importorskip("pyarrow")
    path = tmp_path / "Test_data.df"
    path.write_bytes(pickle.dumps(Call(pa.lib._restore_array, ((pa.null(), 2**40, 0, 2**40, [None], [], None),))))
    with pytest.raises(LlaraError, match=r"an Arrow array would bring .* more than the .* allowed"):
        load_pickled_frame(path)


def test_an_arrow_array_shorter_than_its_length_is_refused(tmp_path):
    """Buffers too small for the declared length would be read past their end; the array is validated."""
    pa = pytest.importorskip("pyarrow")
    buffers = pa.array(["a", "bc"]).buffers()
    path = tmp_path / "Test_data.df"
    path.write_bytes(pickle.dumps(Call(pa.lib._restore_array, ((pa.string(), 2**10, 0, 0, buffers, [], None),))))
    with pytest.raises(LlaraError, match=r"not a readable pickled DataFrame \(ArrowInvalid: .*too small"):
        load_pickled_frame(path)


def test_a_memory_error_while_reading_is_one_line(tmp_path, monkeypatch):
    path = tmp_path / "Test_data.df"
    pd.DataFrame({"seq": [[1, 2, 3]], "len_seq": [3], "next": [4]}).to_pickle(path)

    def exhausted(self):
        raise MemoryError

    monkeypatch.setattr(llara_files._FrameUnpickler, "load", exhausted)
    with pytest.raises(LlaraError, match=f"{path}: ran out of memory while unpickling it"):
        load_pickled_frame(path)


def test_legitimate_frames_still_load(tmp_path):
    """The bounds leave DataFrames of plain values alone, in every protocol pandas writes them with (3-5)."""
    frame = pd.DataFrame(
        {
            "seq": [[(np.int64(i), np.int64(4)) for i in range(10)], list(range(10))],
            "len_seq": [3, 10],
            "next": [(np.int64(2), np.int64(5)), 7],
            "title": ["a", "b"],
            "score": [0.5, 1.5],
        },
        index=[4, 9],
    )
    for protocol in (3, 4, 5):
        path = tmp_path / f"p{protocol}.df"
        path.write_bytes(pickle.dumps(frame, protocol=protocol))
        assert load_pickled_frame(path).equals(frame)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("seq", None, "field 'seq': expected a sequence of item ids, got None"),
        ("seq", 7, "field 'seq': expected a sequence of item ids, got 7"),
        ("len_seq", None, "field 'len_seq': nan is not a length"),  # a float column
        ("len_seq", "three", "field 'len_seq': 'three' is not a length"),
        ("next", None, "malformed seq/next"),
    ],
)
def test_a_missing_or_mistyped_field_names_the_file_row_and_column(tmp_path, column, value, message):
    rows = [{"seq": [1, 2, 3, 4, 30, 30], "len_seq": 4, "next": 5} for _ in range(3)]
    rows[1][column] = value
    folder = authors_folder(tmp_path / "data", b"")
    pd.DataFrame(rows).to_pickle(folder / "Test_data.df")
    with pytest.raises(LlaraError, match=rf"Test_data\.df, row 1(, |: ){message}") as caught:
        prepare_dataset(DataConfig(source="llara", path=str(folder)), tmp_path / "out")
    assert "\n" not in str(caught.value)
