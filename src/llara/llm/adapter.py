"""The adapter a LLaRA model's base LLM carries: peft LoRA, or MoE-LoRA layers
(:mod:`llara.llm.moe_lora`) whose experts a gate mixes per row.

:func:`attach_adapter` wraps a fresh base as ``model.adapter`` asks (with gradient checkpointing set up
to fit it); :func:`lora_info` is the adapter's shape as ``llara.json`` records it, and
:func:`with_moe_lora` rebuilds MoE-LoRA layers of a recorded shape; :func:`lora_in_autocast_dtype` keeps
LoRA inputs in the autocast dtype.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn

from llara.config import ModelConfig
from llara.errors import LlaraError
from llara.llm.dropout import use_bit_dropout
from llara.llm.moe_lora import ExpertWeights, Gate, apply_moe_lora


def attach_adapter(llm: nn.Module, config: ModelConfig, lora: bool, moe: bool) -> nn.Module:
    """``llm`` with gradient checkpointing (``model.gradient_checkpointing``) and its adapter: MoE-LoRA
    layers with ``moe``, else peft LoRA with ``lora``, else none (a zero-shot model)."""
    mixture = ExpertWeights() if moe else None
    if config.gradient_checkpointing:
        llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=_checkpointing_kwargs(mixture))
    if mixture is not None:
        return with_moe_lora(llm, lora_info(config), mixture)
    if lora:
        return _with_lora(llm, config)
    return llm


def _with_lora(llm: nn.Module, config: ModelConfig) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_target_modules),
        task_type="CAUSAL_LM",
    )
    try:
        peft_model = get_peft_model(llm, lora)
    except ValueError as exc:
        raise LlaraError(
            f"model.lora_target_modules {config.lora_target_modules} do not fit the base model: {exc}"
        ) from exc
    use_bit_dropout(peft_model)
    return peft_model


def with_moe_lora(llm: nn.Module, lora: Mapping[str, Any], mixture: ExpertWeights) -> nn.Module:
    """The base model with MoE-LoRA layers of the shape ``lora`` (what :func:`lora_info` records)."""
    return apply_moe_lora(
        llm, lora["target_modules"], lora["r"], lora["experts"], lora["alpha"], lora["dropout"], mixture
    )


def _checkpointing_kwargs(mixture: ExpertWeights | None) -> dict[str, Any]:
    """``torch.utils.checkpoint`` options: non-reentrant; MoE-LoRA layers recompute with the weights their
    forward pass saw (the gated block has exited by the time the backward pass runs)."""
    if mixture is None:
        return {"use_reentrant": False}
    return {"use_reentrant": False, "context_fn": mixture.checkpoint_contexts}


def lora_info(config: ModelConfig) -> dict[str, Any]:
    """The adapter's shape as ``llara.json`` records it (MoE-LoRA adds ``adapter`` and ``experts``)."""
    info: dict[str, Any] = {
        "r": config.lora_r,
        "alpha": config.lora_alpha,
        "dropout": config.lora_dropout,
        "target_modules": list(config.lora_target_modules),
    }
    if config.adapter == "moe-lora":
        info.update(adapter="moe-lora", experts=config.experts)
    return info


def lora_in_autocast_dtype(llm: nn.Module) -> AbstractContextManager:
    """Under autocast, ``llm``'s LoRA layers take their input as it comes: peft would cast it to the
    float32 LoRA weights' dtype, and autocast would cast it back for the matmul (two copies of every LoRA
    input per layer). Without autocast (or without LoRA) this does nothing."""
    from peft.helpers import disable_input_dtype_casting

    device = next(llm.parameters()).device.type
    return disable_input_dtype_casting(llm, active=torch.is_autocast_enabled(device))


def check_gate(gate: Gate | None, mixture: ExpertWeights | None, sr: nn.Module | None) -> None:
    """A MoE-LoRA model has a gate, layers that read its weights, and the SR backbone the gate reads."""
    if (gate is None) != (mixture is None):
        raise LlaraError("a MoE-LoRA model needs both its gate and its MoE-LoRA layers; the export is incomplete")
    if gate is not None and sr is None:
        raise LlaraError("the MoE-LoRA gate reads the SR backbone's history state: set train.sr_checkpoint")
