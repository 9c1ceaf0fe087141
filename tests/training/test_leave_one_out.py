"""The SR and LLM stages run unchanged on a leave-one-out folder (data.split_by: leave-one-out)."""

from __future__ import annotations

from helpers import tiny_train_overrides

from llara.config import DataConfig, SRConfig, load_config
from llara.data.prepare import prepare_dataset
from llara.evaluation.evaluate import evaluate_checkpoint
from llara.sr.evaluate import evaluate_sr
from llara.sr.train import train_sr
from llara.training.loop import train


def test_sr_and_llara_train_and_evaluate_on_a_leave_one_out_folder(tiny_llama, tmp_path):
    # the tiny_data source (same items and titles, so the tiny Llama's tokenizer knows them), split per user
    data = prepare_dataset(DataConfig(source="synthetic", seed=0, split_by="leave-one-out"), tmp_path / "loo")
    assert len(data.split("test")) == len(data.split("val")) == 60  # every one of the 60 users

    sr = train_sr(SRConfig(batch_size=32, lr=5e-3, max_epochs=12, patience=12), data.root, tmp_path / "sr", progress=False)
    assert evaluate_sr(sr, data.root, split="test")["hr@1"]["mean"] > 0.9  # it learns the planted successor

    config = load_config(None, tiny_train_overrides(data.root, tiny_llama, sr, tmp_path / "llara"))
    export = train(config, progress=False)
    result = evaluate_checkpoint(export, protocols=["rank"], batch_size=8, out_dir=tmp_path / "eval")
    assert result["rows"] == 60 and result["metrics"]["rank"]["hr@1"]["n"] == 60
