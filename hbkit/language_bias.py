"""Language-bias measures for pooled image–text and caption retrieval (PROTOCOL §2.2).

All measures work on a pooled candidate set whose candidates carry a language, one score
block (a chunk of queries × all candidates, float32) at a time. Ranks are pessimistic as
in :mod:`hbkit.metrics`: a candidate's rank is the number of candidates scoring at least
as high (:func:`hbkit.metrics.relevant_ranks`).

**Best rank per language.** For a query, the pooled ranks of its relevant candidates are
grouped by candidate language and each language keeps its best (smallest) rank; languages
without a relevant candidate are left out. From these per-language ranks r_1..r_n:

- ``rank_distance`` = max − min (as :func:`hbkit.metrics.rank_distance`);
- ``MRV`` (mean rank variance, Nie et al. 2024) = the standard deviation of r_1..r_n with
  ``ddof`` (default **0, population std**: sqrt(Σ (r_i − r̄)² / (n − ddof))), averaged over
  queries. Both are NaN for a query with fewer than two such languages (and MRV also when
  n <= ddof).

**z-scored control** (``rank_distance_z``, ``MRV_z``): per query row and per candidate
language, that language's scores are replaced by (s − mean) / std over the language's
candidates (population std; a language with std 0 — below 1e-6 of its root-mean-square
score, i.e. constant up to float32 rounding — is only centred; excluded candidates (score
−inf) take no part and stay −inf; language-less candidates are left as they are). Ranks
are then recomputed on the z-scored row. A language whose scores are all shifted up
(a pure preference) no longer moves up, so what remains reflects quality.

**Top-k language share** (``top10_share:<lang>`` for k = 10): per query, the fraction of its
top k candidates in each language, averaged over queries. Ties at the k-th score are split:
with a candidates scoring above the k-th score t and b scoring exactly t, each of the b gets
weight (k − a) / b (the expected share under random tie breaking; the shares of a query sum
to 1 when every candidate has a language). With fewer than k rankable (finite-score)
candidates, k is their number. ``top10_share_max_minus_min`` = max − min over the pooled
languages of the averaged shares; it equals max − min of (share − 1/L), the deviation from
the uniform share 1/L for L languages. ``own_language_top10_share`` (text queries) is the
share of the query's own language in its top k.

**Caption→caption setting** (text tower only): every caption query is ranked against the
pooled captions of all languages; relevant = the captions of the same image (a shared
``xid``) in the *other* languages; the query's own candidate row gets score −inf, so it is
neither ranked, nor relevant, nor counted in the shares or the z-scores. Captions of the
same image in the query's own language stay in the pool as non-relevant candidates.
Reports mAP (AP as in :mod:`hbkit.metrics`), R@10, rank distance, the z-scored control,
MRV and the language shares.

**Table** (:func:`language_bias_table`): columns :data:`hbkit.evaluation.COLUMNS`, setting
``"multilingual"``, candidate_lang ``"all"``; image query rows have direction
``"image→text"`` and query_lang :data:`hbkit.evaluation.NO_LANGUAGE`; caption rows have
direction :data:`CAPTION_TO_CAPTION` and one row per query language. ``value`` is the mean
over the queries with a defined value (``n_queries``). The image rows hold only the measures
above (mAP, R@10 and the raw rank distance of image→text come from
:func:`hbkit.evaluation.evaluate_embeddings`). :data:`CAPTION_TO_CAPTION` is not one of
:data:`hbkit.evaluation.DIRECTIONS`.

**Cost.** Candidates are sorted by language once. Per chunk (``chunk_size`` queries; by
default a float32 block of about :data:`BLOCK_BYTES`): one score product, the ranks of each
language's best relevant candidate only (L per query, :func:`hbkit.metrics.relevant_ranks`;
z-scoring is increasing within a language, so the same candidates are ranked again on the
z-scored block), per-language means and stds as products with a one-hot language
indicator, and ``torch.topk`` plus one scan for ties at the k-th score. AP and R@k (caption
setting) rank every relevant candidate.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from hbkit.benchmark import RetrievalBenchmark
from hbkit.errors import ConfigError, DataError
from hbkit.evaluation import (
    ALL_LANGUAGES,
    COLUMNS,
    IMAGE_TO_TEXT,
    MULTILINGUAL,
    NO_LANGUAGE,
    TEXT_TO_TEXT,
    row_keys,
)
from hbkit.metrics import group_codes, pad_relevant, relevant_ranks
from hbkit.parallel import IMAGE, TEXT

#: ``direction`` of the caption→caption (text tower) multilingual rows.
CAPTION_TO_CAPTION = "caption→caption"
#: Budget (bytes) of one float32 score block (chunk × n_candidates) when ``chunk_size`` is None.
BLOCK_BYTES = 64 * 2**20

__all__ = [
    "BLOCK_BYTES",
    "CAPTION_TO_CAPTION",
    "PooledBias",
    "best_rank_by_language",
    "caption_relevance",
    "language_bias_table",
    "pooled_bias",
    "pooled_bias_from_embeddings",
    "rank_spread",
    "top_k_language_share",
    "zscore_by_language",
]


def _codes(candidate_groups) -> tuple[torch.Tensor, list]:
    groups = np.asarray(candidate_groups)
    if groups.dtype.kind in "iu":
        codes = groups.astype(np.int64)
        names = list(range(int(codes.max()) + 1 if codes.size else 0))
    else:
        codes, names = group_codes(groups.tolist())
    return torch.from_numpy(codes), names


def _per_group_sum(x: torch.Tensor, idx: torch.Tensor, n: int) -> torch.Tensor:
    """Row-wise sums of ``x`` (b, n_c) per group index ``idx`` (n_c,) in [0, n): (b, n)."""
    return torch.zeros(x.shape[0], n, dtype=x.dtype).index_add_(1, idx, x)


def _zscore(s: torch.Tensor, codes: torch.Tensor, n_groups: int) -> torch.Tensor:
    idx = torch.where(codes >= 0, codes, n_groups)
    finite = torch.isfinite(s)
    x = torch.where(finite, s, torch.zeros((), dtype=s.dtype))
    cnt = _per_group_sum(finite.to(s.dtype), idx, n_groups + 1).clamp(min=1)
    mean = _per_group_sum(x, idx, n_groups + 1) / cnt
    mean[:, n_groups] = 0
    dev = torch.where(finite, s - mean[:, idx], torch.zeros((), dtype=s.dtype))
    std = (_per_group_sum(dev * dev, idx, n_groups + 1) / cnt).sqrt()
    std = torch.where(_nonzero_std(std, mean), std, torch.ones((), dtype=s.dtype))
    std[:, n_groups] = 1
    return (s - mean[:, idx]) / std[:, idx]


def zscore_by_language(scores, candidate_groups) -> torch.Tensor:
    """Scores (n_q, n_c) z-scored per row and per candidate language (see module doc).

    ``candidate_groups``: n_c language labels (None/"" = none) or int codes (-1 = none).
    """
    s = torch.as_tensor(scores)
    s = s.to(torch.float32) if s.dtype not in (torch.float32, torch.float64) else s
    codes, names = _codes(candidate_groups)
    return _zscore(s, codes, len(names))


def _best(ranks: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    r = torch.as_tensor(ranks, dtype=torch.int64)
    g = torch.as_tensor(groups, dtype=torch.int64)
    use = (r > 0) & (g >= 0)
    big = torch.iinfo(torch.int64).max
    best = torch.full((r.shape[0], n_groups + 1), big, dtype=torch.int64)
    best.scatter_reduce_(1, torch.where(use, g, n_groups), torch.where(use, r, big), reduce="amin")
    best = best[:, :n_groups]
    return torch.where(best < big, best.double(), torch.full((), float("nan"), dtype=torch.float64)).numpy()


def best_rank_by_language(scores, relevant, candidate_groups, *, zscore: bool = False) -> np.ndarray:
    """Best pessimistic pooled rank of each query's relevant candidates per language.

    Returns float64 (n_q, L), L = number of candidate languages (sorted labels), NaN where
    the query has no relevant candidate in that language. ``zscore``: rank on
    :func:`zscore_by_language` scores.
    """
    codes, names = _codes(candidate_groups)
    s = zscore_by_language(scores, codes.numpy()) if zscore else torch.as_tensor(scores)
    rel = pad_relevant(relevant, s.shape[1])
    ranks = relevant_ranks(s, rel)
    groups = torch.where(rel >= 0, codes[rel.clamp(min=0)], torch.full_like(rel, -1)).numpy()
    return _best(ranks, groups, len(names))


def rank_spread(best: np.ndarray, ddof: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per query (rank distance, rank std) from per-language best ranks (n_q, L), NaN = absent.

    rank distance = max − min; rank std = std with ``ddof`` (the per-query term of MRV).
    Both float64 (n_q,), NaN with fewer than two languages (std also when n <= ddof).
    """
    best = np.asarray(best, dtype=np.float64)
    present = ~np.isnan(best)
    n = present.sum(1)
    filled = np.where(present, best, 0.0)
    hi = np.where(present, best, -np.inf).max(1, initial=-np.inf)
    lo = np.where(present, best, np.inf).min(1, initial=np.inf)
    ok = n >= 2
    dist = np.where(ok, hi - lo, np.nan)
    mean = filled.sum(1) / np.maximum(n, 1)
    ss = (np.where(present, best - mean[:, None], 0.0) ** 2).sum(1)
    ok_std = ok & (n > ddof)
    std = np.where(ok_std, np.sqrt(ss / np.maximum(n - ddof, 1)), np.nan)
    return dist, std


