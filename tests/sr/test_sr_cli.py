"""`llara sr train / evaluate / import` end to end on the tiny planted-pattern folder."""

from __future__ import annotations

import json

from helpers import run_cli

from llara.sr.checkpoint import save_sr
from llara.sr.registry import build_sr


def test_train_then_evaluate(tiny_data, tmp_path, capsys):
    out = tmp_path / "gru"
    args = ["sr", "train", "--data", str(tiny_data.root), "--out", str(out), "--model", "gru4rec", "--epochs", "2"]
    assert run_cli([*args, "--no-progress", "--set", "batch_size=64"]) == 0
    assert "best validation HR@1" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["training"]["config"]["batch_size"] == 64
    assert run_cli(["sr", "evaluate", "--checkpoint", str(out), "--data", str(tiny_data.root)]) == 0
    printed = capsys.readouterr().out
    assert "NDCG@10" in printed and "95% CI" in printed
    report = json.loads((out / "metrics.json").read_text())
    assert report["split"] == "test" and report["model"]["model_type"] == "gru4rec"
    assert set(report["metrics"]["rank"]) >= {"hr@1", "hr@5", "ndcg@5", "ndcg@10", "mrr"}


def test_seeds_report_mean_and_std(tiny_data, tmp_path, capsys):
    out = tmp_path / "seeds"
    args = ["sr", "train", "--data", str(tiny_data.root), "--out", str(out), "--model", "caser", "--epochs", "1"]
    assert run_cli([*args, "--seeds", "2", "--seed", "3", "--no-progress"]) == 0
    assert "±" in capsys.readouterr().out
    report = json.loads((out / "seeds.json").read_text())
    assert [run["seed"] for run in report["runs"]] == [3, 4]
    assert report["summary"]["hr@1"]["n"] == 2
    assert (out / "seed-4" / "model.safetensors").exists()


def test_errors_are_one_line(tiny_data, tmp_path, capsys):
    assert run_cli(["sr", "evaluate", "--checkpoint", str(tmp_path / "none"), "--data", str(tiny_data.root)]) == 1
    assert "not an SR checkpoint" in capsys.readouterr().err
    args = ["sr", "train", "--data", str(tiny_data.root), "--out", str(tmp_path / "x"), "--model", "bert4rec"]
    assert run_cli(args) == 1
    assert "model" in capsys.readouterr().err
    assert run_cli(["sr", "import", "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "y")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


def test_evaluating_a_mismatched_checkpoint_writes_nothing(tiny_data, tmp_path, capsys):
    save_sr(build_sr("sasrec", 25, 8, 5), tmp_path / "other")
    out = tmp_path / "metrics.json"
    args = ["sr", "evaluate", "--checkpoint", str(tmp_path / "other"), "--data", str(tiny_data.root), "--out", str(out)]
    assert run_cli(args) == 1
    assert "items" in capsys.readouterr().err and not out.exists()
