"""Training in bf16 on the CPU (the GPU recipe's code path) and one host-device sync per optimizer step; `auto`
precision resolved by the hardware (LLARA_NATIVE_BF16 standing in for it), logged and recorded in the export."""

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


def _auto_run(tiny_data, tiny_llama, sr_checkpoint, out) -> tuple[dict, str]:
    """A 1-step run with the default (auto) precision: its llara.json and its config.yaml text."""
    overrides = tiny_train_overrides(tiny_data.root, tiny_llama, sr_checkpoint, out, "train.max_steps=1",
                                     "train.save_every=null")
    config = load_config(None, overrides)
    assert (config.model.dtype, config.train.mixed_precision) == ("auto", "auto")
    export = train(config, progress=False)
    return json.loads((export / "llara.json").read_text()), (out / "config.yaml").read_text()


def test_auto_trains_in_float32_where_bf16_is_not_native(
    tiny_data, tiny_llama, sr_checkpoint, tmp_path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("LLARA_NATIVE_BF16", "0")
    with caplog.at_level("INFO", logger="llara.training.loop"):
        info, config_text = _auto_run(tiny_data, tiny_llama, sr_checkpoint, tmp_path)
    assert (info["dtype"], info["mixed_precision"]) == ("float32", "no")
    assert "dtype: auto" in config_text and "mixed_precision: auto" in config_text  # the configured values
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("precision:")]
    assert lines == ["precision: base weights float32, no autocast (auto: LLARA_NATIVE_BF16=0)"]


def test_auto_trains_in_bf16_where_it_is_native_and_the_export_loads_float32_elsewhere(
    tiny_data, tiny_llama, sr_checkpoint, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np
    import torch
    from accelerate import Accelerator

    from llara.evaluation.inference import load_export
    from llara.evaluation.ranking import score_candidates

    seen: list[str] = []
    real_init = Accelerator.__init__

    def recorded(self, *args, **kwargs):
        seen.append(kwargs.get("mixed_precision"))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(Accelerator, "__init__", recorded)
    monkeypatch.setenv("LLARA_NATIVE_BF16", "1")
    info, config_text = _auto_run(tiny_data, tiny_llama, sr_checkpoint, tmp_path)
    assert seen == ["bf16"] and (info["dtype"], info["mixed_precision"]) == ("bfloat16", "bf16")
    assert "dtype: auto" in config_text
    rows = tiny_data.split("test").head(2).to_dict("records")
    monkeypatch.setenv("LLARA_NATIVE_BF16", "0")  # the same export on a machine without native bf16
    model, _ = load_export(tmp_path / "export", device="cpu")
    assert model.llm.get_input_embeddings().weight.dtype == torch.float32
    scores = score_candidates(model, rows).ranking(model.rank_score)
    assert len(scores) == 2 and all(np.isfinite(s).all() for s in scores)
