"""Generation throughput: the vLLM engine pool (one and two engines) against transformers `generate`.

    python -m bench.generation_pool [--model smollm2-135m-instruct|tiny-random-llama|PATH] [--prompts 32]
                                    [--max-new-tokens 64] [--repeats 2]

Every contender answers the same chat prompts with the same model and the same sampling (temperature 0.7, top_p
0.8). The baseline is what a user would otherwise write: one process, all cores, the prompts left-padded into one
batch through `model.generate`. Also shown: the pool's transformers backend (the same engine API as vLLM). All
contenders are started and warmed up (reported apart as 'ready'), then timed in `--repeats` rounds that visit
each in turn; each figure is its best round. Prints completion tokens/s for each, the ratio to the baseline, and
the scaling from one to two vLLM engines.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from ray_cluster.engine_config import EngineConfig
from ray_cluster.generation import GenerationRequest, Sampling, open_backend
from ray_cluster.session import shutdown
from bench.bound import FORWARD_FLOPS_PER_PARAM, bound_line, probe, weights
from rlhf_stack.core.precision import resolve, torch_dtype
from rlhf_stack.core.chat import prompt_ids, user_messages
from rlhf_stack.core.hardware import usable_cpus
from rlhf_stack.core.models import ModelSpec, resolve_model
from rlhf_stack.core.sections import ClusterConfig

TOPICS = ["the ocean", "a city at night", "learning to cook", "old bridges", "winter birds", "a chess match",
          "the first computer", "a mountain village", "rain on a roof", "a long train ride", "bees", "a lighthouse"]


def prompts(count: int) -> list[str]:
    return [f"Write a short paragraph about {TOPICS[i % len(TOPICS)]} (take {i})." for i in range(count)]


class TransformersGenerate:
    """The baseline: one process, all cores, the prompts left-padded into one batch through `model.generate`."""

    def __init__(self, model_dir: Path, texts: list[str], max_new_tokens: int):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(usable_cpus())
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        # The precision the project's engines choose on this CPU (rlhf_stack/core/precision.py), not the config's.
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype(resolve("auto", "cpu")))
        self.model.eval()
        ids = [prompt_ids(self.tok, user_messages(t)) for t in texts]
        self.width = max(map(len, ids))
        pad = self.tok.pad_token_id
        self.input_ids = torch.tensor([[pad] * (self.width - len(x)) + x for x in ids])
        self.mask = (self.input_ids != pad).long()
        self.max_new_tokens = max_new_tokens

    def __call__(self) -> int:
        import torch

        tok = self.tok
        with torch.inference_mode():
            out = self.model.generate(input_ids=self.input_ids, attention_mask=self.mask, do_sample=True,
                                      temperature=0.7, top_p=0.8, max_new_tokens=self.max_new_tokens,
                                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        new = out[:, self.width:]
        # generated tokens: everything before the pad that follows a finished row, EOS included
        finished = (new == tok.eos_token_id).any(-1)
        return int(((new != tok.pad_token_id) & (new != tok.eos_token_id)).sum() + finished.sum())

    def close(self) -> None:
        pass


class Pool:
    """The generation API's engine pool with `engines` engines sharing the machine's cores."""

    def __init__(self, model_dir: Path, texts: list[str], max_new_tokens: int, backend: str, engines: int):
        cfg = EngineConfig(backend=backend, num_engines=engines, cpus_per_engine=usable_cpus() / engines,
                           max_model_len=1024, max_num_seqs=len(texts))
        sampling = Sampling(max_new_tokens=max_new_tokens, temperature=0.7, top_p=0.8)
        self.make = lambda run: [GenerationRequest(id=f"{run}-{i}", messages=(("user", t),), sampling=sampling)
                                 for i, t in enumerate(texts)]  # new ids each run: fresh samples
        self.runs = 0
        # The contenders wait idle while another is timed, so Ray may count the cores several times over.
        self._context = open_backend(model_dir, cfg, cluster=ClusterConfig(address="local", num_cpus=16),
                                     model_name=f"bench-{backend}-{engines}")
        self.backend = self._context.__enter__()

    def __call__(self) -> int:
        self.runs += 1
        return sum(r.completion_tokens for r in self.backend.generate(self.make(self.runs)))

    def close(self) -> None:
        self._context.__exit__(None, None, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep the local Ray on loopback

    model_dir = resolve_model(ModelSpec(source=args.model), Path.cwd())
    bound = probe()
    texts = prompts(args.prompts)
    load = os.getloadavg()[0]
    makers = {
        "transformers generate (baseline)": lambda: TransformersGenerate(model_dir, texts, args.max_new_tokens),
        "pool, hf backend, 1 engine": lambda: Pool(model_dir, texts, args.max_new_tokens, "hf", 1),
        "pool, vllm, 1 engine": lambda: Pool(model_dir, texts, args.max_new_tokens, "vllm", 1),
        "pool, vllm, 2 engines": lambda: Pool(model_dir, texts, args.max_new_tokens, "vllm", 2),
    }
    contenders, rows = {}, {}
    try:
        for name, make in makers.items():
            start = time.perf_counter()
            contenders[name] = make()
            contenders[name]()  # warm-up
            rows[name] = {"ready_s": time.perf_counter() - start, "tokens_per_s": 0.0}
        # Rounds over all contenders, so a busy moment of the machine does not fall on one contender only.
        for _ in range(args.repeats):
            for name, run in contenders.items():
                start = time.perf_counter()
                tokens = run()
                rows[name]["tokens_per_s"] = max(rows[name]["tokens_per_s"], tokens / (time.perf_counter() - start))
    finally:
        for run in contenders.values():
            run.close()
        shutdown()
    base = rows["transformers generate (baseline)"]["tokens_per_s"]
    print(f"\n{args.model}: {args.prompts} prompts x <= {args.max_new_tokens} new tokens, {usable_cpus()} cores "
          f"(load average {load:.1f} at start)")
    print(f"{'contender':<36}{'ready s':>11}{'tokens/s':>10}{'vs baseline':>13}  (ready: start + warm-up)")
    for name, row in rows.items():
        print(f"{name:<36}{row['ready_s']:>11.1f}{row['tokens_per_s']:>10.1f}{row['tokens_per_s'] / base:>12.2f}x")
    one, two = rows["pool, vllm, 1 engine"]["tokens_per_s"], rows["pool, vllm, 2 engines"]["tokens_per_s"]
    print(f"vLLM scaling, 2 engines / 1 engine: {two / one:.2f}x")
    flops_per_token = FORWARD_FLOPS_PER_PARAM * weights(model_dir)  # decode only: prompts are not counted
    for name, row in rows.items():
        print(bound_line(name, row["tokens_per_s"] * flops_per_token, "auto", bound))


if __name__ == "__main__":
    main()
