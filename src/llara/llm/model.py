"""``LlaraModel``: a causal LM with a LoRA adapter, a projector and the frozen SR item embeddings.

Prompts hold placeholder tokens (``llara.llm.prompts``); before the LLM's first layer their input
embeddings are replaced, in one vectorised step, by projected SR vectors: item embeddings for history and
candidate placeholders, the SR backbone's history state for the user token, and a candidate's item or
interaction vector for answer tokens (each kind through its own projector).

An export folder (``save`` / ``load``) holds::

    llara.json                  base model, SR checkpoint, prompt mode, domain, data manifest hash, sizes
    adapter/                    the peft LoRA adapter (absent for a zero-shot model); for
                                ``model.adapter: moe-lora`` adapter_model.safetensors holds the experts
    gate.safetensors            the MoE-LoRA gate (``moe-lora`` models)
    projector.safetensors       the item projector (present whenever the model has one)
    user_projector.safetensors  the user-token projector (``user_token`` models)
    answer_projector.safetensors the answer-token projector (``answer_token`` models)
    sr/                         the frozen SR backbone (models whose tokens or gate need its history state)
    evidence/<k>/               further frozen SR backbones whose evidence the tokens also carry
                                (``train.evidence_checkpoints``; k = 1, 2, ...)
    prior_sr/                   the SR checkpoint whose scores the SR prior adds, when it is not ``sr/``
                                (``train.prior_checkpoint``; any model, count-based ones included)
    item_embeddings.safetensors the frozen SR item embeddings the projector reads
    titles.json                 item titles by dense item id

``llara.json`` also records the sha256 of every other file of the folder (``files``, by path relative to
it) and of its own canonical JSON without that digest (``info_sha256``); :meth:`LlaraModel.load` checks
both before it reads anything, so a changed weight file or an edited setting is refused
(``verify=False`` / ``--no-verify`` skips the check; exports older than it load with a warning).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from llara.llm import prompts
from llara.llm.device import resolve_device
from llara.llm.dropout import use_bit_dropout
from llara.llm.moe_lora import ExpertWeights, Gate, adapter_state, apply_moe_lora, load_adapter_state, shared_mixture
from llara.llm.precision import resolve_dtype
from llara.llm.prior import PRIOR_FILE, SRPrior, load_prior
from llara.config import ModelConfig
from llara.errors import LlaraError, first_line
from llara.paths import atomic_dir, fields_sha256, file_sha256
from llara.sr.stack import BackboneStack
from llara.tensor_files import read_tensors, reported_write

EXPORT_FORMAT = "llara-export-1"
CONFIG_FILE = "llara.json"
ADAPTER_DIR = "adapter"
#: the weights file inside ``adapter/`` (peft's name; MoE-LoRA exports use it for their experts)
ADAPTER_WEIGHTS = "adapter_model.safetensors"
GATE_FILE = "gate.safetensors"
PROJECTOR_FILE = "projector.safetensors"
#: projector attribute -> export file
PROJECTOR_FILES = {
    "projector": PROJECTOR_FILE,
    "user_projector": "user_projector.safetensors",
    "answer_projector": "answer_projector.safetensors",
}
#: every trained module beside the adapter -> export file
TRAINED_FILES = {**PROJECTOR_FILES, "gate": GATE_FILE, "sr_prior": PRIOR_FILE}
SR_DIR = "sr"
EVIDENCE_DIR = "evidence"
PRIOR_SR_DIR = "prior_sr"
#: interaction vectors (SR history state x candidate output row, elementwise) are scaled by this before
#: their projector: the terms are small (they sum to the SR score), and a unit-scale input trains faster
INTERACTION_SCALE = 8.0
EMBEDDINGS_FILE = "item_embeddings.safetensors"
TITLES_FILE = "titles.json"
IGNORE_INDEX = -100
#: the ``llara.json`` fields that make an export verifiable: sha256 by relative file path, and the
#: sha256 of the canonical JSON of every other field (:func:`info_digest`)
FILES_FIELD = "files"
INFO_DIGEST = "info_sha256"
_INTEGRITY_FIELDS = (FILES_FIELD, INFO_DIGEST)

log = logging.getLogger(__name__)


#: the words whose log-odds after a candidate's answer are its ``verdict`` score
VERDICT_WORDS = (" Yes", " No")


@dataclass
class AnswerScores:
    """Per packed answer: ``total`` summed token log-probabilities and ``count`` tokens, both ``[B, C]``;
    ``verdict``, with verdict scoring, the log-odds of ``Yes`` over ``No`` right after each answer."""

    total: torch.Tensor
    count: torch.Tensor
    verdict: torch.Tensor | None = None

    @property
    def mean(self) -> torch.Tensor:
        """Length-normalised log-likelihood (per-token mean); 0 where a row has fewer answers."""
        return self.total / self.count.clamp(min=1)


@dataclass
class AnswerLoss:
    """What :meth:`LlaraModel.forward` returns given ``labels``: the mean cross-entropy of the labelled tokens."""

    loss: torch.Tensor


class Projector(nn.Sequential):
    """Linear(sr_dim, d) -> GELU -> Linear(d, d): SR item embeddings into the LLM input-embedding space."""

    def __init__(self, sr_dim: int, hidden: int) -> None:
        super().__init__(nn.Linear(sr_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden))


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
        self,
        llm: nn.Module,
        tokenizer: Any,
        item_embeddings: torch.Tensor | None,
        titles: Sequence[str],
        prompt_mode: str,
        domain: str,
        info: Mapping[str, Any],
        projector: Projector | None = None,
        sr: nn.Module | None = None,
        user_projector: Projector | None = None,
        answer_projector: Projector | None = None,
        gate: Gate | None = None,
        sr_prior: SRPrior | None = None,
        prior_source: nn.Module | None = None,
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
        _check_evidence(self.user_token, self.answer_token, sr, sr_prior is not None, prior_source is not None)
        self.sr = sr.requires_grad_(False).eval() if sr is not None else None
        self.prior_source = prior_source.requires_grad_(False).eval() if prior_source is not None else None
        self.user_projector = user_projector
        self.answer_projector = answer_projector
        self.gate = gate
        self.sr_prior = sr_prior
        self.mixture = shared_mixture(llm)
        _check_gate(gate, self.mixture, self.sr)
        embeddings = torch.empty(0, 0) if item_embeddings is None else item_embeddings.detach().float()
        self.register_buffer("item_embeddings", embeddings, persistent=False)
        self.placeholder_ids = add_placeholder_tokens(tokenizer)
        self.token_ids = dict(zip(prompts.PLACEHOLDER_TOKENS, self.placeholder_ids))
        self.answer_ids_cache: dict[str, list[int]] = {}  # answer text -> token ids (llara.llm.packing.answer_ids)

    # ----------------------------------------------------------------- construction

    @classmethod
    def from_config(
        cls,
        model_config: ModelConfig,
        data: Any,
        sr_checkpoint: str | Path | None = None,
        lora: bool = True,
        item_embeddings: torch.Tensor | None = None,
        attention: str | None = None,
        evidence_checkpoints: Sequence[str | Path] = (),
        prior_checkpoint: str | Path | None = None,
    ) -> LlaraModel:
        """A fresh model for prepared ``data``: base LLM, placeholders, LoRA (when ``lora``), projector.

        The SR item embeddings come from ``sr_checkpoint`` (``llara.sr.checkpoint.load_sr``) or directly
        from ``item_embeddings``; they are required when ``model_config.prompt_mode`` uses behavioral
        tokens and must have one row per item of ``data``. ``attention`` is the attention kernel
        (``llara.llm.device.choose_attention``). ``evidence_checkpoints`` are further SR backbones whose
        state and output rows user tokens, interaction answer tokens and gates read beside the primary one's
        (:class:`~llara.sr.stack.BackboneStack`). ``prior_checkpoint`` is the SR checkpoint whose scores
        ``model.sr_prior`` adds (default: ``sr_checkpoint``'s). Whatever ``model_config.dtype`` the frozen base has, the
        trainable weights (LoRA, projectors) are float32: the optimizer's master weights.
        """
        from llara.llm.loader import load_base_model

        mode = prompts.check_mode(model_config.prompt_mode)
        domain = model_config.domain or data.domain
        prior_source = _prior_source(prior_checkpoint, model_config.sr_prior, data.num_items)
        tokens = model_config.user_token or model_config.answer_token != "none"
        evidence = tokens or (model_config.sr_prior and prior_source is None)
        moe = lora and model_config.adapter == "moe-lora"
        primary = _load_sr(sr_checkpoint, data.num_items)
        embeddings = _resolve_embeddings(primary, item_embeddings, data.num_items, mode, evidence)
        if evidence_checkpoints and not (model_config.user_token or model_config.answer_token == "interaction" or moe):
            raise LlaraError(
                "train.evidence_checkpoints feed the SR backbones' history state to user tokens, interaction "
                "answer tokens or MoE-LoRA gates: set model.user_token, model.answer_token=interaction or "
                "model.adapter=moe-lora, or drop them"
            )
        sr = _backbone(primary, data.num_items, evidence_checkpoints) if evidence or moe else None
        dtype = resolve_dtype(model_config.dtype, resolve_device())  # llara.json records what was loaded
        llm, tokenizer = load_base_model(model_config.base_model, dtype, model_config.load_in_bits, attention)
        add_placeholder_tokens(tokenizer, model_config.text_placeholder)
        resize_for_placeholders(llm, tokenizer)
        mixture = ExpertWeights() if moe else None
        if model_config.gradient_checkpointing:
            llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=_checkpointing_kwargs(mixture))
        if mixture is not None:
            llm = _with_moe_lora(llm, _lora_info(model_config), mixture)
        elif lora:
            llm = _with_lora(llm, model_config)
        gate = Gate(sr.hidden_size(), model_config.experts) if moe else None
        width = llm.get_input_embeddings().embedding_dim
        projector = Projector(embeddings.shape[1], width) if embeddings is not None else None
        user_projector = Projector(sr.hidden_size(), width) if model_config.user_token else None
        answer_projector = None
        if model_config.answer_token != "none":
            answer_dim = embeddings.shape[1] if model_config.answer_token == "item" else sr.hidden_size()
            answer_projector = Projector(answer_dim, width)
        info = {
            "format": EXPORT_FORMAT,
            "base_model": model_config.base_model,
            "dtype": dtype,
            "sr_checkpoint": str(sr_checkpoint) if sr_checkpoint is not None else None,
            "evidence_checkpoints": [str(path) for path in evidence_checkpoints],
            "prior_checkpoint": str(prior_checkpoint) if prior_source is not None else None,
            "prompt_mode": mode,
            "domain": domain,
            "data_dir": str(data.root),
            "data_hash": data.manifest.get("content_hash"),
            "num_items": data.num_items,
            "lora": _lora_info(model_config) if lora else None,
            "user_token": model_config.user_token,
            "answer_token": model_config.answer_token,
            "answer_token_at": model_config.answer_token_at,
            "sr_prior": model_config.sr_prior,
            **({"text_placeholder": True} if model_config.text_placeholder else {}),
        }
        model = cls(
            llm, tokenizer, embeddings, data.titles, mode, domain, info,
            projector, sr, user_projector, answer_projector, gate, SRPrior() if model_config.sr_prior else None,
            prior_source,
        )
        return model.float_trainable() if lora else model  # without LoRA nothing of the base is trained

    @classmethod
    def load(
        cls, export_dir: str | Path, dtype: str | None = None, attention: str | None = None, verify: bool = True
    ) -> LlaraModel:
        """Load a model written by :meth:`save` (base model resolved again, adapter and projector applied);
        ``dtype`` overrides the recorded base-weight precision, ``attention`` picks the attention kernel.

        With ``verify`` (the default) every file and ``llara.json`` itself are first checked against the
        sha256 digests ``llara.json`` records (:func:`verify_export`); a changed, missing or added file is
        a :class:`LlaraError` naming it.
        """
        from llara.llm.loader import load_base_model

        export_dir = Path(export_dir)
        info = _read_info(export_dir)
        if verify:
            verify_export(export_dir, info)
        info = {key: value for key, value in info.items() if key not in _INTEGRITY_FIELDS}
        llm, tokenizer = load_base_model(info["base_model"], dtype or info.get("dtype", "float32"), attention=attention)
        add_placeholder_tokens(tokenizer, bool(info.get("text_placeholder")))
        resize_for_placeholders(llm, tokenizer)
        lora = info.get("lora") or {}
        if lora.get("adapter") == "moe-lora":
            llm = _with_moe_lora(llm, lora, ExpertWeights())
            weights = export_dir / ADAPTER_DIR / ADAPTER_WEIGHTS
            load_adapter_state(llm, read_tensors(weights, "the MoE-LoRA experts"), weights)
        elif (export_dir / ADAPTER_DIR).is_dir():
            llm = _load_lora(llm, export_dir / ADAPTER_DIR)
        embeddings = None
        if (export_dir / EMBEDDINGS_FILE).is_file():
            embeddings = _read_embeddings(export_dir / EMBEDDINGS_FILE)
        titles = json.loads((export_dir / TITLES_FILE).read_text(encoding="utf-8"))
        sr = None
        if (export_dir / SR_DIR).is_dir():
            sr = _backbone(_load_sr(export_dir / SR_DIR, len(titles)), len(titles), _evidence_folders(export_dir))
        projectors = {
            name: _load_projector(export_dir / filename)
            for name, filename in PROJECTOR_FILES.items()
            if (export_dir / filename).is_file()
        }
        if "projector" in projectors and embeddings is None:
            raise LlaraError(
                f"{export_dir} holds {PROJECTOR_FILE} but not {EMBEDDINGS_FILE}, the item embeddings it projects: "
                "the export is incomplete; copy the whole folder or export the model again"
            )
        gate = _load_gate(export_dir / GATE_FILE) if (export_dir / GATE_FILE).is_file() else None
        sr_prior = None
        if info.get("sr_prior"):
            sr_prior = load_prior(read_tensors(export_dir / PRIOR_FILE, "the SR prior"), export_dir / PRIOR_FILE)
        prior_source = None
        if (export_dir / PRIOR_SR_DIR).is_dir():
            prior_source = _load_sr(export_dir / PRIOR_SR_DIR, len(titles))
        model = cls(
            llm, tokenizer, embeddings, titles, info.get("evaluation_mode", info["prompt_mode"]), info["domain"], info,
            sr=sr, gate=gate,
            sr_prior=sr_prior, prior_source=prior_source, **projectors,
        )
        return model.eval()

    def save(self, export_dir: str | Path) -> Path:
        """Write adapter, projector, item embeddings, titles and ``llara.json`` to ``export_dir`` atomically."""
        from peft import PeftModel
        from safetensors.torch import save_file

        export_dir = Path(export_dir)
        with reported_write(export_dir), atomic_dir(export_dir) as tmp:
            if isinstance(self.llm, PeftModel):
                self.llm.save_pretrained(tmp / ADAPTER_DIR, save_embedding_layers=False)
            if self.mixture is not None:
                (tmp / ADAPTER_DIR).mkdir()
                save_file(adapter_state(self.llm), str(tmp / ADAPTER_DIR / ADAPTER_WEIGHTS))
            for name, filename in TRAINED_FILES.items():
                module = getattr(self, name)
                if module is not None:
                    state = {k: v.detach().float().contiguous() for k, v in module.state_dict().items()}
                    save_file(state, str(tmp / filename))
            if self.sr is not None:
                from llara.sr.checkpoint import save_sr

                members = _members(self.sr)
                save_sr(members[0], tmp / SR_DIR)
                for k, member in enumerate(members[1:], start=1):
                    save_sr(member, tmp / EVIDENCE_DIR / str(k))
            if self.prior_source is not None:
                from llara.sr.checkpoint import save_sr

                save_sr(self.prior_source, tmp / PRIOR_SR_DIR)
            if self.item_embeddings.numel():
                save_file({"item_embeddings": self.item_embeddings.contiguous()}, str(tmp / EMBEDDINGS_FILE))
            (tmp / TITLES_FILE).write_text(json.dumps(self.titles, ensure_ascii=False), encoding="utf-8")
            info = {key: value for key, value in self.info.items() if key not in _INTEGRITY_FIELDS}
            info[FILES_FIELD] = export_file_digests(tmp)
            info = json.loads(json.dumps(info))  # the digest covers the fields as a reader will parse them
            info[INFO_DIGEST] = info_digest(info)
            (tmp / CONFIG_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        return export_dir

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

    @property
    def backbone(self) -> nn.Module | None:
        """The primary SR backbone (``train.sr_checkpoint``: it retrieves candidates and its item vectors are
        the behavioral tokens), also when the model reads further evidence backbones; None without one."""
        return _members(self.sr)[0] if self.sr is not None else None

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

    @cached_property
    def verdict_ids(self) -> tuple[int, int]:
        """The token ids whose logits a ``verdict`` score compares: the last token of each of
        :data:`VERDICT_WORDS` (tokenised once per model)."""
        ids = tuple(self.tokenizer(word, add_special_tokens=False)["input_ids"][-1] for word in VERDICT_WORDS)
        if ids[0] == ids[1]:
            raise LlaraError(f"the tokenizer ends {' and '.join(map(repr, VERDICT_WORDS))} with the same token")
        return ids

    def verdict_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``Yes`` minus ``No`` logit of the output head on hidden states ``[..., d]``."""
        head = self.llm.get_output_embeddings()
        yes, no = self.verdict_ids
        direction = head.weight[yes] - head.weight[no]
        offset = head.bias[yes] - head.bias[no] if getattr(head, "bias", None) is not None else 0.0
        return (hidden.float() @ direction.float()) + offset

    def load_trained(self, export_dir: str | Path) -> None:
        """Start from a trained export: copy its LoRA weights and projectors into this (fresh) model.

        The export must have the same base model, adapter shape and projectors (e.g. the sft stage of a
        two-stage recipe before its preference stage).
        """
        from peft import set_peft_model_state_dict

        export_dir = Path(export_dir)
        info = _read_info(export_dir)
        verify_export(export_dir, info)
        if info.get("base_model") != self.info.get("base_model") or info.get("lora") != self.info.get("lora"):
            raise LlaraError(f"{export_dir} has another base model or LoRA shape than this run; it cannot start it")
        adapter = export_dir / ADAPTER_DIR / ADAPTER_WEIGHTS
        if self.mixture is not None:
            load_adapter_state(self.llm, read_tensors(adapter, "the MoE-LoRA experts"), adapter)
        elif self.info.get("lora") and adapter.is_file():
            result = set_peft_model_state_dict(self.llm, read_tensors(adapter, "the LoRA weights"))
            if getattr(result, "unexpected_keys", None):
                raise LlaraError(f"{adapter} holds weights this model does not have: {result.unexpected_keys[:3]}")
        for name, filename in TRAINED_FILES.items():
            module, path = getattr(self, name), export_dir / filename
            if module is not None and path.is_file():
                module.load_state_dict(read_tensors(path, f"the trained {name}"))

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

    def train(self, mode: bool = True) -> LlaraModel:
        """Set training mode; the frozen SR backbone and prior source always stay in eval mode (no dropout)."""
        super().train(mode)
        for frozen in (self.sr, self.prior_source):
            if frozen is not None:
                frozen.eval()
        return self

    def encode_training(self, rows: Sequence[Mapping], mode: str | None = None) -> dict[str, torch.Tensor]:
        """Prompt + answer + eos per row, right-padded, with ``labels`` set on the answer tokens only.

        The label mask comes from the prompt length, so it does not depend on tokenizer internals.
        """
        mode = mode or self.prompt_mode
        prompts_ids = [self._prompt_ids(row, mode) for row in rows]
        answers = [self._answer_ids(int(row["target"]), mode) for row in rows]
        return self._pad(prompts_ids, answers, "right", rows, mode)

    def input_embeddings(
        self, input_ids: torch.Tensor, behavior_ids: torch.Tensor, history: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Token embeddings with every placeholder position replaced by its projected SR vector.

        ``behavior_ids`` holds an item id at each placeholder (-1 elsewhere); ``history`` ``[B, L]`` (the
        rows' histories padded with ``num_items``) is needed when user or interaction answer tokens occur.
        """
        embeds = self.llm.get_input_embeddings()(input_ids)
        positions = behavior_ids >= 0
        if not bool(positions.any()):
            return embeds
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)[:, None].expand_as(input_ids)[positions]
        vectors = self._behavior_vectors(input_ids[positions], behavior_ids[positions], rows, history)
        return embeds.masked_scatter(positions.unsqueeze(-1), vectors.to(embeds.dtype))

    def _behavior_vectors(
        self, tokens: torch.Tensor, items: torch.Tensor, rows: torch.Tensor, history: torch.Tensor | None
    ) -> torch.Tensor:
        """Projected vectors for placeholder ``tokens`` (one per position), by placeholder kind."""
        out: torch.Tensor | None = None
        for token, projector, inputs in self._kinds(history):
            chosen = tokens == self.token_ids[token]
            if not bool(chosen.any()):
                continue
            if projector is None:
                raise LlaraError(f"this model has no projector for {token} placeholders; its prompts cannot hold them")
            vectors = projector(inputs(items[chosen], rows[chosen]).to(projector[0].weight.dtype))
            if out is None:
                out = vectors.new_zeros(len(tokens), vectors.shape[-1])
            out = out.index_put((chosen.nonzero().squeeze(-1),), vectors)
        if out is None:
            raise LlaraError("behavior ids are set on positions that hold no placeholder token")
        return out

    def _kinds(self, history: torch.Tensor | None) -> list[tuple[str, Projector | None, Any]]:
        """(placeholder, projector, inputs(items, rows)) for every kind of behavioral token."""
        state = self._history_state(history) if self.sr is not None and history is not None else None

        def item_rows(items: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return self.item_embeddings[items]

        def user_state(items: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return _require(state, "user tokens")[rows]

        def answer_vector(items: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            if self.answer_token == "item":
                return self.item_embeddings[items]
            return INTERACTION_SCALE * _require(state, "interaction answer tokens")[rows] * self.sr.output_rows(items)

        return [
            (prompts.HISTORY_TOKEN, self.projector, item_rows),
            (prompts.CANDIDATE_TOKEN, self.projector, item_rows),
            (prompts.USER_TOKEN, self.user_projector, user_state),
            (prompts.ANSWER_TOKEN, self.answer_projector, answer_vector),
        ]

    @torch.no_grad()
    def _history_state(self, history: torch.Tensor) -> torch.Tensor:
        """The frozen SR backbone's state after each history ``[B, L]`` (what it scores candidates with)."""
        return self.sr.hidden(history.to(next(self.sr.parameters()).device)).float()

    def gate_weights(self, history: torch.Tensor | None) -> torch.Tensor:
        """MoE-LoRA: each row's expert weights ``[B, K]`` (softmax; rows sum to 1), from the SR backbone's
        state after its history ``[B, L]`` (the vector a user token carries)."""
        if self.gate is None:
            raise LlaraError("this model has no gate: only model.adapter=moe-lora models mix experts")
        return self.gate(self._history_state(_require(history, "MoE-LoRA gates")))

    def gated(self, history: torch.Tensor | None) -> AbstractContextManager:
        """Inside the block every MoE-LoRA layer mixes its experts with the weights of ``history``'s rows
        (one row per batch row: the packed segments of a row share its weights); a no-op for plain LoRA.

        ``forward`` and ``score_answers`` enter it themselves; callers of ``llm`` directly (prefill,
        decoding with a cache) wrap their calls in it."""
        if self.mixture is None:
            return nullcontext()
        return self.mixture.use(self.gate_weights(history))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        behavior_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        history: torch.Tensor | None = None,
        **kwargs: Any,
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

    def lora_in_autocast_dtype(self) -> AbstractContextManager:
        """Under autocast, LoRA layers take their input as it comes: peft would cast it to the float32
        LoRA weights' dtype, and autocast would cast it back for the matmul (two copies of every LoRA
        input per layer). Without autocast (or without LoRA) this does nothing."""
        from peft.helpers import disable_input_dtype_casting

        device = next(self.llm.parameters()).device.type
        return disable_input_dtype_casting(self.llm, active=torch.is_autocast_enabled(device))

    def answer_loss(self, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean causal-LM cross-entropy of the labelled tokens (``labels`` ``[B, T]``, ``IGNORE_INDEX``
        elsewhere) from the decoder's ``hidden`` states ``[B, T, d]``: the output head runs only at the
        positions that predict a labelled token, not over the whole sequence."""
        targets = labels[:, 1:]
        rows, positions = (targets != IGNORE_INDEX).nonzero(as_tuple=True)
        return -self._logp_at(hidden, rows, positions, targets[rows, positions]).mean()

    def score_answers(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        behavior_ids: torch.Tensor,
        position_ids: torch.Tensor,
        score_positions: torch.Tensor,
        score_targets: torch.Tensor,
        score_segments: torch.Tensor,
        history: torch.Tensor | None = None,
        verdict_positions: torch.Tensor | None = None,
        candidate_items: torch.Tensor | None = None,
        scored_candidates: torch.Tensor | None = None,
    ) -> AnswerScores:
        """Summed log-probabilities and token counts ``[B, C]`` of the packed answers, in one forward pass;
        with ``verdict_positions`` ``[B, C]`` (each answer's last position), their verdict scores too, plus
        the SR prior of ``candidate_items`` ``[B, C]`` when the model has one (:meth:`prior`).

        The vocabulary projection runs only at the positions that predict a scored token, and with
        ``scored_candidates`` (``[B, C]`` booleans) only for those candidates: the others' summed
        log-probabilities are then 0 (their counts stay right). Verdict training needs only the target's.
        """
        embeds = self.input_embeddings(input_ids, behavior_ids, history)
        mask = torch.zeros(attention_mask.shape, dtype=embeds.dtype, device=embeds.device)
        mask = mask.masked_fill(~attention_mask.bool(), torch.finfo(embeds.dtype).min)
        decoder = self.llm.get_decoder()
        with self.gated(history), self.lora_in_autocast_dtype():
            hidden = decoder(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids, use_cache=False)[0]
        real = score_segments >= 0
        width = int(score_segments.max()) + 1
        index = score_segments.clamp(min=0)
        needed = real if scored_candidates is None else real & scored_candidates.gather(1, index)
        token_logp = self._token_logp(hidden, score_positions, score_targets, needed)
        total = token_logp.new_zeros(len(index), width).scatter_add(1, index, token_logp)
        count = token_logp.new_zeros(len(index), width).scatter_add(1, index, real.float())
        verdict = None
        if verdict_positions is not None:
            ends = hidden.gather(1, verdict_positions[..., None].expand(-1, -1, hidden.shape[-1]))
            verdict = torch.where(count > 0, self.verdict_logits(ends), 0.0)
            if self.sr_prior is not None:
                if candidate_items is None:
                    raise LlaraError("the SR prior scores the packed candidates: pass `candidate_items`")
                verdict = verdict + self.prior(history, candidate_items, count > 0)
        return AnswerScores(total=total, count=count, verdict=verdict)

    def _token_logp(
        self, hidden: torch.Tensor, positions: torch.Tensor, targets: torch.Tensor, needed: torch.Tensor
    ) -> torch.Tensor:
        """``[B, P]`` log-probabilities of ``targets`` predicted at ``positions`` of ``hidden`` ``[B, T, d]``,
        computed where ``needed`` and 0 elsewhere (the output head runs on the needed positions only)."""
        rows, slots = needed.nonzero(as_tuple=True)
        logp = self._logp_at(hidden, rows, positions[rows, slots], targets[rows, slots])
        return logp.new_zeros(needed.shape).index_put((rows, slots), logp)

    def _logp_at(
        self, hidden: torch.Tensor, rows: torch.Tensor, positions: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Log-probabilities ``[K]`` of ``targets`` predicted at ``hidden[rows, positions]``: the output head
        runs on those K positions only, in float32."""
        logits = self.llm.get_output_embeddings()(hidden[rows, positions]).float()
        return logits.gather(-1, targets[:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)

    def prior(self, history: torch.Tensor | None, items: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """The SR prior ``[B, C]`` added to the verdicts of ``items`` ``[B, C]`` after ``history`` ``[B, L]``:
        the primary backbone's scores standardised over each row's ``real`` candidates, times the trained
        scale (:class:`~llara.llm.prior.SRPrior`)."""
        if self.sr_prior is None:
            raise LlaraError("this model has no SR prior: only model.sr_prior=true models add one")
        history = _require(history, "the SR prior").to(items.device)
        source = self.prior_source if self.prior_source is not None else self.backbone
        with torch.no_grad():
            scores = source.score(history.to(source.device), items.to(source.device)).to(items.device)
        return self.sr_prior(scores, real)

    def histories(self, rows: Sequence[Mapping]) -> torch.Tensor | None:
        """The rows' histories as ``[B, L]`` padded with ``num_items`` (for the SR backbone and the prior's
        source), or ``None`` when the model reads neither."""
        readers = [module for module in (self.sr, self.prior_source) if module is not None]
        if not readers:
            return None
        from llara.sr.base import pad_histories

        width = max(module.max_len for module in readers)
        return pad_histories([list(row["history"]) for row in rows], width, readers[0].num_items)

    # ----------------------------------------------------------------- helpers

    def _prompt_ids(self, row: Mapping, mode: str) -> list[int]:
        text = prompts.render_prompt(row, self.titles, mode, self.domain, self.user_token, self.text_placeholder)
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
        history = self.histories(rows)
        if history is not None:
            out["history"] = history
        if any(a is not None for a in answer_ids):
            out["labels"] = labels
        return out

    def _behavior_ids(self, input_ids: torch.Tensor, rows: Sequence[Mapping], mode: str) -> torch.Tensor:
        """Item ids at placeholder positions (in prompt order), -1 elsewhere."""
        behavior = torch.full_like(input_ids, -1)
        positions = torch.isin(input_ids, torch.tensor(self.placeholder_ids))
        items = [item for row in rows for item in prompts.behavior_items(row, mode, self.user_token)]
        if int(positions.sum()) != len(items):
            raise LlaraError(
                f"prompts hold {int(positions.sum())} placeholder tokens but the rows name {len(items)} items; "
                "do item titles contain the placeholder strings "
                f"{', '.join(prompts.PLACEHOLDER_TOKENS)}?"
            )
        if items:
            behavior[positions] = torch.tensor(items, dtype=torch.long)
        return behavior


def add_placeholder_tokens(tokenizer: Any, text_placeholder: bool = False) -> list[int]:
    """Add the placeholder special tokens (and, with ``text_placeholder``, :data:`~llara.llm.prompts.TEXT_PLACEHOLDER`)
    to ``tokenizer`` if missing; return the ids of :data:`~llara.llm.prompts.PLACEHOLDER_TOKENS`."""
    wanted = [*prompts.PLACEHOLDER_TOKENS, *([prompts.TEXT_PLACEHOLDER] if text_placeholder else [])]
    missing = [t for t in wanted if t not in tokenizer.get_vocab()]
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


def _check_evidence(
    user_token: bool, answer_token: str, sr: nn.Module | None, sr_prior: bool, prior_source: bool = False
) -> None:
    """User tokens, interaction answer tokens and the SR prior read the SR backbone (the prior: or its own
    source): it must be there."""
    if answer_token not in ("none", "item", "interaction"):
        raise LlaraError(f"answer_token {answer_token!r} is not one of none, item, interaction")
    if (user_token or answer_token == "interaction") and sr is None:
        raise LlaraError("user and interaction answer tokens need the SR backbone: set train.sr_checkpoint")
    if sr_prior and sr is None and not prior_source:
        raise LlaraError(
            "model.sr_prior adds the SR backbone's candidate scores: set train.sr_checkpoint or train.prior_checkpoint"
        )


def _require(state: torch.Tensor | None, what: str) -> torch.Tensor:
    if state is None:
        raise LlaraError(f"{what} need the rows' histories: pass the batch's `history` tensor")
    return state


def _check_gate(gate: Gate | None, mixture: ExpertWeights | None, sr: nn.Module | None) -> None:
    """A MoE-LoRA model has a gate, layers that read its weights, and the SR backbone the gate reads."""
    if (gate is None) != (mixture is None):
        raise LlaraError("a MoE-LoRA model needs both its gate and its MoE-LoRA layers; the export is incomplete")
    if gate is not None and sr is None:
        raise LlaraError("the MoE-LoRA gate reads the SR backbone's history state: set train.sr_checkpoint")


def _load_sr(checkpoint: str | Path | None, num_items: int) -> nn.Module | None:
    """The SR backbone saved at ``checkpoint`` (None without one), in float32."""
    if checkpoint is None:
        return None
    from llara.sr.checkpoint import load_sr

    return load_sr(checkpoint, num_items=num_items).float()


def _prior_source(checkpoint: str | Path | None, sr_prior: bool, num_items: int) -> nn.Module | None:
    """The recommender ``train.prior_checkpoint`` names (None without one); only read with ``model.sr_prior``."""
    if checkpoint is None:
        return None
    if not sr_prior:
        raise LlaraError("train.prior_checkpoint names the SR prior's source: set model.sr_prior=true or drop it")
    return _load_sr(checkpoint, num_items)


def _backbone(primary: nn.Module | None, num_items: int, evidence: Sequence[str | Path] = ()) -> nn.Module:
    """The frozen SR backbone whose history state user tokens, answer tokens and MoE-LoRA gates read; with
    ``evidence`` checkpoints, a :class:`~llara.sr.stack.BackboneStack` of ``primary`` and them."""
    if primary is None:
        raise LlaraError(
            "model.user_token, model.answer_token and model.adapter=moe-lora need an SR backbone: "
            "set train.sr_checkpoint"
        )
    if not evidence:
        return primary
    return BackboneStack([primary, *(_load_sr(path, num_items) for path in evidence)])


def _members(sr: nn.Module) -> list[nn.Module]:
    """The SR backbones a model carries, the primary one first (one, unless it reads a stack)."""
    return list(sr.members) if isinstance(sr, BackboneStack) else [sr]


def _evidence_folders(export_dir: Path) -> list[Path]:
    """The further backbones an export carries (``evidence/1``, ``evidence/2``, ...), in order."""
    folder = export_dir / EVIDENCE_DIR
    if not folder.is_dir():
        return []
    return sorted((path for path in folder.iterdir() if path.is_dir()), key=lambda path: int(path.name))


def _load_gate(path: Path) -> Gate:
    """A MoE-LoRA gate from its safetensors file; its sizes come from the weights."""
    state = read_tensors(path, "the MoE-LoRA gate")
    weight = state.get("linear.weight")
    if weight is None or weight.dim() != 2:
        raise LlaraError(f"{path} is not a MoE-LoRA gate (expected the key linear.weight)")
    gate = Gate(weight.shape[1], weight.shape[0])
    gate.load_state_dict(state)
    return gate


def _load_lora(llm: nn.Module, folder: Path) -> nn.Module:
    """``llm`` with the peft LoRA adapter saved in ``folder``; a missing config or damaged weights are a
    one-line error naming the folder."""
    from peft import PeftModel
    from safetensors import SafetensorError

    if not (folder / "adapter_config.json").is_file():
        raise LlaraError(f"{folder} has no adapter_config.json: the adapter is incomplete; copy the whole export again")
    try:
        return PeftModel.from_pretrained(llm, folder, is_trainable=False)
    except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as exc:
        raise LlaraError(
            f"{folder} holds an adapter that cannot be loaded ({first_line(exc)}); export the model again"
        ) from exc


def _read_embeddings(path: Path) -> torch.Tensor:
    """The frozen item embeddings an export carries."""
    state = read_tensors(path, "the item embeddings")
    if "item_embeddings" not in state:
        raise LlaraError(f"{path} holds no item_embeddings tensor; export the model again")
    return state["item_embeddings"]


def _load_projector(path: Path) -> Projector:
    """A projector from its safetensors file; its sizes come from the weights."""
    state = read_tensors(path, "a projector")
    first, last = state.get("0.weight"), state.get("2.weight")
    if first is None or last is None:
        raise LlaraError(f"{path} is not a projector (expected keys 0.weight and 2.weight)")
    projector = Projector(first.shape[1], last.shape[0])
    projector.load_state_dict(state)
    return projector


def _resolve_embeddings(
    sr: nn.Module | None,
    item_embeddings: torch.Tensor | None,
    num_items: int,
    mode: str,
    needed: bool = False,
) -> torch.Tensor | None:
    """The frozen item embeddings of the SR backbone ``sr`` or a given tensor; checked against the data's
    item count."""
    if sr is not None and (not getattr(sr, "score_only", False) or prompts.uses_behavior_tokens(mode)):
        with torch.no_grad():  # a count model has no embeddings: behavioral tokens get its clear error
            item_embeddings = sr.item_embeddings().detach().float()
    if item_embeddings is None:
        if prompts.uses_behavior_tokens(mode):
            raise LlaraError(
                f"prompt mode {mode!r} uses behavioral tokens: set train.sr_checkpoint to an SR checkpoint "
                "(train one with `llara sr train`)"
            )
        if needed:
            raise LlaraError(
                "model.user_token, model.answer_token and model.sr_prior read the SR backbone: set "
                "train.sr_checkpoint to an SR checkpoint (train one with `llara sr train`)"
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
        peft_model = get_peft_model(llm, lora)
    except ValueError as exc:
        raise LlaraError(
            f"model.lora_target_modules {config.lora_target_modules} do not fit the base model: {exc}"
        ) from exc
    use_bit_dropout(peft_model)
    return peft_model


def _with_moe_lora(llm: nn.Module, lora: Mapping[str, Any], mixture: ExpertWeights) -> nn.Module:
    """The base model with MoE-LoRA layers of the shape ``lora`` (what :func:`_lora_info` records)."""
    return apply_moe_lora(
        llm, lora["target_modules"], lora["r"], lora["experts"], lora["alpha"], lora["dropout"], mixture
    )


def _checkpointing_kwargs(mixture: ExpertWeights | None) -> dict[str, Any]:
    """``torch.utils.checkpoint`` options: non-reentrant; MoE-LoRA layers recompute with the weights their
    forward pass saw (the gated block has exited by the time the backward pass runs)."""
    if mixture is None:
        return {"use_reentrant": False}
    return {"use_reentrant": False, "context_fn": mixture.checkpoint_contexts}


def _lora_info(config: ModelConfig) -> dict[str, Any]:
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


def _read_info(export_dir: Path) -> dict[str, Any]:
    path = export_dir / CONFIG_FILE
    if not path.is_file():
        raise LlaraError(f"{export_dir} is not a LLaRA export (no {CONFIG_FILE}); train one with `llara train`")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LlaraError(f"{path} is not valid JSON: {exc}") from exc
    if info.get("format") != EXPORT_FORMAT:
        raise LlaraError(f"{path} is not a LLaRA export config (format must be {EXPORT_FORMAT!r})")
    return info


def export_file_digests(export_dir: Path) -> dict[str, str]:
    """sha256 of every file under ``export_dir`` but ``llara.json`` (and hidden ones), by relative POSIX path."""
    return {relative: file_sha256(export_dir / relative) for relative in _export_files(export_dir)}


def info_digest(info: Mapping[str, Any]) -> str:
    """sha256 of ``info``'s canonical JSON (sorted keys, compact) without its own ``info_sha256`` field."""
    return fields_sha256(info, without=INFO_DIGEST)


def verify_export(export_dir: str | Path, info: Mapping[str, Any] | None = None) -> None:
    """Check an export against the digests its ``llara.json`` records; a one-line :class:`LlaraError`
    names the first file that differs, is missing or was added. Exports that record no digests (written
    before llara recorded them) pass with a logged warning."""
    export_dir = Path(export_dir)
    info = _read_info(export_dir) if info is None else info
    skip = "pass --no-verify (LlaraModel.load(..., verify=False)) to load it unchecked"
    recorded = info.get(FILES_FIELD)
    if recorded is None and INFO_DIGEST not in info:
        log.warning("%s records no file digests (written by an older llara): it cannot be verified", export_dir)
        return
    config = export_dir / CONFIG_FILE
    if not isinstance(recorded, dict) or info.get(INFO_DIGEST) != info_digest(info):
        raise LlaraError(
            f"{config} was edited after the export was written (its {INFO_DIGEST} does not match its fields); "
            f"export the model again, or {skip}"
        )
    for relative, digest in recorded.items():
        path = export_dir / str(relative)
        if Path(relative).is_absolute() or ".." in Path(relative).parts:
            raise LlaraError(f"{config} lists {relative!r}, which is outside the export; export the model again")
        if not path.is_file():
            raise LlaraError(
                f"{path} is missing from the export; copy the whole export folder or export again, or {skip}"
            )
        if file_sha256(path) != digest:
            raise LlaraError(
                f"{path} differs from the file the export was written with (sha256 recorded in {CONFIG_FILE}): "
                f"it was changed or damaged; export the model again, or {skip}"
            )
    added = sorted(set(_export_files(export_dir)) - set(recorded))
    if added:
        raise LlaraError(
            f"{export_dir / added[0]} is not part of the export as written (not listed in {CONFIG_FILE}); "
            f"remove it, or {skip}"
        )


def _export_files(export_dir: Path) -> list[str]:
    """The files of an export but ``llara.json`` (relative POSIX paths, sorted); hidden ones (``.name``,
    which the loader never reads) are left out."""
    files = []
    for path in export_dir.rglob("*"):
        relative = path.relative_to(export_dir)
        hidden = any(part.startswith(".") for part in relative.parts)
        if path.is_file() and relative.as_posix() != CONFIG_FILE and not hidden:
            files.append(relative.as_posix())
    return sorted(files)


def export_info(export_dir: str | Path) -> dict[str, Any]:
    """What an export's ``llara.json`` records (base model, prompt mode, answer token, ...)."""
    return _read_info(Path(export_dir))


def export_data_hash(export_dir: str | Path) -> str | None:
    """The content hash of the prepared data an export was trained on (None when it records none)."""
    return _read_info(Path(export_dir)).get("data_hash")
