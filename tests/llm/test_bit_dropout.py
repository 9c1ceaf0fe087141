"""LoRA dropout from 16-bit random integers: nn.Dropout's distribution, its output and gradients for a given mask."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from llara.config import ModelConfig
from llara.llm.dropout import LEVELS, BitDropout, keep_mask, keep_threshold
from llara.llm.model import LlaraModel


@pytest.mark.parametrize("p", [0.05, 0.1, 0.3, 0.5])
def test_elements_are_kept_at_the_stated_rate_independently(p: float) -> None:
    keep_rate = 1 - keep_threshold(p) / LEVELS
    assert abs(keep_rate - (1 - p)) <= 2**-17
    torch.manual_seed(0)
    mask = keep_mask((1000, 1001), p).flatten().double()  # odd sizes: the last word is cut
    sigma = (keep_rate * (1 - keep_rate) / mask.numel()) ** 0.5
    assert abs(float(mask.mean()) - keep_rate) < 5 * sigma
    for lag in (1, 2, 3, 4):  # pieces of one word, and of neighbouring words, are independent
        both = float((mask[:-lag] * mask[lag:]).mean())
        assert abs(both - keep_rate**2) < 5 * (keep_rate**2 * (1 - keep_rate**2) / mask.numel()) ** 0.5


def test_a_seed_gives_the_same_mask_so_resumed_runs_repeat_their_draws() -> None:
    torch.manual_seed(3)
    first = keep_mask((7, 9), 0.1)
    torch.manual_seed(3)
    assert torch.equal(keep_mask((7, 9), 0.1), first)
    assert not torch.equal(keep_mask((7, 9), 0.1), first)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_output_and_gradient_equal_dropout_with_the_same_mask(dtype: torch.dtype) -> None:
    p = 0.1
    x = torch.randn(33, 17, generator=torch.Generator().manual_seed(1)).to(dtype).requires_grad_()
    torch.manual_seed(5)
    out = BitDropout(p).train()(x)
    torch.manual_seed(5)
    mask = keep_mask(x.shape, p)
    # the reference: nn.Dropout's formula for this mask, scaled in float arithmetic then rounded to dtype
    expected = (x.detach().float() * mask * (1 / (1 - p))).to(dtype)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    weights = torch.randn(x.shape).to(dtype)
    (out.float() * weights.float()).sum().backward()
    torch.testing.assert_close(x.grad, (weights.float() * mask * (1 / (1 - p))).to(dtype), rtol=0, atol=0)


def test_eval_mode_rate_zero_and_rate_one_behave_as_nn_dropout() -> None:
    x = torch.randn(4, 8)
    assert torch.equal(BitDropout(0.3).eval()(x), x)
    assert torch.equal(BitDropout(0.0).train()(x), x)
    assert torch.equal(BitDropout(1.0).train()(x), torch.zeros_like(x))
    assert isinstance(BitDropout(0.1), nn.Dropout)


def test_every_lora_dropout_of_a_model_is_a_bit_dropout(tiny_llama: Path, tiny_data) -> None:
    model = LlaraModel.from_config(
        ModelConfig(base_model=str(tiny_llama), prompt_mode="text", lora_dropout=0.2), tiny_data
    )
    dropouts = [d for m in model.modules() if isinstance(getattr(m, "lora_dropout", None), nn.ModuleDict)
                for d in m.lora_dropout.values()]
    assert dropouts and all(type(d) is BitDropout and d.p == 0.2 for d in dropouts)
