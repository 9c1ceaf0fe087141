"""Curriculum prompt tuning on accelerate: the training loop, validation, checkpoints, exact resume, export.

One optimizer step = ``batch_size`` rows = micro-batch x accumulation x processes. All micro-batches of a
step share one prompt mode drawn by the schedule (``llara.training.schedules``) from the global step. The loss
is the objective named by ``train.objective`` (``llara.training.objectives``; the paper's is ``sft``,
causal-LM cross-entropy on the answer tokens only). A stage can start from an earlier export
(``train.init_from``) and stop on a wall-clock budget (``train.max_minutes``). ``model.dtype`` and
``train.mixed_precision`` ``auto`` are resolved for the device before the model is built
(``llara.llm.precision``: bf16 where it computes bf16 natively), logged once and recorded in the export's
``llara.json`` (``dtype``, ``mixed_precision``); config.yaml keeps the configured values. Out folder::

    config.yaml      the resolved experiment config
    metrics.jsonl    one line per optimizer step (and per validation)
    checkpoints/     step-XXXXXXXX/ (see llara.training.checkpointing)
    export/          the trained model (LlaraModel.save)
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from llara.training import checkpointing
from llara.training.batching import StepPlan, accumulation_steps, epoch_micro_batches, prompt_lengths
from llara.config import ExperimentConfig, ModelConfig, TrainConfig, dump_config
from llara.data.holdout import held_out_rows, last_rows
from llara.training.objectives import (
    RANKING_OBJECTIVES,
    REFERENCE_OBJECTIVES,
    ObjectiveContext,
    ObjectiveOutput,
    get_objective,
)
from llara.training.negatives import EpochCandidates
from llara.training.schedules import Schedule
from llara.errors import LlaraError
from llara.llm.device import attention_for, to_device
from llara.llm.model import LlaraModel
from llara.llm.precision import Precision, choose_precision
from llara.llm.tokens import IGNORE_INDEX
from llara.paths import atomic_file, check_replaceable, output_lock, read_jsonl
from llara.tensor_files import read_tensors
from llara.llm.prompts import TEMPLATES, uses_behavior_tokens
from llara.training.objectives.preference import reference_scores
from llara.training.outputs import (
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    EXPORT_DIR,
    LOSS_KEY,
    MODE_KEY,
    STEP_KEY,
    TENSORBOARD_DIR,
    TRAIN_LOG,
    VAL_HR_KEY,
    VAL_LOSS_KEY,
    non_model_fields,
)

logger = logging.getLogger(__name__)

#: devices with a fused AdamW kernel in torch
FUSED_ADAMW_DEVICES = ("cpu", "cuda")
#: preference objectives: the starting model's candidate scores, per prompt mode (safetensors)
REFERENCE_FILE = "reference_scores.safetensors"


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


def train(
    config: ExperimentConfig,
    resume: bool = False,
    progress: bool = True,
    force: bool = False,
    allow_data_mismatch: bool = False,
) -> Path:
    """Train LLaRA as ``config`` says and return the export folder (``<out_dir>/export``).

    With ``resume`` the newest complete checkpoint in ``<out_dir>/checkpoints`` is continued exactly
    (same batches, schedule draws, dropout masks and optimizer state as an uninterrupted run); a damaged
    newest checkpoint is skipped for the previous one. An existing ``out_dir`` that is not a training run
    folder is refused unless ``force``; an SR checkpoint or ``init_from`` export trained on other
    prepared data than ``data_dir`` is refused unless ``allow_data_mismatch``. ``out_dir`` is locked
    (``llara.paths.output_lock``) for the whole run, so a second run into it fails at once.
    """
    with contextlib.ExitStack() as claim:  # the out folder's lock, released however the run ends
        run = _Run(config, resume=resume, progress=progress, force=force, allow_data_mismatch=allow_data_mismatch,
                   claim=claim)
        return run.fit()


def is_training_folder(path: Path) -> bool:
    """Whether ``path`` holds what a training run writes first (its config and its log or checkpoints)."""
    return (path / CONFIG_FILE).is_file() and ((path / TRAIN_LOG).is_file() or (path / CHECKPOINTS_DIR).is_dir())


class _Run:
    """The state of one training run (kept in one place so the loop body stays short)."""

    def __init__(
        self, config: ExperimentConfig, resume: bool, progress: bool, force: bool, allow_data_mismatch: bool,
        claim: contextlib.ExitStack | None = None,
    ) -> None:
        from accelerate.utils import set_seed

        from llara.data.dataset import PreparedData

        self.config, self.tc = config, config.train
        if not self.tc.data_dir:
            raise LlaraError(
                "train.data_dir is not set: prepare data (`llara data prepare`) and pass train.data_dir=DIR"
            )
        self.out = Path(self.tc.out_dir or Path("runs") / config.name)
        check_replaceable(self.out, is_training_folder, "training run folder", force)
        self.accelerator, self.plan, self.precision = _accelerator(self.tc, config.model.dtype)
        if claim is not None and self.accelerator.is_main_process:  # one lock per run, held by its main process
            claim.enter_context(output_lock(self.out))
        self.sharded = self.accelerator.distributed_type == "DEEPSPEED"
        self.progress = progress and self.accelerator.is_main_process
        set_seed(self.tc.seed)
        self.data = PreparedData.load(self.tc.data_dir)
        self._check_trained_on_data(allow_data_mismatch)
        self.rows = _training_rows(self._candidate_rows(), self.tc.max_train_rows, self.tc.seed)
        self.lengths = prompt_lengths(self.rows, self.data.titles)
        self.fresh_candidates = (
            EpochCandidates(self.rows, self.data.num_items, self.tc.negative_pool, self.tc.seed)
            if self.tc.candidate_draw == "per-epoch" else None
        )
        attention = training_attention(config, self.accelerator.device)
        self._report_precision()
        # the model gets the resolved dtype (llara.json records it); config.yaml and the resume fingerprint
        # keep the configured one (auto), so they do not change with the hardware
        self.model = LlaraModel.from_config(
            config.model.model_copy(update={"dtype": self.precision.dtype}), self.data, self.tc.sr_checkpoint,
            attention=attention, evidence_checkpoints=self.tc.evidence_checkpoints,
            prior_checkpoint=self.tc.prior_checkpoint,
        )
        self.objective = _objective(config)
        self.model.info["rank_score"] = rank_score(self.tc)
        self.model.info["mixed_precision"] = self.precision.mixed_precision
        if self.tc.init_from:
            self.model.load_trained(self.tc.init_from)
        micro_batches = len(epoch_micro_batches(self.lengths, self.tc.micro_batch_size, self.tc.seed, 0))
        self.steps_per_epoch = self.plan.steps_per_epoch(micro_batches)
        if self.steps_per_epoch < 1:
            raise LlaraError(
                f"{len(self.rows)} training rows do not fill one batch of {self.tc.batch_size}; "
                "lower train.batch_size or use more rows"
            )
        self.total_steps = self.tc.max_steps or self.tc.epochs * self.steps_per_epoch
        self.schedule = Schedule(
            self.tc.schedule, self.total_steps, self.steps_per_epoch, self.tc.two_stage_text_epochs, self.tc.seed
        )
        self._set_evaluation_mode()
        self.validate_every = self.steps_per_epoch if self.tc.eval_every == "epoch" else self.tc.eval_every
        self.optimizer = build_optimizer(
            self.model, self.tc.lr, self.tc.weight_decay, self.tc.projector_weight_decay, self.tc.gate_lr_factor
        )
        factor = warmup_cosine(self.total_steps, self.tc.warmup_ratio, self.tc.min_lr_ratio)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self._epoch_cache: tuple[int, list[np.ndarray]] = (-1, [])
        self.start = self._restore() if resume else self._fresh()
        self.reference = self._reference_scores()
        self.best = _best_validation(self.out / TRAIN_LOG) if self.tc.keep_best else -1.0
        self.wrapped, self.prepared_optimizer = self.accelerator.prepare(self.model, self.optimizer)

    # ------------------------------------------------------------------ setup

    def _set_evaluation_mode(self) -> None:
        """The schedule's evaluation mode becomes the model's default prompt mode (validation, and the export's
        ``evaluation_mode`` for every later evaluation) where it differs from the trained hard mode."""
        mode = self.schedule.evaluation_mode(self.config.model.prompt_mode)
        if mode != self.model.prompt_mode:
            self.model.prompt_mode = mode
            self.model.info["evaluation_mode"] = mode

    def _report_precision(self) -> None:
        """Log what this run computes in (``auto`` resolved for the device) once, on the main process; with
        the progress bar on, also print it above the bar."""
        if not self.accelerator.is_main_process:
            return
        line = self.precision.describe()
        logger.info(line)
        if self.progress:
            from tqdm.auto import tqdm

            tqdm.write(line)

    def _candidate_rows(self) -> pd.DataFrame:
        """The training split; with ``train.sr_unseen_rows`` only the rows of the users the SR backbone left
        out, with ``train.last_rows`` only each user's last rows."""
        frame = self.data.split("train")
        if self.tc.sr_unseen_rows:
            frame = sr_unseen_rows(frame, self.tc.sr_checkpoint)
        if self.tc.last_rows:
            frame = frame[last_rows(frame["user"], self.tc.last_rows)].reset_index(drop=True)
        return frame

    def _check_trained_on_data(self, allow_mismatch: bool) -> None:
        """Refuse SR checkpoints or an ``init_from`` export fitted on other prepared data than ``data_dir``."""
        from llara.llm.export import export_data_hash
        from llara.sr.checkpoint import fitted_data_hash

        if self.tc.sr_checkpoint:
            recorded = fitted_data_hash(self.tc.sr_checkpoint)
            self.data.check_trained_on(recorded, f"train.sr_checkpoint {self.tc.sr_checkpoint}", allow_mismatch)
        for checkpoint in self.tc.evidence_checkpoints:
            recorded = fitted_data_hash(checkpoint)
            self.data.check_trained_on(recorded, f"train.evidence_checkpoints {checkpoint}", allow_mismatch)
        if self.tc.prior_checkpoint:
            recorded = fitted_data_hash(self.tc.prior_checkpoint)
            self.data.check_trained_on(recorded, f"train.prior_checkpoint {self.tc.prior_checkpoint}", allow_mismatch)
        if self.tc.init_from:
            recorded = export_data_hash(self.tc.init_from)
            self.data.check_trained_on(recorded, f"train.init_from {self.tc.init_from}", allow_mismatch)

    def _fingerprint(self) -> dict[str, Any]:
        free = non_model_fields(self.tc.keep_best)
        train = {k: v for k, v in self.tc.model_dump(mode="json").items() if k not in free}
        return {"model": self.config.model.model_dump(mode="json"), "train": train}

    def _fresh(self) -> int:
        if self.accelerator.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(self.out / CHECKPOINTS_DIR, ignore_errors=True)
            with atomic_file(self.out / CONFIG_FILE) as handle:
                handle.write(dump_config(self.config))
            (self.out / TRAIN_LOG).write_text("", encoding="utf-8")
        self.accelerator.wait_for_everyone()
        return 0

    def _restore(self) -> int:
        if self.sharded:
            raise LlaraError(
                "--resume is implemented for single-process and DDP runs; DeepSpeed shards the optimizer state, "
                "which these checkpoints do not gather: start again or use configs/accelerate/ddp.yaml"
            )
        found = checkpointing.newest_readable(self.out / CHECKPOINTS_DIR)
        if found is None:
            return self._fresh()
        saved = found.state.get("fingerprint", {})
        changed = ", ".join(_changed_keys(saved, self._fingerprint()))
        if changed:
            raise LlaraError(
                f"cannot resume {found.folder}: the config changed ({changed}); "
                "restore those values or train into a new train.out_dir"
            )
        state = checkpointing.apply_checkpoint(
            found, self.model, self.optimizer, self.scheduler, self.accelerator.process_index
        )
        step = int(state["step"])
        if self.accelerator.is_main_process:
            checkpointing.remove_partial(self.out / CHECKPOINTS_DIR)
            _truncate_metrics(self.out / TRAIN_LOG, step)
        self.accelerator.wait_for_everyone()
        return step

    # ------------------------------------------------------------------ loop

    def fit(self) -> Path:
        """Run the remaining steps, checkpoint, export; return the export folder."""
        from tqdm.auto import tqdm

        bar = tqdm(total=self.total_steps, initial=self.start, disable=not self.progress, desc="train")
        prompt_mode = self.config.model.prompt_mode
        hard = sum(uses_behavior_tokens(self.schedule.batch_mode(t, prompt_mode)) for t in range(self.start))
        began = time.perf_counter()
        budget = self.tc.max_minutes * 60 if self.tc.max_minutes else math.inf
        done = self.start
        with _MetricsLog(self.out, self.accelerator.is_main_process, self.tc.tensorboard) as log:
            for step in range(self.start, self.total_steps):
                mode = self.schedule.batch_mode(step, prompt_mode)
                record = self._step(step, mode)
                hard += uses_behavior_tokens(mode)
                record.update(behavior_fraction=hard / (step + 1), elapsed_s=time.perf_counter() - began)
                log.write(record)
                bar.update(1)
                bar.set_postfix(
                    loss=f"{record[LOSS_KEY]:.4f}", lr=f"{record['lr']:.2e}", behavior=f"{hard / (step + 1):.2f}"
                )
                done = step + 1
                out_of_time = self._out_of_time(began, budget)
                last = done == self.total_steps or out_of_time
                if self.validate_every and (done % self.validate_every == 0 or last):
                    log.write(self._validation_record(done))
                if (self.tc.save_every and done % self.tc.save_every == 0) or last:
                    self.save_checkpoint(done)
                if out_of_time:
                    log.write({STEP_KEY: done, "stopped": f"train.max_minutes={self.tc.max_minutes} spent"})
                    break
        bar.close()
        if self.tc.keep_best and self.best >= 0:
            return self.out / EXPORT_DIR
        return self.export(done)

    def _out_of_time(self, began: float, budget: float) -> bool:
        """Whether the wall-clock budget is spent (decided by the main process, so all processes agree)."""
        spent = torch.tensor(float(time.perf_counter() - began >= budget), device=self.accelerator.device)
        return bool(self.accelerator.reduce(spent, reduction="sum") > 0) if math.isfinite(budget) else False

    def _validation_record(self, step: int) -> dict[str, Any]:
        """Validation loss and HR@1 (rank); with ``keep_best`` an improved HR@1 is exported right away."""
        loss, hits = self.validate()
        if self.tc.keep_best and hits > self.best:
            self.best = hits
            self.export(step)
        return {STEP_KEY: step, VAL_LOSS_KEY: loss, VAL_HR_KEY: hits}

    def _step(self, step: int, mode: str) -> dict[str, Any]:
        """One optimizer step over this process's micro-batches; returns the step's metrics (all processes)."""
        epoch, in_epoch = divmod(step, self.steps_per_epoch)
        self.wrapped.train()
        sums: dict[str, torch.Tensor] = {}
        count, tokens, positions = 0, 0, 0
        for indices in self.plan.micro_batches(self._epoch_batches(epoch), in_epoch):
            rows = self._training_records(indices, epoch)
            context = ObjectiveContext(mode, step, self.tc, np.asarray(indices), self.accelerator.device, self.reference)
            output = self._micro_step(rows, context)
            for key, value in {LOSS_KEY: output.loss.detach(), **output.logs}.items():
                sums[key] = sums.get(key, 0.0) + value.float()
            count, tokens, positions = count + 1, tokens + output.tokens, positions + output.positions
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        keys = sorted(sums)
        counters = torch.tensor([float(count), float(tokens), float(positions)])
        totals = torch.cat([torch.stack([sums[k].cpu() for k in keys]), counters])
        reduced = self.accelerator.reduce(totals.to(self.accelerator.device), reduction="sum").tolist()
        count, tokens, positions = reduced[-3:]
        values = {key: value / count for key, value in zip(keys, reduced)}
        if not math.isfinite(values[LOSS_KEY]):
            raise LlaraError(
                f"training loss is {values[LOSS_KEY]} at step {step} (mode {mode}); lower train.lr, "
                "use mixed_precision=bf16 instead of fp16, or check the data"
            )
        return {
            STEP_KEY: step + 1,
            "epoch": epoch,
            **values,
            "lr": lr,
            MODE_KEY: mode,
            "tokens": int(tokens),
            "padding_fraction": 1.0 - tokens / positions,
        }

    def _training_records(self, indices: np.ndarray, epoch: int) -> list[dict[str, Any]]:
        """The rows of one micro-batch as the prompts will show them: with this epoch's fresh candidates
        (``train.candidate_draw: per-epoch``) and the micro-batch's drawn template (``model.templates: varied``;
        seeded by (seed, epoch, its first row), so any process count draws the same)."""
        rows = self.rows.iloc[indices].to_dict("records")
        if self.fresh_candidates is not None:
            for row, position in zip(rows, indices):
                row["candidates"] = self.fresh_candidates.candidates(int(position), row, epoch)
        if self.config.model.templates == "varied":
            template = int(np.random.default_rng([self.tc.seed, epoch, int(indices[0])]).integers(len(TEMPLATES)))
            for row in rows:
                row["template"] = template
        return rows

    def _micro_step(self, rows: list[dict[str, Any]], context: ObjectiveContext) -> ObjectiveOutput:
        """Forward and backward of one micro-batch; the optimizer steps on the last one of a step."""
        acc, model = self.accelerator, self.wrapped
        with acc.accumulate(model):
            output = self.objective(model, self.model, rows, context)
            acc.backward(output.loss)
            if acc.sync_gradients and self.tc.max_grad_norm is not None:
                acc.clip_grad_norm_(model.parameters(), self.tc.max_grad_norm)
            self.prepared_optimizer.step()
            self.prepared_optimizer.zero_grad()
        return output

    def _reference_scores(self) -> dict[str, torch.Tensor]:
        """Preference objectives: the starting model's scores of every training row, per prompt mode the
        schedule can draw (computed once, cached in the out folder so a resume reads them back)."""
        if self.tc.objective not in REFERENCE_OBJECTIVES:
            return {}
        from safetensors.torch import save

        path = self.out / REFERENCE_FILE
        if path.is_file():
            return read_tensors(path, "the reference model's scores")
        modes = sorted({self.schedule.batch_mode(t, self.config.model.prompt_mode) for t in range(self.total_steps)})
        records = self.rows.to_dict("records")
        scores = {
            mode: reference_scores(self.model, records, mode, self.tc.micro_batch_size, self.accelerator.device)
            for mode in modes
        }
        if self.accelerator.is_main_process:
            with atomic_file(path, "wb") as handle:
                handle.write(save(scores))
        return scores

    def _epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """The micro-batches of ``epoch`` (computed once per epoch)."""
        if self._epoch_cache[0] != epoch:
            batches = epoch_micro_batches(self.lengths, self.tc.micro_batch_size, self.tc.seed, epoch)
            self._epoch_cache = (epoch, batches)
        return self._epoch_cache[1]

    def validate(self) -> tuple[float, float]:
        """Answer-token loss and HR@1 (``validate_by``: the model's own ranking score, or the greedy answer
        matched to a candidate) on the validation split (``eval_rows`` rows), over all processes."""
        acc, model = self.accelerator, self.wrapped
        rows = self.data.split("val")
        if self.tc.eval_rows:
            rows = rows.head(self.tc.eval_rows)
        mine = rows.iloc[acc.process_index :: acc.num_processes]
        total = torch.zeros(3, device=acc.device)  # loss x tokens, tokens, hits
        model.eval()
        with torch.no_grad():
            for start in range(0, len(mine), self.tc.micro_batch_size):
                part = mine.iloc[start : start + self.tc.micro_batch_size].to_dict("records")
                batch = to_device(self.model.encode_training(part), acc.device)
                count = (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
                hits = sum(int(pick == row["target"]) for row, pick in zip(part, self._validation_picks(part)))
                total += torch.stack([model(**batch).loss.float() * count, count.float(), torch.tensor(float(hits))])
        total = acc.reduce(total, reduction="sum")
        return (total[0] / total[1].clamp(min=1)).item(), (total[2] / max(len(rows), 1)).item()

    def _validation_picks(self, rows: list[dict[str, Any]]) -> list[int]:
        """The candidate the model picks for each row (-1: a generated answer that names none)."""
        from llara.evaluation.evaluate import match_answer
        from llara.evaluation.generation import generate_answers
        from llara.evaluation.ranking import ranking_scores

        if self.tc.validate_by == "generate":
            answers = generate_answers(self.model, rows, len(rows))
            return [match_answer(self.model, row["candidates"], answer)["pred"] for row, answer in zip(rows, answers)]
        scores = ranking_scores(self.model, rows, len(rows))
        return [int(row["candidates"][int(np.argmax(s))]) for row, s in zip(rows, scores)]

    def save_checkpoint(self, step: int) -> Path | None:
        """Write checkpoint ``step`` (main process) with every process's RNG state (not under DeepSpeed)."""
        from accelerate.utils import gather_object

        if self.sharded:
            if self.accelerator.is_main_process:
                logger.warning("step %d: no checkpoint written (DeepSpeed shards the optimizer state, which "
                               "checkpoints do not gather; use configs/accelerate/ddp.yaml to resume)", step)
            return None
        rng_states = gather_object([checkpointing.rng_state()])
        folder = self.out / CHECKPOINTS_DIR / checkpointing.checkpoint_name(step)
        if self.accelerator.is_main_process:
            epoch, in_epoch = divmod(step, self.steps_per_epoch)
            state = {"epoch": epoch, "step_in_epoch": in_epoch, "total_steps": self.total_steps,
                     "fingerprint": self._fingerprint()}
            checkpointing.save_checkpoint(
                self.out / CHECKPOINTS_DIR, step, self.model, self.optimizer, self.scheduler, rng_states, state
            )
        self.accelerator.wait_for_everyone()
        return folder

    def export(self, step: int) -> Path:
        """Save the model after ``step`` optimizer steps to ``<out>/export`` (main process); return the folder."""
        folder = self.out / EXPORT_DIR
        self.model.info["step"] = step
        if self.accelerator.is_main_process:
            self.model.save(folder)
        self.accelerator.wait_for_everyone()
        return folder


class _MetricsLog:
    """metrics.jsonl lines on the main process (and TensorBoard scalars when asked for)."""

    def __init__(self, out: Path, enabled: bool, tensorboard: bool) -> None:
        self.path, self.enabled, self.tensorboard, self.writer = out / TRAIN_LOG, enabled, tensorboard, None

    def __enter__(self) -> _MetricsLog:
        if self.enabled and self.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise LlaraError("train.tensorboard=true needs tensorboard: pip install 'llara[tensorboard]'") from exc
            self.writer = SummaryWriter(str(self.path.parent / TENSORBOARD_DIR))
        self.handle = open(self.path, "a", encoding="utf-8") if self.enabled else None
        return self

    def write(self, record: dict[str, Any]) -> None:
        if self.handle is None:
            return
        self.handle.write(json.dumps(record) + "\n")
        self.handle.flush()
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != STEP_KEY:
                    self.writer.add_scalar(key, value, record[STEP_KEY])

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            self.handle.close()
        if self.writer is not None:
            self.writer.close()


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


def sr_unseen_rows(frame: pd.DataFrame, sr_checkpoint: str | Path | None) -> pd.DataFrame:
    """The training rows of the users ``sr_checkpoint`` left out of its training (``sr.holdout_users``),
    with a clear error for a checkpoint that left out nobody."""
    from llara.sr.checkpoint import read_sr_config

    if sr_checkpoint is None:
        raise LlaraError("train.sr_unseen_rows needs train.sr_checkpoint: the backbone whose held-out users to train on")
    fitted = read_sr_config(sr_checkpoint).get("training", {}).get("config", {})
    share = float(fitted.get("holdout_users", 0.0))
    if share == 0:
        raise LlaraError(
            f"train.sr_unseen_rows: the SR checkpoint {sr_checkpoint} trained on every training user; "
            "train it with sr.holdout_users > 0"
        )
    return frame[held_out_rows(frame["user"], share, int(fitted.get("seed", 0)))].reset_index(drop=True)


def _training_rows(frame: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    """The training rows, or a seeded subset of ``limit`` of them (kept in their original order)."""
    if limit is None or limit >= len(frame):
        return frame.reset_index(drop=True)
    keep = np.sort(np.random.default_rng([seed, 11]).choice(len(frame), size=limit, replace=False))
    return frame.iloc[keep].reset_index(drop=True)


def _best_validation(path: Path) -> float:
    """The best validation HR@1 logged so far (a resumed ``keep_best`` run continues from it), or -1."""
    values = [r[VAL_HR_KEY] for r in read_jsonl(path) if VAL_HR_KEY in r] if path.is_file() else []
    return max(values, default=-1.0)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric records written after ``step`` (they belong to the interrupted part of a run) and a last
    line torn by the interruption (:func:`llara.paths.read_jsonl`)."""
    if not path.is_file():
        return
    kept = [record for record in read_jsonl(path) if record.get(STEP_KEY, 0) <= step]
    with atomic_file(path) as handle:
        handle.write("".join(json.dumps(record) + "\n" for record in kept))


def _changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The ``section.field`` names whose values differ between two fingerprints; a field the old one lacks
    (an option added by a later release) is unchanged while it keeps its default."""
    defaults = {"model": ModelConfig().model_dump(mode="json"), "train": TrainConfig().model_dump(mode="json")}
    return [
        f"{section}.{key}"
        for section in sorted(set(old) | set(new))
        for key in sorted(set(old.get(section, {})) | set(new.get(section, {})))
        if old.get(section, {}).get(key, defaults.get(section, {}).get(key)) != new.get(section, {}).get(key)
    ]
