"""`llara data ...` end to end: exit codes, one-line errors, no partial output."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
from helpers import run_cli


def test_prepare_stats_show(tmp_path, capsys):
    out = tmp_path / "prepared"
    assert run_cli(["data", "prepare", "synthetic", "--out", str(out), "--seed", "2", "-O", "num_users=30"]) == 0
    text = capsys.readouterr().out
    assert "train rows" in text and "288" in text  # 24 train users x 12 targets (positions 3..14)
    assert run_cli(["data", "stats", str(out)]) == 0
    assert "test" in capsys.readouterr().out
    assert run_cli(["data", "show", str(out), "--split", "test", "--row", "1"]) == 0
    shown = capsys.readouterr().out
    assert "History (oldest first)" in shown and "target" in shown and "Item " in shown


def test_stats_show_which_protocol_a_folder_uses(tmp_path, capsys):
    for split_by in ("users", "leave-one-out"):
        out = tmp_path / split_by
        assert run_cli(["data", "prepare", "synthetic", "--out", str(out), "--split-by", split_by]) == 0
        capsys.readouterr()
        assert run_cli(["data", "stats", str(out)]) == 0
        assert re.search(rf"split by\s*│\s*{split_by}\s", capsys.readouterr().out)
    assert run_cli(["data", "prepare", "synthetic", "--out", str(tmp_path / "x"), "--split-by", "time"]) == 1
    assert "split_by: Input should be 'users' or 'leave-one-out'" in capsys.readouterr().err


def test_prepare_with_more_validation_windows(tmp_path, capsys):
    out = tmp_path / "more"
    assert run_cli(["data", "prepare", "synthetic", "--out", str(out), "-O", "num_users=30", "--val-windows", "3"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"val windows\s*│\s*3\s", text)
    assert re.search(r"│ val\s*│ 9\s", text)  # 3 validation users x 3 windows
    assert run_cli(["data", "prepare", "synthetic", "--out", str(tmp_path / "x"), "--val-windows", "0"]) == 1
    assert "val_windows" in capsys.readouterr().err


def test_prepare_from_config_file(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("data:\n  source: synthetic\n  num_candidates: 5\n  options: {num_items: 12, seq_len: 6}\n")
    assert (
        run_cli(["data", "prepare", "--config", str(config), "--out", str(tmp_path / "p"), "--history-len", "4"]) == 0
    )
    import json

    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert manifest["protocol"]["num_candidates"] == 5 and manifest["protocol"]["history_len"] == 4


def _ml_error_case(folder: Path, case: str) -> list[str]:
    """Break the ML-100K-format folder one way; return the prepare arguments."""
    data = folder / "u.data"
    item = folder / "u.item"
    lines = data.read_text().splitlines()
    if case == "missing file":
        data.unlink()
    elif case == "non-numeric id":
        lines[4] = lines[4].replace(lines[4].split("\t")[1], "abc", 1)
        data.write_text("\n".join(lines) + "\n")
    elif case == "malformed timestamp":
        parts = lines[6].split("\t")
        data.write_text("\n".join(lines[:6] + ["\t".join(parts[:3] + ["soon"])] + lines[7:]) + "\n")
    elif case == "item without title":
        item.write_bytes(b"\n".join(item.read_bytes().splitlines()[1:]) + b"\n")
    elif case == "duplicate title":
        item.write_bytes(item.read_bytes() + b"3|Another Film (1990)|x\n")
    elif case == "too few items":
        return ["--path", str(folder), "--num-candidates", "25"]
    return ["--path", str(folder)]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing file", r"u.data does not exist"),
        ("non-numeric id", r"u.data, line 5, field 'item_id': id 'abc' is not an integer"),
        ("malformed timestamp", r"u.data, line 7, field 'timestamp': timestamp 'soon'"),
        ("item without title", r"item '1' appears in the interactions but has no title"),
        ("duplicate title", r"u.item, line 31: item id '3' appears twice with different titles"),
        ("too few items", r"too few items for 24 negatives"),
    ],
)
def test_bad_input_one_line_error_no_output(ml_raw_folder, tmp_path, capsys, case, message):
    import re

    args = _ml_error_case(ml_raw_folder, case)
    out = tmp_path / "out"
    assert run_cli(["data", "prepare", "movielens", "--out", str(out), *args]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert re.search(message, err), err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def tabular_args(log: Path, titles: Path, out: Path) -> list[str]:
    """``llara data prepare tabular`` arguments for an interactions file and a titles file."""
    return ["data", "prepare", "tabular", "--path", str(log), "-O", f"titles={titles}", "--out", str(out)]


def test_missing_column_and_refused_pickle(tmp_path, capsys):
    log = tmp_path / "log.csv"
    log.write_text("user,product,timestamp\nu1,i1,1\n")
    (tmp_path / "titles.csv").write_text("item,title\ni1,One\n")
    code = run_cli(tabular_args(log, tmp_path / "titles.csv", tmp_path / "o"))
    assert code == 1 and "log.csv" in (err := capsys.readouterr().err) and "missing column(s) item" in err
    folder = tmp_path / "authors"
    folder.mkdir()
    (folder / "Test_data.df").write_bytes(pickle.dumps(Path("x")))
    (folder / "id2name.txt").write_text("0::A\n")
    assert run_cli(["data", "prepare", "llara", "--path", str(folder), "--out", str(tmp_path / "o")]) == 1
    assert "refused to unpickle pathlib" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_empty_dataset_and_debug_traceback(tmp_path, capsys):
    log = tmp_path / "log.csv"
    log.write_text("user,item,timestamp\n")
    (tmp_path / "titles.csv").write_text("item,title\ni1,One\n")
    args = tabular_args(log, tmp_path / "titles.csv", tmp_path / "o")
    assert run_cli(args) == 1 and "the dataset is empty" in capsys.readouterr().err
    from llara.errors import LlaraError

    with pytest.raises(LlaraError):
        run_cli(["--debug", *args])


def test_help_on_every_data_command(capsys):
    for command in (["data"], ["data", "prepare"], ["data", "stats"], ["data", "show"]):
        assert run_cli([*command, "--help"]) == 0
        assert "Usage" in capsys.readouterr().out
