"""Training objectives against naive per-candidate references; user and answer tokens end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from llara.config import ModelConfig, TrainConfig
from llara.errors import LlaraError
from llara.evaluation.ranking import score_candidates, score_candidates_naive
from llara.llm.model import LlaraModel
from llara.llm.packing import pack_candidates
from llara.training.objectives import ObjectiveContext, get_objective
from llara.training.objectives.preference import negative_columns

from helpers import assert_serving_ranks_like


@pytest.fixture(scope="module")
def evidence_model(tiny_data, tiny_llama: Path, sr_checkpoint: Path) -> LlaraModel:
    """Hybrid prompts with a user token and interaction answer tokens; trainable LoRA and projectors."""
    torch.manual_seed(0)
    config = ModelConfig(base_model=str(tiny_llama), prompt_mode="hybrid", user_token=True, answer_token="interaction")
    return LlaraModel.from_config(config, tiny_data, sr_checkpoint).eval()


@pytest.fixture(scope="module")
def rows(tiny_data) -> list[dict]:
    return tiny_data.split("train").head(3).to_dict("records")


def context(rows: list[dict], **train: object) -> ObjectiveContext:
    reference = {"hybrid": torch.linspace(-3.0, 1.0, 20 * 8).reshape(8, 20)}
    return ObjectiveContext("hybrid", 5, TrainConfig(**train), np.arange(len(rows)), torch.device("cpu"), reference)


def naive_scores(model: LlaraModel, rows: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    scores = score_candidates_naive(model, rows)
    return torch.tensor(np.stack(scores.total)), torch.tensor(np.stack(scores.mean))


def scores_moved_by_nudging(model: LlaraModel, row: dict, items: list[int], nudged: int, score: str) -> list[bool]:
    """Which of ``items``' packed ``score`` (``total`` / ``verdict``) changes when candidate ``nudged``'s SR
    output row moves (the row is restored afterwards)."""
    with torch.no_grad():
        before = getattr(model(**pack_candidates(model, [row], [items])), score)[0]
        original = model.sr.output.weight[items[nudged]].clone()
        model.sr.output.weight[items[nudged]] += 5.0
        after = getattr(model(**pack_candidates(model, [row], [items])), score)[0]
        model.sr.output.weight[items[nudged]] = original
    return ((before - after).abs() > 1e-5).tolist()


@pytest.fixture(params=["start", "end"])
def verdict_model(evidence_model, monkeypatch, request) -> LlaraModel:
    """``evidence_model`` ranking by verdicts (as training with ``train.listwise_score=verdict`` sets it),
    its answer tokens before or after the titles (``model.answer_token_at``)."""
    monkeypatch.setitem(evidence_model.info, "rank_score", "verdict")
    monkeypatch.setitem(evidence_model.info, "answer_token_at", request.param)
    return evidence_model


def target_index(rows: list[dict]) -> torch.Tensor:
    return torch.tensor([list(row["candidates"]).index(row["target"]) for row in rows])


@pytest.mark.parametrize("score", ["mean", "sum"])
def test_listwise_equals_a_naive_per_candidate_computation(evidence_model, rows, score) -> None:
    ctx = context(rows, objective="listwise", listwise_score=score, temperature=0.5, sft_weight=0.3)
    got = get_objective("listwise")(evidence_model, evidence_model, rows, ctx).loss
    total, mean = naive_scores(evidence_model, rows)
    target = target_index(rows)
    logits = (mean if score == "mean" else total) / 0.5
    sft = -mean.gather(1, target[:, None]).mean()
    expected = F.cross_entropy(logits, target) + 0.3 * sft
    assert abs(float(got) - float(expected)) < 1e-4


def test_listwise_verdict_equals_a_naive_per_candidate_computation(verdict_model, rows) -> None:
    ctx = context(rows, objective="listwise", listwise_score="verdict", temperature=0.5, sft_weight=0.3)
    got = get_objective("listwise")(verdict_model, verdict_model, rows, ctx).loss
    naive = score_candidates_naive(verdict_model, rows)
    verdict, mean = torch.tensor(np.stack(naive.verdict)), torch.tensor(np.stack(naive.mean))
    assert verdict.std() > 0
    target = target_index(rows)
    expected = F.cross_entropy(verdict / 0.5, target) - 0.3 * mean.gather(1, target[:, None]).mean()
    assert abs(float(got) - float(expected)) < 1e-4


def test_verdicts_rank_like_the_naive_scorer_and_change_only_their_own_candidate(verdict_model, rows) -> None:
    packed = score_candidates(verdict_model, rows)
    naive = score_candidates_naive(verdict_model, rows)
    for got, expected in zip(packed.ranking("verdict"), naive.verdict, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    items = list(rows[0]["candidates"][:4])
    assert scores_moved_by_nudging(verdict_model, rows[0], items, 1, "verdict") == [False, True, False, False]


def test_verdict_training_sends_gradients_to_lora_and_the_answer_projector(verdict_model, rows) -> None:
    verdict_model.zero_grad()
    ctx = context(rows, objective="listwise", listwise_score="verdict")
    get_objective("listwise")(verdict_model, verdict_model, rows, ctx).loss.backward()
    grads = {n: p.grad for n, p in verdict_model.named_parameters() if p.requires_grad}
    for prefix in ("lora_", "answer_projector.", "user_projector."):
        assert any(prefix in n and g is not None and g.abs().sum() > 0 for n, g in grads.items()), prefix
    verdict_model.zero_grad()


def test_a_verdict_model_keeps_ranking_by_verdicts_after_save_load_and_in_serving(verdict_model, rows, tiny_data, tmp_path) -> None:
    export = verdict_model.save(tmp_path / "export")
    loaded = LlaraModel.load(export)
    assert loaded.rank_score == "verdict" and loaded.answer_token_at == verdict_model.answer_token_at
    got = score_candidates(loaded, rows).ranking("verdict")
    for e, g in zip(score_candidates(verdict_model, rows).verdict, got, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
    assert_serving_ranks_like(export, got[0], rows[0], tiny_data)


def test_sdpo_equals_the_softmax_dpo_formula_on_naive_scores(evidence_model, rows) -> None:
    ctx = context(rows, objective="sdpo", negatives=3, beta=0.7)
    got = get_objective("sdpo")(evidence_model, evidence_model, rows, ctx).loss
    total, _ = naive_scores(evidence_model, rows)
    reference = ctx.reference["hybrid"]
    losses = []
    for b, row in enumerate(rows):
        w = list(row["candidates"]).index(row["target"])
        d = lambda c: total[b, c] - reference[b, c]  # noqa: E731
        negatives = negative_columns(row, 3, ctx.config.seed, ctx.step, b)
        assert w not in negatives and len(negatives) == 3
        inner = torch.logsumexp(torch.stack([0.7 * (d(c) - d(w)) for c in negatives]), dim=0)
        losses.append(-F.logsigmoid(-inner))
    assert abs(float(got) - float(torch.stack(losses).mean())) < 1e-4


def test_sdpo_with_one_negative_is_dpo(evidence_model, rows) -> None:
    sdpo = get_objective("sdpo")(evidence_model, evidence_model, rows, context(rows, objective="sdpo", negatives=1)).loss
    dpo = get_objective("dpo")(evidence_model, evidence_model, rows, context(rows, objective="dpo")).loss
    total, _ = naive_scores(evidence_model, rows)
    reference = context(rows).reference["hybrid"]
    expected = []
    for b, row in enumerate(rows):
        w = list(row["candidates"]).index(row["target"])
        (l,) = negative_columns(row, 1, 0, 5, b)
        margin = (total[b, w] - reference[b, w]) - (total[b, l] - reference[b, l])
        expected.append(-F.logsigmoid(margin))
    assert float(sdpo) == pytest.approx(float(dpo), abs=1e-6)
    assert float(dpo) == pytest.approx(float(torch.stack(expected).mean()), abs=1e-4)


@pytest.mark.parametrize("name", ["sft", "listwise", "sdpo"])
def test_every_objective_sends_gradients_to_lora_and_every_projector(evidence_model, rows, name) -> None:
    evidence_model.zero_grad()
    objective_config = {"objective": name, "sft_weight": 1.0}
    get_objective(name)(evidence_model, evidence_model, rows, context(rows, **objective_config)).loss.backward()
    grads = {n: p.grad for n, p in evidence_model.named_parameters() if p.requires_grad}
    assert any("lora_" in n and g is not None and g.abs().sum() > 0 for n, g in grads.items())
    projectors = ("projector.", "user_projector.", "answer_projector.") if name != "sft" else ("projector.", "user_projector.")
    for prefix in projectors:
        touched = [g for n, g in grads.items() if n.startswith(prefix) and g is not None]
        assert touched and any(g.abs().sum() > 0 for g in touched), prefix
    assert all(not p.requires_grad for p in evidence_model.sr.parameters())
    evidence_model.zero_grad()


def test_packed_answers_do_not_see_each_other(evidence_model, rows) -> None:
    row = rows[0]
    first, second = list(row["candidates"][:3]), list(row["candidates"][:3])
    second[1] = int(row["candidates"][5])
    with torch.no_grad():
        a = evidence_model(**pack_candidates(evidence_model, [row], [first])).total[0]
        b = evidence_model(**pack_candidates(evidence_model, [row], [second])).total[0]
    assert float(a[1]) != pytest.approx(float(b[1]), abs=1e-4)
    torch.testing.assert_close(a[[0, 2]], b[[0, 2]], rtol=1e-5, atol=1e-5)


def test_answer_tokens_change_only_their_own_candidates_score(evidence_model, rows) -> None:
    items = list(rows[0]["candidates"][:4])
    assert scores_moved_by_nudging(evidence_model, rows[0], items, 2, "total") == [False, False, True, False]


def test_user_and_answer_tokens_survive_save_load_and_reach_serving(evidence_model, rows, tiny_data, tmp_path) -> None:
    export = evidence_model.save(tmp_path / "export")
    loaded = LlaraModel.load(export)
    assert loaded.user_token and loaded.answer_token == "interaction" and loaded.sr is not None
    assert "[UserEmb]" in loaded.tokenizer.decode(loaded.encode_prompts(rows[:1])["input_ids"][0])
    expected = score_candidates(evidence_model, rows).total
    got = score_candidates(loaded, rows).total
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
    assert_serving_ranks_like(export, got[0], rows[0], tiny_data)


def test_answer_tokens_need_a_ranking_objective(tiny_data, tiny_llama, sr_checkpoint, tmp_path) -> None:
    from llara.config import load_config
    from llara.errors import LlaraError
    from llara.training.loop import train

    config = load_config(None, [f"model.base_model={tiny_llama}", f"train.data_dir={tiny_data.root}",
                                f"train.sr_checkpoint={sr_checkpoint}", f"train.out_dir={tmp_path}",
                                "model.answer_token=item", "train.objective=sft"])
    with pytest.raises(LlaraError, match="ranking objective"):
        train(config, progress=False)
    after_title = config.model_copy(update={"model": config.model.model_copy(update={"answer_token_at": "end"}),
                                            "train": config.train.model_copy(update={"objective": "listwise"})})
    with pytest.raises(LlaraError, match="listwise_score=verdict"):
        train(after_title, progress=False)
    with pytest.raises(ValueError, match="set model.answer_token"):
        ModelConfig(answer_token_at="end")


@pytest.mark.parametrize("backbone", ["gru4rec", "caser"])
def test_user_and_answer_tokens_work_with_every_backbone(tiny_data, tiny_llama, rows, backbone, tmp_path) -> None:
    from llara.sr.checkpoint import save_sr
    from llara.sr.registry import build_sr

    torch.manual_seed(0)
    checkpoint = save_sr(build_sr(backbone, tiny_data.num_items, 64, 10), tmp_path / backbone)
    config = ModelConfig(base_model=str(tiny_llama), prompt_mode="behavior", user_token=True, answer_token="interaction")
    model = LlaraModel.from_config(config, tiny_data, checkpoint).eval()
    assert model.user_projector[0].in_features == model.sr.hidden_size()
    packed = score_candidates(model, rows).total
    naive = score_candidates_naive(model, rows).total
    for p, n in zip(packed, naive, strict=True):
        np.testing.assert_allclose(p, n, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def prior_model(tiny_data, tiny_llama: Path, sr_checkpoint: Path) -> LlaraModel:
    """Hybrid prompts, interaction answer tokens and the SR prior, ranking by verdicts; its scale set away
    from its initial 1 so that a scale lost on the way would show."""
    torch.manual_seed(0)
    config = ModelConfig(base_model=str(tiny_llama), prompt_mode="hybrid", answer_token="interaction", sr_prior=True)
    model = LlaraModel.from_config(config, tiny_data, sr_checkpoint).eval()
    model.info["rank_score"] = "verdict"
    with torch.no_grad():
        model.sr_prior.scale.fill_(1.7)
    return model


def naive_prior(model: LlaraModel, row: dict) -> np.ndarray:
    """The prior computed by hand: the backbone's score of each candidate, standardised over the row."""
    history = model.histories([row])
    scores = model.backbone.score(history, torch.tensor([list(row["candidates"])]))[0].detach().double().numpy()
    return float(model.sr_prior.scale.detach()) * (scores - scores.mean()) / scores.std()


