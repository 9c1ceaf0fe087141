"""Training in bf16 on the CPU (the GPU recipe's code path) and one host-device sync per optimizer step."""

from __future__ import annotations

import json

import pytest
from helpers import tiny_train_overrides

from llara.config import load_config
from llara.training.loop import train


def test_bf16_weights_with_bf16_autocast_train_and_sync_once_per_step(
    tiny_data, tiny_llama, sr_checkpoint, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from accelerate import Accelerator

    reduces: list[int] = []
    real_reduce = Accelerator.reduce

    def counted(self, tensor, *args, **kwargs):
        reduces.append(1)
        return real_reduce(self, tensor, *args, **kwargs)

    monkeypatch.setattr(Accelerator, "reduce", counted)
    overrides = tiny_train_overrides(tiny_data.root, tiny_llama, sr_checkpoint, tmp_path, "train.max_steps=2",
                                     "model.dtype=bfloat16", "train.mixed_precision=bf16", "train.save_every=null")
    export = train(load_config(None, overrides), progress=False)
    steps = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(steps) == 2 and all(step["loss"] > 0 for step in steps)
    assert len(reduces) == 2  # one reduce (the only host-device sync of the step's values) per optimizer step
    assert json.loads((export / "llara.json").read_text())["dtype"] == "bfloat16"


def test_runs_with_different_precision_follow_each_other_in_one_process(tiny_data, tiny_llama, sr_checkpoint, tmp_path) -> None:
    for name, precision in (("bf16", "bf16"), ("fp32", "no")):
        overrides = tiny_train_overrides(tiny_data.root, tiny_llama, sr_checkpoint, tmp_path / name, "train.max_steps=1",
                                         f"train.mixed_precision={precision}", "train.save_every=null")
        assert (train(load_config(None, overrides), progress=False) / "llara.json").is_file()
