"""Cross-process helpers: the one gather per training step that per-sample tracking needs."""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    """Number of processes in the default process group (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_rows(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Concatenate each tensor's rows from every process, in rank order.

    All tensors are stacked into one buffer so that a step costs a single collective. Every process must pass
    the same number of rows (the Trainer's `even_batches` guarantees it by repeating samples in the last batch;
    the tracker counts a repeated sample once). The gathered rows carry no gradient.

    Example:
        >>> idx, wrong = gather_rows(torch.tensor([3, 7]), torch.tensor([1, 0]))  # one process: unchanged
    """
    n = world_size()
    if n == 1:
        return tuple(t.detach() for t in tensors)
    packed = torch.stack([t.detach().to(torch.float64) for t in tensors])  # (k, rows): exact for ints < 2**53
    gathered = [torch.empty_like(packed) for _ in range(n)]
    dist.all_gather(gathered, packed)
    joined = torch.cat(gathered, dim=1)
    return tuple(row.to(t.dtype) for row, t in zip(joined, tensors))


def all_reduce_mean_(tensors: list[torch.Tensor]) -> None:
    """Average tensors across processes in place (used for the meta network's gradients)."""
    n = world_size()
    if n == 1:
        return
    for tensor in tensors:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor.div_(n)

