"""Training: exact resume, atomic checkpoints, learning-rate schedule, batching and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import crash_after_checkpoint, run_cli, tiny_train_overrides
from safetensors.torch import load_file

from llara.training import checkpointing
from llara.training.batching import accumulation_steps, epoch_micro_batches, prompt_lengths
from llara.config import ExperimentConfig, ModelConfig, load_config
from llara.errors import LlaraError
from llara.llm.model import LlaraModel
from llara.training.loop import train
from llara.training.setup import build_optimizer, warmup_cosine


def make_config(tiny_data, tiny_llama: Path, sr_checkpoint: Path, out: Path, *extra: str) -> ExperimentConfig:
    return load_config(None, tiny_train_overrides(tiny_data.root, tiny_llama, sr_checkpoint, out, *extra))


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(checkpointing.list_checkpoints(out / "checkpoints")[-1] / "trainable.safetensors"))


SETTINGS = {
    "sft": (),
    "sft-moe-lora": ("model.adapter=moe-lora", "model.experts=2", "train.gate_lr_factor=5"),
    "listwise": ("train.objective=listwise", "train.sft_weight=0.5", "model.answer_token=interaction", "model.user_token=true"),
    "sdpo": ("train.objective=sdpo", "train.negatives=2", "model.answer_token=item"),
    "listwise-verdict": ("train.objective=listwise", "train.listwise_score=verdict", "model.answer_token=interaction"),
    "listwise-verdict-prior": ("train.objective=listwise", "train.listwise_score=verdict", "model.sr_prior=true"),
    "authors-compatible": ("train.candidate_draw=per-epoch", "train.negative_pool=window", "model.templates=varied",
                           "train.schedule=authors-paper", "train.max_grad_norm=null", "train.max_train_rows=24"),
}


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_resume_after_a_crash_matches_an_uninterrupted_run(
    tiny_data, tiny_llama, sr_checkpoint, tmp_path, setting
) -> None:
    extra = ("train.eval_every=3", *SETTINGS[setting])
    straight = train(make_config(tiny_data, tiny_llama, sr_checkpoint, tmp_path / "a", *extra), progress=False)
    config = make_config(tiny_data, tiny_llama, sr_checkpoint, tmp_path / "b", *extra)
    with pytest.raises(KeyboardInterrupt), crash_after_checkpoint(4):
        train(config, progress=False)
    assert not (tmp_path / "b" / "export").exists()
    resumed = train(config, resume=True, progress=False)

    expected, got = final_weights(tmp_path / "a"), final_weights(tmp_path / "b")
    assert expected.keys() == got.keys() and any("projector" in k for k in got)
    assert ("sr_prior.scale" in got) == ("model.sr_prior=true" in extra)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6)
    steps = [line for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert len(steps) == 6
    assert (resumed / "llara.json").is_file() and (straight / "projector.safetensors").is_file()


def test_training_lowers_the_validation_loss_and_exports_a_loadable_model(tiny_data, tiny_llama, sr_checkpoint, tmp_path) -> None:
    config = make_config(tiny_data, tiny_llama, sr_checkpoint, tmp_path, "train.eval_every=1", "train.max_steps=8",
                         "train.schedule=direct", "train.lr=5e-3")
    export = train(config, progress=False)
    import json

    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    val = [r["val_loss"] for r in records if "val_loss" in r]
    assert len(val) == 8 and val[-1] < val[0]
    assert {r["mode"] for r in records if "mode" in r} == {"hybrid"}
    assert all(0 <= r["padding_fraction"] < 0.5 for r in records if "padding_fraction" in r)
    model = LlaraModel.load(export)
    assert model.prompt_mode == "hybrid" and model.projector is not None


def test_a_crash_while_writing_leaves_no_partial_checkpoint(tiny_data, tiny_llama, sr_checkpoint, tmp_path, monkeypatch) -> None:
    real_save = torch.save

    def failing_save(obj, path, *args, **kwargs):
        if "step-00000004" in str(Path(path).parent.name) or ".step-00000004" in str(path):
            raise OSError("disk full")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        train(make_config(tiny_data, tiny_llama, sr_checkpoint, tmp_path), progress=False)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step-00000002"]


def test_nan_loss_is_a_clear_error(tiny_data, tiny_llama, sr_checkpoint, tmp_path, monkeypatch) -> None:
    real = LlaraModel.input_embeddings
    monkeypatch.setattr(LlaraModel, "input_embeddings", lambda self, *a: real(self, *a) * float("nan"))
    with pytest.raises(LlaraError, match="training loss is nan"):
        train(make_config(tiny_data, tiny_llama, sr_checkpoint, tmp_path), progress=False)


def test_sr_item_count_mismatch_is_a_clear_error(tiny_data, tiny_llama, tmp_path) -> None:
    from llara.sr.checkpoint import save_sr
    from llara.sr.registry import build_sr

    wrong = save_sr(build_sr("gru4rec", tiny_data.num_items + 5, 64, 10), tmp_path / "sr")
    with pytest.raises(LlaraError, match=f"data has {tiny_data.num_items}"):
        train(make_config(tiny_data, tiny_llama, wrong, tmp_path / "out"), progress=False)


def test_unknown_base_model_and_config_key_are_clear_errors(tiny_data, sr_checkpoint, tmp_path, capsys) -> None:
    with pytest.raises(LlaraError, match="does not exist"):
        train(make_config(tiny_data, tmp_path / "missing-llm", sr_checkpoint, tmp_path / "out"), progress=False)
    assert run_cli(["train", "train.learning_rate=1e-4"]) == 1
    assert "train.learning_rate: unknown key" in capsys.readouterr().err


def test_resume_refuses_a_changed_config(tiny_data, tiny_llama, sr_checkpoint, tmp_path) -> None:
    train(make_config(tiny_data, tiny_llama, sr_checkpoint, tmp_path, "train.max_steps=2"), progress=False)
    with pytest.raises(LlaraError, match="train.lr"):
        train(make_config(tiny_data, tiny_llama, sr_checkpoint, tmp_path, "train.max_steps=2", "train.lr=1e-4"),
              resume=True, progress=False)


def test_the_moe_lora_gate_trains_at_its_own_learning_rate(tiny_data, tiny_llama, sr_checkpoint) -> None:
    config = ModelConfig(base_model=str(tiny_llama), adapter="moe-lora", experts=2)
    model = LlaraModel.from_config(config, tiny_data, sr_checkpoint)
    optimizer = build_optimizer(model, lr=1e-3, weight_decay=0.0, projector_decay=1e-5, gate_lr_factor=10.0)
    gate = {id(p) for p in model.gate.parameters()}
    by_group = [({id(p) for p in group["params"]}, group["lr"]) for group in optimizer.param_groups]
    assert [lr for ids, lr in by_group if ids == gate] == [pytest.approx(1e-2)]
    assert all(lr == 1e-3 for ids, lr in by_group if ids != gate)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert sum(len(ids) for ids, _ in by_group) == len(trainable) and set().union(*(ids for ids, _ in by_group)) == trainable


def test_warmup_then_cosine_from_and_to_one_hundredth() -> None:
    factor = warmup_cosine(total_steps=200, warmup_ratio=0.05, min_ratio=0.01)
    assert factor(0) == pytest.approx(0.01)
    assert factor(5) == pytest.approx(0.505)
    assert factor(10) == pytest.approx(1.0)
    assert factor(105) == pytest.approx(0.505)
    assert factor(200) == pytest.approx(0.01)
    assert all(factor(t) >= factor(t + 1) for t in range(10, 200))


def test_length_grouping_covers_every_row_once_and_cuts_padding(tiny_data) -> None:
    rows = tiny_data.split("train")
    lengths = prompt_lengths(rows, [f"Title {'x' * (i % 17)}" for i in range(tiny_data.num_items)])
    batches = epoch_micro_batches(lengths, 8, seed=0, epoch=0)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(rows)))
    assert all(len(b) <= 8 for b in batches)
    again = epoch_micro_batches(lengths, 8, seed=0, epoch=0)
    other = epoch_micro_batches(lengths, 8, seed=0, epoch=1)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    assert not all(np.array_equal(a, b) for a, b in zip(batches, other))

    def padding(groups) -> float:
        return sum(len(g) * lengths[g].max() - lengths[g].sum() for g in groups)

    shuffled = np.random.default_rng(0).permutation(len(rows))
    assert padding(batches) < 0.5 * padding([shuffled[i : i + 8] for i in range(0, len(rows), 8)])


def test_batch_must_split_into_micro_batches_and_processes() -> None:
    assert accumulation_steps(128, 4, 2) == 16
    with pytest.raises(LlaraError, match="multiple of train.micro_batch_size"):
        accumulation_steps(10, 4, 1)


def test_keep_best_exports_the_validation_best_step(tiny_data, tiny_llama, sr_checkpoint, tmp_path) -> None:
    import json

    config = make_config(tiny_data, tiny_llama, sr_checkpoint, tmp_path, "train.eval_every=2", "train.eval_rows=8",
                         "train.keep_best=true", "train.objective=listwise", "train.lr=2e-2")
    export = train(config, progress=False)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    validations = [(r["step"], r["val_hr@1"]) for r in records if "val_hr@1" in r]
    assert [step for step, _ in validations] == [2, 4, 6]
    best_step = max(validations, key=lambda sv: (sv[1], -sv[0]))[0]
    assert json.loads((export / "llara.json").read_text())["step"] == best_step


def test_a_time_budget_stops_training_and_exports(tiny_data, tiny_llama, sr_checkpoint, tmp_path) -> None:
    import json

    config = make_config(tiny_data, tiny_llama, sr_checkpoint, tmp_path, "train.max_minutes=0.0001")
    export = train(config, progress=False)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[-1].get("stopped") and json.loads((export / "llara.json").read_text())["step"] == 1
