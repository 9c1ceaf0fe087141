"""benchmarks/evidence_reliability.py scores a backbone on the training rows a rule picks and on validation."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

from llara.errors import LlaraError
from llara.sr.checkpoint import load_sr
from llara.sr.evaluate import hit_rate_at_1
from llara.sr.samples import split_tensors

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "evidence_reliability.py"


def test_each_rule_scores_its_own_rows_and_validation(tiny_data, sr_checkpoint, monkeypatch, capsys) -> None:
    args = ["--data", str(tiny_data.root), f"ref={sr_checkpoint}:all,last2,holdout0.5"]
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *args])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    lines = {line.split(" | ")[1]: line.split(" | ") for line in capsys.readouterr().out.splitlines()[2:]}
    users = tiny_data.split("train")["user"]
    assert int(lines["training, all"][2]) == len(users)
    assert int(lines["training, last2"][2]) == 2 * users.nunique()
    assert 0 < int(lines["training, holdout0.5"][2]) < len(users)
    model = load_sr(sr_checkpoint)
    val_hr1 = hit_rate_at_1(model, split_tensors(tiny_data, "val", model.max_len))
    assert float(lines["validation"][3]) == pytest.approx(val_hr1, abs=5e-4)


def test_a_stack_of_one_backbone_twice_reads_like_the_backbone(tiny_data, sr_checkpoint, monkeypatch, capsys) -> None:
    args = ["--data", str(tiny_data.root), "--val-from", "5", f"one={sr_checkpoint}:last2",
            f"twice={sr_checkpoint}+{sr_checkpoint}:last2"]
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *args])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()[2:]
    one, twice = ([line.split(" | ")[2:] for line in lines if line.startswith(f"| {label} |")] for label in ("one", "twice"))
    assert one == twice  # each backbone's scores standardised, summed: the same ranking and target z
    assert int(one[1][0]) == len(tiny_data.split("val")) - 5


def test_an_unknown_rule_is_refused(tiny_data) -> None:
    with pytest.raises(LlaraError, match="unknown row rule 'first3'"):
        runpy.run_path(str(SCRIPT))["rule_mask"](tiny_data.split("train")["user"], "first3")
