"""Where a model runs: the device, the attention kernel for that device, and batch transfer to it.

* :func:`resolve_device`: ``auto`` is the first CUDA GPU when there is one, else the CPU; a named
  device that is not there is a clear error.
* :func:`choose_attention`: the attention kernel passed to transformers. ``auto`` is ``eager`` (plain
  matmuls and softmax) on the CPU, where it trained the quickstart's recipe 1.2x faster than PyTorch's
  fused ``sdpa`` (docs/experiments.md, "Training and ranking at the bf16 limit"), and on CUDA ``sdpa`` except
  with flash-attn installed and no need for a custom mask, where it is ``flash_attention_2``. The packed candidate layout (``llara.llm.packing``,
  used by the ranking objectives and by answer-token models) attends through a 4-D block mask, which only
  ``sdpa`` and ``eager`` take, so a run that needs it never gets flash attention.
* :func:`to_device`: a batch of CPU tensors to the device; on CUDA through pinned memory with
  ``non_blocking`` copies, so the host does not wait for each transfer.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from typing import Any

import torch

from llara.errors import LlaraError

AUTO = "auto"
FLASH_ATTENTION = "flash_attention_2"
#: kernels that take an arbitrary (4-D, additive) attention mask: what the packed layout needs
MASK_KERNELS = ("sdpa", "eager")
ATTENTION_KERNELS = (AUTO, *MASK_KERNELS, FLASH_ATTENTION)
#: environment variable that overrides the automatic kernel choice (not a config field: the kernel does
#: not change what a model computes, so it must not change stage hashes or resume fingerprints)
ATTENTION_ENV = "LLARA_ATTENTION"


def resolve_device(name: str | None = AUTO) -> torch.device:
    """The device ``name`` names (``auto``/None: ``cuda`` when available, else ``cpu``)."""
    if name in (None, AUTO):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise LlaraError(f"--device {name!r} is not a device name (auto, cpu, cuda, cuda:1, ...)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LlaraError(f"--device {name} asks for a CUDA GPU, but torch sees none here; use --device cpu")
    return device


def flash_attention_installed() -> bool:
    """Whether the flash-attn package (``flash_attn``) can be imported."""
    return importlib.util.find_spec("flash_attn") is not None


def choose_attention(requested: str, device: torch.device, block_mask: bool) -> str:
    """The attention kernel for a model on ``device``; ``block_mask``: whether it must run the packed layout.

    ``requested`` is ``auto`` or one of ``sdpa``, ``eager``, ``flash_attention_2`` (checked: flash
    attention needs CUDA, flash-attn, and no packed layout).
    """
    if requested not in ATTENTION_KERNELS:
        raise LlaraError(f"{ATTENTION_ENV}={requested!r} is not one of {', '.join(ATTENTION_KERNELS)}")
    flash_possible = device.type == "cuda" and flash_attention_installed()
    if requested == AUTO:
        if device.type == "cpu":
            return "eager"  # the packed layout's short sequences: faster than the CPU's fused kernel
        return FLASH_ATTENTION if flash_possible and not block_mask else "sdpa"
    if requested == FLASH_ATTENTION:
        if block_mask:
            raise LlaraError(
                f"{ATTENTION_ENV}=flash_attention_2 cannot run the packed candidate layout (ranking objectives, "
                f"answer tokens), which needs a 4-D block mask: use {ATTENTION_ENV}=sdpa (or auto)"
            )
        if not flash_possible:
            raise LlaraError(
                f"{ATTENTION_ENV}=flash_attention_2 needs a CUDA GPU and flash-attn (pip install flash-attn)"
            )
    return requested


def attention_for(device: torch.device, block_mask: bool) -> str:
    """The kernel for ``device``: :func:`choose_attention` of ``$LLARA_ATTENTION`` (default ``auto``)."""
    return choose_attention(os.environ.get(ATTENTION_ENV, AUTO), device, block_mask)


def takes_block_mask(kernel: str | None) -> bool:
    """Whether a loaded model's attention kernel (``config._attn_implementation``) takes a 4-D block mask."""
    return (kernel or "sdpa") in MASK_KERNELS


def to_device(batch: Mapping[str, Any], device: torch.device | str) -> dict[str, Any]:
    """``batch``'s tensors on ``device`` (other values as they are); pinned, non-blocking copies on CUDA."""
    device = torch.device(device)
    pin = device.type == "cuda"
    return {key: _transfer(value, device, pin) for key, value in batch.items()}


def _transfer(value: Any, device: torch.device, pin: bool) -> Any:
    if not isinstance(value, torch.Tensor):
        return value
    if pin and value.device.type == "cpu":
        return value.pin_memory().to(device, non_blocking=True)
    return value.to(device)
