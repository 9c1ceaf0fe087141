"""The run's setup: the accelerator and precision, the attention kernel, the objective, the optimizer and LR
schedule.

``_accelerator`` resolves ``model.dtype`` and ``train.mixed_precision`` ``auto`` for the device before the model
is built (``llara.llm.precision``) and refuses setups the loop cannot run (FSDP, a partly joined launch).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import torch

from llara.config import ExperimentConfig, TrainConfig
from llara.errors import LlaraError
from llara.llm.device import attention_for
from llara.llm.model import LlaraModel
from llara.llm.precision import Precision, choose_precision
from llara.training.batching import StepPlan, accumulation_steps
from llara.training.objectives import RANKING_OBJECTIVES, get_objective

#: devices with a fused AdamW kernel in torch
FUSED_ADAMW_DEVICES = ("cpu", "cuda")


def warmup_cosine(total_steps: int, warmup_ratio: float, min_ratio: float) -> Callable[[int], float]:
    """LR factor per step: linear warm-up from ``min_ratio`` over ``warmup_ratio`` of the steps, then cosine
    down to ``min_ratio`` (docs/method.md: from lr/100, 5% warm-up, cosine to lr/100)."""
    warmup = max(1, round(warmup_ratio * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return min_ratio + (1.0 - min_ratio) * step / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def build_optimizer(
    model: LlaraModel, lr: float, weight_decay: float, projector_decay: float, gate_lr_factor: float = 1.0
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; the projector has its own group and weight decay, the
    MoE-LoRA gate its own group with learning rate ``lr * gate_lr_factor``. The fused implementation
    (one kernel for all tensors; on the CPU 30x faster than the per-tensor loop over ~400 LoRA tensors)
    is used where torch has it for every parameter's device."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    projector = [p for n, p in trainable if n.startswith("projector.")]
    gate = [p for n, p in trainable if n.startswith("gate.")]
    others = [p for n, p in trainable if not n.startswith(("projector.", "gate."))]
    groups = [{"params": others, "weight_decay": weight_decay}]
    if projector:
        groups.append({"params": projector, "weight_decay": projector_decay})
    if gate:
        groups.append({"params": gate, "weight_decay": weight_decay, "lr": lr * gate_lr_factor})
    fused = all(p.device.type in FUSED_ADAMW_DEVICES and p.is_floating_point() for _, p in trainable)
    return torch.optim.AdamW(groups, lr=lr, fused=fused or None)


def rank_score(tc: TrainConfig) -> str:
    """The candidate score a model trained with ``tc`` ranks by: the per-token mean for length-normalised
    listwise training, the verdict for verdict listwise training, else the summed log-likelihood."""
    if tc.objective == "listwise" and tc.listwise_score in ("mean", "verdict"):
        return tc.listwise_score
    return "total"


def training_attention(config: ExperimentConfig, device: torch.device) -> str:
    """The attention kernel of a run on ``device``: ranking objectives score the packed layout, whose
    block mask flash attention cannot take, so they always get sdpa (``llara.llm.device``)."""
    return attention_for(device, block_mask=config.train.objective in RANKING_OBJECTIVES)


def _objective(config: ExperimentConfig) -> Any:
    """The configured objective; answer tokens only exist in the packed layout of ranking objectives, and
    only a verdict reads one placed after the title or carries the SR prior."""
    if config.model.answer_token != "none" and config.train.objective not in RANKING_OBJECTIVES:
        raise LlaraError(
            f"model.answer_token={config.model.answer_token} needs a ranking objective "
            f"(train.objective one of {', '.join(RANKING_OBJECTIVES)}), not {config.train.objective}"
        )
    if config.model.answer_token_at == "end" and rank_score(config.train) != "verdict":
        raise LlaraError(
            "model.answer_token_at=end puts the evidence where the verdict is read, and nothing else scores it: "
            "it needs train.objective=listwise with train.listwise_score=verdict"
        )
    if config.model.sr_prior and rank_score(config.train) != "verdict":
        raise LlaraError(
            "model.sr_prior is added to the verdicts, and nothing else reads it: "
            "it needs train.objective=listwise with train.listwise_score=verdict"
        )
    return get_objective(config.train.objective)


def _accelerator(tc: TrainConfig, model_dtype: str = "float32") -> tuple[Any, StepPlan, Precision]:
    """The Accelerator of this process, its share of each optimizer step and the run's precision
    (``model_dtype`` and ``tc.mixed_precision`` with ``auto`` resolved for this process's device, before the
    model is built); clear errors for bad setups."""
    from accelerate import Accelerator, PartialState
    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedDataParallelKwargs, DistributedType

    cpu = _distributed_cpu()
    processes = PartialState(cpu=cpu)
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if processes.num_processes != launched:
        raise LlaraError(
            f"{launched} processes were launched but accelerate joined {processes.num_processes}; "
            "launch with `accelerate launch --multi_gpu --num_processes N`"
        )
    accumulation = accumulation_steps(tc.batch_size, tc.micro_batch_size, processes.num_processes)
    precision = choose_precision(model_dtype, tc.mixed_precision, processes.device)
    # accelerate keeps the first run's mixed precision for the whole process; several runs in one process
    # (the variants of `llara run`) each get their own (the process group in PartialState is kept)
    AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(
        cpu=cpu,
        gradient_accumulation_steps=accumulation,
        mixed_precision=precision.mixed_precision,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    if accelerator.distributed_type == DistributedType.FSDP:
        raise LlaraError(
            "FSDP is not supported: the export would need the sharded LoRA weights gathered; use "
            "configs/accelerate/deepspeed_zero2.yaml or ddp.yaml (see docs/training.md)"
        )
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        # no data loader goes through accelerate.prepare, so DeepSpeed learns the micro-batch here
        accelerator.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = tc.micro_batch_size
    return accelerator, StepPlan(accumulation, processes.num_processes, processes.process_index), precision


def _distributed_cpu() -> bool:
    """Whether this is one of several processes on a machine without CUDA (then gloo on CPU is used).

    ``accelerate launch --multi_gpu --num_processes N`` starts the processes through torchrun; without a
    GPU, accelerate only joins them into one run when told to use the CPU.
    """
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return launched and not torch.cuda.is_available()
