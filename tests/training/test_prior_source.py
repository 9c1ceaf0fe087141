"""The SR prior read from another recommender than the tokens' backbone (train.prior_checkpoint)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from llara.config import ModelConfig, SRConfig
from llara.errors import LlaraError
from llara.evaluation.ranking import score_candidates, score_candidates_naive
from llara.llm.export import PRIOR_SR_DIR
from llara.llm.model import LlaraModel
from llara.sr.train import train_sr

from helpers import assert_serving_ranks_like


@pytest.fixture(scope="module")
def itemknn(tiny_data, tmp_path_factory) -> Path:
    return train_sr(SRConfig(model="itemknn"), tiny_data.root, tmp_path_factory.mktemp("knn") / "itemknn", progress=False)


@pytest.fixture(scope="module")
def rows(tiny_data) -> list[dict]:
    return tiny_data.split("val").head(3).to_dict("records")


def _verdict_model(config: ModelConfig, tiny_data, sr_checkpoint, prior_checkpoint) -> LlaraModel:
    torch.manual_seed(0)
    model = LlaraModel.from_config(config, tiny_data, sr_checkpoint, prior_checkpoint=prior_checkpoint).eval()
    model.info["rank_score"] = "verdict"
    with torch.no_grad():
        model.sr_prior.scale.fill_(1.7)
    return model


def _standardised(scores: np.ndarray) -> np.ndarray:
    return (scores - scores.mean()) / scores.std()


@pytest.fixture(scope="module")
def knn_prior_model(tiny_data, tiny_llama, sr_checkpoint, itemknn) -> LlaraModel:
    config = ModelConfig(base_model=str(tiny_llama), prompt_mode="hybrid", answer_token="interaction", sr_prior=True)
    return _verdict_model(config, tiny_data, sr_checkpoint, itemknn)


def test_the_prior_reads_the_prior_checkpoint_not_the_token_backbone(knn_prior_model, itemknn, rows) -> None:
    from llara.sr.checkpoint import load_sr

    model = knn_prior_model
    assert model.backbone.model_type == "sasrec" and model.prior_source.model_type == "itemknn"
    packed = score_candidates(model, rows).ranking("verdict")
    naive = score_candidates_naive(model, rows).verdict
    with torch.no_grad():
        model.sr_prior.scale.fill_(0.0)
        bare = score_candidates(model, rows).ranking("verdict")
        model.sr_prior.scale.fill_(1.7)
    knn = load_sr(itemknn)
    for row, got, slow, without in zip(rows, packed, naive, bare, strict=True):
        np.testing.assert_allclose(got, slow, rtol=1e-4, atol=1e-4)
        history = model.histories([row])
        scores = knn.score(history, torch.tensor([list(row["candidates"])]))[0].double().numpy()
        np.testing.assert_allclose(got - without, 1.7 * _standardised(scores), rtol=1e-4, atol=1e-4)


def test_the_prior_source_survives_save_load_and_reaches_serving(knn_prior_model, rows, tiny_data, tmp_path) -> None:
    export = knn_prior_model.save(tmp_path / "export")
    assert (export / PRIOR_SR_DIR / "model.safetensors").is_file()
    loaded = LlaraModel.load(export)
    assert loaded.prior_source.model_type == "itemknn"
    got = score_candidates(loaded, rows).ranking("verdict")
    for expected, value in zip(score_candidates(knn_prior_model, rows).ranking("verdict"), got, strict=True):
        np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-5)
    assert_serving_ranks_like(export, got[0], rows[0], tiny_data)


def test_text_prompts_can_read_a_count_model_prior_alone(tiny_data, tiny_llama, itemknn, rows) -> None:
    config = ModelConfig(base_model=str(tiny_llama), prompt_mode="text", sr_prior=True)
    model = _verdict_model(config, tiny_data, None, itemknn)
    assert model.sr is None and model.projector is None
    assert np.isfinite(np.stack(score_candidates(model, rows).ranking("verdict"))).all()


def test_count_models_cannot_make_behavioral_tokens_and_the_prior_source_needs_the_prior(
    tiny_data, tiny_llama, itemknn, sr_checkpoint
) -> None:
    behavior = ModelConfig(base_model=str(tiny_llama), prompt_mode="behavior", sr_prior=True)
    with pytest.raises(LlaraError, match="behavioral tokens need a neural backbone"):
        LlaraModel.from_config(behavior, tiny_data, itemknn)
    no_prior = ModelConfig(base_model=str(tiny_llama), prompt_mode="hybrid")
    with pytest.raises(LlaraError, match="set model.sr_prior=true or drop it"):
        LlaraModel.from_config(no_prior, tiny_data, sr_checkpoint, prior_checkpoint=itemknn)
