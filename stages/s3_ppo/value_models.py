"""Reward models and critics: sequence classifiers read per token, the way PPO reads them.

A reward-model checkpoint is a Hugging Face `*ForSequenceClassification` folder with `num_labels=1` and a bias-free
linear head `score` (docs/artifacts.md, s2). PPO reads it exactly like OpenRLHF does: position ids from the
attention mask, the value at the last position whose mask is 1. That is the EOS the policy emitted when it stopped,
the token the RM was trained to score (`rlhf_stack.core.chat`); a pad token the policy happened to sample is read as an
ordinary token, not skipped. The critic is the same architecture read at every response position.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from rlhf_stack.core.errors import ArtifactError

HEAD = "score"  # the value head's name in the checkpoint contract


def check_reward_checkpoint(path: Path) -> None:
    """Fail unless `path` holds a checkpoint with a trained bias-free `score` head of shape [1, hidden_size].

    transformers would load a checkpoint without that head silently, with a random head; so would OpenRLHF.

    Raises:
        ArtifactError: naming the folder and what is wrong.
    """
    config_file = path / "config.json"
    if not config_file.exists():
        raise ArtifactError(f"{path} is not a reward-model checkpoint: it has no config.json")
    config = json.loads(config_file.read_text())
    prefix = config.get("value_head_prefix", HEAD)
    if prefix != HEAD:
        raise ArtifactError(f"{path}: value_head_prefix is {prefix!r}; the checkpoint contract names the head "
                            f"{HEAD!r} (re-export the RM, or serve it with `rlhf-stack serve-rm`)")
    shapes = _tensor_shapes(path)
    hidden = config.get("hidden_size")
    if f"{HEAD}.weight" not in shapes:
        raise ArtifactError(f"{path} has no '{HEAD}.weight' tensor: its value head was never trained or saved")
    if f"{HEAD}.bias" in shapes:
        raise ArtifactError(f"{path} has a '{HEAD}.bias'; the contract is a bias-free head (OpenRLHF drops it)")
    if shapes[f"{HEAD}.weight"] != [1, hidden]:
        raise ArtifactError(f"{path}: '{HEAD}.weight' has shape {shapes[f'{HEAD}.weight']}, expected [1, {hidden}] "
                            "(num_labels must be 1)")


def _tensor_shapes(path: Path) -> dict[str, list[int]]:
    from safetensors import safe_open

    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise ArtifactError(f"{path} has no *.safetensors weights")
    shapes = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                shapes[key] = list(f.get_slice(key).get_shape())
    return shapes


def load_value_model(path: Path, *, dtype: torch.dtype, device: torch.device, zero_head: bool = False):
    """A sequence classifier with one output, from a reward checkpoint or (zero_head=True) any causal LM folder.

    Args:
        path: Hugging Face folder.
        dtype: parameter dtype.
        device: where to put it.
        zero_head: start the head at zero (a critic initialized from the policy predicts 0 everywhere).
    """
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype)
    head = getattr(model, HEAD, None)
    if not isinstance(head, torch.nn.Linear) or head.bias is not None:
        raise ArtifactError(f"{path}: {type(model).__name__} has no bias-free linear '{HEAD}' head")
    if zero_head:
        torch.nn.init.zeros_(head.weight)
    return model.to(device)


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """[b, L] positions counted over real tokens only, so left padding does not shift them."""
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.masked_fill(attention_mask == 0, 1)


def token_values(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[b, L] the head's output at every position of `input_ids` [b, L]."""
    backbone = getattr(model, model.base_model_prefix)
    hidden = backbone(input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask))
    return getattr(model, HEAD)(hidden.last_hidden_state).squeeze(-1).float()


@torch.no_grad()
def sequence_rewards(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[b] reward of each sequence: the value at its last attended position."""
    values = token_values(model, input_ids, attention_mask)
    last = attention_mask.size(1) - 1 - attention_mask.long().fliplr().argmax(dim=1)
    return values.gather(1, last.unsqueeze(1)).squeeze(1)


def write_scaled_reward_model(src: Path, dst: Path, scale: float) -> Path:
    """Copy a reward checkpoint with its head multiplied by `scale`: rewards scale, and loading cannot undo it.

    (OpenRLHF's own normalization keeps mean/std in buffers that 0.11.2 corrupts on load; a bias-free head can
    carry a scale but not a shift, and a shift cancels in every advantage estimator anyway.)
    """
    from safetensors.torch import load_file, save_file

    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    for file in sorted(dst.glob("*.safetensors")):
        tensors = load_file(str(file))
        if f"{HEAD}.weight" in tensors:
            tensors[f"{HEAD}.weight"] = tensors[f"{HEAD}.weight"] * scale
            save_file(tensors, str(file), metadata={"format": "pt"})
    return dst
