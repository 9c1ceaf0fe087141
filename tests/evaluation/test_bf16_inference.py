"""Inference precision: a bf16 export loads bf16 where the device computes bf16 natively (float32 elsewhere,
or as --dtype says), and ranking, generation and serving run a bf16 base under bf16 autocast."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import move_trainable_weights

from llara.config import ModelConfig
from llara.evaluation.generation import generate_answers
from llara.evaluation.inference import load_export, load_zero_shot
from llara.evaluation.ranking import score_candidates, score_candidates_naive
from llara.llm.model import LlaraModel


@pytest.fixture(scope="module")
def bf16_export(tiny_data, tiny_llama, sr_checkpoint, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hybrid-prompt tiny export whose base weights were bf16 (``llara.json`` records ``bfloat16``)."""
    torch.manual_seed(0)
    config = ModelConfig(base_model=str(tiny_llama), prompt_mode="hybrid", dtype="bfloat16")
    model = move_trainable_weights(LlaraModel.from_config(config, tiny_data, sr_checkpoint))
    return model.save(tmp_path_factory.mktemp("bf16") / "export")


def base_dtype(model: LlaraModel) -> torch.dtype:
    return model.llm.get_input_embeddings().weight.dtype


def autocast_seen(model: LlaraModel) -> list[bool]:
    """Whether CPU autocast was on at each call of the model's decoder (a hook appends to the list)."""
    seen: list[bool] = []
    model.llm.get_decoder().register_forward_pre_hook(lambda *_: seen.append(torch.is_autocast_enabled("cpu")))
    return seen


def test_a_bf16_export_loads_by_the_device_or_as_asked(bf16_export, tiny_data, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLARA_NATIVE_BF16", "1")
    assert base_dtype(load_export(bf16_export, device="cpu")[0]) == torch.bfloat16
    assert base_dtype(load_export(bf16_export, device="cpu", dtype="float32")[0]) == torch.float32
    monkeypatch.setenv("LLARA_NATIVE_BF16", "0")
    model, _ = load_export(bf16_export, device="cpu")
    assert base_dtype(model) == torch.float32
    assert base_dtype(load_export(bf16_export, device="cpu", dtype="bfloat16")[0]) == torch.bfloat16
    seen = autocast_seen(model)
    rows = tiny_data.split("test").head(2).to_dict("records")
    assert all(np.isfinite(s).all() for s in score_candidates(model, rows).total)
    assert seen and not any(seen)  # a float32 base runs without autocast


def test_a_bf16_base_ranks_and_generates_under_autocast(bf16_export, tiny_data, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLARA_NATIVE_BF16", "1")
    model, _ = load_export(bf16_export, device="cpu")
    seen = autocast_seen(model)
    rows = tiny_data.split("test").head(2).to_dict("records")
    packed = score_candidates(model, rows)
    assert seen and all(seen)
    assert all(np.isfinite(s).all() and s.dtype == np.float64 for s in packed.total)
    seen.clear()
    naive = score_candidates_naive(model, rows)
    assert seen and all(seen)
    for fast, slow in zip(packed.total, naive.total, strict=True):  # bf16 matmuls: agree loosely
        np.testing.assert_allclose(fast, slow, rtol=0.05, atol=0.5)
    seen.clear()
    assert len(generate_answers(model, rows)) == 2
    assert len(seen) > 1 and all(seen)  # the prompt pass and every decoding step


def test_serving_loads_and_ranks_a_bf16_export(bf16_export, tiny_data, monkeypatch: pytest.MonkeyPatch) -> None:
    from llara.serving.recommend import Recommender

    monkeypatch.setenv("LLARA_NATIVE_BF16", "1")
    recommender = Recommender.load(bf16_export, device="cpu")
    assert base_dtype(recommender.model) == torch.bfloat16
    seen = autocast_seen(recommender.model)
    row = tiny_data.split("test").iloc[0]
    ranked = recommender.recommend([int(i) for i in row["history"]], list(row["candidates"]), k=3)
    assert len(ranked) == 3 and all(np.isfinite(r.score) for r in ranked) and all(seen)
    assert base_dtype(Recommender.load(bf16_export, device="cpu", dtype="float32").model) == torch.float32


def test_zero_shot_follows_auto(tiny_data, tiny_llama, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLARA_NATIVE_BF16", "1")
    assert base_dtype(load_zero_shot(str(tiny_llama), tiny_data, device="cpu")) == torch.bfloat16
    monkeypatch.setenv("LLARA_NATIVE_BF16", "0")
    assert base_dtype(load_zero_shot(str(tiny_llama), tiny_data, device="cpu")) == torch.float32
    assert base_dtype(load_zero_shot(str(tiny_llama), tiny_data, "bfloat16", device="cpu")) == torch.bfloat16


def test_the_evaluate_command_takes_a_dtype(bf16_export, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from helpers import run_cli

    from llara.evaluation import evaluate as evaluation

    loaded: list[torch.dtype] = []
    real = evaluation.evaluate_model

    def noted(model, *args, **kwargs):
        loaded.append(base_dtype(model))
        return real(model, *args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate_model", noted)
    monkeypatch.setenv("LLARA_NATIVE_BF16", "1")
    common = ["evaluate", "--checkpoint", str(bf16_export), "--protocol", "rank", "--max-rows", "2", "--device", "cpu",
              "--no-progress"]
    assert run_cli([*common, "--dtype", "float32"]) == 0 and run_cli(common) == 0
    assert loaded == [torch.float32, torch.bfloat16]
    assert run_cli([*common, "--dtype", "bf16"]) == 2
    assert "bf16" in capsys.readouterr().err
