"""The recommender's evidence a LLaRA model reads, and how it reaches the LLM's input.

Holds the frozen SR backbones (loading them, the :class:`~llara.sr.stack.BackboneStack` of further
evidence backbones, their history state), the item embeddings the behavioral tokens carry, the projectors
into the LLM's input-embedding space (:class:`Projector`) and the evidence channels: history and
candidate placeholders carry their item's embedding, the user token the backbone's history state, and an
answer token its candidate's item embedding (``model.answer_token: item``) or interaction vector
(``interaction``). :func:`replace_placeholders` puts each placeholder's projected vector in place of its
input embedding, one vectorised step per channel.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from llara.config import ModelConfig
from llara.errors import LlaraError
from llara.llm import prompts
from llara.sr.stack import BackboneStack

#: interaction vectors (SR history state x candidate output row, elementwise) are scaled by this before
#: their projector: the terms are small (they sum to the SR score), and a unit-scale input trains faster
INTERACTION_SCALE = 8.0
#: a channel's inputs: (items, rows) of its placeholders -> the vectors its projector reads
Inputs = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Projector(nn.Sequential):
    """Linear(sr_dim, d) -> GELU -> Linear(d, d): SR item embeddings into the LLM input-embedding space."""

    def __init__(self, sr_dim: int, hidden: int) -> None:
        super().__init__(nn.Linear(sr_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden))


class Sources(NamedTuple):
    """What a fresh model reads of its recommenders: the frozen item embeddings (None without behavioral
    tokens or evidence), the SR backbone (None when nothing reads its state) and the SR prior's own source."""

    item_embeddings: torch.Tensor | None
    sr: nn.Module | None
    prior_source: nn.Module | None


def load_sources(
    model_config: ModelConfig,
    mode: str,
    num_items: int,
    sr_checkpoint: str | Path | None,
    item_embeddings: torch.Tensor | None,
    evidence_checkpoints: Sequence[str | Path],
    prior_checkpoint: str | Path | None,
    moe: bool,
) -> Sources:
    """The recommenders a fresh model of ``model_config`` (prompt mode ``mode``) reads
    (``LlaraModel.from_config``); ``moe``: its MoE-LoRA gate reads the backbone's history state."""
    prior_source = _load_prior_source(prior_checkpoint, model_config.sr_prior, num_items)
    tokens = model_config.user_token or model_config.answer_token != "none"
    evidence = tokens or (model_config.sr_prior and prior_source is None)
    primary = load_backbone(sr_checkpoint, num_items)
    embeddings = _resolve_embeddings(primary, item_embeddings, num_items, mode, evidence)
    if evidence_checkpoints and not (model_config.user_token or model_config.answer_token == "interaction" or moe):
        raise LlaraError(
            "train.evidence_checkpoints feed the SR backbones' history state to user tokens, interaction "
            "answer tokens or MoE-LoRA gates: set model.user_token, model.answer_token=interaction or "
            "model.adapter=moe-lora, or drop them"
        )
    sr = backbone_stack(primary, num_items, evidence_checkpoints) if evidence or moe else None
    return Sources(embeddings, sr, prior_source)


def new_projectors(
    model_config: ModelConfig, item_embeddings: torch.Tensor | None, sr: nn.Module | None, llm: nn.Module
) -> dict[str, Projector | None]:
    """Freshly initialised projectors into ``llm``'s input-embedding space, by model attribute: the item
    projector (with item embeddings), the user-token and the answer-token projector (as configured)."""
    width = llm.get_input_embeddings().embedding_dim
    projector = Projector(item_embeddings.shape[1], width) if item_embeddings is not None else None
    user_projector = Projector(sr.hidden_size(), width) if model_config.user_token else None
    answer_projector = None
    if model_config.answer_token != "none":
        answer_dim = item_embeddings.shape[1] if model_config.answer_token == "item" else sr.hidden_size()
        answer_projector = Projector(answer_dim, width)
    return {"projector": projector, "user_projector": user_projector, "answer_projector": answer_projector}


