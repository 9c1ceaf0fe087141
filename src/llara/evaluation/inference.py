"""Running a batch of prompts once: left-padded, with explicit positions, keeping the KV cache.

Both evaluation protocols start here. :func:`prefill` runs the prompts (behavioral tokens injected through
``inputs_embeds``) and returns the last position's logits plus the cache; generation then appends one
token at a time, ranking appends every candidate's answer at once. Positions are computed from the
attention mask, so a left-padded row sees exactly the positions it would see alone: results do not
depend on the batch a row lands in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llara.data.dataset import PreparedData
from llara.errors import LlaraError
from llara.llm.precision import model_autocast

Row = Mapping[str, Any]


@dataclass
class Prefix:
    """A prompt batch after one forward pass."""

    last_logits: torch.Tensor  # [B, V] float32: next-token logits after each prompt
    cache: Any  # transformers Cache holding the prompts' keys and values
    attention_mask: torch.Tensor  # [B, P] long: 1 for prompt tokens, 0 for left padding
    next_position: torch.Tensor  # [B] long: position id of each row's next token


def cache_field() -> str:
    """The keyword (and output attribute) transformers uses for the KV cache: ``cache`` in recent
    releases, ``past_key_values`` before."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    return "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def run_llm(model: Any, cache: Any = None, **inputs: Any) -> tuple[torch.Tensor, Any]:
    """One forward pass of ``model.llm`` with caching on; returns (logits, updated cache)."""
    field = cache_field()
    if cache is not None:
        inputs[field] = cache
    out = model.llm(use_cache=True, **inputs)
    return out.logits, getattr(out, field)


def device_of(model: Any) -> torch.device:
    """The device of the model's LLM parameters."""
    return next(model.llm.parameters()).device


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count only attended tokens (0 at each row's first real token)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def prompt_lengths(model: Any, rows: Sequence[Row]) -> list[int]:
    """The token count of each row's prompt (placeholders included)."""
    if not rows:
        return []
    return model.encode_prompts(list(rows), padding_side="left")["attention_mask"].sum(-1).tolist()


@torch.inference_mode()
def prefill(model: Any, rows: Sequence[Row]) -> Prefix:
    """Encode ``rows`` (left padding), inject behavioral tokens and run the LLM once, keeping its cache.

    A MoE-LoRA model runs with its rows' gate weights (``LlaraModel.gated``); calls that continue from
    the cache enter the same block for their own rows. A model with bf16 base weights runs under bf16
    autocast (``llara.llm.precision.model_autocast``), as do the calls that continue from the cache."""
    device = device_of(model)
    batch = model.encode_prompts(list(rows), padding_side="left")
    input_ids = batch["input_ids"].to(device)
    attention_mask = batch["attention_mask"].to(device)
    history = batch.get("history")
    with model_autocast(model):
        embeds = model.input_embeddings(input_ids, batch["behavior_ids"].to(device), history)
        with model.gated(history):
            logits, cache = run_llm(
                model,
                inputs_embeds=embeds,
                attention_mask=attention_mask,
                position_ids=positions_from_mask(attention_mask),
                logits_to_keep=1,
            )
    return Prefix(
        last_logits=logits[:, -1].float(),
        cache=cache,
        attention_mask=attention_mask,
        next_position=attention_mask.long().sum(-1),
    )


def load_export(
    checkpoint: str | Path,
    data_dir: str | Path | None = None,
    allow_data_mismatch: bool = False,
    device: str | None = None,
    verify: bool = True,
    dtype: str | None = "auto",
) -> tuple[Any, PreparedData]:
    """A trained LLaRA export in eval mode on ``device`` (``auto``/None: CUDA when available) and its
    prepared data (``data_dir``, else the one it was trained on).

    ``dtype`` is the base weights' precision (``--dtype``): ``auto``/None loads the one ``llara.json``
    records, except that a bf16 export loads in float32 where ``device`` does not compute bf16 natively
    (``llara.llm.precision.export_dtype``); float32, bfloat16 or float16 force it.

    The attention kernel suits the device (``llara.llm.device``): flash attention only where installed,
    on CUDA, and the model has no answer tokens (which need the packed layout's block mask).
    ``data_dir`` must be the folder the export was trained on (same content hash) unless ``allow_data_mismatch``.
    ``verify``: check the export's files against the digests its ``llara.json`` records (``LlaraModel.load``).
    """
    from llara.llm.device import attention_for, resolve_device
    from llara.llm.export import export_info
    from llara.llm.model import LlaraModel
    from llara.llm.precision import export_dtype

    target = resolve_device(device)
    info = export_info(checkpoint)
    answer_tokens = info.get("answer_token", "none") != "none"
    weights = export_dtype(info.get("dtype"), dtype, target)
    model = LlaraModel.load(
        checkpoint, dtype=weights, attention=attention_for(target, answer_tokens), verify=verify
    ).to(target)
    source = data_dir if data_dir is not None else model.info.get("data_dir")
    if source is None:
        raise LlaraError(f"{checkpoint}/llara.json names no prepared data folder; pass --data DIR")
    if not Path(source).is_dir():
        raise LlaraError(f"{checkpoint} was trained on {source}, which does not exist here; pass --data DIR")
    data = PreparedData.load(source)
    if data.num_items != len(model.titles):
        raise LlaraError(
            f"{checkpoint} was trained on {len(model.titles)} items but {data.root} has {data.num_items}; "
            "pass the --data folder the model was trained on"
        )
    data.check_trained_on(model.info.get("data_hash"), str(checkpoint), allow_data_mismatch)
    return model, data


def load_zero_shot(base_model: str, data: PreparedData, dtype: str = "auto", device: str | None = None) -> Any:
    """The untuned base LLM as a text-only LLaRA model (no LoRA, no projector), in eval mode on ``device``;
    ``dtype`` ``auto`` is bfloat16 where ``device`` computes bf16 natively, else float32
    (``llara.llm.precision.resolve_dtype``)."""
    from llara.config import ModelConfig
    from llara.llm.device import attention_for, resolve_device
    from llara.llm.model import LlaraModel
    from llara.llm.precision import resolve_dtype

    target = resolve_device(device)
    config = ModelConfig(base_model=base_model, prompt_mode="text", dtype=resolve_dtype(dtype or "auto", target))
    return LlaraModel.from_config(config, data, lora=False, attention=attention_for(target, False)).to(target).eval()
