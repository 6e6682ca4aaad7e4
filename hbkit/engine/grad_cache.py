"""Cached-gradient contrastive steps (GradCache-style): large batches in bounded memory.

The InfoNCE loss couples every query with every passage of the batch, so the batch
cannot simply be split into accumulation steps. Instead:

1. embed the batch in chunks *without* a graph, remembering each chunk's RNG state;
2. compute the loss on the (detached) embeddings and back-propagate to them only;
3. re-embed each chunk *with* a graph, replaying its RNG state so dropout draws the
   same masks, and back-propagate the cached embedding gradients through it.

The loss value and the parameter gradients equal those of embedding the same chunks
in one graph (tests/test_grad_cache.py); with dropout off they equal the plain
full-batch step. Activation memory is that of one chunk.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch


class RngState:
    """The CPU (and current CUDA device's) RNG state, captured now and restorable later."""

    def __init__(self, device: torch.device) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        self.device = device

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(n, i + size)) for i in range(0, n, size)]


def cached_backward(embed: Callable[[Sequence[str], str], torch.Tensor],
                    loss_fn: Callable[..., torch.Tensor],
                    inputs: Sequence[tuple[Sequence[str], str] | None],
                    chunk_size: int, device: torch.device,
                    scale: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Compute ``loss_fn(*embeddings)`` and back-propagate it into the encoder, chunk by chunk.

    Args:
        embed: ``embed(texts, kind) -> (n, d)`` with gradients (the encoder's ``embed``).
        loss_fn: takes one embedding tensor per input (``None`` inputs pass ``None``).
        inputs: ``(texts, kind)`` per loss argument, e.g. queries, positives, hard negatives.
        chunk_size: texts per forward pass.
        scale: optional loss scaler (fp16 GradScaler.scale) applied before the backward.

    Returns the detached loss. Parameter ``.grad`` fields are accumulated.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    # 1) forward without graph, remembering RNG states
    cached: list[torch.Tensor | None] = []
    states: list[list[RngState]] = []
    for item in inputs:
        if item is None:
            cached.append(None)
            states.append([])
            continue
        texts, kind = item
        parts, st = [], []
        with torch.no_grad():
            for sl in _chunks(len(texts), chunk_size):
                st.append(RngState(device))
                parts.append(embed(texts[sl], kind))
        cached.append(torch.cat(parts).detach().requires_grad_(True))
        states.append(st)
    after_first_pass = RngState(device)
    # 2) loss on cached embeddings, gradients w.r.t. the embeddings only
    loss = loss_fn(*cached)
    (scale(loss) if scale is not None else loss).backward()
    # 3) replay each chunk with a graph and push the cached gradient through it
    for item, emb, st in zip(inputs, cached, states):
        if item is None:
            continue
        texts, kind = item
        for sl, rng in zip(_chunks(len(texts), chunk_size), st):
            rng.restore()
            out = embed(texts[sl], kind)
            out.backward(emb.grad[sl].to(out.dtype))
    after_first_pass.restore()
    return loss.detach()
