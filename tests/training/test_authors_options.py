"""The options that reproduce what the LLaRA authors' code trained (docs/method.md, "Training as the
authors' code ran it"): their realised curriculum, per-epoch negatives, varied templates, text-only
evaluation and no gradient clipping."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import tiny_train_overrides

from llara.config import ExperimentConfig, TrainConfig, load_config
from llara.data.domains import DOMAINS
from llara.errors import LlaraError
from llara.evaluation.evaluate import evaluate_model, split_rows
from llara.llm.model import LlaraModel
from llara.llm.prompts import TEMPLATES, TEXT_PLACEHOLDER, render_prompt, template_corpus
from llara.training.loop import train
from llara.training.negatives import EpochCandidates
from llara.training.schedules import AUTHORS_WORKERS, Schedule

# ------------------------------------------------------------------ the authors' realised curriculum


@pytest.mark.parametrize("steps_per_epoch", [119, 240, 597])
def test_the_authors_schedules_realise_their_hybrid_shares(steps_per_epoch: int) -> None:
    """5 epochs: about 0.10 hybrid in the fixed code, 0.90 in the paper's (1 / (2 epochs) and its complement)."""
    total = 5 * steps_per_epoch
    shares = {}
    for name in ("authors-fixed", "authors-paper", "curriculum"):
        schedule = Schedule(name, total, steps_per_epoch, seed=3)
        shares[name] = np.mean([schedule.batch_mode(t, "hybrid") == "hybrid" for t in range(total)])
    assert shares["authors-fixed"] == pytest.approx(0.10, abs=0.02)
    assert shares["authors-paper"] == pytest.approx(0.90, abs=0.02)
    assert shares["curriculum"] == pytest.approx(0.50, abs=0.03)


def test_the_authors_counter_restarts_every_epoch_per_worker() -> None:
    schedule = Schedule("authors-fixed", total_steps=5 * 80, steps_per_epoch=80)
    planned = 5 * 80 // AUTHORS_WORKERS  # their max_step
    for epoch in range(5):
        first = epoch * 80
        assert schedule.hard_probability(first) == pytest.approx(1 / planned)  # counter 1 in every new epoch
        assert schedule.hard_probability(first + 7) == pytest.approx(1 / planned)  # 8 workers: 8 batches at 1
        assert schedule.hard_probability(first + 8) == pytest.approx(2 / planned)
        assert schedule.hard_probability(first + 79) == pytest.approx(10 / planned)  # climbs to 1 / epochs
    paper = Schedule("authors-paper", 400, 80)
    assert all(paper.hard_probability(t) == pytest.approx(1 - schedule.hard_probability(t)) for t in range(400))


def test_only_the_paper_schedule_evaluates_text_prompts() -> None:
    assert Schedule("authors-paper", 10, 5).evaluation_mode("hybrid") == "text"
    assert Schedule("authors-paper", 10, 5).evaluation_mode("id") == "id"
    assert Schedule("authors-fixed", 10, 5).evaluation_mode("hybrid") == "hybrid"
    assert Schedule("curriculum", 10, 5).evaluation_mode("hybrid") == "hybrid"


# ------------------------------------------------------------------ per-epoch negatives


@pytest.fixture
def rows() -> pd.DataFrame:
    return pd.DataFrame({
        "user": ["a", "a", "b"],
        "history": [np.array([1, 2, 3]), np.array([2, 3, 4]), np.array([10, 11, 12])],
        "candidates": [np.arange(20, 40), np.arange(20, 40), np.arange(20, 40)],
        "target": [4, 5, 13],
    })


@pytest.mark.parametrize("pool", ["unseen", "window"])
def test_fresh_candidates_differ_by_epoch_and_never_hold_the_target_twice_or_a_shown_item(rows, pool: str) -> None:
    sampler = EpochCandidates(rows, num_items=60, pool=pool, seed=7)
    records = rows.to_dict("records")
    seen_a = {1, 2, 3, 4, 5}
    for position, row in enumerate(records):
        draws = [sampler.candidates(position, row, epoch) for epoch in range(4)]
        for drawn in draws:
            assert len(drawn) == 20 and len(set(drawn.tolist())) == 20 and drawn.tolist().count(row["target"]) == 1
            negatives = set(drawn.tolist()) - {row["target"]}
            assert not negatives & set(row["history"].tolist())
            if pool == "unseen" and row["user"] == "a":
                assert not negatives & seen_a  # not even the user's other training rows' items
            assert all(0 <= item < 60 for item in drawn)
        assert len({tuple(d.tolist()) for d in draws}) == 4  # a new set every epoch
        again = EpochCandidates(rows, num_items=60, pool=pool, seed=7).candidates(position, row, 2)
        np.testing.assert_array_equal(again, draws[2])  # seeded by (seed, epoch, row): reproducible
    other_seed = EpochCandidates(rows, num_items=60, pool=pool, seed=8).candidates(0, records[0], 0)
    assert not np.array_equal(other_seed, sampler.candidates(0, records[0], 0))


