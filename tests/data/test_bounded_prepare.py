"""Preparing in bounded memory changes no byte: block-wise negatives and shuffles, compact splits, row-group
writes, lazily parsed splits and streamed statistics (issue 33)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import run_cli

import llara.data.dataset as dataset
import llara.data.protocol as protocol
from llara.data.dataset import SPLITS, PreparedData, SampleArrays, write_prepared
from llara.data.protocol import ProtocolParams, RowBatch, build_sample_arrays, build_samples, draw_negatives
from llara.data.stats import split_stats
from llara.data.synthetic import synthetic_interactions
from llara.errors import LlaraError

#: block sizes that split the rows unevenly (and one that holds them all)
BLOCKS = [1, 7, 100, 10_000]


# --- the implementation before blocks (issue 33), kept as the reference the blocks must match ---


def reference_negatives(row_users, seen, num_items, k, rng):
    chosen = np.full((len(row_users), k), -1, dtype=np.int64)
    pending = np.arange(len(row_users))
    while pending.size:
        draws = rng.integers(0, num_items, size=(pending.size, 2 * k), dtype=np.int64)
        keys = row_users[pending, None].astype(np.int64) * num_items + draws
        hit = np.searchsorted(seen, keys).clip(max=max(len(seen) - 1, 0))
        draws[seen[hit] == keys] = -1
        merged = reference_unique_in_order(np.concatenate([chosen[pending], draws], axis=1))
        chosen[pending] = merged[:, :k]
        pending = pending[(merged[:, :k] < 0).any(axis=1)]
    return chosen


def reference_unique_in_order(block):
    order = np.argsort(block, axis=1, kind="stable")
    ranked = np.take_along_axis(block, order, axis=1)
    repeat = np.zeros_like(ranked, dtype=bool)
    repeat[:, 1:] = ranked[:, 1:] == ranked[:, :-1]
    invalid = np.empty_like(repeat)
    np.put_along_axis(invalid, order, repeat | (ranked < 0), axis=1)
    block = np.where(invalid, -1, block)
    return np.take_along_axis(block, np.argsort(invalid, axis=1, kind="stable"), axis=1)


def reference_candidates(targets, row_users, seen, num_items, num_candidates, rng):
    negatives = reference_negatives(row_users, seen, num_items, num_candidates - 1, rng)
    return rng.permuted(np.column_stack([targets, negatives]).astype(np.int64), axis=1)


def crowded_log(num_items: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Row users and sorted seen keys where many users had most of the items: rows need several rounds."""
    rng = np.random.default_rng(seed)
    users = 40
    had = [rng.choice(min(num_items, 10_000), size=rng.integers(1, 30), replace=False) for _ in range(users)]
    seen = np.unique(np.concatenate([u * num_items + np.asarray(h, dtype=np.int64) for u, h in enumerate(had)]))
    return rng.integers(0, users, 1_001), seen


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("num_items", [50, 5_000_000_000])  # int32 ids, then int64 ids and 64-bit draws
def test_negatives_drawn_in_blocks_are_the_reference_draws(monkeypatch, block, num_items):
    monkeypatch.setattr(protocol, "CHUNK_ROWS", block)
    row_users, seen = crowded_log(num_items)
    drawn = draw_negatives(row_users, seen, num_items, 19, np.random.default_rng(3))
    expected = reference_negatives(row_users, seen, num_items, 19, np.random.default_rng(3))
    assert drawn.dtype == (np.int32 if num_items < 2**31 else np.int64)
    np.testing.assert_array_equal(drawn, expected)


@pytest.mark.parametrize("block", BLOCKS)
def test_candidates_shuffled_in_blocks_are_the_reference_candidates(monkeypatch, block):
    monkeypatch.setattr(protocol, "CHUNK_ROWS", block)
    row_users, seen = crowded_log(50, seed=1)
    targets = np.arange(len(row_users)) % 50  # any values: the shuffle does not look at them
    rows = RowBatch(users=row_users, targets=targets, offsets=np.zeros(len(row_users) + 1, dtype=np.int32),
                    values=np.zeros(0, dtype=np.int32))
    samples = protocol.sample_arrays(rows, np.array(["u"] * 40), seen, 50, ProtocolParams(), np.random.default_rng(5))
    expected = reference_candidates(targets, row_users, seen, 50, 20, np.random.default_rng(5))
    np.testing.assert_array_equal(samples.candidates, expected)


def frames_digest(samples) -> str:
    """sha256 (16 hex digits) of every split's users, histories, candidates and targets."""
    digest = hashlib.sha256()
    for name in SPLITS:
        frame = samples.splits[name]
        digest.update(name.encode())
        digest.update(np.asarray(list(frame["candidates"]), dtype=np.int64).tobytes())
        digest.update(np.concatenate([np.asarray(h, dtype=np.int64) for h in frame["history"]]).tobytes())
        digest.update(frame["target"].to_numpy(np.int64).tobytes())
        digest.update("|".join(frame["user"]).encode())
    return digest.hexdigest()[:16]


