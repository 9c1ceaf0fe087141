"""Evaluation protocols: cached ranking = naive scoring, batch-size-free generation, metrics, outputs, CLI."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import run_cli

from llara.config import ModelConfig
from llara.errors import LlaraError
from llara.evaluation.evaluate import (
    evaluate_checkpoint,
    evaluate_model,
    merge_records,
    protocol_metrics,
    shard,
    split_rows,
)
from llara.evaluation.generation import generate_answers, generate_token_ids, is_stop_token, stop_token_ids, token_budgets
from llara.evaluation.predictions import predict_rows
from llara.llm.model import LlaraModel
from llara.evaluation.ranking import score_candidates, score_candidates_naive


def build_model(tiny_llama: Path, data, mode: str, lora: bool = True) -> LlaraModel:
    """A fresh tiny model; LoRA B weights are randomised so the adapter changes the outputs."""
    torch.manual_seed(0)
    embeddings = torch.randn(data.num_items, 16)
    model = LlaraModel.from_config(
        ModelConfig(base_model=str(tiny_llama), prompt_mode=mode), data, item_embeddings=embeddings, lora=lora
    )
    with torch.no_grad():
        for name, param in model.llm.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    return model.eval()


@pytest.fixture(scope="module")
def varied_rows(tiny_data) -> list[dict]:
    """Rows with histories of 3..10 items (so left padding varies) and one row with only 5 candidates."""
    rows = split_rows(tiny_data, "train")
    picked = [rows[i] for i in (0, 3, 7, 20, 200)]
    picked[1] = {**picked[1], "candidates": picked[1]["candidates"][:4] + [picked[1]["target"]]}
    assert len({len(r["history"]) for r in picked}) >= 3
    return picked


@pytest.mark.parametrize("mode", ["hybrid", "id"])
def test_cached_ranking_equals_naive_per_candidate_scoring(tiny_llama, tiny_data, varied_rows, mode) -> None:
    model = build_model(tiny_llama, tiny_data, mode)
    naive = score_candidates_naive(model, varied_rows)
    for method in ("packed", "expanded"):
        cached = score_candidates(model, varied_rows, batch_size=3, method=method)
        for fast, slow in ((cached.total, naive.total), (cached.mean, naive.mean)):
            assert [len(s) for s in fast] == [len(r["candidates"]) for r in varied_rows]
            for a, b in zip(fast, slow, strict=True):
                np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)
    # The scores must discriminate, or the comparison above would prove little.
    assert np.ptp(naive.total[0]) > 1e-3
    with pytest.raises(LlaraError, match="ranking method"):
        score_candidates(model, varied_rows, method="beam")


def test_generation_does_not_depend_on_batch_size(tiny_llama, tiny_data, varied_rows) -> None:
    model = build_model(tiny_llama, tiny_data, "text", lora=False)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a sharper random model, so answers differ from row to row
        for param in model.llm.parameters():
            if param.dim() == 2:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    tokens = {size: generate_token_ids(model, varied_rows, batch_size=size) for size in (1, 3, len(varied_rows))}
    assert tokens[1] == tokens[3] == tokens[len(varied_rows)]
    answers = generate_answers(model, varied_rows, batch_size=2)
    assert answers == [model.tokenizer.decode(ids, skip_special_tokens=True) for ids in tokens[1]]
    assert len(set(answers)) > 1
    stops = stop_token_ids(model)
    for ids, budget in zip(tokens[1], token_budgets(model, varied_rows).tolist(), strict=True):
        assert 1 <= len(ids) <= budget
        # A stop token (newline or end of sequence) can only be the last one; short answers end with one.
        assert not any(is_stop_token(model.tokenizer, t, stops) for t in ids[:-1])
        assert len(ids) == budget or is_stop_token(model.tokenizer, ids[-1], stops)


def test_generation_metrics_count_invalid_rows_in_published_hr1() -> None:
    frame = pd.DataFrame(
        {
            "target": [5, 5, 5, 7],
            "pred": [5, -1, 6, -1],  # correct, invalid, wrong, invalid
            "strict_pred": [5, 5, -1, -1],
        }
    )
    metrics = protocol_metrics(frame, "generate")
    assert metrics["valid_ratio"].mean() == 0.5
    assert metrics["hr@1"].mean() == 0.25  # correct / all rows: the published figure
    assert metrics["hr@1_valid"].mean() == 0.5  # correct / valid rows
    assert metrics["strict_hr@1"].mean() == 0.5 and metrics["strict_hr@1_valid"].mean() == 1.0


def test_rank_metrics_follow_target_ranks() -> None:
    frame = pd.DataFrame({"rank": [0, 2, 9], "len_norm_rank": [1, 0, 0]})
    metrics = protocol_metrics(frame, "rank")
    assert metrics["valid_ratio"].tolist() == [1.0, 1.0, 1.0]
    assert metrics["hr@1"].tolist() == [1.0, 0.0, 0.0]
    assert metrics["hr@3"].tolist() == [1.0, 1.0, 0.0]
    assert metrics["ndcg@10"][1] == pytest.approx(0.5)
    assert metrics["len_norm_hr@1"].tolist() == [0.0, 1.0, 1.0]


def test_sharded_predictions_gather_to_the_single_process_result(tiny_llama, tiny_data) -> None:
    model = build_model(tiny_llama, tiny_data, "hybrid")
    rows = split_rows(tiny_data, "test")
    shards = [shard(rows, index, 2) for index in range(2)]
    assert sorted(r["row"] for part in shards for r in part) == list(range(len(rows)))
    gathered = merge_records([rec for part in shards for rec in predict_rows(model, part, ["rank"], 2)])
    alone = merge_records(predict_rows(model, rows, ["rank"], 4))
    assert gathered["row"].tolist() == list(range(len(rows)))
    np.testing.assert_allclose(np.stack(gathered["scores"]), np.stack(alone["scores"]), atol=1e-4)
    assert gathered["rank"].tolist() == alone["rank"].tolist()
    with pytest.raises(LlaraError, match="exactly once"):
        merge_records(predict_rows(model, rows[:2], ["rank"], 2) * 2)


def test_evaluate_export_writes_predictions_and_metrics(tiny_llama, tiny_data, tmp_path) -> None:
    export = build_model(tiny_llama, tiny_data, "hybrid").save(tmp_path / "export")
    result = evaluate_checkpoint(
        export, protocols=["generate", "rank"], batch_size=3, max_rows=4, out_dir=tmp_path / "ev"
    )
    written = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert written == json.loads(json.dumps(result))
    assert written["rows"] == 4 and set(written["metrics"]) == {"generate", "rank"}
    for metrics in written["metrics"].values():
        for summary in metrics.values():
            assert summary["ci_low"] <= summary["mean"] <= summary["ci_high"]
    assert {"valid_ratio", "hr@1", "strict_hr@1", "strict_valid_ratio"} <= set(written["metrics"]["generate"])
    assert {"hr@1", "hr@3", "hr@5", "ndcg@3", "ndcg@5", "ndcg@10", "mrr"} <= set(written["metrics"]["rank"])
    frame = pd.read_parquet(tmp_path / "ev" / "predictions.parquet")
    assert frame["row"].tolist() == [0, 1, 2, 3]
    for _, row in frame.iterrows():
        scores = np.asarray(row["scores"])
        target_score = scores[list(row["candidates"]).index(row["target"])]
        assert row["rank"] == int((scores >= target_score).sum()) - 1
        assert row["pred"] == -1 or row["pred"] in row["candidates"]


def test_a_moe_lora_export_is_evaluated_with_its_gate_diagnostics(moe_export, tmp_path, capsys) -> None:
    args = ["evaluate", "--checkpoint", str(moe_export), "--protocol", "both"]
    assert run_cli([*args, "--max-rows", "6", "--batch-size", "4", "--out", str(tmp_path / "o")]) == 0
    written = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert set(written["metrics"]) == {"generate", "rank"} and written["rows"] == 6
    per_row = np.array(pd.read_parquet(tmp_path / "o" / "predictions.parquet")["gate"].tolist())
    assert per_row.shape == (6, 4) and np.allclose(per_row.sum(axis=1), 1.0)
    gate = written["gate"]
    assert gate["experts"] == 4 and gate["n"] == 6
    assert gate["mean_weights"] == pytest.approx(per_row.mean(axis=0).tolist())
    mean = per_row.mean(axis=0)
    assert gate["entropy"] == pytest.approx(float(-(mean * np.log(mean)).sum()))
    assert 0 < gate["entropy"] < gate["max_entropy"] == pytest.approx(np.log(4))


def test_zero_shot_and_sr_checkpoints_are_evaluated(tiny_llama, tiny_data, tmp_path, caplog) -> None:
    from llara.sr.checkpoint import save_sr
    from llara.sr.registry import build_sr

    zero = evaluate_checkpoint(None, tiny_data.root, ["rank"], max_rows=2, base_model=str(tiny_llama))
    assert zero["model"]["prompt_mode"] == "text" and zero["rows"] == 2
    torch.manual_seed(0)
    sr_dir = save_sr(build_sr("sasrec", tiny_data.num_items, 16, 10), tmp_path / "sr")
    sr = evaluate_checkpoint(sr_dir, tiny_data.root, ["generate", "rank"], out_dir=tmp_path / "sr-eval")
    assert set(sr["metrics"]) == {"rank"} and sr["rows"] == len(tiny_data.split("test"))
    assert "cannot generate; evaluating the rank protocol only" in caplog.text
    assert pd.read_parquet(tmp_path / "sr-eval" / "predictions.parquet")["rank"].between(0, 19).all()
    with pytest.raises(LlaraError, match="no generation protocol"):
        evaluate_checkpoint(sr_dir, tiny_data.root, ["generate"])


def test_bad_evaluation_requests_are_clear_errors(tiny_data, tmp_path) -> None:
    with pytest.raises(LlaraError, match="exactly one of"):
        evaluate_checkpoint(None, tiny_data.root)
    with pytest.raises(LlaraError, match="neither a LLaRA export"):
        evaluate_checkpoint(tmp_path, tiny_data.root)
    with pytest.raises(LlaraError, match="protocols"):
        evaluate_model(object(), tiny_data, ["beam"])


def test_evaluate_command(tiny_llama, tiny_data, tmp_path, capsys) -> None:
    export = build_model(tiny_llama, tiny_data, "text").save(tmp_path / "export")
    args = ["evaluate", "--checkpoint", str(export), "--protocol", "rank", "--max-rows", "2"]
    assert run_cli([*args, "--out", str(tmp_path / "o")]) == 0
    assert "hr@1" in capsys.readouterr().out
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["rows"] == 2
    assert run_cli(["evaluate", "--checkpoint", str(tmp_path / "missing"), "--data", str(tiny_data.root)]) == 1
    assert "neither a LLaRA export" in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_count_every_row_once(tiny_llama, tiny_data, tmp_path) -> None:
    """`accelerate launch` with 2 CPU processes: rows are sharded, gathered, and match one process."""
    script = Path(sys.executable).with_name("llara")
    if not script.is_file():
        pytest.skip("the llara console script is not installed beside this interpreter")
    export = build_model(tiny_llama, tiny_data, "hybrid").save(tmp_path / "export")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(port), str(script)]
    args = ["evaluate", "--checkpoint", str(export), "--protocol", "rank", "--batch-size", "2"]
    done = subprocess.run(launch + args + ["--out", str(tmp_path / "two")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    two = pd.read_parquet(tmp_path / "two" / "predictions.parquet")
    one = evaluate_checkpoint(export, protocols=["rank"], out_dir=tmp_path / "one")
    assert two["row"].tolist() == list(range(len(tiny_data.split("test"))))
    assert two["rank"].tolist() == pd.read_parquet(tmp_path / "one" / "predictions.parquet")["rank"].tolist()
    gathered = json.loads((tmp_path / "two" / "metrics.json").read_text())["metrics"]
    assert gathered == json.loads(json.dumps(one["metrics"]))


def test_rank_metrics_follow_the_columns_a_model_ranks_by() -> None:
    import pandas as pd

    from llara.evaluation.evaluate import protocol_metrics

    by_mean = pd.DataFrame({"rank": [0, 2, 0], "sum_rank": [1, 0, 0]})
    metrics = protocol_metrics(by_mean, "rank")
    assert metrics["hr@1"].tolist() == [1.0, 0.0, 1.0] and metrics["sum_hr@1"].tolist() == [0.0, 1.0, 1.0]
    assert not any(name.startswith("len_norm_") for name in metrics)


def test_length_sorted_batches_and_a_shared_prompt_pass_keep_every_result(tiny_llama, tiny_data, varied_rows) -> None:
    """predict_rows (rows batched by prompt length, one prompt pass for both decodings) against each
    protocol run on its own over the rows in their order."""
    from llara.evaluation.predictions import CONSTRAINED_PROTOCOL, predict_rows
    from llara.evaluation.inference import prompt_lengths

    model = build_model(tiny_llama, tiny_data, "hybrid")
    rows = [{**row, "row": i} for i, row in enumerate(varied_rows)]
    lengths = prompt_lengths(model, rows)
    assert lengths != sorted(lengths)  # so sorting regroups the batches
    records = predict_rows(model, rows, ["generate", CONSTRAINED_PROTOCOL, "rank"], batch_size=2)
    assert [r["row"] for r in records] == [r["row"] for r in rows]
    scores = score_candidates(model, rows, batch_size=2)
    for record, expected in zip(records, scores.total, strict=True):
        np.testing.assert_allclose(record["scores"], expected, atol=1e-5, rtol=0)
    assert [r["rank"] for r in records] == [r["rank"] for r in predict_rows(model, rows, ["rank"], batch_size=1)]
    assert [r["answer"] for r in records] == generate_answers(model, rows, batch_size=2)
    constrained = generate_answers(model, rows, batch_size=2, constrained=True)
    assert [r["constrained_answer"] for r in records] == constrained


def test_evaluation_shows_a_progress_bar_on_a_terminal_only(tiny_llama, tiny_data, monkeypatch) -> None:
    import io

    from llara.evaluation.predictions import predict_rows

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    model = build_model(tiny_llama, tiny_data, "text")
    rows = split_rows(tiny_data, "test", 3)
    shown = {}
    cases = (("tty", Terminal(), True), ("pipe", io.StringIO(), True), ("off", Terminal(), False))
    for name, stream, progress in cases:
        monkeypatch.setattr(sys, "stderr", stream)
        predict_rows(model, rows, ["rank"], batch_size=2, progress=progress)
        shown[name] = stream.getvalue()
    assert "evaluate" in shown["tty"] and "3/3" in shown["tty"] and "row/s" in shown["tty"]
    assert shown["pipe"] == shown["off"] == ""