def test_the_sr_prior_adds_the_standardised_backbone_scores_to_each_verdict(prior_model, rows) -> None:
    packed = score_candidates(prior_model, rows).ranking("verdict")
    naive = score_candidates_naive(prior_model, rows).verdict
    for got, expected in zip(packed, naive, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        prior_model.sr_prior.scale.fill_(0.0)
        bare = score_candidates(prior_model, rows).ranking("verdict")
        prior_model.sr_prior.scale.fill_(1.7)
    for row, with_prior, without in zip(rows, packed, bare, strict=True):
        np.testing.assert_allclose(with_prior - without, naive_prior(prior_model, row), rtol=1e-4, atol=1e-4)


def test_the_sr_prior_standardises_over_real_candidates_only() -> None:
    from llara.llm.prior import standardise

    scores = torch.tensor([[1.0, 2.0, 3.0, 99.0], [5.0, 5.0, 5.0, 5.0]])
    real = torch.tensor([[True, True, True, False], [True, True, True, True]])
    z = standardise(scores, real)
    expected = torch.tensor([[-1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]) * torch.tensor([[1.5**0.5], [1.0]])
    torch.testing.assert_close(z, expected)


def test_listwise_training_with_the_sr_prior_trains_its_scale(prior_model, rows) -> None:
    ctx = context(rows, objective="listwise", listwise_score="verdict", sft_weight=0.0, temperature=1.0)
    prior_model.zero_grad()
    loss = get_objective("listwise")(prior_model, prior_model, rows, ctx).loss
    naive = torch.tensor(np.stack(score_candidates_naive(prior_model, rows).verdict))
    assert abs(float(loss) - float(F.cross_entropy(naive, target_index(rows)))) < 1e-4
    loss.backward()
    assert prior_model.sr_prior.scale.grad is not None and float(prior_model.sr_prior.scale.grad.abs()) > 0
    assert any("lora_" in n and p.grad is not None for n, p in prior_model.named_parameters())
    prior_model.zero_grad()


def test_the_sr_prior_survives_save_load_and_reaches_serving(prior_model, rows, tiny_data, tmp_path) -> None:
    export = prior_model.save(tmp_path / "export")
    loaded = LlaraModel.load(export)
    assert float(loaded.sr_prior.scale) == pytest.approx(1.7)
    got = score_candidates(loaded, rows).ranking("verdict")
    for e, g in zip(score_candidates(prior_model, rows).verdict, got, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
    assert_serving_ranks_like(export, got[0], rows[0], tiny_data)
    (export / "sr_prior.safetensors").unlink()
    with pytest.raises(LlaraError, match="sr_prior.safetensors is missing from the export"):
        LlaraModel.load(export)  # the recorded file list names it first
    with pytest.raises(LlaraError, match="sr_prior.safetensors is missing: it holds the SR prior"):
        LlaraModel.load(export, verify=False)  # the loader's own check, for unverified (older) exports


def test_the_sr_prior_needs_a_backbone_and_verdicts(tiny_data, tiny_llama, sr_checkpoint, tmp_path) -> None:
    from llara.config import load_config
    from llara.training.loop import train

    with pytest.raises(LlaraError, match="model.sr_prior read the SR backbone: set train.sr_checkpoint"):
        LlaraModel.from_config(ModelConfig(base_model=str(tiny_llama), prompt_mode="text", sr_prior=True), tiny_data)
    config = load_config(None, [f"model.base_model={tiny_llama}", f"train.data_dir={tiny_data.root}",
                                f"train.sr_checkpoint={sr_checkpoint}", f"train.out_dir={tmp_path}",
                                "model.sr_prior=true", "train.objective=listwise"])
    with pytest.raises(LlaraError, match="model.sr_prior is added to the verdicts"):
        train(config, progress=False)
