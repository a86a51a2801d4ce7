"""Handing a trainer's updated weights to a running vLLM engine: through a saved folder vs in memory.

    python -m bench.weight_sync [--model smollm2-135m-instruct|tiny-random-llama|PATH] [--repeats 3]
                                [--dtype float32|bfloat16]

One vLLM engine (a Ray actor on this machine) serves the model. Each repeat perturbs the trainer's copy, then hands
it over both ways, back to back: `save_pretrained` + the engine's in-place reload from the folder (what the local
PPO backend did), and `update_weights` (Ray's object store + vLLM's reload from an iterator, what it does now).
After each hand-over the engine's greedy answer is checked against the trainer's copy.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from ray_cluster.engine_config import EngineConfig
from ray_cluster.generation import GenerationRequest, Sampling, open_backend
from ray_cluster.session import shutdown
from rlhf_stack.core.chat import prompt_ids, user_messages
from rlhf_stack.core.models import ModelSpec, resolve_model
from rlhf_stack.core.sections import ClusterConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_model(ModelSpec(source=args.model), Path.cwd())
    cores = os.cpu_count() or 1
    model = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, args.dtype))
    tokenizer = AutoTokenizer.from_pretrained(source)
    request = GenerationRequest(id="probe", messages=(("user", "Name three colors."),),
                                sampling=Sampling(max_new_tokens=8))
    disk, memory = [], []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        folder = Path(tmp) / "served"
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        engine = EngineConfig(backend="vllm", cpus_per_engine=cores, max_model_len=1024, dtype=args.dtype)
        try:
            with open_backend(folder, engine, cluster=ClusterConfig(address="local", num_cpus=cores)) as backend:
                for repeat in range(args.repeats):
                    with torch.no_grad():
                        for p in model.parameters():
                            p.mul_(1.0 + 1e-3 * (repeat + 1))
                    start = time.perf_counter()
                    model.save_pretrained(folder)
                    backend.load_weights(str(folder))
                    disk.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    backend.update_weights(model.state_dict())
                    memory.append(time.perf_counter() - start)
                    served = list(backend.generate([request])[0].completions[0].token_ids)
                    ids = torch.tensor([prompt_ids(tokenizer, user_messages("Name three colors."))])
                    own = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=8,
                                         pad_token_id=tokenizer.pad_token_id)[0, ids.shape[1]:].tolist()
                    print(f"repeat {repeat}: folder {disk[-1]:.2f} s, memory {memory[-1]:.2f} s, engine answer "
                          f"{'matches' if served == own[:len(served)] else 'DIFFERS from'} the trainer's")
        finally:
            shutdown()
    size_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20  # a tied tensor once
    print(f"\nweight sync of {args.model} ({args.dtype}, {size_mb:.0f} MiB), {args.repeats} repeats, {cores} cores; "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(f"folder (save_pretrained + reload): {sum(disk) / len(disk):.2f} s; in memory: "
          f"{sum(memory) / len(memory):.2f} s; x{sum(disk) / sum(memory):.2f}")


if __name__ == "__main__":
    main()
