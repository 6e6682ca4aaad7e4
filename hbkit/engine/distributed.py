"""Process-group helpers and an all-gather that keeps gradients.

With N processes each holding a slice of the global batch, :func:`gather_with_grad`
returns the concatenated global tensor. Its backward sums the incoming gradients
over processes (all-reduce) and returns this process's slice, so that each
process's gradient w.r.t. its own embeddings includes the loss terms of every
other process that used them as negatives. With DDP averaging parameter
gradients over processes, the result equals the single-process gradient of the
mean loss over the global batch (tested in tests/test_loss.py).
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def init_from_env(backend: str | None = None) -> bool:
    """Initialise the default process group when launched by torchrun (WORLD_SIZE > 1)."""
    if is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return is_distributed()
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    dist.init_process_group(backend)
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.n = x.shape[0]
        ctx.rank = dist.get_rank()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, 0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All-gather ``x`` (n, d) from every process along dim 0 -> (N*n, d), differentiable.

    Every process must pass the same ``n``. Without a process group it returns ``x``.
    """
    if not is_distributed() or dist.get_world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)
