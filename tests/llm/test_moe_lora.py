"""MoE-LoRA (iLoRA): K = 1 is plain LoRA, per-sequence gate weights, export round trip, clear errors."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from helpers import logits_of
from helpers import move_trainable_weights as perturbed
from peft import get_peft_model_state_dict

from llara.config import ModelConfig, load_config
from llara.errors import LlaraError
from llara.evaluation.generation import generate_token_ids
from llara.evaluation.ranking import score_candidates, score_candidates_naive
from llara.llm.export import ADAPTER_DIR, ADAPTER_WEIGHTS, GATE_FILE
from llara.llm.model import LlaraModel
from llara.llm.moe_lora import ExpertWeights, load_adapter_state, moe_layers


def build(tiny_llama: Path, tiny_data, sr_checkpoint: Path, **fields) -> LlaraModel:
    torch.manual_seed(0)
    config = ModelConfig(base_model=str(tiny_llama), prompt_mode="hybrid", lora_dropout=0.0, **fields)
    return LlaraModel.from_config(config, tiny_data, sr_checkpoint)


@pytest.fixture(scope="module")
def moe(tiny_llama, tiny_data, sr_checkpoint) -> LlaraModel:
    return perturbed(build(tiny_llama, tiny_data, sr_checkpoint, adapter="moe-lora", experts=4))


@pytest.fixture(scope="module")
def rows(tiny_data) -> list[dict]:
    """Four test rows with four different histories."""
    frame = tiny_data.split("test")
    return frame.loc[frame["history"].map(tuple).drop_duplicates().index[:4]].to_dict("records")


def test_one_expert_equals_plain_lora_of_the_same_rank(tiny_llama, tiny_data, sr_checkpoint, rows, tmp_path) -> None:
    plain = perturbed(build(tiny_llama, tiny_data, sr_checkpoint))
    single = build(tiny_llama, tiny_data, sr_checkpoint, adapter="moe-lora", experts=1).eval()
    peft_state = get_peft_model_state_dict(plain.llm, save_embedding_layers=False)  # <prefix><layer>.lora_A.weight
    experts = {key.removeprefix("base_model.model.").removesuffix(".weight"): value for key, value in peft_state.items()}
    load_adapter_state(single.llm, experts, tmp_path)
    single.projector.load_state_dict(plain.projector.state_dict())
    assert len(moe_layers(single.llm)) == len(experts) // 2 > 0

    batch = single.encode_training(rows)  # with the histories its gate reads; plain LoRA ignores them
    with torch.no_grad():
        expected, got = logits_of(plain, batch), logits_of(single, batch)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    base = plain.llm.get_base_model()
    with torch.no_grad(), plain.llm.disable_adapter():
        unadapted = base(inputs_embeds=plain.input_embeddings(batch["input_ids"], batch["behavior_ids"])).logits
    assert (unadapted - expected).abs().max() > 1e-3  # the copied LoRA weights do change the outputs


def test_gate_weights_sum_to_one_and_differ_between_histories(moe: LlaraModel, rows: list[dict]) -> None:
    histories = moe.histories(rows)
    assert len({tuple(h.tolist()) for h in histories}) == len(rows)
    with torch.no_grad():
        weights = moe.gate_weights(histories)
    assert weights.shape == (len(rows), 4) and bool((weights > 0).all())
    torch.testing.assert_close(weights.sum(-1), torch.ones(len(rows)))
    distances = torch.cdist(weights, weights) + torch.eye(len(rows))
    assert float(distances.min()) > 1e-3  # every pair of rows gets its own mixture


def test_each_row_uses_its_own_gate_weights_in_every_scoring_layout(moe: LlaraModel, rows: list[dict]) -> None:
    naive = score_candidates_naive(moe, rows)  # one row (and one candidate) per forward pass
    for method in ("packed", "expanded"):
        batched = score_candidates(moe, rows, batch_size=len(rows), method=method)
        for got, expected in zip(batched.total, naive.total, strict=True):
            assert got == pytest.approx(expected, rel=1e-4, abs=1e-4)
    with torch.no_grad(), moe.gated(moe.histories(rows[:1])):
        single = logits_of(moe, moe.encode_training(rows[:1]))  # nested blocks: the inner weights apply
    with torch.no_grad():
        together = logits_of(moe, moe.encode_training(rows[:2], mode="hybrid"))
    width = single.shape[1]
    torch.testing.assert_close(together[0, :width], single[0], rtol=1e-4, atol=1e-4)


def test_export_and_load_round_trip(moe: LlaraModel, rows: list[dict], tiny_llama, tiny_data, sr_checkpoint, tmp_path) -> None:
    export = moe.save(tmp_path / "export")
    assert (export / ADAPTER_DIR / ADAPTER_WEIGHTS).is_file() and (export / GATE_FILE).is_file()
    loaded = LlaraModel.load(export)
    assert loaded.info["lora"]["adapter"] == "moe-lora" and loaded.info["lora"]["experts"] == 4
    batch = moe.encode_training(rows)
    with torch.no_grad():
        torch.testing.assert_close(logits_of(loaded, batch), logits_of(moe, batch))
        torch.testing.assert_close(loaded.gate_weights(loaded.histories(rows)), moe.gate_weights(moe.histories(rows)))
    assert generate_token_ids(loaded, rows, batch_size=2) == generate_token_ids(moe, rows, batch_size=4)

    started = build(tiny_llama, tiny_data, sr_checkpoint, adapter="moe-lora", experts=4).eval()
    started.load_trained(export)  # how a later stage starts from this export (train.init_from)
    with torch.no_grad():
        torch.testing.assert_close(logits_of(started, batch), logits_of(moe, batch))


def test_a_damaged_or_mismatched_export_is_a_clear_error(moe: LlaraModel, tiny_llama, tiny_data, sr_checkpoint, tmp_path) -> None:
    export = moe.save(tmp_path / "export")
    other = build(tiny_llama, tiny_data, sr_checkpoint, adapter="moe-lora", experts=2)
    with pytest.raises(LlaraError, match="another base model or LoRA shape"):
        other.load_trained(export)
    (export / GATE_FILE).unlink()
    with pytest.raises(LlaraError, match="gate"):
        LlaraModel.load(export)
    (export / ADAPTER_DIR / ADAPTER_WEIGHTS).unlink()
    with pytest.raises(LlaraError, match="adapter_model.safetensors is missing"):
        LlaraModel.load(export)


def test_gradient_checkpointing_recomputes_with_the_same_gate_weights(tiny_llama, tiny_data, sr_checkpoint, rows) -> None:
    grads = []
    for checkpointing in (False, True):
        model = perturbed(build(tiny_llama, tiny_data, sr_checkpoint, adapter="moe-lora", experts=2,
                               gradient_checkpointing=checkpointing)).train()
        model(**model.encode_training(rows)).loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and any(name.startswith("gate.") for name in grads[0])
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-4, atol=1e-6)


def test_layers_outside_a_gated_block_refuse_to_guess(moe: LlaraModel, rows: list[dict]) -> None:
    batch = moe.encode_training(rows)
    with pytest.raises(LlaraError, match="without gate weights"), torch.no_grad():
        moe.llm(input_ids=batch["input_ids"])
    with pytest.raises(LlaraError, match="set for 1 rows"), torch.no_grad(), moe.gated(moe.histories(rows[:1])):
        moe.llm(input_ids=batch["input_ids"])


def test_expert_weights_are_per_thread_and_always_cleared() -> None:
    mixture, barrier, seen = ExpertWeights(), threading.Barrier(2), {}

    def worker(index: int) -> None:
        with mixture.use(torch.full((1, 2), float(index))):
            barrier.wait()  # both threads hold their weights at the same time
            seen[index] = float(mixture.current(1)[0, 0])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {0: 0.0, 1: 1.0}
    with pytest.raises(RuntimeError), mixture.use(torch.ones(1, 2)):
        raise RuntimeError("a failing forward pass")
    with pytest.raises(LlaraError, match="without gate weights"):
        mixture.current(1)


def test_rank_must_split_across_experts_and_the_gate_needs_the_sr_backbone(tiny_llama, tiny_data) -> None:
    with pytest.raises(LlaraError, match="lora_r to be a multiple of experts"):
        load_config(None, ["model.adapter=moe-lora", "model.lora_r=8", "model.experts=3"])
    config = ModelConfig(base_model=str(tiny_llama), prompt_mode="text", adapter="moe-lora")
    with pytest.raises(LlaraError, match="moe-lora need an SR backbone"):
        LlaraModel.from_config(config, tiny_data)
