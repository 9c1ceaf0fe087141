"""Fitting an SR model on a prepared folder: BCE, softmax CE or gBCE over sampled negatives, early stopping.

Every training row (history -> target; the prepared rows already enumerate each user's prefixes) is
scored against its target and negatives by one of three losses (``SRConfig.loss``):

* ``bce`` (the paper's): binary cross-entropy of the target and ONE negative drawn uniformly
  from the other items, summed over the two and averaged over rows. Cheap, but with one negative SASRec
  becomes overconfident and can stop learning early on an unfamiliar dataset (Petrov & Macdonald,
  gSASRec, RecSys 2023).
* ``ce`` (the default): softmax cross-entropy of the target over the whole catalog (``catalog_logits``), averaged over
  rows. Above ``ce_sampled_above`` items it becomes a sampled softmax over the target and ``negatives``
  items drawn uniformly (with replacement) from the other items; uniform sampling shifts every sampled
  logit by the same log-probability, so the logQ correction is a constant and is left out.
* ``gbce``: gSASRec's generalised BCE with ``k = negatives`` uniform negatives per row (other items, with
  replacement) and calibration ``t = gbce_t``. With ``n = num_items - 1`` possible negatives and the
  sampling rate ``alpha = min(1, k / n)``, ``beta = alpha * (t * (1 - 1/alpha) + 1/alpha)`` (= 1 at
  t = 0: plain BCE with k negatives; = alpha at t = 1), and the row loss is
  ``-(beta * log sigmoid(s+) + sum_j log sigmoid(-s_j))``: summed over the 1 + k items like ``bce`` (the
  paper divides by 1 + k; a constant), averaged over rows.

Negatives come from the run's seeded ``torch.Generator`` (``bce``: one per row for the whole epoch;
``ce`` sampled and ``gbce``: per batch), so a resumed run draws the same ones. Adam with L2 weight decay;
for the sampled losses on large catalogs, lazy updates of the item rows a step reads (``llara.sr.optim``).

After each epoch the model is ranked on the frozen validation candidates: every row of the prepared
``val`` split, which with ``val_windows`` k > 1 includes each validation user's k - 1 earlier windows
(the summary records ``val_rows`` and ``val_windows``). The weights with the best validation HR@1 are
kept (a tie is no improvement); training stops after ``patience`` epochs without improvement, counting
only epochs after the first ``min_epochs``.

The training state (weights, optimizer, epoch, best weights and metric, RNG states) is saved atomically
to ``OUT/train_state.pt`` after every epoch, so ``resume=True`` continues an interrupted run and ends
with the same weights as an uninterrupted one. The finished checkpoint replaces ``OUT`` whole.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from llara.config import SRConfig, same_settings
from llara.data.dataset import PreparedData
from llara.data.holdout import held_out_rows
from llara.errors import LlaraError
from llara.paths import atomic_file
from llara.sr.base import SequentialRecommender
from llara.sr.checkpoint import TRAIN_STATE, WEIGHTS, check_out_dir, load_sr, read_sr_config, save_sr
from llara.sr.evaluate import hit_rate_at_1
from llara.sr.fit_counts import fit_count_model, is_count_model
from llara.sr.optim import ItemRowsOptimizer, build_optimizer
from llara.sr.tune import train_grid, tune_sr
from llara.sr.registry import build_from_config
from llara.sr.samples import SplitTensors, split_tensors

def train_sr(
    config: SRConfig,
    data_dir: str | Path,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    force: bool = False,
) -> Path:
    """Train ``config.model`` on ``data_dir`` into the checkpoint folder ``out_dir``; returns ``out_dir``.

    With ``config.tune`` set, one model per combination of its values is trained (``llara.sr.tune``); with
    ``config.l2_grid``, one per L2 value (see :func:`grid_search_l2`). Count
    models (pop, markov, itemknn) are fitted by ``llara.sr.fit_counts`` instead (seconds; nothing to resume).
    ``resume=True`` continues from ``out_dir/train_state.pt`` (or returns a finished ``out_dir`` as is;
    with neither, it starts afresh). An existing ``out_dir`` that is not an SR checkpoint folder is
    refused unless ``force``.
    """
    out_dir = Path(out_dir)
    check_out_dir(out_dir, force)
    if is_count_model(config.model):
        return fit_count_model(config, data_dir, out_dir, force=force)
    if config.tune:
        return tune_sr(config, data_dir, out_dir, train_sr, force=force, resume=resume, progress=progress)
    if config.l2_grid:
        return grid_search_l2(config, data_dir, out_dir, resume=resume, progress=progress, force=force)
    state_path = out_dir / TRAIN_STATE
    if state_path.exists() and not resume:
        raise LlaraError(f"{out_dir} holds an interrupted run; pass --resume to continue it or delete {state_path}")
    if resume and not state_path.exists() and (out_dir / WEIGHTS).exists():
        return _finished(out_dir, config)
    data = PreparedData.load(data_dir)
    train_users = data.split("train")["user"]
    kept = ~held_out_rows(train_users, config.holdout_users, config.seed)
    train = split_tensors(data, "train", config.max_len, with_candidates=False, keep=kept)
    val = split_tensors(data, "val", config.max_len)
    # fork_rng: seeding and restoring RNG states here leaves the caller's global RNG untouched.
    with torch_threads(config.num_threads), torch.random.fork_rng(devices=[]):
        fit = _Fit(config, data, state_path)
        if resume and state_path.exists():
            fit.restore()
        fit.run(train, val, progress)
    fit.model.load_state_dict(fit.state["best_weights"])
    save_sr(
        fit.model, out_dir, force=force, data_content_hash=data.manifest.get("content_hash"),
        training={
            **fit.summary(),
            "train_rows": len(train),
            "val_rows": len(val),
            "val_windows": int(data.manifest.get("protocol", {}).get("val_windows", 1)),
        },
    )
    return out_dir


def _finished(out_dir: Path, config: SRConfig) -> Path:
    """A finished run in ``out_dir``, provided it was trained with ``config``."""
    trained = read_sr_config(out_dir).get("training", {}).get("config")
    if not isinstance(trained, dict) or not same_settings(trained, config):
        raise LlaraError(f"{out_dir} holds a finished run with other settings; choose another --out to train anew")
    return out_dir


class _Fit:
    """One training run: model, optimizer, RNGs and the bookkeeping that a resume restores."""

    def __init__(self, config: SRConfig, data: PreparedData, state_path: Path) -> None:
        self.config = config
        self.data_hash = data.manifest.get("content_hash")
        self.state_path = state_path
        torch.manual_seed(config.seed)
        self.model: SequentialRecommender = build_from_config(config, data.num_items)
        self.objective = Objective.of(config, data.num_items)
        self.optimizer = build_optimizer(self.model, config, self.objective.reads_a_sample)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.state: dict[str, Any] = {
            "epoch": 0,
            "best_hr1": -1.0,
            "best_epoch": 0,
            "bad_epochs": 0,
            "best_weights": _copy_weights(self.model),
            "history": [],
            "seconds": 0.0,
        }

    def run(self, train: SplitTensors, val: SplitTensors, progress: bool) -> None:
        """Train until ``max_epochs`` or early stopping, saving the state after every epoch."""
        from tqdm.auto import tqdm

        config, state = self.config, self.state
        bar = tqdm(
            total=config.max_epochs, initial=state["epoch"], desc=f"{config.model} {config.loss} l2={config.l2:g}",
            unit="epoch", disable=not progress, leave=False,
        )
        with bar:
            while state["epoch"] < config.max_epochs and state["bad_epochs"] < config.patience:
                started = time.perf_counter()
                loss = _run_epoch(
                    self.model, self.optimizer, train, self.generator, config.batch_size, self.objective
                )
                hr1 = hit_rate_at_1(self.model, val)
                self._record(loss, hr1, time.perf_counter() - started)
                self.save()
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", val_hr1=f"{hr1:.4f}", best=f"{state['best_hr1']:.4f}")

    def _record(self, loss: float, hr1: float, seconds: float) -> None:
        state = self.state
        state["epoch"] += 1
        state["seconds"] += seconds
        state["history"].append({"epoch": state["epoch"], "loss": loss, "val_hr@1": hr1})
        if hr1 > state["best_hr1"]:
            state.update(best_hr1=hr1, best_epoch=state["epoch"], bad_epochs=0, best_weights=_copy_weights(self.model))
        elif state["epoch"] > self.config.min_epochs:
            state["bad_epochs"] += 1

    def save(self) -> None:
        """Write the full training state atomically."""
        payload = {
            **self.state,
            "config": self.config.model_dump(mode="json"),
            "data_content_hash": self.data_hash,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }
        with atomic_file(self.state_path, "wb") as handle:
            torch.save(payload, handle)

    def restore(self) -> None:
        """Load the state :meth:`save` wrote; refuses a state from another config or data folder."""
        try:
            payload = torch.load(self.state_path, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable state is the same user error
            raise LlaraError(f"{self.state_path} is unreadable ({exc}); delete it and train again") from exc
        if not same_settings(payload["config"], self.config):
            raise LlaraError(f"{self.state_path} was written with another SR config; resume with the same settings")
        if payload["data_content_hash"] != self.data_hash:
            raise LlaraError(f"{self.state_path} was trained on other data (content hash differs)")
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.generator.set_state(payload["generator"])
        torch.set_rng_state(payload["torch_rng"])
        self.state = {key: payload[key] for key in self.state}

    def summary(self) -> dict[str, Any]:
        """What config.json records about the run."""
        keep = ("best_epoch", "epoch", "seconds", "history")
        return {
            "config": self.config.model_dump(mode="json"),
            "loss": self.config.loss,
            "loss_detail": self.objective.describe(self.model.num_items),
            "item_updates": "sparse" if self.model.sparse_item_grads else "dense",
            "val_hr@1": self.state["best_hr1"],
            **{key: self.state[key] for key in keep},
        }


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` intra-op CPU threads, then restore the previous setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _run_epoch(
    model: SequentialRecommender,
    optimizer: torch.optim.Optimizer | ItemRowsOptimizer,
    train: SplitTensors,
    generator: torch.Generator,
    batch_size: int,
    objective: Objective | None = None,
) -> float:
    """One pass over the shuffled training rows with ``objective`` (none given: bce); returns the mean loss."""
    objective = objective or Objective()
    model.train()
    order = torch.randperm(len(train), generator=generator)
    negatives = sample_negatives(train.target, model.num_items, generator) if objective.loss == "bce" else None
    total = 0.0
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        hidden = model.encode(train.history[rows], train.lengths[rows])
        if negatives is not None:
            loss = _bce_one_negative(model, hidden, train.target[rows], negatives[rows])
        else:
            loss = objective(model, hidden, train.target[rows], generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(rows)
    return total / len(order)


def _bce_one_negative(
    model: SequentialRecommender, hidden: torch.Tensor, target: torch.Tensor, negative: torch.Tensor
) -> torch.Tensor:
    """The paper's loss: BCE of the target and one negative, summed over the two, averaged over rows."""
    logits = model.logits(hidden, torch.stack([target, negative], dim=1))
    labels = torch.zeros_like(logits)
    labels[:, 0] = 1.0
    return F.binary_cross_entropy_with_logits(logits, labels, reduction="sum") / len(target)


