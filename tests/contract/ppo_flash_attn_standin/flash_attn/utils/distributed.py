"""`all_gather` with flash_attn's signature, in plain torch.distributed."""

import torch
import torch.distributed as dist


def all_gather(tensor: torch.Tensor, group=None) -> torch.Tensor:
    """Concatenation along dim 0 of `tensor` from every rank of `group` (itself when not distributed)."""
    if not dist.is_available() or not dist.is_initialized():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, tensor.contiguous(), group=group)
    return torch.cat(parts, dim=0)
