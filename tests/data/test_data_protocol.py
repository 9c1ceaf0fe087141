"""Protocol properties on planted-pattern data (docs/method.md, "Data protocol")."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llara.config import DataConfig
from llara.data.dataset import SPLITS
from llara.data.interactions import Interactions
from llara.data.prepare import prepare_dataset
from llara.data.protocol import ProtocolParams, build_samples, draw_negatives
from llara.data.synthetic import synthetic_interactions
from llara.errors import LlaraError


def _interacted(data: Interactions) -> dict[str, set[int]]:
    """Dense item ids each user interacted with (raw ids equal dense ids in synthetic data)."""
    return data.table.groupby("user")["item"].agg(lambda s: {int(i) for i in s}).to_dict()


def test_tiny_data_shape(tiny_data):
    counts = tiny_data.manifest["counts"]
    assert (counts["users"], counts["items"], counts["interactions"]) == (60, 40, 900)
    assert tiny_data.num_items == 40 and tiny_data.titles[7] == "Item 7"
    assert len(tiny_data.split("train")) == 48 * 12  # 48 train users, targets at positions 3..14
    assert len(tiny_data.split("val")) == len(tiny_data.split("test")) == 6


def test_planted_successor_pattern(tiny_data):
    for name in SPLITS:
        frame = tiny_data.split(name)
        for history, target in zip(frame["history"], frame["target"]):
            assert target == (history[-1] + 1) % 40
            assert list(np.diff(history) % 40) == [1] * (len(history) - 1)


@pytest.mark.parametrize("pattern", ["successor", "random"])
def test_sample_properties(tmp_path, pattern):
    data = synthetic_interactions(num_users=50, num_items=45, seq_len=20, pattern=pattern, seed=3)
    prepared = prepare_dataset(
        DataConfig(
            source="synthetic", options={"num_users": 50, "num_items": 45, "seq_len": 20, "pattern": pattern, "seed": 3}
        ),
        tmp_path / "p",
    )
    interacted = _interacted(data)
    users = {name: set(prepared.split(name)["user"]) for name in SPLITS}
    assert not (users["train"] & users["val"] or users["train"] & users["test"] or users["val"] & users["test"])
    assert sum(len(u) for u in users.values()) == 50
    for name in SPLITS:
        frame = prepared.split(name)
        for user, history, candidates, target in frame.itertuples(index=False):
            assert target not in history
            assert 3 <= len(history) <= 10
            assert len(candidates) == 20 and len(set(candidates)) == 20
            assert list(candidates).count(target) == 1
            negatives = set(candidates) - {target}
            assert not negatives & interacted[user]
    # val/test: the user's last item, history = the items right before it
    sequences = data.table.groupby("user")["item"].agg(lambda s: [int(i) for i in s]).to_dict()
    for name in ("val", "test"):
        for user, history, _, target in prepared.split(name).itertuples(index=False):
            assert target == sequences[user][-1]
            assert list(history) == sequences[user][-11:-1]


def test_every_prefix_is_a_train_row(tiny_data):
    frame = tiny_data.split("train")
    user = frame["user"].iloc[0]
    rows = frame[frame["user"] == user]
    assert [len(h) for h in rows["history"]] == [3, 4, 5, 6, 7, 8, 9, 10, 10, 10, 10, 10]
    first = int(rows["history"].iloc[0][0])
    assert list(rows["target"]) == [(first + k) % 40 for k in range(3, 15)]


def test_candidate_positions_are_shuffled(tiny_data):
    positions = [
        list(c).index(t) for c, t in zip(tiny_data.split("train")["candidates"], tiny_data.split("train")["target"])
    ]
    assert len(set(positions)) > 10  # not always in the same slot


def test_same_seed_same_bytes_other_seed_other_candidates(tmp_path):
    config = DataConfig(source="synthetic", options={"pattern": "random"})
    first = prepare_dataset(config, tmp_path / "a")
    second = prepare_dataset(config, tmp_path / "b")
    for name in ("items.parquet", "train.parquet", "val.parquet", "test.parquet"):
        assert (first.root / name).read_bytes() == (second.root / name).read_bytes()
    assert first.manifest["content_hash"] == second.manifest["content_hash"]
    other = prepare_dataset(config.model_copy(update={"seed": 1}), tmp_path / "c")
    assert other.manifest["content_hash"] != first.manifest["content_hash"]
    assert set(other.split("test")["user"]) != set(first.split("test")["user"])


def test_changing_history_len_keeps_test_candidates(tmp_path):
    base = prepare_dataset(DataConfig(source="synthetic"), tmp_path / "a")
    shorter = prepare_dataset(DataConfig(source="synthetic", history_len=5), tmp_path / "b")
    assert [list(c) for c in base.split("test")["candidates"]] == [list(c) for c in shorter.split("test")["candidates"]]
    assert max(len(h) for h in shorter.split("train")["history"]) == 5


def _table(rows: list[tuple[str, str, int]], titles: dict[str, str] | None = None) -> Interactions:
    table = pd.DataFrame(rows, columns=["user", "item", "timestamp"]).astype({"timestamp": np.int64})
    items = sorted(set(table["item"]))
    catalog = pd.DataFrame({"item": items, "title": [(titles or {}).get(i, f"T{i}") for i in items]})
    return Interactions(table=table, catalog=catalog, source="test")


def test_chronological_with_stable_ties_and_dense_ids():
    # user "a": times out of file order, two ties (kept in file order), a repeat (first kept)
    rows = [("a", "10", 5), ("a", "2", 1), ("a", "9", 3), ("a", "30", 3), ("a", "2", 9), ("a", "100", 7)]
    rows += [(f"u{k}", str(200 + j), j) for k in range(9) for j in range(5)]
    params = ProtocolParams(num_candidates=2, min_history=1, split=(1.0, 0.0, 0.0))
    samples = build_samples(_table(rows), params)
    raw = samples.items["raw_id"].tolist()
    assert raw[:5] == ["2", "9", "10", "30", "100"]  # numeric order, not text order
    train = samples.splits["train"]
    mine = train[train["user"] == "a"]
    order = [raw[t] for t in mine["target"]]
    assert order == ["9", "30", "10", "100"]  # ties at t=3 keep file order; the repeat of "2" is dropped


def test_text_ids_sort_lexicographically():
    rows = [(f"u{k}", f"i{j}", j) for k in range(10) for j in (10, 2, 1, 3)] + [("v", "i4", 9)]
    samples = build_samples(_table(rows), ProtocolParams(num_candidates=2, min_history=1))
    assert samples.items["raw_id"].tolist() == ["i1", "i10", "i2", "i3", "i4"]


def test_split_ratio_and_min_history_options(tmp_path):
    prepared = prepare_dataset(DataConfig(source="synthetic", split=(0.5, 0.25, 0.25), min_history=5), tmp_path / "p")
    assert prepared.manifest["counts"]["val_users"] == 15
    assert min(len(h) for h in prepared.split("train")["history"]) == 5


def test_draw_negatives_uniform_and_excluding_seen():
    rng = np.random.default_rng(0)
    seen = np.array([0, 1, 2])  # user 0 saw items 0..2 of 10
    draws = draw_negatives(np.zeros(4000, dtype=np.int64), seen, 10, 3, rng)
    assert draws.min() >= 3 and all(len(set(r)) == 3 for r in draws)
    frequency = np.bincount(draws.ravel(), minlength=10)[3:] / draws.size
    assert np.allclose(frequency, 1 / 7, atol=0.01)


def test_too_few_items_for_negatives(tmp_path):
    with pytest.raises(LlaraError, match="too few items for 19 negatives"):
        prepare_dataset(DataConfig(source="synthetic", options={"num_items": 20, "seq_len": 15}), tmp_path / "p")
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (ProtocolParams(history_len=2), "min_history <= history_len"),
        (ProtocolParams(num_candidates=1), "at least 2"),
        (ProtocolParams(split=(0.5, 0.1, 0.1)), "summing to 1"),
    ],
)
def test_bad_protocol_parameters(params, message):
    with pytest.raises(LlaraError, match=message):
        build_samples(synthetic_interactions(), params)


def test_empty_dataset():
    empty = _table([])
    with pytest.raises(LlaraError, match="empty"):
        build_samples(empty, ProtocolParams())


# --- leave-one-out (data.split_by: leave-one-out) ---


def _varied_log(seed: int = 0) -> Interactions:
    """30 users with 2..16 interactions each, shuffled in the file, one repeated item per user."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(30):
        length = 2 + k % 15
        items = rng.choice(60, size=length, replace=False)
        rows += [(f"u{k}", str(item), t) for t, item in enumerate(items)]
        rows.append((f"u{k}", str(items[0]), length + 5))  # a repeat: its first occurrence counts
    order = rng.permutation(len(rows))
    return _table([rows[i] for i in order])


