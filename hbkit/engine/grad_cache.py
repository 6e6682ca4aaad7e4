"""Cached-gradient contrastive steps (GradCache-style): large batches in bounded memory.

A contrastive loss couples every query with every candidate of the batch, so the
batch cannot simply be split into accumulation steps. Instead:

1. embed each embedding group of the batch in chunks *without* a graph, remembering
   each chunk's RNG state;
2. compute the loss on the (detached) embeddings and back-propagate to them only;
3. re-embed each chunk *with* a graph, replaying its RNG state so dropout draws the
   same masks, and back-propagate the cached embedding gradients through it.

The loss value and the parameter gradients equal those of embedding the same chunks
in one graph (tests/test_grad_cache.py); with dropout off they equal the plain
full-batch step. Activation memory is that of one chunk. It works for any
:class:`~hbkit.models.base.RetrievalModel` with ``supports_grad_cache``.
"""
from __future__ import annotations

from typing import Any, Callable

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


def cached_backward(model, batch: Any, chunk_size: int, device: torch.device,
                    scale: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    autocast: Callable[[], Any] | None = None) -> dict[str, torch.Tensor]:
    """Compute ``model``'s losses on ``batch`` and back-propagate ``"loss"`` chunk by chunk.

    Args:
        model: a RetrievalModel with ``supports_grad_cache`` (not a DDP wrapper).
        batch: the collated batch.
        chunk_size: items per forward pass.
        scale: optional loss scaler (fp16 GradScaler.scale) applied before the backward.
        autocast: a factory of the mixed-precision context for the forward passes.

    Returns the detached losses. Parameter ``.grad`` fields are accumulated.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    ctx = autocast or (lambda: torch.autocast(device.type, enabled=False))
    groups = model.embedding_inputs(batch)
    cached: list[torch.Tensor | None] = []
    states: list[list[RngState]] = []
    for g, spec in enumerate(groups):  # 1) forward without graph, remembering RNG states
        if spec is None or spec[1] == 0:
            cached.append(None)
            states.append([])
            continue
        parts, st = [], []
        with torch.no_grad():
            for sl in _chunks(spec[1], chunk_size):
                st.append(RngState(device))
                with ctx():
                    parts.append(model.embed_chunk(batch, g, sl))
        cached.append(torch.cat(parts).detach().float().requires_grad_(True))
        states.append(st)
    after_first_pass = RngState(device)
    # 2) loss on cached embeddings, gradients w.r.t. the embeddings only
    full = [c if c is not None else torch.zeros(0, 1, device=device) for c in cached]
    losses = model.loss_from_embeddings(batch, full)
    loss = losses["loss"]
    if torch.isfinite(loss):
        (scale(loss) if scale is not None else loss).backward()
        # 3) replay each chunk with a graph and push the cached gradient through it
        for g, (emb, st) in enumerate(zip(cached, states)):
            if emb is None or emb.grad is None:
                continue
            for sl, rng in zip(_chunks(emb.shape[0], chunk_size), st):
                rng.restore()
                with ctx():
                    out = model.embed_chunk(batch, g, sl)
                out.backward(emb.grad[sl].to(out.dtype))
    after_first_pass.restore()
    return {k: v.detach() for k, v in losses.items()}
