"""Model weights handed from a trainer to running engines through Ray's object store, without a disk round trip.

The trainer puts one dictionary of numpy arrays (views of its tensors, no copy) into the object store; Ray copies
it once into shared memory, and every engine actor on that node reads it from there without another copy. numpy
has no bfloat16, so such tensors travel as int16 views and are viewed back on arrival.

    shared = to_shared(model.state_dict())           # trainer side
    for name, tensor in from_shared(shared): ...     # engine side (read-only tensors: copy them into the model)
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping

import numpy as np
import torch

# torch dtypes numpy lacks, and the same-width integer type they travel as
_CARRIERS = {torch.bfloat16: torch.int16}
_BY_NAME = {str(dtype): dtype for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64,
                                            torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8,
                                            torch.bool)}

SharedWeights = dict[str, tuple[np.ndarray, str]]  # name -> (array, torch dtype name)


def to_shared(tensors: Mapping[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]]) -> SharedWeights:
    """numpy views of `tensors` (moved to CPU when they are not there), ready for `ray.put`.

    A tensor that shares storage with one already seen (a tied LM head) is sent once, under its first name:
    engines tie such weights themselves.
    """
    items = tensors.items() if isinstance(tensors, Mapping) else tensors
    out: SharedWeights = {}
    seen: set[tuple[int, int, tuple[int, ...]]] = set()
    for name, tensor in items:
        tensor = tensor.detach()
        if str(tensor.dtype) not in _BY_NAME:
            raise TypeError(f"weight {name!r} has dtype {tensor.dtype}, which cannot travel to an engine")
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key in seen:
            continue
        seen.add(key)
        cpu = tensor.to("cpu").contiguous()
        carrier = _CARRIERS.get(cpu.dtype)
        out[name] = ((cpu.view(carrier) if carrier is not None else cpu).numpy(), str(tensor.dtype))
    return out


def from_shared(shared: SharedWeights) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) pairs over the arrays of `to_shared`; the tensors share their memory (read-only in Ray)."""
    for name, (array, dtype_name) in shared.items():
        dtype = _BY_NAME[dtype_name]
        with warnings.catch_warnings():  # arrays from the object store are read-only; callers only copy from them
            warnings.simplefilter("ignore", UserWarning)
            tensor = torch.from_numpy(array)
        yield name, tensor.view(dtype) if dtype in _CARRIERS else tensor


def shared_bytes(shared: SharedWeights) -> int:
    return sum(array.nbytes for array, _ in shared.values())