def _sequences(samples, data: Interactions) -> dict[str, list[int]]:
    """Each user's dense item ids in time order, repeats dropped (what the protocol sees)."""
    dense = {raw: i for i, raw in enumerate(samples.items["raw_id"])}
    table = data.table.sort_values(["user", "timestamp"], kind="stable").drop_duplicates(["user", "item"])
    return table.groupby("user")["item"].agg(lambda s: [dense[i] for i in s]).to_dict()


def test_leave_one_out_gives_each_eligible_user_one_test_and_one_validation_row():
    data = _varied_log()
    params = ProtocolParams(split_by="leave-one-out", min_history=3, num_candidates=10)
    samples = build_samples(data, params)
    sequences = _sequences(samples, data)
    eligible = {user for user, seq in sequences.items() if len(seq) >= params.min_history + 2}
    assert 0 < len(eligible) < len(sequences)  # the log has users too short for both rows
    for name, position in (("test", -1), ("val", -2)):
        frame = samples.splits[name]
        assert sorted(frame["user"]) == sorted(eligible)  # exactly one row per eligible user
        for user, history, _, target in frame.itertuples(index=False):
            seq = sequences[user]
            assert target == seq[position]
            assert list(history) == seq[: len(seq) + position][-params.history_len :]
    train = samples.splits["train"]
    assert set(train["user"]) <= eligible
    for user in eligible:
        seq, mine = sequences[user], train[train["user"] == user]
        assert list(mine["target"]) == seq[params.min_history : -2]  # every earlier prefix, in order
        for history, target in zip(mine["history"], mine["target"]):  # held-out targets never in training
            assert not {seq[-1], seq[-2]} & {*history, target}
    counts = samples.counts
    assert counts["test_rows"] == counts["val_rows"] == counts["test_users"] == counts["val_users"] == len(eligible)
    assert counts["train_rows"] == sum(len(sequences[u]) - 2 - params.min_history for u in eligible)


