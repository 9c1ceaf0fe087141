"""Hostile config files: alias bombs, deep nesting, other encodings, huge files, out-of-range values.

Each is refused before anything large is built, with one line naming the file (docs/reliability.md,
"Config files").
"""

from __future__ import annotations

import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from helpers import run_cli

from llara import config_files as config_module
from llara.commands.train import experiment_config
from llara.config import RunConfig, describe_config, load_config, read_yaml
from llara.errors import LlaraError


def alias_bomb(levels: int = 10, width: int = 10) -> str:
    """``data.options`` whose level k lists ``width`` aliases of level k - 1: ``width ** levels`` scalars
    once expanded, in about 600 bytes (the "billion laughs")."""
    lines = ["data:", "  options:", "    l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    for level in range(1, levels):
        lines.append(f"    l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def write(tmp_path: Path, text: str | bytes, name: str = "hostile.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def refused(path: Path, *overrides: str) -> str:
    """The LlaraError message of loading ``path`` as a run config; it is one line and names the file."""
    with pytest.raises(LlaraError) as raised:
        load_config(path, list(overrides), cls=RunConfig)
    message = str(raised.value)
    assert "\n" not in message and str(path) in message, message
    return message


# --- alias bombs -------------------------------------------------------------------------------------


def test_an_alias_bomb_is_refused_in_little_time_and_memory(tmp_path):
    """10 ** 10 scalars in 627 bytes: before, loading passed and `config show` (model_dump) then grew past
    2.4 GB; now loading refuses it in milliseconds."""
    path = write(tmp_path, alias_bomb())
    assert path.stat().st_size < 700
    tracemalloc.start()
    start = time.perf_counter()
    try:
        message = refused(path)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "more than 100,000 values" in message and "aliases" in message
    assert seconds < 2.0, f"{seconds:.2f} s"
    assert peak < 64 * 2**20, f"{peak / 2**20:.1f} MiB"


def test_the_alias_bomb_is_one_line_from_config_show_and_train(tmp_path, capsys):
    path = write(tmp_path, alias_bomb())
    assert run_cli(["train", "--config", str(path)]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(path) in error and "100,000" in error
    with pytest.raises(LlaraError, match="100,000"):
        experiment_config(path, [])


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS bounds the address space on Linux only")
def test_config_show_of_the_alias_bomb_stays_within_1_gib(tmp_path):
    """In a child process capped at 1 GiB of address space, so the expansion it once did cannot hurt the
    machine running the tests."""
    import resource

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))

    path = write(tmp_path, alias_bomb())
    done = subprocess.run(
        [sys.executable, "-m", "llara", "config", "show", "--config", str(path)],
        capture_output=True, text=True, timeout=60, preexec_fn=cap,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stderr.count("\n") == 1 and "100,000" in done.stderr and str(path) in done.stderr


def test_aliases_within_the_budget_still_work(tmp_path):
    """Anchors and aliases are ordinary YAML: 1,000 expanded scalars load and print."""
    path = write(tmp_path, alias_bomb(levels=3) + "train:\n  lr: &lr 0.002\nsr:\n  lr: *lr\n")
    config = load_config(path, cls=RunConfig)
    assert len(config.data.options["l2"]) == 10 and config.sr.lr == config.train.lr == 0.002
    assert "l2:" in describe_config(config, "data")


def test_the_node_budget_counts_expanded_aliases(tmp_path, monkeypatch):
    monkeypatch.setattr(config_module, "MAX_CONFIG_NODES", 40)
    # 1 mapping, 1 key, 1 list of 10 scalars: 13 nodes; each alias of it adds 12 (its key and the list)
    base = "a: &a [" + ", ".join("x" * 10) + "]\n"
    assert read_yaml(write(tmp_path, base + "b: *a\nc: *a\n"))  # 1 + 12 * 3 = 37
    with pytest.raises(LlaraError, match="more than 40 values"):
        read_yaml(write(tmp_path, base + "b: *a\nc: *a\nd: *a\n"))  # 49
    with pytest.raises(LlaraError, match="more than 40 values"):
        read_yaml(write(tmp_path, "".join(f"k{i}: {i}\n" for i in range(30))))  # no aliases, 61 nodes


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path):
    assert "alias inside its own anchor" in refused(write(tmp_path, "data:\n  options: &x {me: *x}\n"))


# --- deep nesting --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "nested",
    [
        "[" * 5000 + "]" * 5000,  # flow lists
        "{a: " * 5000 + "1" + "}" * 5000,  # flow mappings
        "\n    " + "- " * 5000 + "x",  # a compact block list: - - - x
    ],
    ids=["flow-list", "flow-mapping", "block-list"],
)
def test_deep_nesting_is_refused_quickly(tmp_path, nested):
    """5,000 levels raised RecursionError (after seconds of scanning); now one line, in milliseconds."""
    path = write(tmp_path, f"data:\n  options:\n    deep: {nested}\n")
    start = time.perf_counter()
    message = refused(path)
    assert "nests deeper than 100 levels" in message
    assert time.perf_counter() - start < 2.0


def test_nesting_within_the_limit_is_accepted(tmp_path):
    depth = 90  # 3 levels above it: the top mapping, data, options
    config = load_config(write(tmp_path, "data:\n  options:\n    deep: " + "[" * depth + "]" * depth + "\n"))
    value = config.data.options["deep"]
    for _ in range(depth - 1):
        value = value[0]
    assert value == []


