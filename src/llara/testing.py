"""A tiny randomly initialised Llama with a small byte-level BPE tokenizer, built offline.

Tests, smoke runs and the end-to-end pipeline test use it instead of a real LLM: it is saved as an
ordinary model folder that ``load_base_model(folder)`` and ``AutoModelForCausalLM.from_pretrained``
load, and building it takes well under a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from llara.paths import atomic_dir
from llara.llm.prompts import template_corpus

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
TOKENIZER_VOCAB = 600


def create_tiny_llama(
    folder: str | Path,
    texts: Sequence[str] = (),
    hidden_size: int = 64,
    num_layers: int = 2,
    seed: int = 0,
) -> Path:
    """Write a random LlamaForCausalLM (4 heads) and a BPE tokenizer trained on ``texts`` + the templates.

    Returns ``folder``. The same arguments give the same weights and tokenizer.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    tokenizer = build_tokenizer(list(texts) + template_corpus())
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = LlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(generator_state)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return folder


def build_tokenizer(corpus: Sequence[str]):
    """A byte-level BPE ``PreTrainedTokenizerFast`` (eos and pad tokens, no bos, no chat template)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN, padding_side="left"
    )


def dry_run_inputs(folder: str | Path) -> dict[str, Path]:
    """What a dry run of the GPU reproduction (scripts/gpu_repro.sh --dry-run) ships instead of the real
    inputs: the planted-pattern prepared data, an untrained SASRec over its items and the tiny Llama.

    Returns ``{"data", "sr", "model"}`` folders under ``folder``.
    """
    import torch

    from llara.config import DataConfig
    from llara.data.prepare import prepare_dataset
    from llara.sr.checkpoint import save_sr
    from llara.sr.registry import build_sr

    folder = Path(folder)
    data = prepare_dataset(DataConfig(source="synthetic", seed=0), folder / "data")
    torch.manual_seed(0)
    sr = save_sr(build_sr("sasrec", data.num_items, 64, 10), folder / "sr")
    return {"data": data.root, "sr": Path(sr), "model": create_tiny_llama(folder / "model", data.titles)}
