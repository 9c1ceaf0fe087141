"""Faults around `llara train`: kill -9 at random moments, damaged checkpoints and logs, foreign or
mismatched inputs, and run configs given to `llara train`."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
import torch
from helpers import crash_after_checkpoint, run_cli, tiny_train_overrides
from safetensors.torch import load_file

from llara.commands.train import experiment_config
from llara.config import DataConfig, load_config
from llara.data.prepare import prepare_dataset
from llara.errors import LlaraError
from llara.training import checkpointing
from llara.training.loop import train
from llara.training.metrics_log import _truncate_metrics

ROOT = Path(__file__).resolve().parents[2]

#: runs `llara ARGS`; with LLARA_TEST_KILL_AT=N it SIGKILLs itself while writing checkpoint N (after its
#: weights, during its optimizer state), the way a power cut or the OOM killer would stop it. Each
#: safetensors write takes 0.1 s longer, so a kill from outside often lands inside a checkpoint write.
KILLABLE_LLARA = """
import os, signal, sys, time
import safetensors.torch
import torch
from llara.cli import main

kill_at = os.environ.get("LLARA_TEST_KILL_AT")
real_save, real_save_file = torch.save, safetensors.torch.save_file

def save(obj, path, *args, **kwargs):
    if kill_at and f".step-{int(kill_at):08d}." in str(path):
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, path, *args, **kwargs)

def slow_save_file(*args, **kwargs):
    time.sleep(0.1)
    return real_save_file(*args, **kwargs)

