"""How a fresh LLaRA model is assembled from a ``ModelConfig`` and prepared data (``LlaraModel.from_config``).

The order is fixed (it fixes the random initialisation of the new weights): the SR evidence the model will
read, the base LLM with its placeholder tokens, the adapter, the MoE-LoRA gate, the projectors, then what
``llara.json`` will record.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from llara.config import ModelConfig
from llara.llm import adapter, evidence, export, prompts, tokens
from llara.llm.device import resolve_device
from llara.llm.moe_lora import Gate
from llara.llm.precision import resolve_dtype
from llara.llm.prior import SRPrior


def fresh_parts(
    model_config: ModelConfig,
    data: Any,
    sr_checkpoint: str | Path | None,
    lora: bool,
    item_embeddings: torch.Tensor | None,
    attention: str | None,
    evidence_checkpoints: Sequence[str | Path],
    prior_checkpoint: str | Path | None,
) -> dict[str, Any]:
    """The ``LlaraModel`` constructor's arguments for a fresh model (see ``LlaraModel.from_config``)."""
    from llara.llm.loader import load_base_model

    mode = prompts.check_mode(model_config.prompt_mode)
    domain = model_config.domain or data.domain
    moe = lora and model_config.adapter == "moe-lora"
    sources = evidence.load_sources(
        model_config, mode, data.num_items, sr_checkpoint, item_embeddings, evidence_checkpoints, prior_checkpoint,
        moe,
    )
    dtype = resolve_dtype(model_config.dtype, resolve_device())  # llara.json records what was loaded
    llm, tokenizer = load_base_model(model_config.base_model, dtype, model_config.load_in_bits, attention)
    tokens.add_placeholder_tokens(tokenizer, model_config.text_placeholder)
    tokens.resize_for_placeholders(llm, tokenizer)
    llm = adapter.attach_adapter(llm, model_config, lora, moe)
    gate = Gate(sources.sr.hidden_size(), model_config.experts) if moe else None
    projectors = evidence.new_projectors(model_config, sources.item_embeddings, sources.sr, llm)
    info = export.new_info(
        model_config, data, dtype, mode, domain, lora, sr_checkpoint, evidence_checkpoints, prior_checkpoint
    )
    return {
        "llm": llm, "tokenizer": tokenizer, "item_embeddings": sources.item_embeddings, "titles": data.titles,
        "prompt_mode": mode, "domain": domain, "info": info, "sr": sources.sr, "gate": gate,
        "sr_prior": SRPrior() if model_config.sr_prior else None, "prior_source": sources.prior_source, **projectors,
    }
