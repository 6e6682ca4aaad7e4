"""Ranking metrics for retrieval: AP, R@k, hit@k, ranks and rank distance (torch, chunked).

Inputs are a score block ``scores`` (n_q, n_c) — higher is better — and, per query,
the indices of its relevant candidates *within the block's columns*, given either as a
list of int arrays or as a padded int matrix (n_q, m) where ``-1`` marks padding.
Indices must be unique per query.

Tie policy: **pessimistic**. The rank of a candidate with score ``s`` is the number of
candidates whose score is ``>= s`` (1-based, the candidate itself included), so a
relevant candidate tied with irrelevant ones is ranked after all of them. The same
ranks feed every metric:

- AP = mean over relevant r of (#relevant with score >= s_r) / rank_r. This is
  exactly ``sklearn.metrics.average_precision_score`` on the score vector, ties included.
- R@k = |relevant with rank <= k| / |relevant| (PROTOCOL §1.4, ours); with one relevant
  candidate it is the hit rate.
- hit@k = 1 if any relevant candidate has rank <= k (CLIP convention for image–text).
- rank distance (language bias, Huang et al. 2023): per query, the ranks of its
  relevant candidates are grouped by candidate language; **(ours)** a language with
  several relevant candidates contributes its best (smallest) rank; the value is
  max − min over those per-language ranks.

A query with no relevant candidate in the block gets NaN for every metric (NaN for rank
distance also when fewer than two languages hold a relevant candidate); callers
exclude NaN queries when averaging.

Cost: ranks are counted per chunk of queries. With <= 4 relevant per query (and
columns sorted by group) by direct (chunk, m, n_c) boolean comparison; otherwise each
query's relevant scores are sorted and every candidate score is bucketed with
``torch.searchsorted`` (one int32 (chunk, n_c) buffer) and ``torch.bincount`` — or,
when few scores reach the query's lowest relevant score (a useful model), only those
are bucketed. Counting per bucket *and per candidate group* gives, in the same pass,
the pooled ranks and the ranks within each language
(:func:`grouped_ranking_metrics`). ``chunk_size`` (queries per chunk) bounds memory;
by default a chunk's buffers stay below about 64 MB.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from hbkit.errors import ConfigError, DataError

#: Memory budget (bytes) for one chunk's buffers when ``chunk_size`` is None.
CHUNK_BYTES = 64 * 2**20

__all__ = [
    "CHUNK_BYTES", "pad_relevant", "relevant_ranks", "average_precision", "recall_at_k", "hit_at_k",
    "rank_distance", "rank_distance_from_ranks", "group_codes", "ranking_metrics", "grouped_ranking_metrics",
]


def pad_relevant(relevant, n_candidates: int | None = None) -> torch.Tensor:
    """Relevant indices as a padded int64 tensor (n_q, m), ``-1`` = padding, m >= 1.

    ``relevant``: a list of 1-d int arrays (one per query) or an already padded (n_q, m)
    array/tensor. With ``n_candidates``, indices are checked to lie in [0, n_candidates).
    """
    if isinstance(relevant, (torch.Tensor, np.ndarray)) and getattr(relevant, "ndim", 1) == 2:
        pad = torch.as_tensor(relevant, dtype=torch.int64)
    else:
        rows = [np.asarray(r, dtype=np.int64).reshape(-1) for r in relevant]
        m = max((len(r) for r in rows), default=0)
        pad = torch.full((len(rows), max(m, 1)), -1, dtype=torch.int64)
        for i, r in enumerate(rows):
            if len(r):
                pad[i, : len(r)] = torch.from_numpy(r)
    if pad.shape[1] == 0:
        pad = torch.full((pad.shape[0], 1), -1, dtype=torch.int64)
    if pad.numel() and (pad.min() < -1 or (n_candidates is not None and pad.max() >= n_candidates)):
        raise DataError(
            f"Relevant candidate indices out of range [0, {n_candidates}) (min {int(pad.min())}, "
            f"max {int(pad.max())}): pass indices into the score block's columns, -1 only as padding."
        )
    return pad


def _check_scores(scores, validate: bool = True) -> torch.Tensor:
    s = torch.as_tensor(scores)
    if s.ndim != 2:
        raise ConfigError(f"scores must be a 2-d (n_queries, n_candidates) matrix, got shape {tuple(s.shape)}.")
    if s.dtype not in (torch.float32, torch.float64):
        s = s.to(torch.float32)
    if validate and torch.isnan(s).any():
        raise DataError("scores contain NaN: the embeddings are broken (e.g. a diverged model); "
                        "re-encode with a valid checkpoint.")
    return s


def _chunk(n_c: int, bytes_per_col: int, chunk_size: int | None) -> int:
    if chunk_size is not None:
        if int(chunk_size) < 1:
            raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}.")
        return int(chunk_size)
    return max(1, CHUNK_BYTES // (bytes_per_col * max(n_c, 1)))


#: Up to this many relevant per query, ranks are counted by direct comparison
#: (m comparisons per score); above it, by sorted thresholds + searchsorted.
_BROADCAST_MAX_M = 4
#: In the searchsorted path, when at most this fraction of scores reach the smallest
#: relevant score, only those are bucketed (by direct comparison).
_SPARSE_FRACTION = 0.2


def _contiguous_bounds(col_group: torch.Tensor, n_groups: int) -> list[tuple[int, int]] | None:
    """Column range of each group if the groups are sorted (contiguous), else None."""
    if n_groups == 1:
        return [(0, col_group.numel())]
    if col_group.numel() > 1 and bool((col_group[1:] < col_group[:-1]).any()):
        return None
    edges = torch.searchsorted(col_group, torch.arange(n_groups + 1, dtype=col_group.dtype)).tolist()
    return [(edges[g], edges[g + 1]) for g in range(n_groups)]


def count_at_least(s: torch.Tensor, thr: torch.Tensor, col_group: torch.Tensor, n_groups: int,
                   chunk_size: int | None) -> torch.Tensor:
    """counts[i, j, g] = #{c in group g : s[i, c] >= thr[i, j]}: int64 (n_q, m, G).

    ``col_group``: int64 (n_c,) group of each column, in [0, G).
    """
    n_q, n_c = s.shape
    m, G = thr.shape[1], n_groups
    out = torch.zeros(n_q, m, G, dtype=torch.int64)
    bounds = _contiguous_bounds(col_group, G)
    if m <= _BROADCAST_MAX_M and bounds is not None:
        step = _chunk(n_c, m, chunk_size)  # bool (chunk, m, n_c)
        for a in range(0, n_q, step):
            b = min(a + step, n_q)
            t = thr[a:b].unsqueeze(2)
            for g, (lo, hi) in enumerate(bounds):
                if hi > lo:
                    out[a:b, :, g] = torch.count_nonzero(s[a:b, lo:hi].unsqueeze(1) >= t, dim=-1)
        return out
    width = G * (m + 1)  # bins per query: one run of m + 1 buckets per group
    step = min(_chunk(n_c, 4, chunk_size), (2**31 - 1) // width)  # int32 (chunk, n_c); bins fit int32
    col_off = (col_group * (m + 1)).to(torch.int32)
    for a in range(0, n_q, step):
        b = min(a + step, n_q)
        srt, order = torch.sort(thr[a:b], dim=1)  # ascending; +inf padding last
        sc = s[a:b]
        # Only scores >= the smallest threshold count towards any rank. For a useful
        # model these are few (relevant candidates rank high), so bucket only them.
        keep = sc >= srt[:, :1]
        if int(torch.count_nonzero(keep)) <= _SPARSE_FRACTION * keep.numel():
            rows, cols = keep.nonzero().unbind(1)
            vals = sc[rows, cols]
            flat = rows * width + col_off[cols]
            sub = max(1, CHUNK_BYTES // (8 * m))  # kept scores per (sub, m) comparison
            for k in range(0, len(vals), sub):  # bucket = number of thresholds <= score (1..m here)
                flat[k:k + sub] += (vals[k:k + sub].unsqueeze(1) >= srt[rows[k:k + sub]]).sum(1)
        else:
            pos = torch.searchsorted(srt, sc.contiguous(), right=True, out_int32=True)  # 0..m
            pos += col_off
            pos += (torch.arange(b - a, dtype=torch.int32) * width).unsqueeze(1)
            flat = pos.view(-1)
        counts = torch.bincount(flat, minlength=(b - a) * width).view(b - a, G, m + 1)
        # scores >= srt[j] are those in buckets > j
        ge = counts.flip(2).cumsum(2).flip(2)[:, :, 1:]
        ge = torch.empty_like(ge).scatter_(2, order.unsqueeze(1).expand_as(ge), ge)  # back to thr order
        out[a:b] = ge.transpose(1, 2)
    return out


class _Stats:
    """Ranking statistics in a compact layout (n_q, m_c): valid relevant entries first.

    counts (n_q, m_c, G): per-group counts of scores >= each relevant score;
    ranks (n_q, m_c): pooled pessimistic ranks; above_all / above_same: #relevant
    (pooled / of the same group) with score >= this one's; rel_group: group of each
    relevant; perm maps compact columns back to the padded input layout.
    """

    def __init__(self, scores, relevant, codes: np.ndarray | None, chunk_size: int | None, validate: bool):
        s = _check_scores(scores, validate)
        n_q, n_c = s.shape
        pad = pad_relevant(relevant, n_c if validate else None)
        if pad.shape[0] != n_q:
            raise ConfigError(f"Got relevant lists for {pad.shape[0]} queries but scores for {n_q} queries.")
        valid_in = pad >= 0
        perm = torch.argsort((~valid_in).to(torch.int8), dim=1, stable=True)
        m_c = max(int(valid_in.sum(1).max()) if n_q else 0, 1)
        self.perm = perm[:, :m_c]
        self.pad = pad
        cpad = pad.gather(1, self.perm)
        self.valid = cpad >= 0
        if codes is None:
            col_group = torch.zeros(n_c, dtype=torch.int64)
            self.n_groups = 1
        else:
            if len(codes) != n_c:
                raise ConfigError(f"candidate_groups has {len(codes)} labels but scores have {n_c} candidates.")
            col_group = torch.as_tensor(codes, dtype=torch.int64)
            n_real = int(col_group.max()) + 1 if n_c and int(col_group.max()) >= 0 else 0
            # candidates without a group (-1) form one extra group, used only for pooled ranks
            col_group = torch.where(col_group >= 0, col_group, n_real)
            self.n_groups = n_real + 1
        self.n_real_groups = self.n_groups - 1 if codes is not None else 1
        rel = s.gather(1, cpad.clamp(min=0)).masked_fill(~self.valid, float("inf"))  # (n_q, m_c)
        self.rel_group = col_group[cpad.clamp(min=0)].masked_fill(~self.valid, -1)
        ge = (rel.unsqueeze(1) >= rel.unsqueeze(2)) & self.valid.unsqueeze(1)  # [i, j, k]: s_k >= s_j
        self.above_all = ge.sum(-1)
        self.above_same = (ge & (self.rel_group.unsqueeze(1) == self.rel_group.unsqueeze(2))).sum(-1)
        self.counts = count_at_least(s, rel, col_group, self.n_groups, chunk_size)
        self.ranks = self.counts.sum(-1).masked_fill(~self.valid, 0)

    def to_input_layout(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(self.pad).scatter_(1, self.perm, x.masked_fill(~self.valid, 0))

    def real_group_of_relevant(self) -> torch.Tensor:
        """Group code per compact relevant entry, -1 for padding and group-less candidates."""
        g = self.rel_group
        return torch.where(g < self.n_real_groups, g, -1)


def _rank_stats(scores, relevant, chunk_size: int | None = None, validate: bool = True) -> _Stats:
    return _Stats(scores, relevant, None, chunk_size, validate)


def relevant_ranks(scores, relevant, *, chunk_size: int | None = None) -> np.ndarray:
    """Pessimistic 1-based ranks of each query's relevant candidates: int64 (n_q, m).

    Column j holds the rank of the j-th relevant index as given (padded layout);
    0 marks padding.
    """
    st = _rank_stats(scores, relevant, chunk_size)
    return st.to_input_layout(st.ranks).numpy()


def _ap(ranks: torch.Tensor, rel_above: torch.Tensor, valid: torch.Tensor) -> np.ndarray:
    n_rel = valid.sum(1)
    prec = torch.where(valid, rel_above.double() / ranks.clamp(min=1).double(), torch.zeros((), dtype=torch.float64))
    ap = prec.sum(1) / n_rel.clamp(min=1).double()
    return ap.masked_fill(n_rel == 0, float("nan")).numpy()


def _recall(ranks: torch.Tensor, valid: torch.Tensor, k: int) -> np.ndarray:
    n_rel = valid.sum(1)
    hit = (valid & (ranks <= k)).sum(1).double()
    return (hit / n_rel.clamp(min=1).double()).masked_fill(n_rel == 0, float("nan")).numpy()


def _hit(ranks: torch.Tensor, valid: torch.Tensor, k: int) -> np.ndarray:
    n_rel = valid.sum(1)
    hit = (valid & (ranks <= k)).any(1).double()
    return hit.masked_fill(n_rel == 0, float("nan")).numpy()


def _check_ks(ks) -> list[int]:
    ks = [int(k) for k in ks]
    if any(k < 1 for k in ks):
        raise ConfigError(f"Cut-offs k must be positive integers, got {ks}.")
    return ks


def average_precision(scores, relevant, *, chunk_size: int | None = None) -> np.ndarray:
    """Average precision per query (float64, (n_q,)); NaN where no relevant candidate."""
    st = _rank_stats(scores, relevant, chunk_size)
    return _ap(st.ranks, st.above_all, st.valid)


def recall_at_k(scores, relevant, ks: Sequence[int] = (1, 10), *, chunk_size: int | None = None) -> dict[int, np.ndarray]:
    """R@k = |relevant in top k| / |relevant| per query, for each k: {k: float64 (n_q,)}."""
    ks = _check_ks(ks)
    st = _rank_stats(scores, relevant, chunk_size)
    return {k: _recall(st.ranks, st.valid, k) for k in ks}


def hit_at_k(scores, relevant, ks: Sequence[int] = (1, 5, 10), *, chunk_size: int | None = None) -> dict[int, np.ndarray]:
    """hit@k = 1.0 if any relevant candidate is in the top k, else 0.0: {k: float64 (n_q,)}."""
    ks = _check_ks(ks)
    st = _rank_stats(scores, relevant, chunk_size)
    return {k: _hit(st.ranks, st.valid, k) for k in ks}


def group_codes(labels) -> tuple[np.ndarray, list]:
    """Integer codes (n,) for group labels (e.g. candidate languages) and the sorted label list.

    ``None`` and ``""`` mean "no group" and get code -1.
    """
    labels = list(labels)
    names = sorted({x for x in labels if x is not None and x != ""}, key=str)
    index = {x: i for i, x in enumerate(names)}
    codes = np.array([index.get(x, -1) if x is not None and x != "" else -1 for x in labels], dtype=np.int64)
    return codes, names


def _codes_and_names(candidate_groups) -> tuple[np.ndarray, list]:
    groups = np.asarray(candidate_groups)
    if groups.dtype.kind in "iu":
        codes = groups.astype(np.int64)
        return codes, list(range(int(codes.max()) + 1 if codes.size else 0))
    return group_codes(groups.tolist())


def rank_distance_from_ranks(ranks, groups) -> np.ndarray:
    """Rank distance per query from padded ranks and group codes, both (n_q, m).

    ``ranks``: 1-based ranks, 0 = padding. ``groups``: int group (language) code per
    relevant candidate, -1 = no group (ignored). Per group the best (smallest) rank is
    used; the result is max − min over groups (float64 (n_q,)), NaN with < 2 groups.
    """
    r = torch.as_tensor(np.asarray(ranks), dtype=torch.int64)
    g = torch.as_tensor(np.asarray(groups), dtype=torch.int64)
    if r.shape != g.shape or r.ndim != 2:
        raise ConfigError(f"ranks and groups must be 2-d of the same shape, got {tuple(r.shape)} and {tuple(g.shape)}.")
    n_q = r.shape[0]
    use = (r > 0) & (g >= 0)
    n_g = int(g.max()) + 1 if g.numel() and int(g.max()) >= 0 else 0
    if n_g == 0:
        return np.full(n_q, np.nan)
    big = torch.iinfo(torch.int64).max
    best = torch.full((n_q, n_g + 1), big, dtype=torch.int64)
    best.scatter_reduce_(1, torch.where(use, g, n_g), torch.where(use, r, big), reduce="amin")
    best = best[:, :n_g]
    present = best < big
    n_present = present.sum(1)
    hi = torch.where(present, best, torch.zeros((), dtype=torch.int64)).amax(1)
    lo = torch.where(present, best, torch.full((), big, dtype=torch.int64)).amin(1)
    out = (hi - lo).double().masked_fill(n_present < 2, float("nan"))
    return out.numpy()


def rank_distance(scores, relevant, candidate_groups, *, chunk_size: int | None = None) -> np.ndarray:
    """Rank distance (language bias) per query: float64 (n_q,), NaN with < 2 languages.

    ``candidate_groups``: the language (any label; None/"" = none) of each of the block's
    n_c candidates, or int codes (-1 = none).
    """
    codes, _ = _codes_and_names(candidate_groups)
    st = _Stats(scores, relevant, codes, chunk_size, True)
    return rank_distance_from_ranks(st.ranks.numpy(), st.real_group_of_relevant().numpy())


def _metrics(ranks, above, valid, ks, hit_ks) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {"AP": _ap(ranks, above, valid)}
    for k in ks:
        out[f"R@{k}"] = _recall(ranks, valid, k)
    for k in hit_ks:
        out[f"hit@{k}"] = _hit(ranks, valid, k)
    out["n_relevant"] = valid.sum(1).double().numpy()
    return out


def ranking_metrics(scores, relevant, *, ks: Sequence[int] = (), hit_ks: Sequence[int] = (),
                    candidate_groups=None, chunk_size: int | None = None,
                    validate: bool = True) -> dict[str, np.ndarray]:
    """All metrics from one ranking pass: {name: float64 (n_q,)}.

    Keys: ``"AP"``, ``"R@k"`` for k in ``ks``, ``"hit@k"`` for k in ``hit_ks``,
    ``"n_relevant"`` (count per query), and ``"rank_distance"`` when
    ``candidate_groups`` (n_c labels, or int codes with -1 = none) is given.
    ``validate=False`` skips the NaN and index-range checks (for callers that made them).
    """
    ks, hit_ks = _check_ks(ks), _check_ks(hit_ks)
    codes = None if candidate_groups is None else _codes_and_names(candidate_groups)[0]
    st = _Stats(scores, relevant, codes, chunk_size, validate)
    out = _metrics(st.ranks, st.above_all, st.valid, ks, hit_ks)
    if codes is not None:
        out["rank_distance"] = rank_distance_from_ranks(st.ranks.numpy(), st.real_group_of_relevant().numpy())
    return out


def grouped_ranking_metrics(scores, relevant, candidate_groups, *, ks: Sequence[int] = (),
                            group_ks: Sequence[int] = (), hit_ks: Sequence[int] = (),
                            chunk_size: int | None = None, validate: bool = True
                            ) -> tuple[dict[str, np.ndarray], dict]:
    """Pooled metrics and per-group metrics from one ranking pass.

    Returns ``(pooled, per_group)``: ``pooled`` is :func:`ranking_metrics` with
    ``candidate_groups`` (R@k for ``ks``, hit@k for ``hit_ks``, rank distance);
    ``per_group[label]`` holds, for each group (language), the metrics of the block
    restricted to that group's candidates and the relevant ones among them (AP, R@k
    for ``group_ks``, hit@k, n_relevant), i.e. what :func:`ranking_metrics` gives on
    ``scores[:, group columns]``. Candidates without a group count in ``pooled`` only.
    Sorting the columns by group makes this faster for queries with <= 4 relevant.
    """
    ks, group_ks, hit_ks = _check_ks(ks), _check_ks(group_ks), _check_ks(hit_ks)
    codes, names = _codes_and_names(candidate_groups)
    st = _Stats(scores, relevant, codes, chunk_size, validate)
    rel_g = st.real_group_of_relevant()
    pooled = _metrics(st.ranks, st.above_all, st.valid, ks, hit_ks)
    pooled["rank_distance"] = rank_distance_from_ranks(st.ranks.numpy(), rel_g.numpy())
    per_group = {}
    for g, name in enumerate(names):
        valid_g = st.valid & (rel_g == g)
        ranks_g = st.counts[:, :, g].masked_fill(~valid_g, 0)
        per_group[name] = _metrics(ranks_g, st.above_same, valid_g, group_ks, hit_ks)
    return pooled, per_group