torch.save, safetensors.torch.save_file = save, slow_save_file
main(sys.argv[1:])
"""


@pytest.fixture(scope="module")
def reference(tiny_data, tiny_llama, sr_checkpoint, tmp_path_factory) -> dict[str, torch.Tensor]:
    """The final trainable weights of an uninterrupted 6-step run."""
    out = tmp_path_factory.mktemp("reference") / "run"
    train(load_config(None, tiny_train_overrides(tiny_data.root, tiny_llama, sr_checkpoint, out)), progress=False)
    return final_weights(out)


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "checkpoints" / checkpointing.checkpoint_name(6) / "trainable.safetensors"))


def assert_same_weights(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0)


def logged_steps(out: Path) -> list[int]:
    lines = (out / "metrics.jsonl").read_text().splitlines() if (out / "metrics.jsonl").exists() else []
    return [record["step"] for record in map(json.loads, lines) if "loss" in record]


def launch(args: list[str], kill_at: int | None = None) -> subprocess.Popen:
    env = {**os.environ, "LLARA_TEST_KILL_AT": str(kill_at or "")}
    return subprocess.Popen(
        [sys.executable, "-c", KILLABLE_LLARA, *args], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def kill_after_steps(process: subprocess.Popen, out: Path, steps: int, delay: float) -> None:
    """SIGKILL ``process`` ``delay`` seconds after its log shows ``steps`` steps (or once it has ended)."""
    deadline = time.monotonic() + 300
    while process.poll() is None and len(logged_steps(out)) < steps and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(delay)
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait()


def test_sigkill_at_random_moments_then_resume_matches_an_uninterrupted_run(
    tiny_data, tiny_llama, sr_checkpoint, tmp_path, reference
) -> None:
    out = tmp_path / "run"
    args = ["train", "--no-progress", *tiny_train_overrides(tiny_data.root, tiny_llama, sr_checkpoint, out)]
    args.append("train.save_every=1")  # a checkpoint after every step: more writes to be killed in
    first = launch(args, kill_at=3)
    assert first.wait(timeout=300) == -signal.SIGKILL, first.stderr.read().decode()
    assert [p.name for p in checkpointing.list_checkpoints(out / "checkpoints")] == ["step-00000001", "step-00000002"]
    assert list((out / "checkpoints").glob(".step-00000003.*.tmp"))  # the torn write, never taken for a checkpoint
    rng = random.Random(13)  # killed from outside at a random moment after one or two more steps
    second = launch([*args, "--resume"])
    kill_after_steps(second, out, steps=len(logged_steps(out)) + rng.randint(1, 2), delay=rng.uniform(0, 0.3))
    assert second.returncode == -signal.SIGKILL  # the 3 checkpoint writes left take longer than the delay
    last = launch([*args, "--resume"])
    assert last.wait(timeout=300) == 0, last.stderr.read().decode()
    assert logged_steps(out) == [1, 2, 3, 4, 5, 6]
    assert not list((out / "checkpoints").glob(".*.tmp")) and (out / "export" / "llara.json").is_file()
    assert_same_weights(final_weights(out), reference)


def test_resume_skips_a_damaged_checkpoint_and_a_torn_log_line(
    tiny_data, tiny_llama, sr_checkpoint, tmp_path, reference, caplog
) -> None:
    config = load_config(None, tiny_train_overrides(tiny_data.root, tiny_llama, sr_checkpoint, tmp_path))
    with pytest.raises(KeyboardInterrupt), crash_after_checkpoint(4):
        train(config, progress=False)
    weights = tmp_path / "checkpoints" / checkpointing.checkpoint_name(4) / "trainable.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated on disk after it was written
    with (tmp_path / "metrics.jsonl").open("a") as log:
        log.write('{"step": 5, "lo')  # the line being written when the run died
    train(config, resume=True, progress=False)
    assert "step-00000004 is unreadable" in caplog.text and "trying the previous checkpoint" in caplog.text
    assert logged_steps(tmp_path) == [1, 2, 3, 4, 5, 6][:2] + [3, 4, 5, 6]
    assert_same_weights(final_weights(tmp_path), reference)


def test_a_damaged_log_line_before_the_last_is_named(tmp_path) -> None:
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1}\n{"step": 2, "lo\n{"step": 3}\n')
    with pytest.raises(LlaraError, match="metrics.jsonl, line 2: not valid JSON"):
        _truncate_metrics(log, 3)
    log.write_text('{"step": 1}\n{"step": 2}\n{"step": 3')
    _truncate_metrics(log, 2)
    assert log.read_text() == '{"step": 1}\n{"step": 2}\n'


def test_training_refuses_a_folder_that_is_not_a_run(tiny_data, tiny_llama, sr_checkpoint, tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    config = load_config(None, tiny_train_overrides(tiny_data.root, tiny_llama, sr_checkpoint, tmp_path))
    with pytest.raises(LlaraError, match="is not a previous training run folder.*--force"):
        train(config, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_an_sr_checkpoint_fitted_on_other_data_is_refused(tiny_data, tiny_llama, tmp_path) -> None:
    from llara.sr.checkpoint import save_sr
    from llara.sr.registry import build_sr

    other = prepare_dataset(DataConfig(source="synthetic", seed=1), tmp_path / "seed1")  # the same 40 items
    fitted = save_sr(build_sr("sasrec", 40, 8, 10), tmp_path / "sr", data_content_hash=other.manifest["content_hash"])
    overrides = tiny_train_overrides(tiny_data.root, tiny_llama, fitted, tmp_path / "out", "train.max_steps=1")
    with pytest.raises(LlaraError, match="train.sr_checkpoint .* was trained on other prepared data"):
        train(load_config(None, overrides), progress=False)
    assert (train(load_config(None, overrides), progress=False, allow_data_mismatch=True) / "llara.json").is_file()


def test_a_run_config_trains_its_llara_variant_or_says_what_to_do(tmp_path, capsys) -> None:
    quickstart = ROOT / "configs" / "quickstart.yaml"
    assert run_cli(["train", "--config", str(quickstart)]) == 1
    err = capsys.readouterr().err
    assert "is a `llara run` config" in err and f"llara run {quickstart}" in err and "unknown key" not in err
    chosen = experiment_config(quickstart, ["train.data_dir=DATA", "train.sr_checkpoint=SR", "train.lr=1e-4"])
    written = yaml.safe_load(quickstart.read_text())
    rows, mode = written["train"]["max_train_rows"], written["model"]["prompt_mode"]
    assert chosen.name == "quickstart-llara-sasrec" and chosen.train.max_train_rows == rows
    assert (chosen.train.data_dir, chosen.train.lr, chosen.model.prompt_mode) == ("DATA", 1e-4, mode)
    two = tmp_path / "two.yaml"
    two.write_text(
        "variants:\n  - {name: a, kind: llara}\n  - {name: b, kind: llara, model: {prompt_mode: text}}\n"
        "  - {name: s, kind: sr}\n"
    )
    with pytest.raises(LlaraError, match=r"2 llara variants \(a, b\): choose one with --variant NAME"):
        experiment_config(two, ["train.data_dir=D"])
    assert experiment_config(two, ["train.data_dir=D"], variant="b").model.prompt_mode == "text"
    with pytest.raises(LlaraError, match="has no llara variant 's'; its llara variants: a, b"):
        experiment_config(two, ["train.data_dir=D"], variant="s")
    assert run_cli(["train", "train.lr=nan"]) == 1
    assert "train.lr: Input should be a finite number" in capsys.readouterr().err
