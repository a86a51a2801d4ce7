"""Padding helpers with flash-attn's signatures, in plain torch."""

from __future__ import annotations

import torch
from einops import rearrange

__all__ = ["index_first_axis", "pad_input", "rearrange", "unpad_input"]


def index_first_axis(values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """values [n, ...] -> values[indices] [k, ...]."""
    return values[indices]


def unpad_input(hidden: torch.Tensor, attention_mask: torch.Tensor, unused_mask: torch.Tensor | None = None):
    """[b, s, ...] with mask [b, s] -> (tokens [nnz, ...], indices [nnz], cu_seqlens [b + 1], max_seqlen, seqlens)."""
    mask = attention_mask if unused_mask is None else attention_mask + unused_mask
    seqlens = mask.sum(dim=-1, dtype=torch.int32)
    indices = torch.nonzero(mask.flatten(), as_tuple=False).flatten()
    cu_seqlens = torch.nn.functional.pad(torch.cumsum(seqlens, dim=0, dtype=torch.int32), (1, 0))
    flat = hidden.reshape(-1, *hidden.shape[2:])
    return flat[indices], indices, cu_seqlens, int(seqlens.max()), attention_mask.sum(dim=-1, dtype=torch.int32)


def pad_input(tokens: torch.Tensor, indices: torch.Tensor, batch: int, seqlen: int) -> torch.Tensor:
    """tokens [nnz, ...] back to [batch, seqlen, ...], zeros where nothing was."""
    out = torch.zeros(batch * seqlen, *tokens.shape[1:], dtype=tokens.dtype, device=tokens.device)
    out[indices] = tokens
    return out.reshape(batch, seqlen, *tokens.shape[1:])
