"""Training throughput of LLaRA (behavioral-token injection) against a plain LoRA step, same token batches.

Both arms run the same LoRA model on the same hybrid-prompt micro-batches (prompt + answer, right
padded). The LLaRA arm builds ``inputs_embeds`` with projected SR embeddings at the placeholder positions
and back-propagates into LoRA and projector; the plain arm feeds ``input_ids`` (placeholders as ordinary
tokens) to the same model. Arms alternate, so drifting machine load hits both. Tokenisation is timed
apart. Usage::

    nice python benchmarks/bench_injection.py --model smollm2 --threads 2 --micro-batch 2 --steps 4
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import torch

from llara.config import DataConfig, ModelConfig
from llara.data.prepare import prepare_dataset
from llara.llm.model import LlaraModel
from llara.paths import data_home


def timed_step(step) -> float:
    """Seconds for one forward + backward."""
    start = time.perf_counter()
    step().backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--micro-batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    data = prepare_dataset(DataConfig(source="movielens"), data_home() / "bench" / "movielens")
    embeddings = torch.randn(data.num_items, 64)
    model = LlaraModel.from_config(ModelConfig(base_model=args.model), data, item_embeddings=embeddings)
    model.train()
    frame = data.split("train").sample(n=args.micro_batch * (args.steps + 1), random_state=0)
    rows = frame.to_dict("records")

    start = time.perf_counter()
    batches = [
        model.encode_training(rows[i : i + args.micro_batch], mode="hybrid")
        for i in range(0, len(rows), args.micro_batch)
    ]
    encode_s = time.perf_counter() - start

    llara_s, plain_s, tokens = [], [], []
    for index, batch in enumerate(batches):
        llara = timed_step(lambda b=batch: model(**b).loss)
        plain = timed_step(  # the same loss computation (output head on the answer positions only), no injection
            lambda b=batch: model.answer_loss(
                model.llm.get_decoder()(input_ids=b["input_ids"], attention_mask=b["attention_mask"])[0], b["labels"]
            )
        )
        model.zero_grad(set_to_none=True)
        if index == 0:
            continue  # warm-up
        llara_s.append(llara)
        plain_s.append(plain)
        tokens.append(int(batch["attention_mask"].sum()))

    total_tokens = sum(tokens)
    result = {
        "model": args.model,
        "threads": args.threads,
        "micro_batch": args.micro_batch,
        "measured_steps": len(tokens),
        "tokens_per_step": statistics.mean(tokens),
        "llara_tokens_per_s": total_tokens / sum(llara_s),
        "plain_tokens_per_s": total_tokens / sum(plain_s),
        "overhead": sum(llara_s) / sum(plain_s) - 1.0,
        "median_step_s": {"llara": statistics.median(llara_s), "plain": statistics.median(plain_s)},
        "encode_ms_per_row": 1000 * encode_s / len(rows),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
