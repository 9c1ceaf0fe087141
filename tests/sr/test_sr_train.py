"""Training, resuming, checkpoints and evaluation of the SR models on planted-pattern data."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from llara.config import DataConfig, SRConfig
from llara.errors import LlaraError
from llara.sr import train as train_module
from llara.sr.checkpoint import TRAIN_STATE, load_sr, save_sr
from llara.sr.evaluate import evaluate_sr
from llara.sr.registry import MODELS, build_sr
from llara.sr.train import sample_negatives, train_sr

FAST = {"batch_size": 32, "max_epochs": 8, "patience": 8}


@pytest.fixture(scope="module")
def successor_data(tmp_path_factory) -> Path:
    """Item i is always followed by i+1 (mod 30): 200 users, ~20 validation and test rows."""
    from llara.data.prepare import prepare_dataset

    config = DataConfig(source="synthetic", seed=0, options={"num_users": 200, "num_items": 30, "seq_len": 10})
    return prepare_dataset(config, tmp_path_factory.mktemp("successor") / "data").root


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_every_backbone_learns_the_planted_pattern(kind, successor_data, tmp_path):
    started = time.perf_counter()
    checkpoint = train_sr(SRConfig(model=kind, **FAST), successor_data, tmp_path / kind, progress=False)
    seconds = time.perf_counter() - started
    metrics = evaluate_sr(checkpoint, successor_data, split="test")
    assert metrics["hr@1"]["n"] >= 15
    assert metrics["hr@1"]["mean"] > 0.9, metrics["hr@1"]
    assert seconds < 60
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["model_type"] == kind and config["training"]["val_hr@1"] > 0.9
    assert not (checkpoint / TRAIN_STATE).exists()


def test_an_untrained_model_does_not_score_the_pattern(successor_data, tmp_path):
    """The planted-pattern test can fail: random weights are near chance (1 in 20)."""
    torch.manual_seed(0)
    save_sr(build_sr("gru4rec", 30, 64, 10), tmp_path / "random")
    assert evaluate_sr(tmp_path / "random", successor_data)["hr@1"]["mean"] < 0.5


def interrupt_in_third_epoch(config: SRConfig, data: Path, out: Path, monkeypatch) -> None:
    """Start training ``config`` into ``out`` and stop it with a KeyboardInterrupt as its third epoch starts."""
    real_epoch, calls = train_module._run_epoch, []

    def crash_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(train_module, "_run_epoch", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        train_sr(config, data, out, progress=False)
    monkeypatch.setattr(train_module, "_run_epoch", real_epoch)


def assert_resume_is_exact(config: SRConfig, data: Path, tmp_path: Path, monkeypatch) -> None:
    """Train ``config`` straight and interrupted-then-resumed (into tmp_path/straight and /resumed): the
    final weights are bitwise equal."""
    straight = load_sr(train_sr(config, data, tmp_path / "straight", progress=False))
    interrupt_in_third_epoch(config, data, tmp_path / "resumed", monkeypatch)
    torch.manual_seed(123)  # the resumed run must restore every RNG it uses
    resumed = load_sr(train_sr(config, data, tmp_path / "resumed", resume=True, progress=False))
    for name, tensor in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], tensor, rtol=0, atol=0)


def test_resume_reaches_the_same_weights(successor_data, tmp_path, monkeypatch):
    config = SRConfig(model="sasrec", batch_size=64, max_epochs=4, patience=4)
    straight = load_sr(train_sr(config, successor_data, tmp_path / "straight", progress=False))

    interrupt_in_third_epoch(config, successor_data, tmp_path / "resumed", monkeypatch)
    assert (tmp_path / "resumed" / TRAIN_STATE).exists()
    with pytest.raises(LlaraError, match="--resume"):
        train_sr(config, successor_data, tmp_path / "resumed", progress=False)
    with pytest.raises(LlaraError, match="another SR config"):
        train_sr(config.model_copy(update={"l2": 0.1}), successor_data, tmp_path / "resumed", resume=True)
    torch.manual_seed(123)  # the resumed run must restore every RNG it uses
    resumed = load_sr(train_sr(config, successor_data, tmp_path / "resumed", resume=True, progress=False))
    for name, tensor in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], tensor, rtol=0, atol=0)
    history = json.loads((tmp_path / "resumed" / "config.json").read_text())["training"]["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    assert train_sr(config, successor_data, tmp_path / "resumed", resume=True, progress=False) == tmp_path / "resumed"
    with pytest.raises(LlaraError, match="finished run with other settings"):
        train_sr(config.model_copy(update={"seed": 9}), successor_data, tmp_path / "resumed", resume=True)


def test_l2_grid_keeps_the_best_on_validation(successor_data, tmp_path):
    config = SRConfig(model="gru4rec", l2_grid=[10.0, 1e-6], **FAST)
    checkpoint = train_sr(config, successor_data, tmp_path / "grid", progress=False)
    record = json.loads((checkpoint / "config.json").read_text())
    assert set(record["l2_grid"]) == {"10", "1e-06"}
    assert record["l2_grid"]["1e-06"] > record["l2_grid"]["10"]
    assert record["training"]["config"]["l2"] == 1e-6
    assert (tmp_path / "grid.l2-grid" / "l2=10" / "model.safetensors").exists()


def test_checkpoint_round_trip(tmp_path):
    for kind in sorted(MODELS):
        torch.manual_seed(0)
        model = build_sr(kind, 25, 8, 5).eval()
        save_sr(model, tmp_path / kind, data_content_hash="abc")
        loaded = load_sr(tmp_path / kind)
        assert type(loaded) is type(model) and (loaded.num_items, loaded.dim, loaded.max_len) == (25, 8, 5)
        history, candidates = torch.tensor([[1, 2, 25]]), torch.tensor([[3, 4, 5]])
        torch.testing.assert_close(loaded.score(history, candidates), model.score(history, candidates))
        assert json.loads((tmp_path / kind / "config.json").read_text())["data_content_hash"] == "abc"


def test_checkpoint_mismatches_are_clear(tmp_path):
    save_sr(build_sr("caser", 25, 8, 5), tmp_path / "caser")
    with pytest.raises(LlaraError, match="holds a caser model, not sasrec"):
        load_sr(tmp_path / "caser", model_type="sasrec")
    with pytest.raises(LlaraError, match="fitted on 25 items but the data has 40"):
        load_sr(tmp_path / "caser", num_items=40)
    with pytest.raises(LlaraError, match="not an SR checkpoint"):
        load_sr(tmp_path / "missing")


def test_bad_data_folders_overwrite_nothing(tiny_data, tmp_path):
    save_sr(build_sr("sasrec", 40, 8, 5), tmp_path / "keep")
    before = (tmp_path / "keep" / "model.safetensors").read_bytes()
    with pytest.raises(LlaraError, match="manifest.json"):
        train_sr(SRConfig(max_epochs=1), tmp_path / "nowhere", tmp_path / "keep", progress=False)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text(json.dumps(tiny_data.manifest))
    with pytest.raises(LlaraError, match="items.parquet is missing"):
        train_sr(SRConfig(max_epochs=1), broken, tmp_path / "keep", progress=False)
    assert (tmp_path / "keep" / "model.safetensors").read_bytes() == before


def test_empty_history_in_the_data_is_refused(tiny_data, tmp_path):
    from llara.data.dataset import write_prepared

    splits = {name: tiny_data.split(name).copy() for name in ("train", "val", "test")}
    splits["train"].at[3, "history"] = []
    bad = write_prepared(tmp_path / "bad", tiny_data.items, splits, {"source": "test", "domain": "generic"})
    with pytest.raises(LlaraError, match="row 3 has an empty history"):
        train_sr(SRConfig(max_epochs=1), bad.root, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_negatives_never_hit_the_target():
    targets = torch.randint(0, 5, (2000,), generator=torch.Generator().manual_seed(0))
    negatives = sample_negatives(targets, 5, torch.Generator().manual_seed(1))
    assert not (negatives == targets).any()
    assert set(negatives.tolist()) == set(range(5))


LOSSES = {
    "ce": {"loss": "ce"},
    "ce-sampled": {"loss": "ce", "ce_sampled_above": 10, "negatives": 8},
    "gbce": {"loss": "gbce", "negatives": 8, "gbce_t": 0.75},
}


@pytest.mark.parametrize("loss", ["ce", "gbce"])
def test_softmax_and_gbce_learn_the_planted_pattern(loss, successor_data, tmp_path):
    # SASRec finds this pattern late (bce: epoch 8 at lr 1e-3); a larger step keeps the test short
    config = SRConfig(model="sasrec", **LOSSES[loss], **{**FAST, "lr": 3e-3, "max_epochs": 12, "patience": 12})
    checkpoint = train_sr(config, successor_data, tmp_path / loss, progress=False)
    assert evaluate_sr(checkpoint, successor_data, split="test")["hr@1"]["mean"] > 0.9
    training = json.loads((checkpoint / "config.json").read_text())["training"]
    assert training["loss"] == loss and training["config"]["loss"] == loss
    assert ("beta=0.4569" in training["loss_detail"]) == (loss == "gbce")  # 1 - 0.75 * (1 - 8 / 29)


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_resume_is_exact_for_every_loss(loss, successor_data, tmp_path, monkeypatch):
    config = SRConfig(model="sasrec", batch_size=64, max_epochs=4, patience=4, **LOSSES[loss])
    assert_resume_is_exact(config, successor_data, tmp_path, monkeypatch)
    with pytest.raises(LlaraError, match="finished run with other settings"):
        other = {"ce": {"loss": "gbce"}, "ce-sampled": {"negatives": 9}, "gbce": {"gbce_t": 0.5}}[loss]
        train_sr(config.model_copy(update=other), successor_data, tmp_path / "resumed", resume=True)


def _scripted_validation(monkeypatch, scores: list[float]) -> list[int]:
    """Replace the epoch and the validation metric: epoch e scores ``scores[e - 1]``; returns the rows seen."""
    seen: list[int] = []
    monkeypatch.setattr(train_module, "_run_epoch", lambda *args, **kwargs: 0.0)

    def scripted(model, tensors):
        seen.append(len(tensors))
        return scores[len(seen) - 1]

    monkeypatch.setattr(train_module, "hit_rate_at_1", scripted)
    return seen


@pytest.mark.parametrize(
    ("min_epochs", "scores", "stopped_at", "best_epoch"),
    [
        (1, [0.5, 0.4, 0.4, 0.6, 0.3], 3, 1),  # patience 2 counts from epoch 2
        (4, [0.5, 0.4, 0.4, 0.4, 0.3, 0.3, 0.9], 6, 1),  # epochs 2-4 do not count; 5 and 6 do
        (4, [0.5, 0.4, 0.4, 0.4, 0.6, 0.3, 0.3, 0.9], 7, 5),  # an improvement after min_epochs resets
        (1, [0.5, 0.5, 0.5, 0.9], 3, 1),  # a tie is no improvement
    ],
)
def test_min_epochs_and_patience(min_epochs, scores, stopped_at, best_epoch, successor_data, tmp_path, monkeypatch):
    _scripted_validation(monkeypatch, scores)
    config = SRConfig(model="gru4rec", max_epochs=20, patience=2, min_epochs=min_epochs)
    checkpoint = train_sr(config, successor_data, tmp_path / "out", progress=False)
    training = json.loads((checkpoint / "config.json").read_text())
    assert (training["training"]["epoch"], training["training"]["best_epoch"]) == (stopped_at, best_epoch)
    assert training["training"]["val_hr@1"] == max(scores[:stopped_at])


def test_early_stopping_reads_every_validation_window(tmp_path, monkeypatch):
    from llara.data.dataset import PreparedData
    from llara.data.prepare import prepare_dataset

    options = {"num_users": 200, "num_items": 30, "seq_len": 10}
    data = prepare_dataset(DataConfig(source="synthetic", seed=0, val_windows=3, options=options), tmp_path / "data")
    val = PreparedData.load(data.root).split("val")
    users = data.manifest["counts"]["val_users"]
    assert len(val) == 3 * users  # each validation user: the last item and 2 earlier windows
    seen = _scripted_validation(monkeypatch, [0.5])
    checkpoint = train_sr(SRConfig(max_epochs=1), data.root, tmp_path / "out", progress=False)
    training = json.loads((checkpoint / "config.json").read_text())["training"]
    assert seen == [len(val)]
    assert (training["val_rows"], training["val_windows"]) == (len(val), 3)


def test_progress_bar_names_the_loss(successor_data, tmp_path, monkeypatch):
    import tqdm.auto

    labels: list[str] = []
    real = tqdm.auto.tqdm

    def recording(*args, **kwargs):
        labels.append(kwargs["desc"])
        return real(*args, **kwargs)

    monkeypatch.setattr(tqdm.auto, "tqdm", recording)
    _scripted_validation(monkeypatch, [0.5])
    train_sr(SRConfig(max_epochs=1, loss="gbce"), successor_data, tmp_path / "out", progress=False)
    assert labels == ["sasrec gbce l2=1e-06"]