def _shares(s: torch.Tensor, codes: torch.Tensor, n_groups: int, k: int) -> torch.Tensor:
    finite = torch.isfinite(s)
    k_eff = finite.sum(1).clamp(max=k)
    top = torch.topk(s, min(k, s.shape[1]), dim=1).values
    t = top.gather(1, (k_eff - 1).clamp(min=0)[:, None])
    gt = s > t
    eq = (s == t) & finite
    w = (k_eff - gt.sum(1)).double() / eq.sum(1).clamp(min=1).double()
    idx = torch.where(codes >= 0, codes, n_groups)
    c_gt = _per_group_sum(gt.double(), idx, n_groups + 1)
    c_eq = _per_group_sum(eq.double(), idx, n_groups + 1)
    share = (c_gt + w[:, None] * c_eq) / k_eff.clamp(min=1).double()[:, None]
    share[k_eff == 0] = float("nan")
    return share[:, :n_groups]


def top_k_language_share(scores, candidate_groups, k: int = 10) -> tuple[np.ndarray, list]:
    """Share of each language in each query's top ``k`` (ties split, see module doc).

    Returns (float64 (n_q, L), sorted language labels). −inf scores are never in the top k.
    """
    if int(k) < 1:
        raise ConfigError(f"k must be a positive integer, got {k}.")
    codes, names = _codes(candidate_groups)
    s = torch.as_tensor(scores)
    return _shares(s, codes, len(names), int(k)).numpy(), names