def test_leave_one_out_candidates_are_frozen_and_exclude_what_the_user_had(tmp_path):
    config = DataConfig(source="synthetic", split_by="leave-one-out", options={"pattern": "random"})
    first, second = prepare_dataset(config, tmp_path / "a"), prepare_dataset(config, tmp_path / "b")
    for name in ("train", "val", "test"):
        assert (first.root / f"{name}.parquet").read_bytes() == (second.root / f"{name}.parquet").read_bytes()
    interacted = _interacted(synthetic_interactions(pattern="random"))
    for name in SPLITS:
        for user, _, candidates, target in first.split(name).itertuples(index=False):
            assert len(set(candidates)) == 20 and list(candidates).count(target) == 1
            assert not (set(candidates) - {target}) & interacted[user]
    other = prepare_dataset(config.model_copy(update={"seed": 1}), tmp_path / "c")
    assert list(other.split("test")["target"]) == list(first.split("test")["target"])  # the split has no chance
    assert [list(c) for c in other.split("test")["candidates"]] != [list(c) for c in first.split("test")["candidates"]]


def test_the_manifest_records_the_protocol(tmp_path, ml_raw_folder):
    config = DataConfig(source="movielens", path=str(ml_raw_folder), split_by="leave-one-out", num_candidates=5)
    prepared = prepare_dataset(config, tmp_path / "loo")
    assert prepared.manifest["protocol"]["split_by"] == "leave-one-out" and "split" not in prepared.manifest["protocol"]
    assert len(prepared.split("test")) == len(prepared.split("val")) == 12  # every user of the folder
    users = prepare_dataset(config.model_copy(update={"split_by": "users"}), tmp_path / "users")
    assert users.manifest["protocol"]["split_by"] == "users" and users.manifest["protocol"]["split"] == [0.8, 0.1, 0.1]


