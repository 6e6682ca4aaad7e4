"""Contrastive InfoNCE loss with in-batch and hard negatives (PROTOCOL §1.1)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hbkit.engine.distributed import gather_varlen_with_grad, gather_with_grad, rank
from hbkit.errors import ConfigError

DENOMINATORS = ("batch", "paper")


class InfoNCELoss(nn.Module):
    """InfoNCE over a batch of (query, positive, hard negative) embeddings.

    Candidates for query i (all embeddings L2-normalised, scores = cosine / temperature):
      - ``denominator="batch"`` (default, DPR/E5 form): every positive and every hard
        negative of the global batch; the target is its own positive.
      - ``denominator="paper"`` (the paper's printed form): its own positive plus
        the hard negatives of the whole batch (other queries' positives excluded).

    Hard negatives are per pair: ``n`` holds one row per pair *that has one* (any
    number from 0 to b); a pair without a hard negative contributes none and the rest
    of the batch keeps theirs. With no hard negative in the whole batch the "paper"
    form has only the query's own positive as candidate (loss 0).

    The temperature is fixed (default 0.05) or learnable (stored as log 1/τ).
    With several processes, positives and negatives are all-gathered with gradients
    (negatives may differ in number per process) so negatives span the global batch;
    the returned loss is the mean over this process's queries.
    """

    def __init__(self, temperature: float = 0.05, learnable: bool = False, denominator: str = "batch") -> None:
        super().__init__()
        if not isinstance(temperature, (int, float)) or not 0 < temperature <= 10:
            raise ConfigError(f"temperature must be in (0, 10], got {temperature!r} (the paper-style default is 0.05).")
        if denominator not in DENOMINATORS:
            raise ConfigError(f"denominator must be one of {DENOMINATORS}, got {denominator!r}.")
        self.denominator = denominator
        log_scale = torch.tensor(math.log(1.0 / temperature))
        if learnable:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    @property
    def temperature(self) -> float:
        return float(torch.exp(-self.log_scale.detach()))

    def forward(self, q: torch.Tensor, p: torch.Tensor, n: torch.Tensor | None = None,
                gather: bool = True) -> torch.Tensor:
        """q, p: (b, d); n: (m, d) with 0 <= m <= b, or None. Returns the scalar mean loss over the b local queries.

        ``gather=False`` keeps the candidates local (e.g. a validation batch every process holds whole).
        """
        b = q.shape[0]
        collect = gather_with_grad if gather else (lambda x: x)
        p_all = collect(p)
        offset = rank() * b if p_all.shape[0] != b else 0
        targets = torch.arange(b, device=q.device) + offset
        if n is not None and gather:
            n = gather_varlen_with_grad(n)
        cands = p_all if n is None or n.shape[0] == 0 else torch.cat([p_all, n], 0)
        logits = q @ cands.T * self.log_scale.exp()
        if self.denominator == "paper":
            mask = torch.zeros_like(logits, dtype=torch.bool)
            mask[:, : p_all.shape[0]] = True
            mask[torch.arange(b), targets] = False
            logits = logits.masked_fill(mask, float("-inf"))
        return F.cross_entropy(logits, targets)
