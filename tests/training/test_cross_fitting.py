"""Cross-fitting: the SR backbone leaves a seeded share of training users out, the LLM trains on them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from llara.config import SRConfig, load_config
from llara.data.holdout import held_out_rows, last_rows
from llara.errors import LlaraError
from llara.training.loop import train
from llara.training.rows import sr_unseen_rows


def test_held_out_rows_take_whole_users_by_share_and_seed() -> None:
    users = pd.Series([str(u) for u in range(20) for _ in range(3)])
    mask = held_out_rows(users, 0.25, seed=0)
    held = set(users[mask])
    assert len(held) == 5 and mask.sum() == 15
    assert all(mask[users == u].all() or not mask[users == u].any() for u in users.unique())
    np.testing.assert_array_equal(mask, held_out_rows(users, 0.25, seed=0))
    assert set(users[held_out_rows(users, 0.25, seed=1)]) != held
    assert not held_out_rows(users, 0.0, seed=0).any()
    with pytest.raises(LlaraError, match="holds out 0 of 20"):
        held_out_rows(users, 0.01, seed=0)


def test_last_rows_take_each_users_latest_rows() -> None:
    users = pd.Series(["a", "a", "a", "a", "b", "b", "c", "c", "c"])
    assert last_rows(users, 2).tolist() == [False, False, True, True, True, True, False, True, True]
    assert last_rows(users, 5).all()


@pytest.fixture(scope="module")
def holdout_sr(tiny_data, tmp_path_factory):
    from llara.sr.train import train_sr

    config = SRConfig(holdout_users=0.5, batch_size=32, max_epochs=1, patience=1)
    return train_sr(config, tiny_data.root, tmp_path_factory.mktemp("sr") / "holdout", progress=False)


def test_the_backbone_skips_the_held_out_users_and_the_llm_gets_exactly_them(tiny_data, holdout_sr) -> None:
    frame = tiny_data.split("train")
    held = held_out_rows(frame["user"], 0.5, seed=0)
    recorded = json.loads((holdout_sr / "config.json").read_text())["training"]
    assert recorded["train_rows"] == int((~held).sum()) and 0 < held.sum() < len(frame)
    unseen = sr_unseen_rows(frame, holdout_sr)
    pd.testing.assert_frame_equal(unseen, frame[held].reset_index(drop=True))
    assert not set(unseen["user"]) & set(frame[~held]["user"])


def test_unseen_rows_need_a_backbone_that_held_users_out(tiny_data, tiny_llama, sr_checkpoint, tmp_path) -> None:
    overrides = [f"model.base_model={tiny_llama}", f"train.data_dir={tiny_data.root}", f"train.out_dir={tmp_path}",
                 "train.sr_unseen_rows=true", "train.max_steps=1"]
    with pytest.raises(LlaraError, match="sr.holdout_users > 0"):
        train(load_config(None, [*overrides, f"train.sr_checkpoint={sr_checkpoint}"]), progress=False)
    with pytest.raises(LlaraError, match="needs train.sr_checkpoint"):
        train(load_config(None, overrides), progress=False)


def test_the_llm_trains_on_each_users_last_rows(tiny_data, tiny_llama, sr_checkpoint, tmp_path) -> None:
    from llara.training.loop import _Run

    overrides = [f"model.base_model={tiny_llama}", f"train.data_dir={tiny_data.root}", f"train.out_dir={tmp_path}",
                 f"train.sr_checkpoint={sr_checkpoint}", "train.last_rows=2", "train.max_steps=1",
                 "train.batch_size=4"]
    rows = _Run(load_config(None, overrides), resume=False, progress=False, force=False, allow_data_mismatch=False).rows
    frame = tiny_data.split("train")
    expected = frame.groupby("user", sort=False).tail(2).reset_index(drop=True)
    assert frame["user"].nunique() > 1 and len(rows) == 2 * frame["user"].nunique()
    pd.testing.assert_frame_equal(rows, expected)