def test_the_authors_split_cannot_be_redone_as_leave_one_out(tmp_path):
    with pytest.raises(LlaraError, match="keeps the authors' user split"):
        prepare_dataset(DataConfig(source="llara", path=str(tmp_path), split_by="leave-one-out"), tmp_path / "p")


# --- more validation rows (data.val_windows) ---


def test_val_windows_append_each_validation_users_earlier_windows_and_keep_the_last_item_rows():
    data = _varied_log()
    one = build_samples(data, ProtocolParams(min_history=3, num_candidates=10, split=(0.4, 0.3, 0.3)))
    three = build_samples(data, ProtocolParams(min_history=3, num_candidates=10, split=(0.4, 0.3, 0.3), val_windows=3))
    for name in ("train", "test"):
        pd.testing.assert_frame_equal(one.splits[name], three.splits[name])
    last, val = one.splits["val"], three.splits["val"]
    pd.testing.assert_frame_equal(val.head(len(last)), last)  # same rows, same frozen candidates
    sequences = _sequences(three, data)
    earlier = val.iloc[len(last):]
    assert len(earlier) > 0 and set(earlier["user"]) <= set(last["user"])
    interacted = _interacted(data)
    dense_raw = dict(enumerate(three.items["raw_id"]))
    for user in set(last["user"]):
        seq, mine = sequences[user], earlier[earlier["user"] == user]
        expected = [k for k in (len(seq) - 3, len(seq) - 2) if k >= 3]  # the two windows before the last
        assert [seq.index(t) for t in mine["target"]] == expected
        for history, candidates, target in zip(mine["history"], mine["candidates"], mine["target"]):
            k = seq.index(target)
            assert list(history) == seq[:k][-10:]
            assert list(candidates).count(target) == 1 and len(set(candidates)) == 10
            assert not {int(dense_raw[c]) for c in candidates if c != target} & interacted[user]
    assert three.counts["val_rows"] == len(val) and three.counts["val_users"] == one.counts["val_users"]


def test_val_windows_need_the_user_split(tmp_path):
    with pytest.raises(LlaraError, match="val_windows=2 needs split_by=users"):
        build_samples(_varied_log(), ProtocolParams(split_by="leave-one-out", val_windows=2))
    with pytest.raises(LlaraError, match="keeps the authors' validation rows"):
        prepare_dataset(DataConfig(source="llara", path=str(tmp_path), val_windows=2), tmp_path / "p")


def test_the_manifest_records_val_windows_only_when_set(tmp_path):
    config = DataConfig(source="synthetic", options={"pattern": "random"})
    assert "val_windows" not in prepare_dataset(config, tmp_path / "one").manifest["protocol"]
    more = prepare_dataset(config.model_copy(update={"val_windows": 4}), tmp_path / "four")
    assert more.manifest["protocol"]["val_windows"] == 4