def test_the_target_lands_anywhere_and_negatives_are_uniform(rows) -> None:
    sampler = EpochCandidates(rows, num_items=60, pool="window", seed=0)
    row = rows.to_dict("records")[0]
    draws = [sampler.candidates(0, row, epoch) for epoch in range(600)]
    positions = np.bincount([d.tolist().index(row["target"]) for d in draws], minlength=20)
    assert positions.min() > 10  # every position about 30 times
    counts = np.bincount(np.concatenate(draws), minlength=60)
    allowed = [i for i in range(60) if i not in (1, 2, 3, 4)]
    assert counts[[1, 2, 3]].sum() == 0 and counts[allowed].min() > 150  # 600 * 19 / 56 = 204 each


def test_too_small_a_pool_is_a_clear_error(rows) -> None:
    sampler = EpochCandidates(rows, num_items=22, pool="window")
    with pytest.raises(LlaraError, match="training row 0 .* leaves 18 items to draw 19 negatives"):
        sampler.candidates(0, rows.to_dict("records")[0], 0)


def test_per_epoch_candidates_refuse_a_reference_objective() -> None:
    with pytest.raises(ValueError, match="candidate_draw=frozen"):
        TrainConfig(candidate_draw="per-epoch", objective="sdpo")
    with pytest.raises(ValueError, match="templates=single"):
        ExperimentConfig.model_validate({"model": {"templates": "varied"}, "train": {"objective": "dpo"}})


# ------------------------------------------------------------------ templates


def test_three_templates_state_the_real_candidate_count() -> None:
    row = {"history": [0, 1], "candidates": [2, 3, 4]}
    titles = ["A", "B", "C", "D", "E"]
    prompts = [render_prompt({**row, "template": k}, titles, "hybrid", "movies") for k in range(len(TEMPLATES))]
    assert len(set(prompts)) == 3 and prompts[0] == render_prompt(row, titles, "hybrid", "movies")
    for prompt in prompts:
        assert " 3 movies" in prompt and prompt.endswith("Answer:") and prompt.count("[CandidateEmb]") == 3
    with pytest.raises(LlaraError, match="template 3 is not one of 0..2"):
        render_prompt({**row, "template": 3}, titles, "text", "movies")
    assert len(template_corpus()) == len(TEMPLATES) * len(DOMAINS)


def test_drawn_evaluation_templates_are_fixed_per_row(tiny_data) -> None:
    drawn = split_rows(tiny_data, "test", template="drawn")
    assert {row["template"] for row in drawn} <= {0, 1, 2} and len({row["template"] for row in drawn}) > 1
    assert [r["template"] for r in split_rows(tiny_data, "test", max_rows=5, template="drawn")] == [
        r["template"] for r in drawn[:5]
    ]
    assert all("template" not in row for row in split_rows(tiny_data, "test"))


# ------------------------------------------------------------------ a run with every option on


def test_an_authors_compatible_run_trains_and_evaluates_text_prompts(tiny_data, tiny_llama, sr_checkpoint, tmp_path):
    overrides = tiny_train_overrides(
        tiny_data.root, tiny_llama, sr_checkpoint, tmp_path / "run", "train.max_train_rows=24",
        "train.candidate_draw=per-epoch", "train.negative_pool=window", "model.templates=varied",
        "train.schedule=authors-paper", "train.max_grad_norm=null",
    )
    export = train(load_config(None, overrides), progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if "epoch" in r] == [0, 0, 0, 1, 1, 1]
    info = json.loads((export / "llara.json").read_text())
    assert info["prompt_mode"] == "hybrid" and info["evaluation_mode"] == "text"
    model = LlaraModel.load(export)
    assert model.prompt_mode == "text"  # the paper's evaluation never reached hybrid prompts
    result = evaluate_model(model, tiny_data, ["rank"], "test", progress=False, template="drawn")
    assert result["model"]["prompt_mode"] == "text"
    by_template = result["metrics_by_template"]["rank"]
    assert sum(metrics["hr@1"]["n"] for metrics in by_template.values()) == result["rows"] == len(tiny_data.split("test"))


