"""Generation throughput: the vLLM engine pool (one and two engines) against transformers `generate`.

    python -m bench.generation_pool [--model smollm2-135m-instruct|tiny-random-llama|PATH] [--prompts 32]
                                    [--max-new-tokens 64] [--repeats 2]

Every contender answers the same chat prompts with the same model and the same sampling (temperature 0.7, top_p
0.8). The baseline is what a user would otherwise write: one process, all cores, the prompts left-padded into one
batch through `model.generate`. Also shown: the pool's transformers backend (the same engine API as vLLM). Each
timed figure is the best of `--repeats` runs after a warm-up; engine start-up is reported apart. Prints
completion tokens/s for each, the ratio to the baseline, and the scaling from one to two vLLM engines.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

TOPICS = ["the ocean", "a city at night", "learning to cook", "old bridges", "winter birds", "a chess match",
          "the first computer", "a mountain village", "rain on a roof", "a long train ride", "bees", "a lighthouse"]


def prompts(count: int) -> list[str]:
    return [f"Write a short paragraph about {TOPICS[i % len(TOPICS)]} (take {i})." for i in range(count)]


def transformers_generate(model_dir: Path, texts: list[str], max_new_tokens: int, repeats: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlhf_stack.chat import prompt_ids, user_messages

    torch.set_num_threads(os.cpu_count() or 1)
    start = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto").eval()
    startup = time.perf_counter() - start
    ids = [prompt_ids(tok, user_messages(t)) for t in texts]
    width = max(map(len, ids))
    pad = tok.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids])
    mask = (torch.arange(width)[None, :] >= torch.tensor([width - len(x) for x in ids])[:, None]).long()

    def once() -> int:
        with torch.inference_mode():
            out = model.generate(input_ids=input_ids, attention_mask=mask, do_sample=True, temperature=0.7,
                                 top_p=0.8, max_new_tokens=max_new_tokens, pad_token_id=pad,
                                 eos_token_id=tok.eos_token_id)
        new = out[:, width:]
        return int(((new != pad) & (new != tok.eos_token_id)).sum() + (new == tok.eos_token_id).any(-1).sum())

    return {"startup_s": startup, **timed(once, repeats)}


def pool(model_dir: Path, texts: list[str], max_new_tokens: int, repeats: int, backend: str, engines: int) -> dict:
    from ray_cluster.engine_config import EngineConfig
    from ray_cluster.generation import GenerationRequest, Sampling, open_backend
    from rlhf_stack.sections import ClusterConfig

    cpus = (os.cpu_count() or 1) / engines
    cfg = EngineConfig(backend=backend, num_engines=engines, cpus_per_engine=cpus, max_model_len=1024,
                       max_num_seqs=len(texts))
    sampling = Sampling(max_new_tokens=max_new_tokens, temperature=0.7, top_p=0.8)
    run = [0]

    def once() -> int:
        run[0] += 1  # new ids: fresh samples, no cache of earlier answers
        requests = [GenerationRequest(id=f"{run[0]}-{i}", messages=(("user", t),), sampling=sampling)
                    for i, t in enumerate(texts)]
        return sum(r.completion_tokens for r in backend_.generate(requests))

    start = time.perf_counter()
    with open_backend(model_dir, cfg, cluster=ClusterConfig(address="local", num_cpus=os.cpu_count()),
                      model_name=f"bench-{backend}") as backend_:
        startup = time.perf_counter() - start
        result = timed(once, repeats)
    return {"startup_s": startup, **result}


def timed(once, repeats: int) -> dict:
    once()  # warm-up
    best = None
    for _ in range(repeats):
        start = time.perf_counter()
        tokens = once()
        rate = tokens / (time.perf_counter() - start)
        best = rate if best is None or rate > best else best
    return {"tokens_per_s": best, "tokens": tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep the local Ray on loopback

    from ray_cluster.session import shutdown
    from rlhf_stack.models import ModelSpec, resolve_model

    model_dir = resolve_model(ModelSpec(source=args.model), Path.cwd())
    texts = prompts(args.prompts)
    load = os.getloadavg()[0]
    rows = {"transformers generate (baseline)": transformers_generate(model_dir, texts, args.max_new_tokens,
                                                                      args.repeats)}
    try:
        rows["pool, hf backend, 1 engine"] = pool(model_dir, texts, args.max_new_tokens, args.repeats, "hf", 1)
        rows["pool, vllm, 1 engine"] = pool(model_dir, texts, args.max_new_tokens, args.repeats, "vllm", 1)
        rows["pool, vllm, 2 engines"] = pool(model_dir, texts, args.max_new_tokens, args.repeats, "vllm", 2)
    finally:
        shutdown()
    base = rows["transformers generate (baseline)"]["tokens_per_s"]
    print(f"\n{args.model}: {args.prompts} prompts x <= {args.max_new_tokens} new tokens, {os.cpu_count()} cores "
          f"(load average {load:.1f} at start)")
    print(f"{'contender':<36}{'start-up s':>11}{'tokens/s':>10}{'vs baseline':>13}")
    for name, row in rows.items():
        print(f"{name:<36}{row['startup_s']:>11.1f}{row['tokens_per_s']:>10.1f}{row['tokens_per_s'] / base:>12.2f}x")
    one, two = rows["pool, vllm, 1 engine"]["tokens_per_s"], rows["pool, vllm, 2 engines"]["tokens_per_s"]
    print(f"vLLM scaling, 2 engines / 1 engine: {two / one:.2f}x")


if __name__ == "__main__":
    main()
