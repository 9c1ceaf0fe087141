"""LoRA dropout whose mask is cut from 16-bit pieces of random words: ``nn.Dropout``'s distribution at
a fifth of its cost on the CPU.

PyTorch's CPU dropout draws one Bernoulli variable per element through a floating-point path; on the
2-core machines this project is tuned on that made LoRA dropout a fifth of a bf16 training step. Here a
quarter as many random 64-bit words as the input has elements are drawn, each word is read as four
16-bit integers, and an element is kept when its integer is at or above ``round(p * 2**16)``
(counted from the bottom of the range): it is kept with probability ``1 - round(p * 2**16) / 2**16``,
within ``2**-17`` of ``1 - p`` (exactly ``1 - p`` when ``p * 2**16`` is a whole number; 0.899994 for
``p = 0.1``), independently of every other element. Kept elements are scaled by ``1 / (1 - p)`` as in
``nn.Dropout``. Each mask's words are seeded by one draw from torch's default generator, so seeding,
checkpointed RNG state and exact resume work as before. On other devices (CUDA's fused dropout is
already cheap) and in eval mode it behaves as ``nn.Dropout``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

#: the resolution of the keep decision: one 16-bit integer per element
LEVELS = 2**16


class BitDropout(nn.Dropout):
    """``nn.Dropout`` with the mask cut from 16-bit random integers on the CPU (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu" or self.p == 1.0:
            return nn.functional.dropout(x, self.p, True, self.inplace)
        # the scale multiplies in float arithmetic (a Python scalar), so bf16 inputs are not scaled by a
        # bf16-rounded 1 / (1 - p)
        return (x * keep_mask(x.shape, self.p).to(x.dtype)).mul_(1.0 / (1.0 - self.p))


def keep_mask(shape: torch.Size | tuple[int, ...], p: float) -> torch.Tensor:
    """A boolean CPU tensor of ``shape`` whose elements are independently True with probability
    ``1 - keep_threshold(p) / LEVELS`` (within ``2**-17`` of ``1 - p``).

    The random words come from numpy's PCG64 (twice as fast as torch's CPU generator for raw bits),
    seeded by one draw from torch's default generator: torch's seed and checkpointed RNG state decide
    every mask."""
    count = int(torch.Size(shape).numel())
    seed = int(torch.randint(0, 2**63 - 1, (), dtype=torch.int64))
    words = np.random.PCG64(seed).random_raw((count + 3) // 4)
    pieces = torch.from_numpy(words.view(np.int16)[:count])  # uniform on [-2**15, 2**15)
    return (pieces >= keep_threshold(p) - LEVELS // 2).view(shape)


def keep_threshold(p: float) -> int:
    """How many of the ``LEVELS`` equally likely 16-bit values drop an element at rate ``p``."""
    return round(p * LEVELS)


def use_bit_dropout(module: nn.Module) -> int:
    """Replace every LoRA dropout (peft's ``lora_dropout`` entries that are ``nn.Dropout``) inside
    ``module`` by a :class:`BitDropout` of the same rate; returns how many were replaced."""
    replaced = 0
    for layer in module.modules():
        dropouts = getattr(layer, "lora_dropout", None)
        if not isinstance(dropouts, nn.ModuleDict):
            continue
        for name, dropout in dropouts.items():
            if type(dropout) is nn.Dropout:
                dropouts[name] = BitDropout(dropout.p)
                replaced += 1
    return replaced
