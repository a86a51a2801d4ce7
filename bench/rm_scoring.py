"""RM scoring throughput: the evaluate stage's length-sorted, token-budgeted batches vs a one-pair-at-a-time loop.

    python -m bench.rm_scoring [--model tiny-random-llama|smollm2-135m-instruct|PATH] [--pairs 256]

Both sides score the same pairs with the same model and the same token ids (prompt chat template, response, EOS);
the baseline is the loop a user would write: each pair as one padded batch of two through the transformers
sequence classifier. Prints pairs/s of each, their ratio, and the largest reward difference between them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from bench.bound import FORWARD_FLOPS_PER_PARAM, bound_line, probe
from rlhf_stack.core.precision import of_model
from rlhf_stack.core.models import ModelSpec, resolve_model
from stages.s4_evaluate.rm_items import RMItem
from stages.s4_evaluate.rm_scorer import encode, load_reward_model, score_items

DATA = Path(__file__).resolve().parents[1] / "stages" / "s4_evaluate" / "data"


def bench_pairs(count: int) -> list[tuple[str, str, str]]:
    """(prompt, chosen, rejected) triples of varied lengths, all distinct, from the project's stand-in sets."""
    base = []
    for line in (DATA / "rewardbench_smoke.jsonl").read_text().splitlines():
        row = json.loads(line)
        base.append((row["prompt"], row["chosen"], row["rejected"]))
    for line in (DATA / "rm_bench_smoke.jsonl").read_text().splitlines():
        row = json.loads(line)
        base += [(row["prompt"], c, r) for c, r in zip(row["chosen"], row["rejected"])]
    out = []
    for i in range(count):
        prompt, chosen, rejected = base[i % len(base)]
        repeat = 1 + (i * 7) % 6  # lengths from one to six copies of the answer
        out.append((f"{prompt} (case {i})", " ".join([chosen] * repeat), " ".join([rejected] * (7 - repeat))))
    return out


def reward_model_dir(source: str, workdir: Path) -> Path:
    """A one-label sequence classifier of the model (a seeded random head when it has none: speed only)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = resolve_model(ModelSpec(source=source), Path.cwd())
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1)
    out = workdir / "rm"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(folder).save_pretrained(out)
    return out


def ours(rm, pairs, tokens_per_batch: int) -> tuple[float, list[float]]:
    items = [RMItem(str(i), "bench", p, (c,), (r,)) for i, (p, c, r) in enumerate(pairs)]
    start = time.perf_counter()
    records, _ = score_items(rm, items, tokens_per_batch, "bench")
    return time.perf_counter() - start, [x for rec in records for x in (rec["chosen"][0], rec["rejected"][0])]


def one_pair_at_a_time(rm, pairs) -> tuple[float, list[float]]:
    import torch

    model, tok = rm.model, rm.tokenizer
    out = []
    start = time.perf_counter()
    with torch.inference_mode():
        for prompt, chosen, rejected in pairs:
            batch = tok.pad({"input_ids": [list(encode(rm, prompt, chosen)[0]), list(encode(rm, prompt, rejected)[0])]},
                            padding=True, return_tensors="pt").to(model.device)
            out += model(**batch).logits[:, 0].float().tolist()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny-random-llama")
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--tokens-per-batch", type=int, default=16384)
    parser.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32"])
    args = parser.parse_args()
    bound = probe()

    with tempfile.TemporaryDirectory() as tmp:
        rm = load_reward_model(reward_model_dir(args.model, Path(tmp)), args.dtype)
        rm.tokenizer.padding_side = "right"
        pairs = bench_pairs(args.pairs)
        ours(rm, pairs[:8], args.tokens_per_batch)  # warm-up both paths
        one_pair_at_a_time(rm, pairs[:8])
        t_ours, r_ours = ours(rm, pairs, args.tokens_per_batch)
        t_base, r_base = one_pair_at_a_time(rm, pairs)
        tokens = sum(len(encode(rm, p, c)[0]) + len(encode(rm, p, r)[0]) for p, c, r in pairs)
        flops_per_token = FORWARD_FLOPS_PER_PARAM * sum(w.numel() for w in rm.model.parameters())
        precision = of_model(rm.model)
    n = len(pairs)
    diff = max(abs(a - b) for a, b in zip(r_ours, r_base))
    print(f"model {args.model}, {n} pairs, dtype {args.dtype}, tokens_per_batch {args.tokens_per_batch}")
    print(f"  length-sorted batches   {n / t_ours:9.1f} pairs/s  ({t_ours:.2f} s)")
    print(f"  one pair at a time      {n / t_base:9.1f} pairs/s  ({t_base:.2f} s)")
    print(f"  speed-up                {t_base / t_ours:9.2f}x")
    print(f"  max |reward difference| {diff:.2e}")
    print(bound_line("  length-sorted batches", tokens / t_ours * flops_per_token, precision, bound))
    print(bound_line("  one pair at a time", tokens / t_base * flops_per_token, precision, bound))


if __name__ == "__main__":
    main()
