"""Constrained generation: always a candidate, batch-size free, and equal to free decoding where that spells one."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import run_cli

from llara.config import EvalConfig, ModelConfig
from llara.errors import LlaraError
from llara.evaluation.constrained import AnswerConstraint, build_trie, named_candidate
from llara.evaluation.evaluate import evaluate_model, split_rows
from llara.evaluation.predictions import CONSTRAINED_PROTOCOL
from llara.evaluation.generation import decode_greedy, generate_token_ids
from llara.evaluation.inference import prefill
from llara.llm.model import LlaraModel
from llara.llm.packing import answer_ids, pack_candidates


def tiny_model(tiny_llama, data, mode: str = "hybrid") -> LlaraModel:
    """A fresh tiny model; LoRA B weights are randomised so the adapter changes the outputs."""
    torch.manual_seed(0)
    model = LlaraModel.from_config(
        ModelConfig(base_model=str(tiny_llama), prompt_mode=mode), data, item_embeddings=torch.randn(data.num_items, 16)
    )
    with torch.no_grad():
        for name, param in model.llm.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    return model.eval()


def fit_answer(model: LlaraModel, row: dict, item: int, steps: int = 60) -> None:
    """Tune every LLM weight until ``item``'s answer is the model's own greedy output after ``row``'s prompt."""
    params = list(model.llm.parameters())
    for param in params:
        param.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=3e-3)
    packed = pack_candidates(model, [row], [[item]])
    for _ in range(steps):
        loss = -model(**packed).total.sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def test_the_trie_allows_exactly_the_continuations_of_the_decoded_prefix() -> None:
    answers = [[5, 6, 9], [5, 7, 9], [8, 9]]
    root = build_trie(answers)
    assert sorted(root.children) == [5, 8] and sorted(root.children[5].children) == [6, 7]
    assert root.children[5].children[7].children[9].ends == [1]
    constraint = AnswerConstraint([answers, [[3, 9]]])
    logits = torch.zeros(2, 12)
    logits[0, 11] = 9.0  # the free argmax, outside the trie
    restricted = constraint.restrict(logits)
    assert torch.isfinite(restricted).nonzero().tolist() == [[0, 5], [0, 8], [1, 3]]
    assert constraint.advance([5, 3], [True, True]) == [False, False]
    assert constraint.advance([7, 9], [True, True]) == [False, True]
    assert constraint.advance([9, 0], [True, False]) == [True, True]  # a finished row stays where it ended
    assert named_candidate(answers, [5, 7, 9]) == 1
    assert named_candidate(answers, [5, 7]) is None
    assert named_candidate([[1, 9], [1, 9]], [1, 9]) is None  # two candidates with the same answer


def test_constrained_answers_are_candidates_and_do_not_depend_on_batch_size(tiny_llama, tiny_data) -> None:
    model = tiny_model(tiny_llama, tiny_data)
    rows = split_rows(tiny_data, "test")[:8]
    rows[1] = {**rows[1], "candidates": rows[1]["candidates"][:4]}  # fewer candidates, shorter budget
    free = generate_token_ids(model, rows, batch_size=4)
    tokens = {size: generate_token_ids(model, rows, batch_size=size, constrained=True) for size in (1, 4)}
    assert tokens[1] == tokens[4]
    for row, ids in zip(rows, tokens[1], strict=True):
        assert named_candidate(answer_ids(model, row["candidates"]), ids) is not None
    # The random model's free answers name no candidate, so the constraint had to steer every row.
    assert not any(named_candidate(answer_ids(model, r["candidates"]), ids) is not None for r, ids in zip(rows, free))


def test_constrained_equals_free_generation_when_that_already_spells_a_candidate(tiny_llama, tiny_data) -> None:
    model = tiny_model(tiny_llama, tiny_data, mode="text")
    rows = split_rows(tiny_data, "test")[:6]
    fit_answer(model, rows[0], rows[0]["candidates"][3])
    free = generate_token_ids(model, rows, batch_size=3)
    constrained = generate_token_ids(model, rows, batch_size=3, constrained=True)
    spelled = [named_candidate(answer_ids(model, r["candidates"]), ids) is not None for r, ids in zip(rows, free)]
    assert free[0] == answer_ids(model, [rows[0]["candidates"][3]])[0]
    assert [c for c, s in zip(constrained, spelled) if s] == [f for f, s in zip(free, spelled) if s]


def test_constrained_protocol_is_reported_beside_generate(tiny_llama, tiny_data) -> None:
    model = tiny_model(tiny_llama, tiny_data)
    result = evaluate_model(model, tiny_data, ["generate", CONSTRAINED_PROTOCOL], max_rows=5, batch_size=2)
    assert list(result["metrics"]) == ["generate", CONSTRAINED_PROTOCOL]
    constrained = result["metrics"][CONSTRAINED_PROTOCOL]
    assert set(constrained) == {"valid_ratio", "hr@1", "hr@1_valid"}
    assert constrained["valid_ratio"]["mean"] == 1.0 and result["metrics"]["generate"]["valid_ratio"]["mean"] < 1
    with pytest.raises(LlaraError, match="beside the generate protocol"):
        evaluate_model(model, tiny_data, ["rank", CONSTRAINED_PROTOCOL])
    with pytest.raises(ValueError, match="add generate to eval.protocols"):
        EvalConfig(protocols=["rank"], constrained=True)


def test_evaluate_command_takes_constrained(tiny_llama, tiny_data, tmp_path, capsys) -> None:
    export = tiny_model(tiny_llama, tiny_data).save(tmp_path / "export")
    args = ["evaluate", "--checkpoint", str(export), "--max-rows", "2", "--constrained"]
    assert run_cli([*args, "--protocol", "generate", "--out", str(tmp_path / "o")]) == 0
    written = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert set(written["metrics"]) == {"generate", CONSTRAINED_PROTOCOL}
    assert run_cli([*args, "--protocol", "rank"]) == 1
    assert "beside the generate protocol" in capsys.readouterr().err


def test_both_decodings_share_one_prompt_pass(tiny_llama, tiny_data) -> None:
    model = tiny_model(tiny_llama, tiny_data)
    rows = split_rows(tiny_data, "test")[:3]
    prefix = prefill(model, rows)
    width = prefix.attention_mask.shape[1]
    free = decode_greedy(model, rows, prefix)
    assert prefix.cache.get_seq_length() == width  # the decoded tokens left the prompts' cache
    assert free == generate_token_ids(model, rows, batch_size=3)
    assert decode_greedy(model, rows, prefix, constrained=True) == generate_token_ids(model, rows, 3, constrained=True)