@dataclass
class PooledBias:
    """Per-query measures of one pooled pass.

    ``per_query``: {name: float64 (n_q,)} with ``AP``, ``R@k`` (``ks``), ``rank_distance``,
    ``rank_distance_z``, ``MRV`` / ``MRV_z`` (the per-query std; MRV is their mean) and,
    with query languages, ``own_language_top{k}_share``. ``shares``: float64 (n_q, L), top-k
    share per language; ``languages``: the L labels; ``k``: the top-k cut-off.
    """

    per_query: dict[str, np.ndarray]
    shares: np.ndarray
    languages: list
    k: int
    ddof: int = 0


def _chunk_size(n_c: int, chunk_size: int | None) -> int:
    if chunk_size is not None:
        if int(chunk_size) < 1:
            raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}.")
        return int(chunk_size)
    return max(1, BLOCK_BYTES // (4 * max(n_c, 1)))


def _sorted_layout(codes: torch.Tensor, n_groups: int) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Column order putting candidates by language (language-less last) and each language's span."""
    key = torch.where(codes >= 0, codes, n_groups)
    order = torch.argsort(key, stable=True)
    edges = torch.searchsorted(key[order], torch.arange(n_groups + 1)).tolist()
    return order, [(edges[g], edges[g + 1]) for g in range(n_groups)]


def _indicator(codes: torch.Tensor, n_groups: int) -> torch.Tensor:
    """One-hot (n_c, n_groups + 1) float32 language indicator; the last column = no language."""
    return torch.nn.functional.one_hot(torch.where(codes >= 0, codes, n_groups), n_groups + 1).to(torch.float32)


def _zscore_fast(s: torch.Tensor, ind: torch.Tensor, n_groups: int, rows: torch.Tensor,
                 cols: torch.Tensor) -> torch.Tensor:
    """:func:`zscore_by_language` with per-language sums as products with the indicator
    ``ind`` (n_c, L + 1); (rows, cols) = excluded cells (−inf in ``s``, −inf in the result)."""
    z = s.clone()
    z[rows, cols] = 0
    cnt = ind.sum(0).expand(s.shape[0], -1).clone()
    cnt[rows] -= ind[cols]
    cnt.clamp_(min=1)
    mean = (z @ ind) / cnt
    mean[:, n_groups] = 0
    z.sub_(mean @ ind.T)
    z[rows, cols] = 0
    std = ((z * z) @ ind / cnt).sqrt()
    inv = torch.where(_nonzero_std(std, mean), 1 / std, torch.ones((), dtype=std.dtype))
    inv[:, n_groups] = 1
    z.mul_(inv @ ind.T)
    z[rows, cols] = float("-inf")
    return z


def _nonzero_std(std: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """std counts as 0 below 1e-6 of the root-mean-square score (float32 rounding of a constant)."""
    return std > 1e-6 * (mean * mean + std * std).sqrt()


def shares_sorted(s: torch.Tensor, codes: torch.Tensor, n_groups: int, k: int) -> torch.Tensor:
    """:func:`top_k_language_share` of score rows ``s`` (n, n_c; −inf = excluded) with candidate language
    codes ``codes`` (n_c,), from their top-k values, scanning each row once for ties: float64 (n, n_groups)."""
    vals, idx = torch.topk(s, min(k, s.shape[1]), dim=1)
    k_eff = (vals > float("-inf")).sum(1)
    t = vals.gather(1, (k_eff - 1).clamp(min=0)[:, None])
    in_top = torch.arange(vals.shape[1])[None, :] < k_eff[:, None]
    gt, eq = (vals > t) & in_top, (vals == t) & in_top
    n_ge = (s >= t).sum(1)
    a = gt.sum(1)
    w = (k_eff - a).double() / (n_ge - a).clamp(min=1).double()
    g = codes[idx]
    g = torch.where(g >= 0, g, n_groups)
    c_gt = torch.zeros(s.shape[0], n_groups + 1, dtype=torch.float64).scatter_add_(1, g, gt.double())
    c_eq = torch.zeros_like(c_gt).scatter_add_(1, g, eq.double())
    spill = torch.nonzero(n_ge > k_eff).flatten()
    if len(spill):  # ties beyond the top k: count the tied candidates of the whole row per language
        tied = (s[spill] == t[spill]).double()
        c_eq[spill] = _per_group_sum(tied, torch.where(codes >= 0, codes, n_groups), n_groups + 1)
    share = (c_gt + w[:, None] * c_eq) / k_eff.clamp(min=1).double()[:, None]
    share[k_eff == 0] = float("nan")
    return share[:, :n_groups]


def _pass(block: Callable[[torch.Tensor, int, int], torch.Tensor], n_q: int, n_c: int, relevant,
          candidate_groups, *, query_groups=None, exclude=None, k: int = 10, ks: Sequence[int] = (10,),
          ddof: int = 0, with_ap: bool = True, chunk_size: int | None = None, check: bool = True) -> PooledBias:
    """One chunked pass (``check``: refuse non-finite scores); ``block(order, lo, hi)`` returns the scores of queries lo:hi with the
    columns in ``order`` (candidates sorted by language), float32 (hi − lo, n_c)."""
    if int(k) < 1 or any(int(x) < 1 for x in ks):
        raise ConfigError(f"k and ks must be positive integers, got k={k}, ks={list(ks)}.")
    if int(ddof) < 0:
        raise ConfigError(f"ddof must be >= 0, got {ddof}.")
    codes, names = _codes(candidate_groups)
    if len(codes) != n_c:
        raise DataError(f"candidate_groups has {len(codes)} labels for {n_c} candidates.")
    L = len(names)
    rel_all = pad_relevant(relevant, n_c)
    if rel_all.shape[0] != n_q:
        raise DataError(f"relevant has {rel_all.shape[0]} rows for {n_q} queries.")
    ex = torch.full((n_q,), -1, dtype=torch.int64)
    if exclude is not None:
        ex = torch.as_tensor(np.asarray(exclude, dtype=np.int64))
        if ex.shape != (n_q,) or (ex.numel() and (ex.min() < -1 or ex.max() >= n_c)):
            raise DataError(f"exclude must be one candidate index (or -1) per query, in [0, {n_c}).")
        if bool(((rel_all == ex[:, None]) & (ex[:, None] >= 0)).any()):
            raise DataError("A query's excluded (own) candidate is listed as relevant to it.")
    order, _ = _sorted_layout(codes, L)
    inv = torch.empty(n_c + 1, dtype=torch.int64)
    inv[order] = torch.arange(n_c)
    inv[n_c] = -1
    rel_all = inv[torch.where(rel_all >= 0, rel_all, n_c)]  # indices into the sorted columns
    ex = inv[torch.where(ex >= 0, ex, n_c)]
    codes_s = codes[order]
    ind = _indicator(codes_s, L)
    q_codes = None
    if query_groups is not None:
        index = {x: i for i, x in enumerate(names)}
        q_codes = np.array([index.get(x, -1) for x in np.asarray(query_groups, dtype=object)], dtype=np.int64)
    out: dict[str, list[np.ndarray]] = {m: [] for m in ["rank_distance", "rank_distance_z", "MRV", "MRV_z"]}
    if with_ap:
        out.update({m: [] for m in ["AP", *[f"R@{x}" for x in ks]]})
    shares = []
    step = _chunk_size(n_c, chunk_size)
    for lo in range(0, n_q, step):
        hi = min(n_q, lo + step)
        s = block(order, lo, hi).to(torch.float32)
        if check and not torch.isfinite(s).all():
            raise DataError("scores must be finite (NaN/inf found): re-encode with a valid model; "
                            "use `exclude` to leave a candidate out.")
        e = ex[lo:hi]
        rows = torch.nonzero(e >= 0).flatten()
        cols = e[rows]
        s[rows, cols] = float("-inf")
        rel = rel_all[lo:hi]
        m = int((rel >= 0).sum(1).max()) if rel.numel() else 0
        rel = rel[:, : max(m, 1)]
        valid = rel >= 0
        # each language's best relevant candidate (the same one after z-scoring: z is monotone)
        rs = s.gather(1, rel.clamp(min=0)).masked_fill(~valid, float("-inf"))
        g_rel = torch.where(valid, codes_s[rel.clamp(min=0)], torch.full_like(rel, -1))
        g_rel = torch.where(g_rel >= 0, g_rel, L)
        top = torch.full((hi - lo, L + 1), float("-inf")).scatter_reduce_(1, g_rel, rs, reduce="amax")
        is_best = valid & (g_rel < L) & (rs == top.gather(1, g_rel))
        best_idx = torch.full((hi - lo, L + 1), -1, dtype=torch.int64)
        best_idx.scatter_(1, torch.where(is_best, g_rel, L), torch.where(is_best, rel, -1))
        best_idx = best_idx[:, :L]
        best = relevant_ranks(s, best_idx).astype(np.float64)
        best[best_idx.numpy() < 0] = np.nan
        dist, std = rank_spread(best, ddof)
        out["rank_distance"].append(dist)
        out["MRV"].append(std)
        if with_ap:  # AP and R@k from all relevant ranks (definitions of hbkit.metrics)
            r = torch.from_numpy(relevant_ranks(s, rel)).double()
            above = ((rs[:, None, :] >= rs[:, :, None]) & valid[:, None, :]).sum(2).double()
            n_rel = valid.sum(1).double()
            ap = torch.where(valid, above / r.clamp(min=1), torch.zeros((), dtype=torch.float64)).sum(1)
            out["AP"].append((ap / n_rel.clamp(min=1)).masked_fill(n_rel == 0, float("nan")).numpy())
            for x in ks:
                rec = (valid & (r <= x)).sum(1).double() / n_rel.clamp(min=1)
                out[f"R@{x}"].append(rec.masked_fill(n_rel == 0, float("nan")).numpy())
        shares.append(shares_sorted(s, codes_s, L, int(k)).numpy())
        z = _zscore_fast(s, ind, L, rows, cols)
        del s
        best_z = relevant_ranks(z, best_idx).astype(np.float64)
        del z
        best_z[best_idx.numpy() < 0] = np.nan
        dist_z, std_z = rank_spread(best_z, ddof)
        out["rank_distance_z"].append(dist_z)
        out["MRV_z"].append(std_z)
    per_query = {name: (np.concatenate(v) if v else np.zeros(0)) for name, v in out.items()}
    share = np.concatenate(shares) if shares else np.zeros((0, L))
    if q_codes is not None:
        own = np.full(n_q, np.nan)
        has = q_codes >= 0
        own[has] = share[np.flatnonzero(has), q_codes[has]]
        per_query[f"own_language_top{int(k)}_share"] = own
    return PooledBias(per_query, share, names, int(k), int(ddof))


def pooled_bias(scores, relevant, candidate_groups, *, query_groups=None, exclude=None, k: int = 10,
                ks: Sequence[int] = (10,), ddof: int = 0, with_ap: bool = True,
                chunk_size: int | None = None) -> PooledBias:
    """All pooled measures from a finite score matrix (n_q, n_c), higher = better.

    ``relevant``: per query the relevant candidate indices (list of int arrays, or padded
    (n_q, m) with -1). ``candidate_groups``: n_c languages (or int codes, -1 = none).
    ``query_groups``: optional n_q query languages (gives the own-language share).
    ``exclude``: optional (n_q,) candidate index per query (-1 = none), scored −inf.
    ``with_ap``: also AP and R@k (``ks``), which need the ranks of every relevant candidate.
    """
    s = torch.as_tensor(scores)
    if s.ndim != 2:
        raise ConfigError(f"scores must be 2-d (n_queries, n_candidates), got shape {tuple(s.shape)}.")
    return _pass(lambda order, lo, hi: s[lo:hi][:, order], s.shape[0], s.shape[1], relevant, candidate_groups,
                 query_groups=query_groups, exclude=exclude, k=k, ks=ks, ddof=ddof, with_ap=with_ap,
                 chunk_size=chunk_size)


def _matrix(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(x if isinstance(x, torch.Tensor) else np.asarray(x)).detach().to("cpu", torch.float32)
    if t.ndim != 2:
        raise DataError(f"{name} must be a 2-d (n, d) embedding matrix, got shape {tuple(t.shape)}.")
    if not torch.isfinite(t).all():
        raise DataError(f"{name} contains NaN or infinite values; re-encode with a valid model.")
    return t


def pooled_bias_from_embeddings(query_emb, cand_emb, relevant, candidate_groups, **kwargs) -> PooledBias:
    """:func:`pooled_bias` on dot-product scores of (n_q, d) and (n_c, d) embeddings, computed
    one block (chunk × n_c float32) at a time; ``kwargs`` as for :func:`pooled_bias`."""
    q, c = _matrix(query_emb, "query_emb"), _matrix(cand_emb, "cand_emb")
    if q.shape[1] != c.shape[1]:
        raise DataError(f"Embedding widths differ: queries {q.shape[1]}, candidates {c.shape[1]}.")
    codes, names = _codes(candidate_groups)
    key = torch.where(codes >= 0, codes, len(names))
    if bool((key[1:] >= key[:-1]).all()):  # already sorted by language: no copy
        return _pass(lambda order, lo, hi: q[lo:hi] @ c.T, q.shape[0], c.shape[0], relevant, candidate_groups,
                     check=False, **kwargs)
    cs: list[torch.Tensor] = []

    def block(order: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        if not cs:
            cs.append(c[order])
        return q[lo:hi] @ cs[0].T

    return _pass(block, q.shape[0], c.shape[0], relevant, candidate_groups, check=False, **kwargs)


def caption_relevance(xids: Sequence[Sequence[str]], langs: Sequence[str | None],
                      queries: Sequence[int] | None = None) -> list[np.ndarray]:
    """Caption→caption relevance: for each query caption (index into the pool; all by
    default), the pool captions sharing one of its image ids (``xids``) in another language.
    Returns one int64 array per query."""
    by_xid: dict[str, list[int]] = {}
    for j, xs in enumerate(xids):
        for x in xs:
            by_xid.setdefault(x, []).append(j)
    qs = range(len(xids)) if queries is None else [int(i) for i in queries]
    out = []
    for i in qs:
        cand = sorted({j for x in xids[i] for j in by_xid.get(x, ()) if langs[j] != langs[i]})
        out.append(np.array(cand, dtype=np.int64))
    return out


def bias_rows(keys: dict, query_lang: str, res: PooledBias, sel: np.ndarray,
              metrics: Sequence[str]) -> list[dict]:
    """Tidy result rows (``keys`` + query_lang, metric, value, n_queries) of the queries ``sel`` of ``res``:
    the mean of each of ``metrics`` and the top-k shares per language with their max − min."""
    rows = []

    def add(metric: str, v: np.ndarray) -> None:
        ok = ~np.isnan(v)
        if ok.any():
            rows.append({**keys, "setting": MULTILINGUAL, "query_lang": query_lang, "candidate_lang": ALL_LANGUAGES,
                         "metric": metric, "value": float(v[ok].mean()), "n_queries": int(ok.sum())})

    for m in metrics:
        add(m, res.per_query[m][sel])
    sh = res.shares[sel]
    ok = ~np.isnan(sh).any(1)
    if ok.any():
        mean = sh[ok].mean(0)
        for lang, v in zip(res.languages, mean):
            rows.append({**keys, "setting": MULTILINGUAL, "query_lang": query_lang, "candidate_lang": ALL_LANGUAGES,
                         "metric": f"top{res.k}_share:{lang}", "value": float(v), "n_queries": int(ok.sum())})
        rows.append({**keys, "setting": MULTILINGUAL, "query_lang": query_lang, "candidate_lang": ALL_LANGUAGES,
                     "metric": f"top{res.k}_share_max_minus_min", "value": float(mean.max() - mean.min()),
                     "n_queries": int(ok.sum())})
    return rows


def language_bias_table(bench: RetrievalBenchmark, query_emb, cand_emb, *, meta: Mapping[str, Any] | None = None,
                        k: int = 10, ddof: int = 0, caption_setting: bool = True,
                        caption_queries: Sequence[int] | None = None,
                        chunk_size: int | None = None) -> pd.DataFrame:
    """Language-bias rows of a benchmark with image queries and/or caption candidates.

    ``query_emb`` (n_queries, d) / ``cand_emb`` (n_candidates, d): embeddings of
    ``bench.queries`` / ``bench.candidates`` in order (captions from the text tower).
    Image queries against the pooled caption candidates give the ``"image→text"`` rows
    (MRV, MRV_z, rank_distance_z, top-k shares); with ``caption_setting``, the caption
    candidates (or those indexed by ``caption_queries``, indices into ``bench.candidates``)
    as queries against all captions give the :data:`CAPTION_TO_CAPTION` rows per query
    language. Columns :data:`hbkit.evaluation.COLUMNS`.
    """
    q_mod = np.array([qq.modality for qq in bench.queries])
    c_sel = np.flatnonzero(np.array([cd.modality for cd in bench.candidates]) == TEXT)
    c_sel = c_sel[np.argsort([bench.candidates[j].lang or "\uffff" for j in c_sel], kind="stable")]
    if not len(c_sel):
        raise ConfigError(f"{bench.name}: no caption candidates; the language-bias measures need them.")
    q = _matrix(query_emb, "query_emb")
    c = _matrix(cand_emb, "cand_emb")
    if q.shape[0] != len(bench.queries) or c.shape[0] != len(bench.candidates):
        raise DataError(f"Embeddings must match the benchmark: {len(bench.queries)} queries and "
                        f"{len(bench.candidates)} candidates, got {q.shape[0]} and {c.shape[0]}.")
    caps = c[torch.from_numpy(c_sel)]
    langs = [bench.candidates[j].lang for j in c_sel]
    pos = np.full(len(bench.candidates), -1, dtype=np.int64)
    pos[c_sel] = np.arange(len(c_sel))
    rows: list[dict] = []
    img = np.flatnonzero(q_mod == IMAGE)
    if len(img):
        rel = [pos[bench.relevant[i]][pos[bench.relevant[i]] >= 0] for i in img]
        res = pooled_bias_from_embeddings(q[torch.from_numpy(img)], caps, rel, langs, k=k, ks=(), ddof=ddof,
                                          with_ap=False, chunk_size=chunk_size)
        keys = row_keys(meta, bench.name, direction=IMAGE_TO_TEXT)
        rows += bias_rows(keys, NO_LANGUAGE, res, np.arange(len(img)), ["MRV", "MRV_z", "rank_distance_z"])
    if caption_setting:
        if caption_queries is None:
            qpos = np.arange(len(c_sel))
        else:
            qpos = pos[np.asarray(caption_queries, dtype=np.int64)]
            if (qpos < 0).any():
                raise ConfigError("caption_queries must index caption (text) candidates of the benchmark.")
        xids = [bench.candidates[j].xids for j in c_sel]
        rel = caption_relevance(xids, langs, qpos)
        q_langs = [langs[i] for i in qpos]
        res = pooled_bias_from_embeddings(caps[torch.from_numpy(qpos)], caps, rel, langs, query_groups=q_langs,
                                          exclude=qpos, k=k, ks=(10,), ddof=ddof, chunk_size=chunk_size)
        res.per_query["mAP"] = res.per_query["AP"]
        keys = {**row_keys(meta, bench.name, direction=TEXT_TO_TEXT), "direction": CAPTION_TO_CAPTION}
        arr = np.array([x if x is not None else "" for x in q_langs], dtype=object)
        for lang in sorted({x for x in q_langs if x}):
            rows += bias_rows(keys, lang, res, np.flatnonzero(arr == lang),
                          ["mAP", "R@10", "rank_distance", "rank_distance_z", "MRV", "MRV_z",
                           f"own_language_top{int(k)}_share"])
    return pd.DataFrame(rows, columns=COLUMNS)
