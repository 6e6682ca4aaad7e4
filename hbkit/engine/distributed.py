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


def gather_varlen_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All-gather ``x`` (n_r, d) where ``n_r`` may differ per process -> (sum n_r, d), differentiable.

    Rows are padded to the largest ``n_r``, gathered with :func:`gather_with_grad` and the padding dropped."""
    if not is_distributed() or dist.get_world_size() == 1:
        return x
    sizes = torch.tensor([x.shape[0]], device=x.device)
    parts = [torch.empty_like(sizes) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, sizes)
    counts = [int(t) for t in parts]
    m = max(counts)
    if m == 0:
        return x
    padded = torch.cat([x, x.new_zeros((m - x.shape[0],) + tuple(x.shape[1:]))], 0)
    full = gather_with_grad(padded)
    keep = torch.cat([torch.arange(r * m, r * m + c, device=x.device) for r, c in enumerate(counts)])
    return full.index_select(0, keep)


def all_reduce_gradients(params, bucket_bytes: int = 25 * 2**20) -> None:
    """Average ``.grad`` of ``params`` over processes in flat buckets (a few collectives, not one per
    parameter). Used where the DDP wrapper cannot see the backward (cached-gradient steps)."""
    if not is_distributed() or dist.get_world_size() == 1:
        return
    world = dist.get_world_size()
    params = list(params)
    for p in params:  # every process must reduce the same tensors
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    bucket: list[torch.Tensor] = []
    size = 0

    def flush() -> None:
        if not bucket:
            return
        flat = torch.cat([g.reshape(-1) for g in bucket])
        dist.all_reduce(flat)
        flat /= world
        off = 0
        for g in bucket:
            g.copy_(flat[off:off + g.numel()].view_as(g))
            off += g.numel()
        bucket.clear()

    for g in grads:
        bucket.append(g)
        size += g.numel() * g.element_size()
        if size >= bucket_bytes:
            flush()
            size = 0
    flush()
