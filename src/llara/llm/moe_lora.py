"""Sequence-conditioned mixture-of-experts LoRA (iLoRA, ``model.adapter: moe-lora``).

Every targeted ``nn.Linear`` of the base model is wrapped by a :class:`MoeLoraLinear` that adds ``K``
LoRA experts of rank ``r / K`` (``r`` = ``model.lora_r``, the total rank, as a plain LoRA of rank ``r``
would have). A :class:`Gate` maps the frozen SR backbone's representation of a row's history to softmax
weights over the experts, and every wrapped layer mixes its experts with the same weights of that row::

    y = W x + (alpha / r) * sum_k g_k * B_k A_k dropout(x)

With ``K = 1`` the weight is 1 and the layer is exactly a LoRA of rank ``r``. The experts of a layer are
stored stacked: ``lora_A`` ``[r, in]`` (rows ``k r/K .. (k+1) r/K - 1`` are expert ``k``'s A) and
``lora_B`` ``[out, r]`` (the matching columns), so the mixture costs one LoRA of rank ``r`` plus one
elementwise product.

How the weights reach the layers: the layers of one model share one :class:`ExpertWeights`. A caller
sets the batch's ``[B, K]`` weights for the duration of its forward passes with
``with mixture.use(weights):`` (``LlaraModel.gated``), and the block always clears them on exit. The value
is thread-local, so concurrent forward passes in different threads each see their own; a layer called
with no weights set, or with weights for another batch size, raises a clear error instead of guessing.
Gradient checkpointing recomputes a layer during the backward pass, after the block has exited: the
``context_fn`` of :meth:`ExpertWeights.checkpoint_contexts` restores the weights the forward saw.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

import torch
from torch import nn

from llara.errors import LlaraError
from llara.llm.dropout import BitDropout


class ExpertWeights:
    """The per-row expert weights ``[B, K]`` that every MoE-LoRA layer of one model reads (thread-local)."""

    def __init__(self) -> None:
        self._local = threading.local()

    @contextmanager
    def use(self, weights: torch.Tensor | None) -> Iterator[None]:
        """Inside the block, this thread's MoE-LoRA layers mix their experts with ``weights``; the previous
        value (none outside any block) is restored on exit, also when the block raises."""
        previous = getattr(self._local, "weights", None)
        self._local.weights = weights
        try:
            yield
        finally:
            self._local.weights = previous

    def current(self, batch: int) -> torch.Tensor:
        """The weights set for this thread, checked against the ``batch`` size of the layer input."""
        weights = getattr(self._local, "weights", None)
        if weights is None:
            raise LlaraError(
                "a MoE-LoRA layer ran without gate weights: run the model through LlaraModel (forward, "
                "score_answers) or inside `with model.gated(history):`"
            )
        if weights.shape[0] != batch:
            raise LlaraError(f"gate weights are set for {weights.shape[0]} rows but the layer input has {batch}")
        return weights

    def __deepcopy__(self, memo: dict) -> ExpertWeights:
        """A copied model gets its own holder (shared by its copied layers), with no weights set."""
        return ExpertWeights()

    def checkpoint_contexts(self) -> tuple[AbstractContextManager, AbstractContextManager]:
        """``context_fn`` for ``torch.utils.checkpoint``: the recomputation runs with the weights of the
        forward pass it repeats."""
        return nullcontext(), self.use(getattr(self._local, "weights", None))


class Gate(nn.Module):
    """Linear(sr_dim, K) -> softmax: a history's SR representation ``[B, sr_dim]`` to expert weights ``[B, K]``."""

    def __init__(self, sr_dim: int, experts: int) -> None:
        super().__init__()
        self.linear = nn.Linear(sr_dim, experts)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.linear(state.to(self.linear.weight.dtype)), dim=-1)


