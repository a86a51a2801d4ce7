"""Writes the trained reward model as the checkpoint OpenRLHF's PPO loads unchanged (OPENRLHF.md §2.5).

A Hugging Face `*ForSequenceClassification` folder: num_labels=1, bias-free head `score` [1, hidden], safetensors,
the policy's tokenizer with pad != EOS, `value_head_prefix: "score"` in config.json. Nothing is left in place
unless it checks out: the head must differ from its initialization, the files must hold exactly that head, and
the reloaded model must give the trained model's rewards.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from rlhf_stack.core.errors import RlhfStackError
from stages.s2_distill.batching import pad_rows

HEAD = "score"
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


class ExportError(RlhfStackError):
    """The trained reward model cannot be written as a valid checkpoint."""


def to_sequence_classifier_keys(state: dict[str, torch.Tensor], backbone_prefix: str,
                                target_prefix: str) -> dict[str, torch.Tensor]:
    """Student keys (`lm.model.*`, `score.weight`, LM head) -> seq-cls keys (`model.*`, `score.weight`)."""
    out = {target_prefix + k[len(backbone_prefix):]: v for k, v in state.items() if k.startswith(backbone_prefix)}
    out[f"{HEAD}.weight"] = state[f"{HEAD}.weight"]
    return out


def export_reward_model(state: dict[str, torch.Tensor], head_init: torch.Tensor, *, model_dir: Path,
                        tokenizer: Any, out_dir: Path, dtype: str, backbone_prefix: str,
                        verify_rows: list[list[int]], expected_rewards: list[float]) -> dict[str, Any]:
    """Writes and verifies the checkpoint; returns what the manifest should record about it.

    Args:
        state: the student's full state dict (keys as in RewardStudent).
        head_init: the head's weights before training, [1, hidden].
        model_dir: the base model (its config is the starting point).
        tokenizer: the student tokenizer (pad != EOS).
        out_dir: the checkpoint folder to write.
        dtype: bf16 | fp32, the weights' dtype on disk.
        backbone_prefix: key prefix of the backbone in `state`.
        verify_rows: token sequences (each ending in EOS) to compare rewards on.
        expected_rewards: the trained model's rewards for them.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification

    head = state[f"{HEAD}.weight"]
    if torch.equal(head.float().cpu(), head_init.float().cpu()):
        raise ExportError("the reward head is unchanged since initialization; refusing to export an untrained "
                          "head (OpenRLHF would load it without complaint). Train for at least one step with a "
                          "non-zero learning rate")
    config = AutoConfig.from_pretrained(model_dir)
    config.num_labels = 1
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.eos_token_id
    config.value_head_prefix = HEAD
    config.use_cache = False
    model = AutoModelForSequenceClassification.from_config(config, dtype=DTYPES[dtype])
    weights = to_sequence_classifier_keys(state, backbone_prefix, model.base_model_prefix + ".")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ExportError(f"the student's weights do not fit {type(model).__name__}: missing {missing[:5]}, "
                          f"unexpected {unexpected[:5]}")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    try:
        return verify_checkpoint(out_dir, weights[f"{HEAD}.weight"], verify_rows, expected_rewards, dtype)
    except ExportError:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise


def verify_checkpoint(folder: Path, head: torch.Tensor, rows: list[list[int]], expected: list[float],
                      dtype: str) -> dict[str, Any]:
    """Checks the written files against the contract and the rewards against the trained model's."""
    from safetensors import safe_open
    from transformers import AutoModelForSequenceClassification

    config = json.loads((folder / "config.json").read_text())
    if len(config.get("id2label", {})) != 1:
        raise ExportError(f"{folder}: config.json does not say num_labels=1")
    if config["pad_token_id"] == config["eos_token_id"]:
        raise ExportError(f"{folder}: pad_token_id equals eos_token_id ({config['pad_token_id']})")
    tensors = {}
    for shard in sorted(folder.glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as f:
            tensors.update({k: f.get_tensor(k) for k in f.keys() if k.startswith(HEAD + ".")})
    if set(tensors) != {f"{HEAD}.weight"}:
        raise ExportError(f"{folder}: the weights must hold exactly one head tensor '{HEAD}.weight' (no bias); "
                          f"found {sorted(tensors) or 'none'}")
    saved = tensors[f"{HEAD}.weight"]
    if tuple(saved.shape) != (1, config["hidden_size"]) or not torch.equal(saved, head.to(saved.dtype)):
        raise ExportError(f"{folder}: '{HEAD}.weight' has shape {tuple(saved.shape)} or values other than the "
                          f"trained head [1, {config['hidden_size']}]")
    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=DTYPES[dtype]).eval()
    max_error = 0.0
    if rows:
        ids, mask = pad_rows(rows, config["pad_token_id"])
        with torch.no_grad():
            got = model(input_ids=ids, attention_mask=mask).logits.squeeze(-1).float()
        want = torch.tensor(expected, dtype=torch.float32)
        error = (got - want).abs()
        max_error = float(error.max())
        atol, rtol = (5e-2, 5e-2) if dtype != "fp32" else (1e-3, 1e-3)
        if bool((error > atol + rtol * want.abs()).any()):
            raise ExportError(f"{folder}: the reloaded checkpoint's rewards {got.tolist()} differ from the "
                              f"trained model's {want.tolist()}")
    return {"hidden_size": config["hidden_size"], "dtype": dtype, "verified_sequences": len(rows),
            "verify_max_abs_error": max_error}
