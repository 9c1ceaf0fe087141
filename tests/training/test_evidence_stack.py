"""Evidence from several SR backbones at once (``train.evidence_checkpoints``, ``BackboneStack``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from llara.config import ModelConfig
from llara.errors import LlaraError
from llara.evaluation.ranking import score_candidates, score_candidates_naive
from llara.evaluation.rerank import export_backbone
from llara.llm import prompts
from llara.llm.evidence import INTERACTION_SCALE, placeholder_vectors
from llara.llm.export import EVIDENCE_DIR
from llara.llm.model import LlaraModel
from llara.sr.checkpoint import save_sr
from llara.sr.registry import build_sr
from llara.sr.stack import BackboneStack

from helpers import assert_serving_ranks_like

EVIDENCE = ModelConfig(prompt_mode="behavior", user_token=True, answer_token="interaction")


@pytest.fixture(scope="module")
def extra_backbones(tiny_data, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A GRU4Rec (dim 32) and a Caser (dim 48, max_len 6) over the tiny data's items."""
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("evidence")
    return [
        save_sr(build_sr("gru4rec", tiny_data.num_items, 32, 10), folder / "gru4rec"),
        save_sr(build_sr("caser", tiny_data.num_items, 48, 6), folder / "caser"),
    ]


@pytest.fixture(scope="module")
def stacked(tiny_data, tiny_llama: Path, sr_checkpoint: Path, extra_backbones: list[Path]) -> LlaraModel:
    torch.manual_seed(0)
    config = EVIDENCE.model_copy(update={"base_model": str(tiny_llama)})
    return LlaraModel.from_config(config, tiny_data, sr_checkpoint, evidence_checkpoints=extra_backbones).eval()


@pytest.fixture(scope="module")
def rows(tiny_data) -> list[dict]:
    return tiny_data.split("train").head(3).to_dict("records")


def test_the_stack_concatenates_each_backbones_state_and_score_terms(stacked: LlaraModel, rows) -> None:
    stack = stacked.sr
    assert isinstance(stack, BackboneStack) and [m.model_type for m in stack.members] == ["sasrec", "gru4rec", "caser"]
    assert stacked.answer_projector[0].in_features == stack.hidden_size() == stacked.user_projector[0].in_features
    history = stacked.histories(rows)
    items = torch.tensor([list(row["candidates"][:5]) for row in rows])
    with torch.no_grad():
        terms = stack.hidden(history)[:, None, :] * stack.output_rows(items)
        start = 0
        for member in stack.members:
            width = member.hidden_size()
            block = terms[..., start : start + width].sum(-1) + member.output.bias[items]
            torch.testing.assert_close(block, member.score(history, items))  # each block sums to its own score
            start += width


def test_answer_tokens_carry_every_backbones_terms(stacked: LlaraModel, rows) -> None:
    row, item = rows[0], int(rows[0]["candidates"][0])
    history = stacked.histories([row])
    with torch.no_grad():
        vectors = placeholder_vectors(
            stacked, torch.tensor([stacked.token_ids[prompts.ANSWER_TOKEN]]), torch.tensor([item]), torch.tensor([0]),
            history,
        )
        state = torch.cat([m.hidden(history) for m in stacked.sr.members], -1)
        rows_ = torch.cat([m.output.weight[item] for m in stacked.sr.members], -1)
        expected = stacked.answer_projector(INTERACTION_SCALE * state[0] * rows_)
    torch.testing.assert_close(vectors[0], expected)


def test_packed_scores_match_the_naive_reference(stacked: LlaraModel, rows) -> None:
    packed = score_candidates(stacked, rows).total
    naive = score_candidates_naive(stacked, rows).total
    for p, n in zip(packed, naive, strict=True):
        np.testing.assert_allclose(p, n, rtol=1e-4, atol=1e-4)


def test_the_stack_survives_save_load_and_reaches_serving(stacked: LlaraModel, rows, tiny_data, tmp_path) -> None:
    export = stacked.save(tmp_path / "export")
    assert sorted(p.name for p in (export / EVIDENCE_DIR).iterdir()) == ["1", "2"]
    loaded = LlaraModel.load(export)
    assert [m.model_type for m in loaded.sr.members] == ["sasrec", "gru4rec", "caser"]
    assert export_backbone(loaded) is loaded.sr.members[0]  # the primary backbone retrieves
    expected = score_candidates(stacked, rows).total
    got = score_candidates(loaded, rows).total
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
    assert_serving_ranks_like(export, got[0], rows[0], tiny_data)


def test_evidence_backbones_without_evidence_tokens_are_a_clear_error(
    tiny_data, tiny_llama: Path, sr_checkpoint: Path, extra_backbones: list[Path]
) -> None:
    config = ModelConfig(base_model=str(tiny_llama), prompt_mode="behavior", answer_token="item")
    with pytest.raises(LlaraError, match="evidence_checkpoints"):
        LlaraModel.from_config(config, tiny_data, sr_checkpoint, evidence_checkpoints=extra_backbones)


def test_backbones_over_other_items_cannot_stack(tiny_data) -> None:
    with pytest.raises(LlaraError, match="same items"):
        BackboneStack([build_sr("sasrec", tiny_data.num_items, 16, 5), build_sr("gru4rec", tiny_data.num_items + 1, 16, 5)])
