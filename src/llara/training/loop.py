"""Curriculum prompt tuning on accelerate: the training loop, validation, checkpoints, exact resume, export.

One optimizer step = ``batch_size`` rows = micro-batch x accumulation x processes. All micro-batches of a
step share one prompt mode drawn by the schedule (``llara.training.schedules``) from the global step. The loss
is the objective named by ``train.objective`` (``llara.training.objectives``; the paper's is ``sft``,
causal-LM cross-entropy on the answer tokens only). A stage can start from an earlier export
(``train.init_from``) and stop on a wall-clock budget (``train.max_minutes``). ``model.dtype`` and
``train.mixed_precision`` ``auto`` are resolved for the device before the model is built
(``llara.training.setup``, ``llara.llm.precision``: bf16 where it computes bf16 natively), logged once and
recorded in the export's ``llara.json`` (``dtype``, ``mixed_precision``); config.yaml keeps the configured
values. Out folder::

    config.yaml      the resolved experiment config
    metrics.jsonl    one line per optimizer step (and per validation)
    checkpoints/     step-XXXXXXXX/ (see llara.training.checkpointing)
    export/          the trained model (LlaraModel.save)
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llara.config import ExperimentConfig, dump_config
from llara.errors import LlaraError
from llara.llm.model import LlaraModel
from llara.llm.prompts import TEMPLATES, uses_behavior_tokens
from llara.paths import atomic_file, check_replaceable, output_lock
from llara.tensor_files import read_tensors
from llara.training import checkpointing
from llara.training.batching import epoch_micro_batches, prompt_lengths
from llara.training.metrics_log import _best_validation, _MetricsLog, _truncate_metrics
from llara.training.negatives import EpochCandidates
from llara.training.objectives import REFERENCE_OBJECTIVES, ObjectiveContext, ObjectiveOutput
from llara.training.objectives.preference import reference_scores
from llara.training.outputs import (
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    EXPORT_DIR,
    LOSS_KEY,
    MODE_KEY,
    STEP_KEY,
    TRAIN_LOG,
    VAL_HR_KEY,
    VAL_LOSS_KEY,
)
from llara.training.resume import _changed_keys, fingerprint
from llara.training.rows import _training_rows, candidate_rows
from llara.training.schedules import Schedule
from llara.training.setup import (
    _accelerator,
    _objective,
    build_optimizer,
    rank_score,
    training_attention,
    warmup_cosine,
)
from llara.training.validation import validate

logger = logging.getLogger(__name__)

#: preference objectives: the starting model's candidate scores, per prompt mode (safetensors)
REFERENCE_FILE = "reference_scores.safetensors"


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
        self.rows = _training_rows(candidate_rows(self.data, self.tc), self.tc.max_train_rows, self.tc.seed)
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
        changed = ", ".join(_changed_keys(saved, fingerprint(self.config)))
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
        loss, hits = validate(self.model, self.wrapped, self.accelerator, self.data.split("val"), self.tc)
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
                     "fingerprint": fingerprint(self.config)}
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