class MoeLoraLinear(nn.Module):
    """A frozen ``nn.Linear`` plus ``experts`` LoRA experts sharing the total ``rank``, mixed per row."""

    def __init__(
        self, base: nn.Linear, rank: int, experts: int, alpha: float, dropout: float, mixture: ExpertWeights
    ) -> None:
        super().__init__()
        self.base = base.requires_grad_(False)
        self.experts = experts
        self.expert_rank = rank // experts
        self.scaling = alpha / rank
        self.dropout = BitDropout(dropout) if dropout > 0 else nn.Identity()
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as peft's LoRA A; B starts at zero
        self.mixture = mixture

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base(x)
        weights = self.mixture.current(x.shape[0])
        per_rank = weights.repeat_interleave(self.expert_rank, dim=-1).to(self.lora_A.dtype)
        per_rank = per_rank.view(x.shape[0], *([1] * (x.dim() - 2)), -1)  # broadcast over the positions
        if not torch.is_autocast_enabled(x.device.type):  # under autocast the matmul picks the dtype
            x = x.to(self.lora_A.dtype)
        hidden = nn.functional.linear(self.dropout(x), self.lora_A) * per_rank
        update = nn.functional.linear(hidden, self.lora_B) * self.scaling
        return result + update.to(result.dtype)

    def extra_repr(self) -> str:
        return f"experts={self.experts}, expert_rank={self.expert_rank}, scaling={self.scaling:g}"


def apply_moe_lora(
    llm: nn.Module,
    target_modules: Sequence[str],
    rank: int,
    experts: int,
    alpha: float,
    dropout: float,
    mixture: ExpertWeights,
) -> nn.Module:
    """Freeze ``llm`` and wrap each ``nn.Linear`` whose name ends in one of ``target_modules``; returns ``llm``."""
    if rank % experts:
        raise LlaraError(f"a total LoRA rank of {rank} does not split across {experts} experts")
    targets = [
        (name, module)
        for name, module in llm.named_modules()
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in target_modules
    ]
    if not targets:
        raise LlaraError(f"model.lora_target_modules {list(target_modules)} name no linear layer of the base model")
    llm.requires_grad_(False)
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = llm.get_submodule(parent_name) if parent_name else llm
        setattr(parent, child, MoeLoraLinear(module, rank, experts, alpha, dropout, mixture))
    return llm


def moe_layers(llm: nn.Module) -> dict[str, MoeLoraLinear]:
    """The MoE-LoRA layers of ``llm`` by module name (empty for a model without them)."""
    return {name: module for name, module in llm.named_modules() if isinstance(module, MoeLoraLinear)}


def shared_mixture(llm: nn.Module) -> ExpertWeights | None:
    """The :class:`ExpertWeights` all MoE-LoRA layers of ``llm`` read (None without such layers)."""
    mixtures = {id(layer.mixture): layer.mixture for layer in moe_layers(llm).values()}
    if len(mixtures) > 1:
        raise LlaraError("the MoE-LoRA layers of one model must share one gate; this model's do not")
    return next(iter(mixtures.values()), None)


def adapter_state(llm: nn.Module) -> dict[str, torch.Tensor]:
    """Every expert weight of ``llm`` (``<layer>.lora_A`` / ``<layer>.lora_B``), detached, float32, contiguous."""
    return {
        f"{name}.{part}": getattr(layer, part).detach().float().contiguous()
        for name, layer in moe_layers(llm).items()
        for part in ("lora_A", "lora_B")
    }


def load_adapter_state(llm: nn.Module, state: Mapping[str, torch.Tensor], source: Path) -> None:
    """Copy expert weights written by :func:`adapter_state` into ``llm``; names and shapes must match exactly."""
    expected = adapter_state(llm)
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise LlaraError(
            f"{source} does not fit this model's MoE-LoRA layers (missing {missing[:3]}, unexpected {unexpected[:3]}); "
            "was it written for another base model or lora_target_modules?"
        )
    layers = moe_layers(llm)
    with torch.no_grad():
        for key, value in state.items():
            name, _, part = key.rpartition(".")
            parameter = getattr(layers[name], part)
            if parameter.shape != value.shape:
                raise LlaraError(
                    f"{source}: {key} has shape {tuple(value.shape)}, this model {tuple(parameter.shape)}; "
                    "was it written with another lora_r or experts?"
                )
            parameter.copy_(value)
