"""The root command: one-line errors, --debug with the cause, quiet library warnings, `llara config show`."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import yaml
from helpers import run_cli

from llara.cli import QUIET_LIBRARIES, quiet_library_warnings
from llara.config import RunConfig, load_config
from llara.errors import LlaraError

BAD_SPLIT = ["data", "prepare", "synthetic", "--split", "a,b,c"]


def test_an_error_is_one_line_by_default(tmp_path, capsys):
    assert run_cli([*BAD_SPLIT, "--out", str(tmp_path / "o")]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: --split 'a,b,c'") and error.count("\n") == 1


def test_debug_raises_the_error_with_its_cause(tmp_path):
    with pytest.raises(LlaraError, match="--split") as raised:
        run_cli(["--debug", *BAD_SPLIT, "--out", str(tmp_path / "o")])
    assert isinstance(raised.value.__cause__, ValueError)


def test_library_deprecation_warnings_are_quiet_unless_debugging():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_library_warnings()
        for library in (*QUIET_LIBRARIES, "llara"):
            warnings.warn_explicit("old API", FutureWarning, "x.py", 1, module=f"{library}.module")
    assert [str(w.message) for w in caught] == ["old API"]  # only llara's own


def test_config_show_prints_resolved_values_with_descriptions(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("train: {lr: 2.0e-4}\n")
    assert run_cli(["config", "show", "--config", str(config), "--section", "train", "train.epochs=2"]) == 0
    shown = capsys.readouterr().out
    assert "# rows per optimizer step" in shown
    train = yaml.safe_load(shown)["train"]
    assert train["lr"] == 2.0e-4 and train["epochs"] == 2 and train["schedule"] == "curriculum"


def test_config_show_reads_back_as_the_same_config(capsys):
    path = Path(__file__).resolve().parents[1] / "configs" / "repro-cpu-movielens.yaml"
    assert run_cli(["config", "show", "--config", str(path)]) == 0
    config = load_config(path, cls=RunConfig)
    assert yaml.safe_load(capsys.readouterr().out) == config.model_dump(mode="json")


def test_config_show_refuses_an_unknown_section(capsys):
    assert run_cli(["config", "show", "--section", "training"]) == 1
    assert "section 'training' is not one of" in capsys.readouterr().err


def test_help_lists_every_command_in_pipeline_order(capsys):
    assert run_cli(["--help"]) == 0
    shown = capsys.readouterr().out
    names = ["data", "sr", "train", "evaluate", "recommend", "serve", "run", "report", "config"]
    positions = [shown.index(f" {name} ") for name in names]
    assert positions == sorted(positions)