@dataclass(frozen=True)
class Objective:
    """The training loss of a run (module docstring): ``loss`` with its negatives and calibration."""

    loss: str = "bce"
    negatives: int = 1
    gbce_t: float = 0.0
    #: loss=ce only: sampled softmax (the catalog is larger than ce_sampled_above) instead of the full one.
    sampled: bool = False

    @classmethod
    def of(cls, config: SRConfig, num_items: int) -> Objective:
        """The objective ``config`` asks for on a catalog of ``num_items`` items."""
        sampled = config.loss == "ce" and num_items > config.ce_sampled_above
        return cls(config.loss, config.negatives, config.gbce_t, sampled)

    @property
    def reads_a_sample(self) -> bool:
        """Whether the loss reads a sample of the items (bce, gbce, sampled ce), not the whole catalog."""
        return self.loss != "ce" or self.sampled

    def describe(self, num_items: int) -> str:
        """One line for the training summary."""
        if self.loss == "bce":
            return "bce: binary cross-entropy, 1 uniform negative per row"
        if self.loss == "ce" and not self.sampled:
            return f"ce: full softmax over {num_items} items"
        if self.loss == "ce":
            return f"ce: sampled softmax over the target and {self.negatives} uniform negatives per row"
        beta = gbce_beta(num_items, self.negatives, self.gbce_t)
        return f"gbce: {self.negatives} uniform negatives per row, t={self.gbce_t:g}, beta={beta:.4f}"

    def __call__(
        self, model: SequentialRecommender, hidden: torch.Tensor, target: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Mean loss over the rows of one batch (states ``hidden`` [B, H], targets [B]); ``bce`` draws its one
        negative here (training draws bce's negatives per epoch instead, see :func:`_run_epoch`)."""
        if self.loss == "ce" and not self.sampled:
            return F.cross_entropy(model.catalog_logits(hidden), target)
        count = 1 if self.loss == "bce" else self.negatives
        negatives = sample_negatives(target, model.num_items, generator, count)
        logits = model.logits(hidden, torch.cat([target[:, None], negatives], dim=1))
        if self.loss == "ce":
            return F.cross_entropy(logits, torch.zeros_like(target))
        beta = gbce_beta(model.num_items, count, self.gbce_t) if self.loss == "gbce" else 1.0
        return gbce_loss(logits[:, 0], logits[:, 1:], beta)


def gbce_beta(num_items: int, negatives: int, t: float) -> float:
    """gSASRec's beta for ``negatives`` of the ``num_items - 1`` possible negatives and calibration ``t``.

    ``alpha = min(1, k / n)`` is the sampling rate (capped at 1: with replacement, k may exceed n, and a
    full sample needs no calibration); ``beta = alpha * (t * (1 - 1/alpha) + 1/alpha)``, which is 1 at t = 0.
    """
    if num_items < 2:
        raise LlaraError("negative sampling needs at least two items")
    alpha = min(1.0, negatives / (num_items - 1))
    return alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)


def gbce_loss(positive: torch.Tensor, negative: torch.Tensor, beta: float) -> torch.Tensor:
    """gBCE of positive logits [B] and negative logits [B, k]: ``-(beta * log sigmoid(s+) + sum_j log(1 -
    sigmoid(s_j)))`` per row (log(1 - sigmoid(x)) = logsigmoid(-x)), averaged over rows. beta = 1: BCE."""
    per_row = beta * F.logsigmoid(positive) + F.logsigmoid(-negative).sum(dim=1)
    return -per_row.mean()


def sample_negatives(
    targets: torch.Tensor, num_items: int, generator: torch.Generator, count: int | None = None
) -> torch.Tensor:
    """Items drawn uniformly from all items except the row's target: one per row (shape of ``targets``), or
    ``count`` per row (shape ``[*targets.shape, count]``, drawn independently, so with replacement)."""
    if num_items < 2:
        raise LlaraError("negative sampling needs at least two items")
    per_row = targets if count is None else targets[..., None]
    shape = targets.shape if count is None else (*targets.shape, count)
    draw = torch.randint(0, num_items - 1, shape, generator=generator)
    return draw + (draw >= per_row).long()


def _copy_weights(model: SequentialRecommender) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def grid_search_l2(
    config: SRConfig, data_dir: str | Path, out_dir: str | Path, resume: bool = False, progress: bool = True,
    force: bool = False,
) -> Path:
    """Train one model per value of ``config.l2_grid``; ``out_dir`` gets the best by validation HR@1.

    The candidates live in ``OUT.l2-grid/l2=<value>/`` (each resumable); the chosen checkpoint's
    config.json lists every value's validation HR@1 under ``l2_grid``.
    """
    out_dir = Path(out_dir)
    trained, _, best, chosen_dir = train_grid(
        config, [{"l2": l2} for l2 in config.l2_grid], out_dir.with_name(out_dir.name + ".l2-grid"),
        lambda single, folder: train_sr(single, data_dir, folder, resume=resume, progress=progress),
    )
    chosen = read_sr_config(chosen_dir)
    return save_sr(
        load_sr(chosen_dir),
        out_dir,
        force=force,
        data_content_hash=chosen.get("data_content_hash"),
        training=chosen["training"],
        l2_grid={f"{entry['l2']:g}": entry["val_hr@1"] for entry in trained},
    )
