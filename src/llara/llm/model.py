"""``LlaraModel``: a causal LM with a LoRA adapter, a projector and the frozen SR item embeddings.

Prompts hold placeholder tokens (``llara.llm.prompts``); before the LLM's first layer their input
embeddings are replaced, in one vectorised step, by the projected SR embeddings of their items.

An export folder (``save`` / ``load``) holds::

    llara.json                  base model, SR checkpoint, prompt mode, domain, data manifest hash, sizes
    adapter/                    the peft LoRA adapter (absent for a zero-shot model)
    projector.safetensors       the projector (present whenever the model has one)
    item_embeddings.safetensors the frozen SR item embeddings the projector reads
    titles.json                 item titles by dense item id
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from llara.llm import prompts
from llara.config import ModelConfig
from llara.errors import LlaraError
from llara.paths import atomic_dir

EXPORT_FORMAT = "llara-export-1"
CONFIG_FILE = "llara.json"
ADAPTER_DIR = "adapter"
PROJECTOR_FILE = "projector.safetensors"
EMBEDDINGS_FILE = "item_embeddings.safetensors"
TITLES_FILE = "titles.json"
IGNORE_INDEX = -100


class Projector(nn.Sequential):
    """Linear(sr_dim, d) -> GELU -> Linear(d, d): SR item embeddings into the LLM input-embedding space."""

    def __init__(self, sr_dim: int, hidden: int) -> None:
        super().__init__(nn.Linear(sr_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden))


class LlaraModel(nn.Module):
    """A causal LM that reads prompts with behavioral tokens.

    Attributes: ``llm`` (peft model or plain causal LM), ``tokenizer``, ``projector`` (``None`` when the
    model never sees behavioral tokens), ``prompt_mode``, ``domain``, ``titles``, ``item_embeddings``
    (frozen buffer ``[num_items, sr_dim]``), ``info`` (what ``llara.json`` records).
    """

    def __init__(
        self,
        llm: nn.Module,
        tokenizer: Any,
        item_embeddings: torch.Tensor | None,
        titles: Sequence[str],
        prompt_mode: str,
        domain: str,
        info: Mapping[str, Any],
        projector: Projector | None = None,
    ) -> None:
        super().__init__()
        self.llm = llm
        self.tokenizer = tokenizer
        self.titles = list(titles)
        self.prompt_mode = prompts.check_mode(prompt_mode)
        prompts.check_domain(domain)
        self.domain = domain
        self.info = dict(info)
        self.projector = projector
        embeddings = torch.empty(0, 0) if item_embeddings is None else item_embeddings.detach().float()
        self.register_buffer("item_embeddings", embeddings, persistent=False)
        self.placeholder_ids = add_placeholder_tokens(tokenizer)

    # ----------------------------------------------------------------- construction

    @classmethod
    def from_config(
        cls,
        model_config: ModelConfig,
        data: Any,
        sr_checkpoint: str | Path | None = None,
        lora: bool = True,
        item_embeddings: torch.Tensor | None = None,
    ) -> LlaraModel:
        """A fresh model for prepared ``data``: base LLM, placeholders, LoRA (when ``lora``), projector.

        The SR item embeddings come from ``sr_checkpoint`` (``llara.sr.checkpoint.load_sr``) or directly
        from ``item_embeddings``; they are required when ``model_config.prompt_mode`` uses behavioral
        tokens and must have one row per item of ``data``.
        """
        from llara.llm.loader import load_base_model

        mode = prompts.check_mode(model_config.prompt_mode)
        domain = model_config.domain or data.domain
        embeddings = _resolve_embeddings(sr_checkpoint, item_embeddings, data.num_items, mode)
        llm, tokenizer = load_base_model(model_config.base_model, model_config.dtype, model_config.load_in_bits)
        add_placeholder_tokens(tokenizer)
        resize_for_placeholders(llm, tokenizer)
        if model_config.gradient_checkpointing:
            llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if lora:
            llm = _with_lora(llm, model_config)
        projector = None
        if embeddings is not None:
            projector = Projector(embeddings.shape[1], llm.get_input_embeddings().embedding_dim)
        info = {
            "format": EXPORT_FORMAT,
            "base_model": model_config.base_model,
            "dtype": model_config.dtype,
            "sr_checkpoint": str(sr_checkpoint) if sr_checkpoint is not None else None,
            "prompt_mode": mode,
            "domain": domain,
            "data_dir": str(data.root),
            "data_hash": data.manifest.get("content_hash"),
            "num_items": data.num_items,
            "lora": _lora_info(model_config) if lora else None,
        }
        return cls(llm, tokenizer, embeddings, data.titles, mode, domain, info, projector)

    @classmethod
    def load(cls, export_dir: str | Path, dtype: str | None = None) -> LlaraModel:
        """Load a model written by :meth:`save` (base model resolved again, adapter and projector applied)."""
        from peft import PeftModel
        from safetensors.torch import load_file

        from llara.llm.loader import load_base_model

        export_dir = Path(export_dir)
        info = _read_info(export_dir)
        llm, tokenizer = load_base_model(info["base_model"], dtype or info.get("dtype", "float32"))
        add_placeholder_tokens(tokenizer)
        resize_for_placeholders(llm, tokenizer)
        if (export_dir / ADAPTER_DIR).is_dir():
            llm = PeftModel.from_pretrained(llm, export_dir / ADAPTER_DIR, is_trainable=False)
        embeddings = None
        if (export_dir / EMBEDDINGS_FILE).is_file():
            embeddings = load_file(str(export_dir / EMBEDDINGS_FILE))["item_embeddings"]
        titles = json.loads((export_dir / TITLES_FILE).read_text(encoding="utf-8"))
        projector = None
        if (export_dir / PROJECTOR_FILE).is_file():
            projector = Projector(embeddings.shape[1], llm.get_input_embeddings().embedding_dim)
            projector.load_state_dict(load_file(str(export_dir / PROJECTOR_FILE)))
        model = cls(llm, tokenizer, embeddings, titles, info["prompt_mode"], info["domain"], info, projector)
        return model.eval()

    def save(self, export_dir: str | Path) -> Path:
        """Write adapter, projector, item embeddings, titles and ``llara.json`` to ``export_dir`` atomically."""
        from peft import PeftModel
        from safetensors.torch import save_file

        export_dir = Path(export_dir)
        with atomic_dir(export_dir) as tmp:
            if isinstance(self.llm, PeftModel):
                self.llm.save_pretrained(tmp / ADAPTER_DIR, save_embedding_layers=False)
            if self.projector is not None:
                state = {k: v.detach().float().contiguous() for k, v in self.projector.state_dict().items()}
                save_file(state, str(tmp / PROJECTOR_FILE))
            if self.item_embeddings.numel():
                save_file({"item_embeddings": self.item_embeddings.contiguous()}, str(tmp / EMBEDDINGS_FILE))
            (tmp / TITLES_FILE).write_text(json.dumps(self.titles, ensure_ascii=False), encoding="utf-8")
            (tmp / CONFIG_FILE).write_text(json.dumps(self.info, indent=2) + "\n", encoding="utf-8")
        return export_dir

    # ----------------------------------------------------------------- prompts and embeddings

    def answer_text(self, item_id: int, mode: str | None = None) -> str:
        """The answer string for ``item_id`` (its title, or its id number in ``id`` mode, plus terminator)."""
        return prompts.answer_text(prompts.item_name(int(item_id), self.titles, mode or self.prompt_mode))

    def encode_prompts(
        self, rows: Sequence[Mapping], mode: str | None = None, padding_side: str = "left"
    ) -> dict[str, torch.Tensor]:
        """Tokenised prompts of sample rows: ``input_ids``, ``attention_mask``, ``behavior_ids``.

        ``behavior_ids`` holds the item id at each placeholder position and -1 elsewhere.
        """
        mode = mode or self.prompt_mode
        sequences = [self._prompt_ids(row, mode) for row in rows]
        return self._pad(sequences, [None] * len(sequences), padding_side, rows, mode)

    def encode_training(self, rows: Sequence[Mapping], mode: str | None = None) -> dict[str, torch.Tensor]:
        """Prompt + answer + eos per row, right-padded, with ``labels`` set on the answer tokens only.

        The label mask comes from the prompt length, so it does not depend on tokenizer internals.
        """
        mode = mode or self.prompt_mode
        prompts_ids = [self._prompt_ids(row, mode) for row in rows]
        answers = [self._answer_ids(int(row["target"]), mode) for row in rows]
        return self._pad(prompts_ids, answers, "right", rows, mode)

    def input_embeddings(self, input_ids: torch.Tensor, behavior_ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings with every placeholder position replaced by its projected SR embedding."""
        embeds = self.llm.get_input_embeddings()(input_ids)
        positions = behavior_ids >= 0
        if self.projector is None:
            if bool(positions.any()):
                raise LlaraError("this model has no projector, so its prompts cannot hold behavioral tokens")
            return embeds
        projector_dtype = self.projector[0].weight.dtype
        projected = self.projector(self.item_embeddings[behavior_ids[positions]].to(projector_dtype))
        return embeds.masked_scatter(positions.unsqueeze(-1), projected.to(embeds.dtype))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        behavior_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run the LLM on injected embeddings; with ``labels`` the output carries the causal-LM loss."""
        embeds = self.input_embeddings(input_ids, behavior_ids)
        return self.llm(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels, **kwargs)

    # ----------------------------------------------------------------- helpers

    def _prompt_ids(self, row: Mapping, mode: str) -> list[int]:
        text = prompts.render_prompt(row, self.titles, mode, self.domain)
        return self.tokenizer(text, add_special_tokens=True)["input_ids"]

    def _answer_ids(self, item_id: int, mode: str) -> list[int]:
        ids = self.tokenizer(self.answer_text(item_id, mode), add_special_tokens=False)["input_ids"]
        return ids + [self.tokenizer.eos_token_id]

    def _pad(
        self,
        prompt_ids: Sequence[list[int]],
        answer_ids: Sequence[list[int] | None],
        side: str,
        rows: Sequence[Mapping],
        mode: str,
    ) -> dict[str, torch.Tensor]:
        """Pad prompt(+answer) sequences into tensors; fill behavior ids and (with answers) labels."""
        if side not in ("left", "right"):
            raise LlaraError(f"padding_side must be 'left' or 'right', not {side!r}")
        full = [p + (a or []) for p, a in zip(prompt_ids, answer_ids)]
        width = max(len(s) for s in full)
        batch = len(full)
        input_ids = torch.full((batch, width), self.tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros((batch, width), dtype=torch.long)
        labels = torch.full((batch, width), IGNORE_INDEX, dtype=torch.long)
        for b, (seq, prompt) in enumerate(zip(full, prompt_ids)):
            start = width - len(seq) if side == "left" else 0
            input_ids[b, start : start + len(seq)] = torch.tensor(seq)
            attention[b, start : start + len(seq)] = 1
            labels[b, start + len(prompt) : start + len(seq)] = input_ids[b, start + len(prompt) : start + len(seq)]
        out = {
            "input_ids": input_ids,
            "attention_mask": attention,
            "behavior_ids": self._behavior_ids(input_ids, rows, mode),
        }
        if any(a is not None for a in answer_ids):
            out["labels"] = labels
        return out

    def _behavior_ids(self, input_ids: torch.Tensor, rows: Sequence[Mapping], mode: str) -> torch.Tensor:
        """Item ids at placeholder positions (in prompt order), -1 elsewhere."""
        behavior = torch.full_like(input_ids, -1)
        positions = torch.isin(input_ids, torch.tensor(self.placeholder_ids))
        items = [item for row in rows for item in prompts.behavior_items(row, mode)]
        if int(positions.sum()) != len(items):
            raise LlaraError(
                f"prompts hold {int(positions.sum())} placeholder tokens but the rows name {len(items)} items; "
                "do item titles contain the placeholder strings "
                f"{', '.join(prompts.PLACEHOLDER_TOKENS)}?"
            )
        if items:
            behavior[positions] = torch.tensor(items, dtype=torch.long)
        return behavior


def add_placeholder_tokens(tokenizer: Any) -> list[int]:
    """Add the placeholder special tokens to ``tokenizer`` if missing; return their ids (history, candidate)."""
    missing = [t for t in prompts.PLACEHOLDER_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    return tokenizer.convert_tokens_to_ids(list(prompts.PLACEHOLDER_TOKENS))


def resize_for_placeholders(llm: nn.Module, tokenizer: Any) -> None:
    """Grow the embeddings to the tokenizer; new rows get the mean of the old rows (deterministic).

    Placeholder input rows are always replaced by projected vectors; their output rows only matter for
    generation, where the mean keeps them unremarkable.
    """
    old = llm.get_input_embeddings().weight.shape[0]
    if len(tokenizer) <= old:
        return
    llm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        for matrix in _embedding_matrices(llm):
            matrix[old:] = matrix[:old].mean(dim=0, keepdim=True)


def _embedding_matrices(llm: nn.Module) -> list[torch.Tensor]:
    inputs = llm.get_input_embeddings().weight
    outputs = llm.get_output_embeddings()
    if outputs is None or outputs.weight is inputs:
        return [inputs]
    return [inputs, outputs.weight]


def _resolve_embeddings(
    sr_checkpoint: str | Path | None, item_embeddings: torch.Tensor | None, num_items: int, mode: str
) -> torch.Tensor | None:
    """The frozen SR item embeddings from a checkpoint or a tensor; checked against the data's item count."""
    if sr_checkpoint is not None:
        from llara.sr.checkpoint import load_sr

        with torch.no_grad():
            item_embeddings = load_sr(sr_checkpoint, num_items=num_items).item_embeddings().detach().float()
    if item_embeddings is None:
        if prompts.uses_behavior_tokens(mode):
            raise LlaraError(
                f"prompt mode {mode!r} uses behavioral tokens: set train.sr_checkpoint to an SR checkpoint "
                "(train one with `llara sr train`)"
            )
        return None
    if item_embeddings.dim() != 2 or item_embeddings.shape[0] != num_items:
        raise LlaraError(
            f"SR item embeddings have shape {tuple(item_embeddings.shape)} but the data has {num_items} items; "
            "use an SR checkpoint trained on this prepared data"
        )
    return item_embeddings.detach().float().clone()


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
        return get_peft_model(llm, lora)
    except ValueError as exc:
        raise LlaraError(
            f"model.lora_target_modules {config.lora_target_modules} do not fit the base model: {exc}"
        ) from None


def _lora_info(config: ModelConfig) -> dict[str, Any]:
    return {
        "r": config.lora_r,
        "alpha": config.lora_alpha,
        "dropout": config.lora_dropout,
        "target_modules": list(config.lora_target_modules),
    }


def _read_info(export_dir: Path) -> dict[str, Any]:
    path = export_dir / CONFIG_FILE
    if not path.is_file():
        raise LlaraError(f"{export_dir} is not a LLaRA export (no {CONFIG_FILE}); train one with `llara train`")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LlaraError(f"{path} is not valid JSON: {exc}") from None
    if info.get("format") != EXPORT_FORMAT:
        raise LlaraError(f"{path} is not a LLaRA export config (format must be {EXPORT_FORMAT!r})")
    return info
