"""``LlaraModel``: a causal LM with a LoRA adapter, a projector and the frozen SR item embeddings.

Prompts hold placeholder tokens (``llara.llm.prompts``); before the LLM's first layer their input
embeddings are replaced, in one vectorised step, by projected SR vectors: item embeddings for history and
candidate placeholders, the SR backbone's history state for the user token, and a candidate's item or
interaction vector for answer tokens (each kind through its own projector).

The model composes the pieces of its neighbours: the evidence it reads and its projectors
(:mod:`llara.llm.evidence`), its adapter (:mod:`llara.llm.adapter`), placeholder tokens and padding
(:mod:`llara.llm.tokens`), its scoring heads and the SR prior (:mod:`llara.llm.heads`), how a fresh one is
assembled (:mod:`llara.llm.assembly`) and its export folder (:mod:`llara.llm.export`, which describes the
folder's files).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from llara.config import ModelConfig
from llara.errors import LlaraError
from llara.llm import adapter, assembly, evidence, export, heads, prompts, tokens
from llara.llm.evidence import Projector
from llara.llm.heads import AnswerLoss, AnswerScores
from llara.llm.moe_lora import Gate, shared_mixture
from llara.llm.prior import SRPrior


class LlaraModel(nn.Module):
    """A causal LM that reads prompts with behavioral tokens.

    Attributes: ``llm`` (peft model or plain causal LM), ``tokenizer``, ``projector`` (``None`` when the
    model never sees behavioral tokens), ``prompt_mode``, ``domain``, ``titles``, ``item_embeddings``
    (frozen buffer ``[num_items, sr_dim]``), ``info`` (what ``llara.json`` records); with the
    recommender's evidence (``user_token``, ``answer_token``): ``sr`` (the frozen SR backbone),
    ``user_projector`` and ``answer_projector``; with ``model.adapter: moe-lora``: ``gate`` (SR history
    state -> expert weights) and ``mixture`` (the :class:`~llara.llm.moe_lora.ExpertWeights` its layers read);
    with ``model.sr_prior``: ``sr_prior`` (:class:`~llara.llm.prior.SRPrior`, added to every verdict) and,
    when the prior reads another recommender than ``sr``, ``prior_source`` (frozen; ``train.prior_checkpoint``).
    """

    def __init__(
        self, llm: nn.Module, tokenizer: Any, item_embeddings: torch.Tensor | None, titles: Sequence[str],
        prompt_mode: str, domain: str, info: Mapping[str, Any], projector: Projector | None = None,
        sr: nn.Module | None = None, user_projector: Projector | None = None, answer_projector: Projector | None = None,
        gate: Gate | None = None, sr_prior: SRPrior | None = None, prior_source: nn.Module | None = None,
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
        self.user_token = bool(self.info.get("user_token", False))
        self.answer_token = str(self.info.get("answer_token", "none"))
        self.text_placeholder = bool(self.info.get("text_placeholder", False))
        evidence.check_evidence(self.user_token, self.answer_token, sr, sr_prior is not None, prior_source is not None)
        self.sr = sr.requires_grad_(False).eval() if sr is not None else None
        self.prior_source = prior_source.requires_grad_(False).eval() if prior_source is not None else None
        self.user_projector = user_projector
        self.answer_projector = answer_projector
        self.gate = gate
        self.sr_prior = sr_prior
        self.mixture = shared_mixture(llm)
        adapter.check_gate(gate, self.mixture, self.sr)
        embeddings = torch.empty(0, 0) if item_embeddings is None else item_embeddings.detach().float()
        self.register_buffer("item_embeddings", embeddings, persistent=False)
        self.placeholder_ids = tokens.add_placeholder_tokens(tokenizer)
        self.token_ids = dict(zip(prompts.PLACEHOLDER_TOKENS, self.placeholder_ids))
        self.answer_ids_cache: dict[str, list[int]] = {}  # answer text -> token ids (llara.llm.packing.answer_ids)

    # ----------------------------------------------------------------- construction and export

    @classmethod
    def from_config(
        cls, model_config: ModelConfig, data: Any, sr_checkpoint: str | Path | None = None, lora: bool = True,
        item_embeddings: torch.Tensor | None = None, attention: str | None = None,
        evidence_checkpoints: Sequence[str | Path] = (), prior_checkpoint: str | Path | None = None,
    ) -> LlaraModel:
        """A fresh model for prepared ``data``: base LLM, placeholders, LoRA (when ``lora``), projectors
        (:func:`llara.llm.assembly.fresh_parts`). Item embeddings come from ``sr_checkpoint`` or
        ``item_embeddings`` (behavioral prompts need them, one row per item); ``evidence_checkpoints`` are further
        backbones that user and interaction tokens and gates read; ``prior_checkpoint`` is what ``model.sr_prior``
        adds (default: ``sr_checkpoint``'s). Trainable weights are float32 whatever the base's dtype.
        """
        parts = assembly.fresh_parts(
            model_config, data, sr_checkpoint, lora, item_embeddings, attention, evidence_checkpoints, prior_checkpoint
        )
        model = cls(**parts)
        return model.float_trainable() if lora else model  # without LoRA nothing of the base is trained

    @classmethod
    def load(
        cls, export_dir: str | Path, dtype: str | None = None, attention: str | None = None, verify: bool = True
    ) -> LlaraModel:
        """Load a model written by :meth:`save` (base model resolved again, adapter and projector applied);
        ``dtype`` overrides the recorded base-weight precision, ``attention`` picks the attention kernel.

        With ``verify`` (the default) every file and ``llara.json`` itself are first checked against the
        sha256 digests ``llara.json`` records (:func:`~llara.llm.export.verify_export`); a changed, missing
        or added file is a :class:`LlaraError` naming it.
        """
        return cls(**export.read_export(export_dir, dtype, attention, verify)).eval()

    def save(self, export_dir: str | Path) -> Path:
        """Write adapter, projector, item embeddings, titles and ``llara.json`` to ``export_dir`` atomically
        (the folder :mod:`llara.llm.export` describes)."""
        return export.save(self, export_dir)

    def load_trained(self, export_dir: str | Path) -> None:
        """Start from a trained export: copy its LoRA weights and projectors into this (fresh) model.

        The export must have the same base model, adapter shape and projectors (e.g. the sft stage of a
        two-stage recipe before its preference stage).
        """
        export.load_trained(self, export_dir)

    def float_trainable(self) -> LlaraModel:
        """Keep every trainable parameter (LoRA, projectors) in float32, whatever the base weights' dtype.

        With ``model.dtype: bfloat16`` the frozen base is stored in bf16 (half the memory and bandwidth),
        while the weights the optimizer updates stay fp32 master weights; ``train.mixed_precision: bf16``
        then runs their matmuls in bf16 under autocast. Returns ``self``.
        """
        for parameter in self.parameters():
            if parameter.requires_grad and parameter.dtype != torch.float32:
                parameter.data = parameter.data.float()
        return self

    def train(self, mode: bool = True) -> LlaraModel:
        """Set training mode; the frozen SR backbone and prior source always stay in eval mode (no dropout)."""
        super().train(mode)
        for frozen in (self.sr, self.prior_source):
            if frozen is not None:
                frozen.eval()
        return self

    @property
    def backbone(self) -> nn.Module | None:
        """The primary SR backbone (``train.sr_checkpoint``: it retrieves candidates and its item vectors are
        the behavioral tokens), also when the model reads further evidence backbones; None without one."""
        return evidence.members(self.sr)[0] if self.sr is not None else None

    @property
    def rank_score(self) -> str:
        """The candidate score this model ranks by: ``total`` (summed answer log-likelihood), ``mean`` (per
        token) or ``verdict`` (the log-odds of ``Yes`` over ``No`` read right after the answer)."""
        return str(self.info.get("rank_score", "total"))

    @property
    def answer_token_at(self) -> str:
        """Where an answer token sits in a candidate's packed answer: ``start`` (before the title) or ``end``
        (after it, where the verdict is read)."""
        return str(self.info.get("answer_token_at", "start"))

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
        return tokens.encode(self, rows, mode or self.prompt_mode, padding_side)

    def encode_training(self, rows: Sequence[Mapping], mode: str | None = None) -> dict[str, torch.Tensor]:
        """Prompt + answer + eos per row, right-padded, with ``labels`` set on the answer tokens only (the mask
        comes from the prompt length, not from tokenizer internals)."""
        return tokens.encode(self, rows, mode or self.prompt_mode, "right", answers=True)

    def histories(self, rows: Sequence[Mapping]) -> torch.Tensor | None:
        """The rows' histories as ``[B, L]`` padded with ``num_items`` (for the SR backbone and the prior's
        source), or ``None`` when the model reads neither."""
        return evidence.history_batch(rows, (self.sr, self.prior_source))

    def input_embeddings(
        self, input_ids: torch.Tensor, behavior_ids: torch.Tensor, history: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Token embeddings with every placeholder position replaced by its projected SR vector.

        ``behavior_ids`` holds an item id at each placeholder (-1 elsewhere); ``history`` ``[B, L]`` (the
        rows' histories padded with ``num_items``) is needed when user or interaction answer tokens occur.
        """
        embeds = self.llm.get_input_embeddings()(input_ids)
        return evidence.replace_placeholders(self, embeds, input_ids, behavior_ids, history)

    def gate_weights(self, history: torch.Tensor | None) -> torch.Tensor:
        """MoE-LoRA: each row's expert weights ``[B, K]`` (softmax; rows sum to 1), from the SR backbone's
        state after its history ``[B, L]`` (the vector a user token carries)."""
        if self.gate is None:
            raise LlaraError("this model has no gate: only model.adapter=moe-lora models mix experts")
        return self.gate(evidence.history_state(self.sr, evidence.require_history(history, "MoE-LoRA gates")))

    def gated(self, history: torch.Tensor | None) -> AbstractContextManager:
        """Inside the block every MoE-LoRA layer mixes its experts with the weights of ``history``'s rows (a
        no-op for plain LoRA); ``forward`` and ``score_answers`` enter it, direct callers of ``llm`` (prefill,
        decoding with a cache) wrap their calls in it."""
        if self.mixture is None:
            return nullcontext()
        return self.mixture.use(self.gate_weights(history))

    def lora_in_autocast_dtype(self) -> AbstractContextManager:
        """Under autocast, LoRA layers take their input as it comes (see :mod:`llara.llm.adapter`)."""
        return adapter.lora_in_autocast_dtype(self.llm)

    # ----------------------------------------------------------------- scoring

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, behavior_ids: torch.Tensor,
        labels: torch.Tensor | None = None, history: torch.Tensor | None = None, **kwargs: Any,
    ) -> Any:
        """Run the LLM on injected embeddings; given ``labels``, the loss of the labelled tokens (:class:`AnswerLoss`).

        Given a packed candidate batch (``llara.llm.packing``: ``score_positions`` among the keywords), it
        returns :class:`AnswerScores` instead, through :meth:`score_answers` (so that distributed wrappers,
        which hook ``forward``, see every training computation).
        """
        if "score_positions" in kwargs:
            return self.score_answers(input_ids, attention_mask, behavior_ids, history=history, **kwargs)
        embeds = self.input_embeddings(input_ids, behavior_ids, history)
        with self.gated(history), self.lora_in_autocast_dtype():
            if labels is None:
                return self.llm(inputs_embeds=embeds, attention_mask=attention_mask, **kwargs)
            hidden = self.llm.get_decoder()(inputs_embeds=embeds, attention_mask=attention_mask, use_cache=False)[0]
        return AnswerLoss(self.answer_loss(hidden, labels))

    def answer_loss(self, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean causal-LM cross-entropy of the labelled tokens (``labels`` ``[B, T]``) from the decoder's
        ``hidden`` states ``[B, T, d]`` (:func:`~llara.llm.heads.answer_loss`)."""
        return heads.answer_loss(self.llm.get_output_embeddings(), hidden, labels)

    def score_answers(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, behavior_ids: torch.Tensor,
        position_ids: torch.Tensor, score_positions: torch.Tensor, score_targets: torch.Tensor,
        score_segments: torch.Tensor, history: torch.Tensor | None = None,
        verdict_positions: torch.Tensor | None = None, candidate_items: torch.Tensor | None = None,
        scored_candidates: torch.Tensor | None = None,
    ) -> AnswerScores:
        """Summed log-probabilities and token counts ``[B, C]`` of the packed answers, in one forward pass;
        with ``verdict_positions`` ``[B, C]`` (each answer's last position), their verdicts too, plus the SR
        prior of ``candidate_items`` when the model has one. The output head runs only where a scored token is
        predicted, and with ``scored_candidates`` (``[B, C]`` booleans) only for those candidates (the others'
        sums are 0, their counts right): verdict training needs only the target's."""
        embeds = self.input_embeddings(input_ids, behavior_ids, history)
        with self.gated(history), self.lora_in_autocast_dtype():
            hidden = heads.packed_hidden(self.llm.get_decoder(), embeds, attention_mask, position_ids)
        return heads.packed_scores(
            self, hidden, score_positions, score_targets, score_segments, history, verdict_positions, candidate_items,
            scored_candidates,
        )

    @cached_property
    def verdict_ids(self) -> tuple[int, int]:
        """The token ids whose logits a ``verdict`` score compares: the last token of each of
        :data:`~llara.llm.heads.VERDICT_WORDS` (tokenised once per model)."""
        return heads.verdict_ids(self.tokenizer)

    def verdict_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``Yes`` minus ``No`` logit of the output head on hidden states ``[..., d]``."""
        return heads.verdict_logits(self.llm.get_output_embeddings(), self.verdict_ids, hidden)

    def prior(self, history: torch.Tensor | None, items: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """The SR prior ``[B, C]`` added to the verdicts of ``items`` ``[B, C]`` after ``history`` ``[B, L]``:
        the primary backbone's scores standardised over each row's ``real`` candidates, times the trained
        scale (:class:`~llara.llm.prior.SRPrior`)."""
        source = self.prior_source if self.prior_source is not None else self.backbone
        return heads.prior_scores(self.sr_prior, source, history, items, real)
