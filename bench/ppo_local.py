"""Local PPO backend speed: seconds per iteration and its phases, vLLM rollouts against transformers ones.

    python -m bench.ppo_local [--model smollm2-135m-instruct|tiny-random-llama|PATH] [--iterations 3]
                              [--prompts-per-step 8] [--samples-per-prompt 2] [--max-new-tokens 64]

Both runs train the same policy with the same RM, prompts, seed and settings; only `local.rollout_engine.backend`
differs: `hf` (transformers `generate` on the policy in-process, the baseline a user would write) or `vllm` (the
generation API's vLLM engine in a Ray actor, handed the updated weights in memory after every update). The two run
back to back in one process. The first iteration of each run is a warm-up and is not counted; the vLLM engine's
start is reported apart. Each iteration is split into rollout, scoring (policy, reference, critic and RM forward
passes), training (the updates) and weight sync. The RM is the policy's backbone with a seeded random head: its
rewards mean nothing, its cost is real. The machine's load average is printed before and after: on a shared machine
only the ratio of two back-to-back runs means something.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

from bench.bound import FORWARD_FLOPS_PER_PARAM, bound_line, probe, weights
from ray_cluster.session import shutdown
from rlhf_stack.core.hardware import usable_cpus
from rlhf_stack.core.models import ModelSpec, resolve_model
from rlhf_stack.core.sections import ClusterConfig
from stages.s3_ppo.config import PPOConfig
from stages.s3_ppo.local_backend import LocalPPO, RewardSource
from stages.s3_ppo.metrics import MetricsLog, read_metrics

PROMPTS = Path(__file__).resolve().parents[1] / "recipes" / "data" / "tiny_prompts.jsonl"


def reward_model(policy_dir: Path, out: Path) -> Path:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(policy_dir, num_labels=1)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(policy_dir).save_pretrained(out)
    return out


def prompts(count: int) -> list[str]:
    base = [json.loads(line)["prompt"] for line in PROMPTS.read_text().splitlines()]
    return [f"{base[i % len(base)]} (case {i})" for i in range(count)]


def run(engine: str, policy: Path, rm: Path, args, workdir: Path) -> dict:
    cores = usable_cpus()
    cfg = PPOConfig(policy="policy", prompts_per_step=args.prompts_per_step, samples_per_prompt=args.samples_per_prompt,
                    max_new_tokens=args.max_new_tokens, max_length_tokens=1024, actor_lr=1e-6, critic_lr=1e-6,
                    estimator=args.estimator,
                    local={"rollout_engine": {"backend": engine, "cpus_per_engine": cores, "max_model_len": 1024},
                           "dtype": args.dtype})
    out = workdir / engine
    trainer = LocalPPO(cfg, policy_dir=policy, reward=RewardSource(rm, None),
                       prompts=prompts(args.prompts_per_step * (args.iterations + 1)), work_dir=out / "_work",
                       seed=0, cluster=ClusterConfig(address="local", num_cpus=cores))
    start = time.perf_counter()
    with MetricsLog(out) as metrics:
        summary = trainer.run(metrics)
    wall = time.perf_counter() - start
    records = read_metrics(out)
    timed = records[1:]  # the first iteration warms caches up
    def mean(key: str) -> float:
        return sum(r[key] for r in timed) / len(timed)

    return {
        "engine": engine, "precision": summary["precision"]["rollout engine"],
        "rollout_tokens_per_s": sum(r["tokens_per_s"] * r["rollout_s"] for r in timed)
                                / sum(r["rollout_s"] for r in timed),
        **{key: mean(key) for key in ("rollout_s", "scoring_s", "train_s", "weight_sync_s", "iteration_s",
                                      "response_length")},
        "start_s": wall - sum(r["iteration_s"] for r in records),  # engine start and the first weight copy
    }


def machine() -> str:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in flags.splitlines() if line.startswith("model name")), "?")
    return f"{name}, {usable_cpus()} cores, AMX {'yes' if ' amx_tile' in flags else 'no'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations per engine (after one warm-up)")
    parser.add_argument("--prompts-per-step", type=int, default=8)
    parser.add_argument("--samples-per-prompt", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--dtype", choices=["auto", "fp32", "bf16"], default="auto")
    parser.add_argument("--estimator", choices=["gae", "reinforce", "group_norm", "rloo"], default="gae",
                        help="advantage estimator (gae trains a critic: two more forward passes and one backward)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    bound = probe()

    policy = resolve_model(ModelSpec(source=args.model), Path.cwd())
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-ppo-") as tmp:
        rm = reward_model(policy, Path(tmp) / "rm")
        try:
            results = [run(engine, policy, rm, args, Path(tmp)) for engine in ("hf", "vllm")]
        finally:
            shutdown()
    load_after = os.getloadavg()
    print(f"\nlocal PPO on {args.model} ({args.dtype}), {args.prompts_per_step} prompts x {args.samples_per_prompt} "
          f"samples x <= {args.max_new_tokens} new tokens per iteration, {args.iterations} timed iterations")
    print(f"machine: {machine()}; load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    print(f"{'rollout engine':<15}{'tok/s':>8}{'rollout s':>11}{'scoring s':>11}{'train s':>9}{'sync s':>8}"
          f"{'s/iteration':>13}{'start s':>9}{'resp len':>10}")
    for r in results:
        print(f"{r['engine']:<15}{r['rollout_tokens_per_s']:>8.1f}{r['rollout_s']:>11.2f}{r['scoring_s']:>11.2f}"
              f"{r['train_s']:>9.2f}{r['weight_sync_s']:>8.2f}{r['iteration_s']:>13.2f}{r['start_s']:>9.1f}"
              f"{r['response_length']:>10.1f}")
    hf, vllm = results
    trainer_s = hf["scoring_s"] + hf["train_s"]  # the same work on both sides
    print(f"vllm / hf: rollout tokens/s x{vllm['rollout_tokens_per_s'] / hf['rollout_tokens_per_s']:.2f}, "
          f"iterations per second x{hf['iteration_s'] / vllm['iteration_s']:.2f} "
          f"(upper bound with free rollouts and weight sync: x{hf['iteration_s'] / trainer_s:.2f})")
    flops_per_token = FORWARD_FLOPS_PER_PARAM * weights(policy)  # decode only
    for r in results:
        print(bound_line(f"{r['engine']} rollouts ({r['precision']})", r["rollout_tokens_per_s"] * flops_per_token,
                         r["precision"], bound))


if __name__ == "__main__":
    main()
