"""The CUDA seams, checked on the CPU: device choice, attention kernel, batch transfer, bf16 base weights."""

from __future__ import annotations

import pytest
import torch

from llara.config import ModelConfig
from llara.errors import LlaraError
from llara.evaluation.ranking import ranking_method
from llara.llm import device as device_module
from llara.llm.device import ATTENTION_ENV, attention_for, choose_attention, resolve_device, to_device
from llara.llm.model import LlaraModel

CUDA = torch.device("cuda")
CPU = torch.device("cpu")


def test_auto_device_is_the_cpu_without_cuda_and_a_missing_gpu_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == CPU and resolve_device(None) == CPU and resolve_device("cpu") == CPU
    with pytest.raises(LlaraError, match="--device cpu"):
        resolve_device("cuda")
    with pytest.raises(LlaraError, match="not a device name"):
        resolve_device("gpu-please")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == CUDA


@pytest.mark.parametrize("flash", [False, True])
def test_auto_attention_takes_flash_only_on_cuda_without_the_packed_layout(monkeypatch, flash) -> None:
    monkeypatch.setattr(device_module, "flash_attention_installed", lambda: flash)
    assert choose_attention("auto", CPU, block_mask=False) == "eager"  # the CPU's fastest (BENCHMARKS.md)
    assert choose_attention("auto", CPU, block_mask=True) == "eager"
    assert choose_attention("auto", CUDA, block_mask=True) == "sdpa"
    assert choose_attention("auto", CUDA, block_mask=False) == ("flash_attention_2" if flash else "sdpa")
    assert choose_attention("eager", CUDA, block_mask=True) == "eager"


def test_flash_attention_is_refused_where_it_cannot_run(monkeypatch) -> None:
    monkeypatch.setattr(device_module, "flash_attention_installed", lambda: True)
    with pytest.raises(LlaraError, match="block mask"):
        choose_attention("flash_attention_2", CUDA, block_mask=True)
    with pytest.raises(LlaraError, match="CUDA GPU"):
        choose_attention("flash_attention_2", CPU, block_mask=False)
    monkeypatch.setenv(ATTENTION_ENV, "fast")
    with pytest.raises(LlaraError, match=ATTENTION_ENV):
        attention_for(CPU, block_mask=False)
    monkeypatch.setenv(ATTENTION_ENV, "eager")
    assert attention_for(CPU, block_mask=True) == "eager"


def test_training_gets_sdpa_for_ranking_objectives_and_flash_for_sft_on_cuda(monkeypatch) -> None:
    from llara.config import ExperimentConfig
    from llara.training.setup import training_attention

    monkeypatch.setattr(device_module, "flash_attention_installed", lambda: True)
    sft = ExperimentConfig()
    listwise = ExperimentConfig.model_validate({"train": {"objective": "listwise"}})
    assert training_attention(sft, CUDA) == "flash_attention_2"
    assert training_attention(listwise, CUDA) == "sdpa"
    assert training_attention(sft, CPU) == "eager"


def test_batches_reach_the_device_unchanged_and_other_values_pass_through() -> None:
    batch = {"input_ids": torch.arange(6).view(2, 3), "note": "x"}
    moved = to_device(batch, "cpu")
    assert torch.equal(moved["input_ids"], batch["input_ids"]) and moved["note"] == "x"


def test_cuda_batches_are_pinned_and_copied_without_blocking(monkeypatch) -> None:
    calls: list[str] = []

    class Tracked(torch.Tensor):
        def pin_memory(self, *args, **kwargs):
            calls.append("pin")
            return self

        def to(self, *args, **kwargs):
            calls.append(f"to non_blocking={kwargs.get('non_blocking')}")
            return self

    to_device({"ids": torch.zeros(2).as_subclass(Tracked)}, CUDA)
    assert calls == ["pin", "to non_blocking=True"]


def test_bf16_base_keeps_float32_trainable_weights_and_trains_under_autocast(tiny_data, tiny_llama, sr_checkpoint) -> None:
    config = ModelConfig(base_model=str(tiny_llama), dtype="bfloat16", prompt_mode="hybrid")
    model = LlaraModel.from_config(config, tiny_data, sr_checkpoint)
    trainable = {n: p.dtype for n, p in model.named_parameters() if p.requires_grad}
    frozen = {p.dtype for p in model.llm.parameters() if not p.requires_grad}
    assert trainable and set(trainable.values()) == {torch.float32}
    assert any("lora" in n for n in trainable) and any(n.startswith("projector.") for n in trainable)
    assert frozen == {torch.bfloat16}
    batch = model.encode_training(tiny_data.split("train").head(2).to_dict("records"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and g.dtype == torch.float32 for g in grads)


def test_ranking_falls_back_to_expanded_without_block_masks(tiny_data, tiny_llama, sr_checkpoint) -> None:
    model = LlaraModel.from_config(ModelConfig(base_model=str(tiny_llama), prompt_mode="text"), tiny_data, lora=False)
    assert ranking_method(model) == "packed"
    model.llm.config._attn_implementation = "flash_attention_2"
    assert ranking_method(model) == "expanded" and ranking_method(model, "expanded") == "expanded"
    with pytest.raises(LlaraError, match="block masks"):
        ranking_method(model, "packed")
    model.answer_token = "item"
    with pytest.raises(LlaraError, match="answer tokens"):
        ranking_method(model)
