"""Contrastive losses: InfoNCE with in-batch and hard negatives for text (PROTOCOL §1.1), CLIP's
symmetric image–text loss with several captions per image (PROTOCOL §2.1, 1-to-K), and ALBEF's
image–text contrastive (ITC, image-id soft targets, momentum distillation) and matching (ITM,
hard negatives) losses (PROTOCOL §2.3)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hbkit.engine import distributed as hdist
from hbkit.engine.distributed import gather_varlen_with_grad, gather_with_grad, rank
from hbkit.errors import ConfigError, DataError

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


# ----------------------------------------------------------------------------- CLIP


def gather_ids(ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All processes' ids (n_r,) concatenated in rank order, and this process's offset (no gradient)."""
    import torch.distributed as dist

    world = dist.get_world_size()
    size = torch.tensor([ids.shape[0]], device=ids.device)
    sizes = [torch.empty_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    counts = [int(s) for s in sizes]
    width = max(counts)
    padded = torch.cat([ids, ids.new_zeros(width - ids.shape[0])])
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    r = dist.get_rank()
    return torch.cat([p[:c] for p, c in zip(parts, counts)]), sum(counts[:r])


def _global(features: torch.Tensor, ids: torch.Tensor, gather: bool) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """(all features with gradients, all ids, this process's row offset, world size used)."""
    if gather and hdist.world_size() > 1:
        all_ids, offset = gather_ids(ids)
        return hdist.gather_varlen_with_grad(features), all_ids, offset, hdist.world_size()
    return features, ids, 0, 1


def clip_loss(image_features: torch.Tensor, text_features: torch.Tensor, image_groups: torch.Tensor,
              text_groups: torch.Tensor, logit_scale: torch.Tensor, gather: bool = True) -> dict[str, torch.Tensor]:
    """Symmetric multi-positive InfoNCE between images and captions (module docstring).

    Args:
        image_features: (M, d) L2-normalised image embeddings of this process.
        text_features: (B, d) L2-normalised caption embeddings of this process.
        image_groups: (M,) int64 group ids of the images; a group repeated (here or in another
            process) is one image: only its first occurrence is a candidate and a query.
        text_groups: (B,) int64 group ids of the captions; each must have its image in the batch.
        logit_scale: scalar multiplier of the cosine similarities (``exp`` of open_clip's parameter).
        gather: all-gather features across processes (``False``: this process's batch only).

    Returns ``{"loss": (i2t + t2i) / 2, "i2t": ..., "t2i": ...}``. ``t2i`` is the mean over
    captions of the cross-entropy of each caption against the (deduplicated) images; ``i2t`` the
    mean over images of the cross-entropy against all captions with the image's target spread
    uniformly over its captions. Each process returns its rows' sum scaled by
    ``world_size / global count``: the local mean when processes hold equal shares, and in
    every case the global mean once gradients are averaged over processes.
    """
    if image_features.ndim != 2 or text_features.ndim != 2 or image_features.shape[1] != text_features.shape[1]:
        raise DataError(f"clip_loss needs (M, d) image and (B, d) text features, got {tuple(image_features.shape)} "
                        f"and {tuple(text_features.shape)}.")
    if image_groups.shape != image_features.shape[:1] or text_groups.shape != text_features.shape[:1]:
        raise DataError("clip_loss: one group id per image row and per caption row is needed.")
    all_t, all_tg, _, world = _global(text_features, text_groups, gather)
    all_v, all_vg, v_off, _ = _global(image_features, image_groups, gather)
    m_all = all_vg.shape[0]
    pos = torch.arange(m_all, device=all_vg.device)
    earlier_same = (all_vg[:, None] == all_vg[None, :]) & (pos[None, :] < pos[:, None])
    first = ~earlier_same.any(1)                       # (M_all,) first occurrence of each group
    cand = first.nonzero().squeeze(1)
    cand_v, cand_g = all_v[cand], all_vg[cand]        # (U, d), (U,)
    match = text_groups[:, None] == cand_g[None, :]   # (B, U): each caption's image
    if not bool(match.any(1).all()):
        raise DataError("A caption's image is missing from the batch: the collator must provide one image per "
                        "group of the batch (image_groups) for every caption (text_groups).")
    target = match.to(torch.int8).argmax(1)
    logits_t = logit_scale * text_features @ cand_v.T
    t2i = F.cross_entropy(logits_t, target, reduction="sum") * (world / all_t.shape[0])
    mine = first[v_off:v_off + image_features.shape[0]]
    rows_v, rows_g = image_features[mine], image_groups[mine]
    logits_i = logit_scale * rows_v @ all_t.T         # (M_kept, B_all)
    soft = (rows_g[:, None] == all_tg[None, :]).to(logits_i.dtype)
    soft = soft / soft.sum(1, keepdim=True).clamp(min=1)
    i2t = -(soft * F.log_softmax(logits_i, dim=1)).sum() * (world / cand.numel())
    return {"loss": (i2t + t2i) / 2, "i2t": i2t, "t2i": t2i}


def text_text_loss(text_features: torch.Tensor, text_groups: torch.Tensor, logit_scale: torch.Tensor,
                   gather: bool = True) -> torch.Tensor:
    """Multi-positive caption–caption InfoNCE over the batch (the optional text–text term).

    Each caption (B, d) is a query against every other caption of the (global) batch; its
    positives are the other captions of its group (its image's captions in other languages,
    present in 1-to-K batches), with uniform soft targets; a caption without one adds nothing.
    Returns the mean over the captions that have a positive (0 when none has)."""
    all_t, all_tg, t_off, world = _global(text_features, text_groups, gather)
    b = text_features.shape[0]
    own = torch.arange(b, device=text_features.device) + t_off
    logits = logit_scale * text_features @ all_t.T     # (B, B_all)
    is_self = torch.zeros_like(logits, dtype=torch.bool)
    is_self[torch.arange(b), own] = True
    logits = logits.masked_fill(is_self, float("-inf"))
    positive = (text_groups[:, None] == all_tg[None, :]) & ~is_self
    has = positive.any(1)
    counts = (all_tg[:, None] == all_tg[None, :]).sum(1)
    n_global = int((counts > 1).sum())
    if n_global == 0:
        return text_features.sum() * 0.0
    logp = F.log_softmax(logits[has], dim=1)
    pos = positive[has]
    soft = pos.to(logp.dtype) / pos.sum(1, keepdim=True)
    return -(torch.where(pos, logp, torch.zeros_like(logp)) * soft).sum() * (world / n_global)


# ----------------------------------------------------------------------------- ALBEF


def albef_itc_loss(image_feat: torch.Tensor, text_feat: torch.Tensor, image_feat_all: torch.Tensor,
                   text_feat_all: torch.Tensor, idx: torch.Tensor, idx_all: torch.Tensor, temp: torch.Tensor,
                   alpha: float = 0.0, image_feat_m: torch.Tensor | None = None,
                   text_feat_m: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """ALBEF's ITC loss: each pair's image against all momentum text features and vice versa.

    Args:
        image_feat, text_feat: (B, e) L2-normalised online features of this process's B pairs
            (with gradients).
        image_feat_all, text_feat_all: (N, e) the momentum features the rows are scored against
            (all processes' batch, then the queue when one is used; no gradients).
        idx, idx_all: (B,) and (N,) int64 image ids; every column with the row's image id is a
            positive, with the target mass spread evenly over them (soft targets).
        temp: the temperature (scalar); similarities are divided by it.
        alpha: distillation weight: targets become ``alpha * softmax(momentum sims) + (1 - alpha)
            * id targets``, with ``image_feat_m`` / ``text_feat_m`` (B, e) the rows' momentum features.

    Returns ``{"itc": (i2t + t2i) / 2, "i2t", "t2i", "sim_i2t", "sim_t2i"}``; the sims are (B, N).
    """
    pos = (idx.view(-1, 1) == idx_all.view(1, -1)).to(image_feat.dtype)
    if bool((pos.sum(1) == 0).any()):
        raise DataError("An ITC row has no positive column: each pair's own momentum features must be among the "
                        "columns (pass this process's batch inside image_feat_all / text_feat_all).")
    targets = pos / pos.sum(1, keepdim=True)
    sim_i2t = image_feat @ text_feat_all.T / temp
    sim_t2i = text_feat @ image_feat_all.T / temp
    t_i2t = t_t2i = targets
    if alpha:
        if image_feat_m is None or text_feat_m is None:
            raise ConfigError("Momentum distillation (alpha > 0) needs the rows' momentum features.")
        with torch.no_grad():
            t_i2t = alpha * F.softmax(image_feat_m @ text_feat_all.T / temp, dim=1) + (1 - alpha) * targets
            t_t2i = alpha * F.softmax(text_feat_m @ image_feat_all.T / temp, dim=1) + (1 - alpha) * targets
    i2t = -(F.log_softmax(sim_i2t, dim=1) * t_i2t).sum(1).mean()
    t2i = -(F.log_softmax(sim_t2i, dim=1) * t_t2i).sum(1).mean()
    return {"itc": (i2t + t2i) / 2, "i2t": i2t, "t2i": t2i, "sim_i2t": sim_i2t, "sim_t2i": sim_t2i}


@torch.no_grad()
def albef_hard_negatives(sim_i2t: torch.Tensor, sim_t2i: torch.Tensor, idx: torch.Tensor,
                         generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """ALBEF's in-batch hard negatives for ITM, sampled in proportion to softmax similarity.

    ``sim_i2t`` / ``sim_t2i``: (B, B) in-batch similarities (already divided by the temperature);
    ``idx`` (B,) image ids: a pair of the same image is never drawn. Draws one image per text
    (rows of ``sim_t2i``), then one text per image (rows of ``sim_i2t``), one ``torch.multinomial``
    call per row in that order, as the original does. Returns ``(negative image of each text,
    negative text of each image)``, both (B,) long.
    """
    same = idx.view(-1, 1) == idx.view(1, -1)
    w_i2t = F.softmax(sim_i2t.float() + 1e-4, dim=1).masked_fill(same, 0)
    w_t2i = F.softmax(sim_t2i.float() + 1e-4, dim=1).masked_fill(same, 0)
    if bool((w_t2i.sum(1) <= 0).any()) or bool((w_i2t.sum(1) <= 0).any()):
        raise DataError("ITM needs a negative from another image for every pair, but this batch holds only one "
                        "distinct image: use a batch with at least two images (under 1-to-K, batch_size >= 2*K).")
    neg_image = torch.stack([torch.multinomial(w_t2i[b], 1, generator=generator) for b in range(len(idx))]).view(-1)
    neg_text = torch.stack([torch.multinomial(w_i2t[b], 1, generator=generator) for b in range(len(idx))]).view(-1)
    return neg_image, neg_text


def albef_itm_loss(logits: torch.Tensor, n_pos: int) -> torch.Tensor:
    """Cross-entropy of ITM logits (n_pos + 2 n_pos, 2): the first ``n_pos`` rows match (class 1),
    the rest do not (class 0)."""
    labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    labels[:n_pos] = 1
    return F.cross_entropy(logits, labels)