def test_the_training_rows_see_fresh_candidates_each_epoch(tiny_data, tiny_llama, sr_checkpoint, tmp_path) -> None:
    from llara.training.loop import _Run

    overrides = tiny_train_overrides(tiny_data.root, tiny_llama, sr_checkpoint, tmp_path / "run",
                                     "train.max_train_rows=24", "train.candidate_draw=per-epoch", "model.templates=varied")
    trainer = _Run(load_config(None, overrides), resume=False, progress=False, force=False, allow_data_mismatch=False)
    indices = np.arange(4)
    first, second = trainer._training_records(indices, 0), trainer._training_records(indices, 1)
    frozen = trainer.rows.iloc[indices]["candidates"].tolist()
    for a, b, f in zip(first, second, frozen):
        assert not np.array_equal(a["candidates"], b["candidates"]) and not np.array_equal(a["candidates"], f)
    assert len({row["template"] for row in first}) == 1  # one template per micro-batch
    again = trainer._training_records(indices, 1)
    assert all(np.array_equal(a["candidates"], b["candidates"]) for a, b in zip(again, second))


def test_a_run_started_before_these_options_existed_still_resumes() -> None:
    from llara.training.resume import _changed_keys

    new = {"model": {"prompt_mode": "hybrid", "templates": "single"}, "train": {"lr": 1e-3, "candidate_draw": "frozen"}}
    old = {"model": {"prompt_mode": "hybrid"}, "train": {"lr": 1e-3}}
    assert _changed_keys(old, new) == []
    assert _changed_keys(old, {**new, "train": {"lr": 1e-3, "candidate_draw": "per-epoch"}}) == ["train.candidate_draw"]


# ------------------------------------------------------------------ the [PH] layout of text prompts


def test_text_placeholders_follow_every_title_of_a_text_prompt_only() -> None:
    row = {"history": [0, 1], "candidates": [2, 3, 4]}
    titles = ["A", "B", "C", "D", "E"]
    text = render_prompt(row, titles, "text", "movies", text_placeholder=True)
    assert text.count(TEXT_PLACEHOLDER) == 5 and "A [PH], B [PH]" in text and "C [PH], D [PH], E [PH]" in text
    assert TEXT_PLACEHOLDER not in render_prompt(row, titles, "text", "movies")
    hybrid = render_prompt(row, titles, "hybrid", "movies", text_placeholder=True)
    assert TEXT_PLACEHOLDER not in hybrid  # the hard prompts keep their behavioral tokens there


def test_a_text_placeholder_model_reads_one_untrained_token_per_title_and_exports_it(
    tiny_data, tiny_llama: Path, sr_checkpoint: Path, tmp_path: Path
) -> None:
    from helpers import move_trainable_weights

    from llara.config import ModelConfig
    from llara.evaluation.ranking import score_candidates

    plain = LlaraModel.from_config(ModelConfig(base_model=str(tiny_llama)), tiny_data, sr_checkpoint)
    assert TEXT_PLACEHOLDER not in plain.tokenizer.get_vocab()
    model = move_trainable_weights(
        LlaraModel.from_config(
            ModelConfig(base_model=str(tiny_llama), prompt_mode="text", text_placeholder=True), tiny_data, sr_checkpoint
        )
    )
    ph = model.tokenizer.convert_tokens_to_ids(TEXT_PLACEHOLDER)
    rows = tiny_data.split("test").head(2).to_dict("records")
    batch = model.encode_prompts(rows)
    per_row = (batch["input_ids"] == ph).sum(dim=1).tolist()
    assert per_row == [len(r["history"]) + len(r["candidates"]) for r in rows]
    assert (batch["behavior_ids"] == -1).all()  # not a behavioral token: its embedding row stays as it is
    loaded = LlaraModel.load(model.save(tmp_path / "export"))
    assert loaded.text_placeholder and loaded.tokenizer.convert_tokens_to_ids(TEXT_PLACEHOLDER) == ph
    for a, b in zip(score_candidates(model.eval(), rows).ranking("mean"), score_candidates(loaded, rows).ranking("mean"),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_validation_by_generation_every_epoch_matches_the_evaluation_of_the_export(
    tiny_data, tiny_llama, sr_checkpoint, tmp_path
) -> None:
    overrides = tiny_train_overrides(tiny_data.root, tiny_llama, sr_checkpoint, tmp_path / "run",
                                     "train.max_train_rows=24", "train.eval_every=epoch", "train.validate_by=generate")
    export = train(load_config(None, overrides), progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    validations = [r for r in records if "val_hr@1" in r]
    assert [r["step"] for r in validations] == [3, 6]  # 24 rows, batch 8: an epoch is 3 steps
    result = evaluate_model(LlaraModel.load(export), tiny_data, ["generate"], "val", progress=False)
    assert validations[-1]["val_hr@1"] == pytest.approx(result["metrics"]["generate"]["hr@1"]["mean"])
