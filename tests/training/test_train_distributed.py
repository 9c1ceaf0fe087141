"""`llara train` under `accelerate launch` with two CPU processes gives the one-process result."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from llara.training.checkpointing import list_checkpoints
from llara.config import load_config
from llara.testing import create_tiny_llama
from llara.training.loop import train


@pytest.mark.slow
def test_two_processes_match_one_process(tiny_data, tmp_path: Path) -> None:
    from llara.sr.checkpoint import save_sr
    from llara.sr.registry import build_sr

    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    llara = shutil.which("llara", path=str(Path(sys.executable).parent))
    if accelerate is None or llara is None:
        pytest.skip("the accelerate and llara commands are not installed beside this Python")
    llm = create_tiny_llama(tmp_path / "llm", tiny_data.titles)
    torch.manual_seed(0)
    sr = save_sr(build_sr("sasrec", tiny_data.num_items, 64, 10), tmp_path / "sr")
    overrides = [
        f"model.base_model={llm}", f"train.data_dir={tiny_data.root}", f"train.sr_checkpoint={sr}",
        "train.max_train_rows=96", "train.batch_size=8", "train.micro_batch_size=4", "train.max_steps=4",
        "train.schedule=direct", "model.lora_dropout=0.0", "train.lr=2e-3", "train.eval_every=2",
    ]
    train(load_config(None, [*overrides, f"train.out_dir={tmp_path / 'one'}"]), progress=False)

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", llara, "train", "--no-progress",
        *overrides, f"train.out_dir={tmp_path / 'two'}",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    last_one, last_two = list_checkpoints(tmp_path / "one" / "checkpoints")[-1], list_checkpoints(tmp_path / "two" / "checkpoints")[-1]
    assert set(load_file(str(last_two / "rng.safetensors"))) == {"rank0", "rank1"}
    one, two = load_file(str(last_one / "trainable.safetensors")), load_file(str(last_two / "trainable.safetensors"))
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-6)
    records = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    singles = [json.loads(line) for line in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("tokens") for r in records] == [r.get("tokens") for r in singles]
    assert (tmp_path / "two" / "export" / "llara.json").is_file()
