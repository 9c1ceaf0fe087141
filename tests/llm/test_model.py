"""LlaraModel: placeholders, vectorised injection, answer-only labels, export round trip, clear errors."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from helpers import logits_of

from llara.llm import prompts
from llara.config import ModelConfig
from llara.errors import LlaraError
from llara.llm.loader import load_base_model
from llara.llm.export import EMBEDDINGS_FILE
from llara.llm.model import LlaraModel
from llara.llm.tokens import IGNORE_INDEX

SR_DIM = 64


@pytest.fixture(scope="module")
def embeddings(tiny_data) -> torch.Tensor:
    return torch.randn(tiny_data.num_items, SR_DIM, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def model(tiny_llama: Path, tiny_data, embeddings: torch.Tensor) -> LlaraModel:
    torch.manual_seed(0)
    return LlaraModel.from_config(ModelConfig(base_model=str(tiny_llama)), tiny_data, item_embeddings=embeddings)


@pytest.fixture(scope="module")
def rows(tiny_data) -> list[dict]:
    return tiny_data.split("train").iloc[[0, 5, 50, 200]].to_dict("records")


def test_tiny_llama_loads_as_an_ordinary_model_folder(tiny_llama: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    llm, tokenizer = load_base_model(str(tiny_llama))
    assert llm.config.num_hidden_layers == 2 and llm.config.hidden_size == 64
    assert tokenizer.pad_token is not None and tokenizer.padding_side == "left"
    assert AutoModelForCausalLM.from_pretrained(tiny_llama).config.vocab_size == len(AutoTokenizer.from_pretrained(tiny_llama))


def test_unknown_base_model_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LlaraError, match="does not exist"):
        load_base_model(str(tmp_path / "no-such-model"))
    with pytest.raises(LlaraError, match="config.json"):
        load_base_model(str(tmp_path))


def test_placeholders_are_added_as_distinct_single_tokens(model: LlaraModel) -> None:
    assert len(set(model.placeholder_ids)) == len(prompts.PLACEHOLDER_TOKENS)
    history_id = model.token_ids[prompts.HISTORY_TOKEN]
    assert model.llm.get_input_embeddings().weight.shape[0] == len(model.tokenizer)
    assert model.tokenizer(prompts.HISTORY_TOKEN, add_special_tokens=False)["input_ids"] == [history_id]


@pytest.mark.parametrize("side", ["left", "right"])
def test_behavior_ids_name_each_placeholder_item_in_order(model: LlaraModel, rows: list[dict], side: str) -> None:
    batch = model.encode_prompts(rows, mode="hybrid", padding_side=side)
    history_id, candidate_id = (model.token_ids[token] for token in prompts.ITEM_TOKENS)
    for b, row in enumerate(rows):
        ids, behavior = batch["input_ids"][b], batch["behavior_ids"][b]
        assert behavior[ids == history_id].tolist() == list(row["history"])
        assert behavior[ids == candidate_id].tolist() == list(row["candidates"])
        assert (behavior[(ids != history_id) & (ids != candidate_id)] == -1).all()
    pads = batch["attention_mask"] == 0
    edge = batch["attention_mask"][:, 0] if side == "left" else batch["attention_mask"][:, -1]
    assert pads.any() and (edge == 0).any()


def test_text_prompts_hold_no_behavioral_tokens(model: LlaraModel, rows: list[dict]) -> None:
    batch = model.encode_prompts(rows, mode="text")
    assert (batch["behavior_ids"] == -1).all()


def test_injection_matches_a_per_position_reference(model: LlaraModel, rows: list[dict], embeddings) -> None:
    batch = model.encode_prompts(rows, mode="hybrid")
    with torch.no_grad():
        injected = model.input_embeddings(batch["input_ids"], batch["behavior_ids"])
        expected = model.llm.get_input_embeddings()(batch["input_ids"]).clone()
        for b, position in (batch["behavior_ids"] >= 0).nonzero().tolist():
            expected[b, position] = model.projector(embeddings[batch["behavior_ids"][b, position]])
    torch.testing.assert_close(injected, expected)
    assert not torch.equal(injected, model.llm.get_input_embeddings()(batch["input_ids"]))


def test_labels_cover_the_answer_tokens_only(model: LlaraModel, rows: list[dict]) -> None:
    batch = model.encode_training(rows, mode="hybrid")
    for b, row in enumerate(rows):
        labels = batch["labels"][b]
        answer = model.tokenizer.decode(labels[labels != IGNORE_INDEX])
        assert answer == model.answer_text(row["target"]) + model.tokenizer.eos_token
        assert (batch["attention_mask"][b, 0] == 1) and (labels[batch["attention_mask"][b] == 0] == IGNORE_INDEX).all()


def test_loss_backpropagates_into_lora_and_projector_only(model: LlaraModel, rows: list[dict]) -> None:
    model.zero_grad()
    model(**model.encode_training(rows, mode="hybrid")).loss.backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("projector.") for n in trainable)
    assert model.projector[0].weight.grad.abs().sum() > 0
    assert model.llm.get_input_embeddings().weight.grad is None
    model.zero_grad()


def test_save_and_load_reproduce_the_trained_model(model: LlaraModel, rows: list[dict], tmp_path: Path) -> None:
    trained = copy.deepcopy(model)  # the module's model stays as the other tests expect it
    with torch.no_grad():
        for parameter in trained.parameters():
            if parameter.requires_grad:
                parameter.add_(0.05 * torch.randn_like(parameter))
    batch = trained.encode_training(rows)
    trained.eval()
    with torch.no_grad():
        before = logits_of(trained, batch)
    loaded = LlaraModel.load(trained.save(tmp_path / "export"))
    with torch.no_grad():
        after = logits_of(loaded, batch)
    torch.testing.assert_close(after, before)
    assert (loaded.prompt_mode, loaded.domain, loaded.titles) == (trained.prompt_mode, trained.domain, trained.titles)
    assert loaded.info["data_hash"] == trained.info["data_hash"]


def test_an_export_without_the_embeddings_its_projector_reads_is_a_clear_error(model: LlaraModel, tmp_path) -> None:
    export = model.save(tmp_path / "export")
    (export / EMBEDDINGS_FILE).unlink()
    with pytest.raises(LlaraError, match=f"{EMBEDDINGS_FILE} is missing from the export"):
        LlaraModel.load(export)  # the recorded file list names it first
    with pytest.raises(LlaraError, match="incomplete"):
        LlaraModel.load(export, verify=False)  # the loader's own check, for unverified (older) exports


def test_zero_shot_text_model_needs_no_sr_embeddings(tiny_llama: Path, tiny_data, rows: list[dict]) -> None:
    config = ModelConfig(base_model=str(tiny_llama), prompt_mode="text")
    zero_shot = LlaraModel.from_config(config, tiny_data, lora=False)
    assert zero_shot.projector is None
    logits = zero_shot(**zero_shot.encode_prompts(rows)).logits
    assert torch.isfinite(logits).all()
    with pytest.raises(LlaraError, match="no projector"):
        zero_shot(**zero_shot.encode_prompts(rows, mode="hybrid"))


def test_item_count_mismatch_and_missing_embeddings_are_clear_errors(tiny_llama: Path, tiny_data) -> None:
    config = ModelConfig(base_model=str(tiny_llama))
    with pytest.raises(LlaraError, match=f"data has {tiny_data.num_items} items"):
        LlaraModel.from_config(config, tiny_data, item_embeddings=torch.zeros(tiny_data.num_items + 3, SR_DIM))
    with pytest.raises(LlaraError, match="sr_checkpoint"):
        LlaraModel.from_config(config, tiny_data)