def test_deep_nesting_is_one_line_from_the_command_line(tmp_path, capsys):
    path = write(tmp_path, "name: " + "[" * 5000 + "]" * 5000 + "\n")
    assert run_cli(["config", "show", "--config", str(path)]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(path) in error and "deeper than 100" in error


# --- encoding, size, malformed YAML ----------------------------------------------------------------------


def test_a_file_that_is_not_utf8_is_one_line(tmp_path, capsys):
    path = write(tmp_path, "name: caf\xe9\n".encode("latin-1"))
    assert "is not UTF-8 text (byte 0xe9 at offset 9)" in refused(path)
    assert run_cli(["config", "show", "--config", str(path)]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "UTF-8" in error
    with pytest.raises(LlaraError, match="not UTF-8"):
        read_yaml(write(tmp_path, "name: x\n".encode("utf-16")))


def test_utf8_with_or_without_a_byte_order_mark_is_read(tmp_path):
    assert read_yaml(write(tmp_path, "name: café\n".encode("utf-8-sig"))) == {"name": "café"}
    assert read_yaml(write(tmp_path, "name: café\n")) == {"name": "café"}


def test_a_file_over_1_mib_is_refused_before_it_is_parsed(tmp_path):
    """10 MB of 100,000 data.options keys was accepted (after seconds of parsing); now refused at once."""
    options = "".join(f"    key{i:06d}: {'v' * 80}\n" for i in range(100_000))
    path = write(tmp_path, "data:\n  options:\n" + options)
    assert path.stat().st_size > 9_000_000
    start = time.perf_counter()
    assert "larger than 1 MiB" in refused(path)
    assert time.perf_counter() - start < 1.0


def test_the_size_cap_is_inclusive(tmp_path, monkeypatch):
    monkeypatch.setattr(config_module, "MAX_CONFIG_BYTES", 16)
    assert read_yaml(write(tmp_path, "name: abcdefghij")) == {"name": "abcdefghij"}  # 16 bytes
    with pytest.raises(LlaraError, match="larger than"):
        read_yaml(write(tmp_path, "name: abcdefghijk"))  # 17


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: [\n", r"not valid YAML: .* \(line 2, column 1\)"),
        ("a: b: c\n", r"not valid YAML: mapping values are not allowed here \(line 1, column 5\)"),
        ("a: !!python/object:os.system x\n", "not valid YAML: .*could not determine a constructor"),
        ("a: \x01\n", "not valid YAML: unacceptable character"),
        ("a: 2001-13-01\n", "not valid YAML: month must be in 1..12"),
        ("a: " + "9" * 5000 + "\n", "an integer of more than 100 characters"),
        ("a: " + "1:" * 400_000 + "1\n", "an integer of more than 100 characters"),  # base 60: quadratic
    ],
    ids=["unclosed", "nested-colon", "python-tag", "control-char", "bad-date", "huge-int", "sexagesimal"],
)
def test_malformed_yaml_is_one_line_naming_the_place(tmp_path, text, message):
    start = time.perf_counter()
    with pytest.raises(LlaraError, match=message) as raised:
        read_yaml(write(tmp_path, text))
    assert "\n" not in str(raised.value)
    assert time.perf_counter() - start < 2.0


# --- out-of-range training values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override",
    [
        "train.batch_size=0",
        "train.micro_batch_size=0",
        "train.max_steps=-1",
        "train.max_steps=0",
        "train.save_every=0",
        "train.epochs=0",
        "train.eval_every=0",
        "train.eval_rows=0",
        "train.max_train_rows=0",
    ],
)
def test_counts_of_steps_rows_and_batches_are_at_least_one(override):
    field, value = override.split("=")
    expected = rf"^config: {field}: Input should be greater than or equal to 1 \(got {value}\)$"
    with pytest.raises(LlaraError, match=expected):
        load_config(None, [override])


def test_out_of_range_values_in_a_file_name_the_file_and_field(tmp_path):
    path = write(tmp_path, "train:\n  batch_size: 0\n  save_every: 0\n")
    message = refused(path)
    assert "train.batch_size: Input should be greater than or equal to 1 (got 0)" in message
    assert "train.save_every: Input should be greater than or equal to 1 (got 0)" in message


def test_null_keeps_its_meaning(tmp_path):
    """save_every null: a checkpoint at the last step only; max_steps null: sized by epochs."""
    config = load_config(None, ["train.save_every=null", "train.max_steps=null", "train.eval_every=null"])
    assert (config.train.save_every, config.train.max_steps, config.train.eval_every) == (None, None, None)
    assert load_config(None, ["train.save_every=1", "train.max_steps=1"]).train.max_steps == 1


def test_a_zero_batch_is_refused_before_training_starts(tmp_path, capsys):
    """It used to reach the trainer, which said batch_size 0 "must be a multiple of train.micro_batch_size"."""
    assert run_cli(["train", "train.batch_size=0", f"train.out_dir={tmp_path / 'run'}"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "train.batch_size: Input should be greater than or equal to 1" in error
    assert "multiple" not in error and not (tmp_path / "run").exists()