@pytest.mark.parametrize(
    ("params", "expected"),
    [  # digests of the samples the implementation before blocks built (rows needing up to 5 draw rounds)
        (ProtocolParams(seed=11, val_windows=3, split=(0.6, 0.2, 0.2)), "a74ad66ad4b86b8a"),
        (ProtocolParams(seed=12, split_by="leave-one-out", num_candidates=21), "ab3a8ededaffedc1"),
    ],
)
@pytest.mark.parametrize("block", [7, 1000])
def test_the_samples_are_those_built_before_blocks(monkeypatch, params, expected, block):
    monkeypatch.setattr(protocol, "CHUNK_ROWS", block)
    data = synthetic_interactions(num_users=300, num_items=45, seq_len=20, pattern="random", seed=7)
    assert frames_digest(build_samples(data, params)) == expected


TINY = synthetic_interactions(num_users=80, num_items=45, seq_len=12, pattern="random", seed=2)
TINY_PARAMS = ProtocolParams(num_candidates=9, val_windows=2)


def _tiny_samples():
    return build_sample_arrays(TINY, TINY_PARAMS)


def test_compact_splits_hold_int32_ids_and_give_the_frames():
    samples = _tiny_samples()
    frames = build_samples(TINY, TINY_PARAMS).splits
    for name, split in samples.splits.items():
        assert isinstance(split, SampleArrays)
        assert split.candidates.dtype == split.values.dtype == split.targets.dtype == np.int32
        pd.testing.assert_frame_equal(split.to_frame(), frames[name])
    train = samples.splits["train"]
    pd.testing.assert_frame_equal(train.rows(5, 17).to_frame(), frames["train"].iloc[5:17].reset_index(drop=True))


@pytest.mark.parametrize("group", [1, 6, 1000])
def test_compact_splits_are_written_in_row_groups_with_the_bytes_of_one_table(tmp_path, monkeypatch, group):
    monkeypatch.setattr(dataset, "ROW_GROUP_ROWS", group)
    samples = _tiny_samples()
    empty = samples.splits["test"].rows(0, 0)
    splits = {**samples.splits, "test": empty}
    written = write_prepared(tmp_path / "arrays", samples.items, splits, {"source": "test"})
    for name, split in splits.items():
        table = pa.Table.from_pandas(split.to_frame(), dataset._SAMPLE_SCHEMA, preserve_index=False)
        rows = group if len(split) else None  # an empty split is one write of no rows
        pq.write_table(table, tmp_path / "one.parquet", compression="zstd", row_group_size=rows)
        assert (written.root / f"{name}.parquet").read_bytes() == (tmp_path / "one.parquet").read_bytes()
    assert len(written.split("test")) == 0 and len(written.split("train")) == len(samples.splits["train"])


def test_splits_are_parsed_on_first_use_from_bytes_checked_again(tiny_data, tmp_path):
    copy = Path(shutil.copytree(tiny_data.root, tmp_path / "copy"))
    data = PreparedData.load(copy)
    assert "train" in data.splits and list(data.splits) == list(SPLITS)
    pd.testing.assert_frame_equal(data.split("val"), tiny_data.split("val"))
    (copy / "train.parquet").write_bytes((copy / "test.parquet").read_bytes())  # swapped after loading
    with pytest.raises(LlaraError, match=r"train.parquet is not the file this folder was prepared with"):
        data.split("train")
    with pytest.raises(LlaraError, match=r"train.parquet is not the file this folder was prepared with"):
        next(data.batches("train"))
    with pytest.raises(LlaraError, match="no split 'dev'"):
        data.split("dev")


def test_streamed_statistics_are_those_of_the_whole_split(tiny_data):
    for name in SPLITS:
        frame = tiny_data.split(name)
        lengths = np.array([len(h) for h in frame["history"]])
        stats = split_stats(tiny_data, name)
        assert stats == {
            "rows": len(frame),
            "users": frame["user"].nunique(),
            "mean_history": pytest.approx(lengths.mean()),
            "min_history": lengths.min(),
            "max_history": lengths.max(),
            "candidates": "20",
            "distinct_targets": frame["target"].nunique(),
        }
    assert sum(batch.num_rows for batch in tiny_data.batches("train", rows=100)) == len(tiny_data.split("train"))


def test_a_full_disk_while_writing_a_split_is_one_line(tmp_path, monkeypatch, capsys):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", full)
    assert run_cli(["data", "prepare", "synthetic", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "free some space or write elsewhere" in err
    assert list(tmp_path.iterdir()) == []


def test_the_scale_benchmark_measures_prepare_on_a_seeded_log(tmp_path):
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "scale.json"
    command = [sys.executable, str(root / "benchmarks/scale.py"), "prepare", "--sizes", "3k,6k", "--json", str(out)]
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    subprocess.run(command, check=True, capture_output=True, timeout=300, env=env)
    report = json.loads(out.read_text())
    first, second = report["results"]
    assert 0.95 < first["interactions"] / 3000 <= 1 and 0.95 < second["interactions"] / 6000 <= 1  # long users capped
    assert second["counts"]["users"] == 600 and second["counts"]["train_rows"] > 0
    assert first["peak_rss_bytes"] > 0 and first["wall_s"] > 0 and report["fit"]["bytes_per_interaction"] is not None