def check_evidence(
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


def require_history(state: torch.Tensor | None, what: str) -> torch.Tensor:
    """``state`` (the rows' histories, or the backbone's state after them); None is a :class:`LlaraError`
    saying that ``what`` need the rows' histories."""
    if state is None:
        raise LlaraError(f"{what} need the rows' histories: pass the batch's `history` tensor")
    return state


def load_backbone(checkpoint: str | Path | None, num_items: int) -> nn.Module | None:
    """The SR backbone saved at ``checkpoint`` (None without one), in float32."""
    if checkpoint is None:
        return None
    from llara.sr.checkpoint import load_sr

    return load_sr(checkpoint, num_items=num_items).float()


def _load_prior_source(checkpoint: str | Path | None, sr_prior: bool, num_items: int) -> nn.Module | None:
    """The recommender ``train.prior_checkpoint`` names (None without one); only read with ``model.sr_prior``."""
    if checkpoint is None:
        return None
    if not sr_prior:
        raise LlaraError("train.prior_checkpoint names the SR prior's source: set model.sr_prior=true or drop it")
    return load_backbone(checkpoint, num_items)


def backbone_stack(primary: nn.Module | None, num_items: int, evidence: Sequence[str | Path] = ()) -> nn.Module:
    """The frozen SR backbone whose history state user tokens, answer tokens and MoE-LoRA gates read; with
    ``evidence`` checkpoints, a :class:`~llara.sr.stack.BackboneStack` of ``primary`` and them."""
    if primary is None:
        raise LlaraError(
            "model.user_token, model.answer_token and model.adapter=moe-lora need an SR backbone: "
            "set train.sr_checkpoint"
        )
    if not evidence:
        return primary
    return BackboneStack([primary, *(load_backbone(path, num_items) for path in evidence)])


def members(sr: nn.Module) -> list[nn.Module]:
    """The SR backbones a model carries, the primary one first (one, unless it reads a stack)."""
    return list(sr.members) if isinstance(sr, BackboneStack) else [sr]


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


def history_batch(rows: Sequence[Mapping], readers: Sequence[nn.Module | None]) -> torch.Tensor | None:
    """The rows' histories as ``[B, L]`` padded with ``num_items`` for the frozen recommenders ``readers``
    that are there (the SR backbone, the prior's source), or ``None`` when there are none."""
    present = [module for module in readers if module is not None]
    if not present:
        return None
    from llara.sr.base import pad_histories

    width = max(module.max_len for module in present)
    return pad_histories([list(row["history"]) for row in rows], width, present[0].num_items)


@torch.no_grad()
def history_state(sr: nn.Module, history: torch.Tensor) -> torch.Tensor:
    """The frozen SR backbone's state after each history ``[B, L]`` (what it scores candidates with)."""
    return sr.hidden(history.to(next(sr.parameters()).device)).float()


def replace_placeholders(
    model: Any, embeds: torch.Tensor, input_ids: torch.Tensor, behavior_ids: torch.Tensor, history: torch.Tensor | None
) -> torch.Tensor:
    """``embeds`` (token embeddings of ``input_ids``) with every placeholder position replaced by its
    projected SR vector from ``model`` (a ``LlaraModel``: its projectors, item embeddings and SR backbone);
    see ``LlaraModel.input_embeddings``."""
    positions = behavior_ids >= 0
    if not bool(positions.any()):
        return embeds
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)[:, None].expand_as(input_ids)[positions]
    vectors = placeholder_vectors(model, input_ids[positions], behavior_ids[positions], rows, history)
    return embeds.masked_scatter(positions.unsqueeze(-1), vectors.to(embeds.dtype))


def placeholder_vectors(
    model: Any, tokens: torch.Tensor, items: torch.Tensor, rows: torch.Tensor, history: torch.Tensor | None
) -> torch.Tensor:
    """Projected vectors for placeholder ``tokens`` (one per position), by placeholder kind."""
    out: torch.Tensor | None = None
    for token, projector, inputs in _channels(model, history):
        chosen = tokens == model.token_ids[token]
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


def _channels(model: Any, history: torch.Tensor | None) -> list[tuple[str, Projector | None, Inputs]]:
    """(placeholder, projector, inputs(items, rows)) for every kind of behavioral token."""
    state = history_state(model.sr, history) if model.sr is not None and history is not None else None

    def item_rows(items: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return model.item_embeddings[items]

    def user_state(items: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return require_history(state, "user tokens")[rows]

    def answer_vector(items: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        if model.answer_token == "item":
            return model.item_embeddings[items]
        interaction_state = require_history(state, "interaction answer tokens")[rows]
        return INTERACTION_SCALE * interaction_state * model.sr.output_rows(items)

    return [
        (prompts.HISTORY_TOKEN, model.projector, item_rows),
        (prompts.CANDIDATE_TOKEN, model.projector, item_rows),
        (prompts.USER_TOKEN, model.user_projector, user_state),
        (prompts.ANSWER_TOKEN, model.answer_projector, answer_vector),
    ]
