"""The one pass over image score blocks behind :mod:`hbkit.image_text_eval`.

A score block holds every caption candidate (rows, the :class:`CaptionPool`) against a chunk of
queries (columns). :func:`score_block` turns one block into every per-query number the image–text
settings need (pooled AP, R@10, rank distance, MRV, the z-scored control, top-k language shares,
and the per-language AP / R@k / hit@k), counting pessimistic ranks only from the cells at or above
each query's thresholds (:data:`SPARSE_FRACTION` bounds how many; above it the ranks are counted
in buckets, as in :mod:`hbkit.metrics`). :func:`scan_blocks` runs it over chunks;
:class:`TextToImageRanks` collects the text→image ranks from the same blocks. The values are the
ones :func:`hbkit.evaluation.evaluate_embeddings` and :func:`hbkit.language_bias.language_bias_table`
give (tested equal).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from hbkit.benchmark import RetrievalBenchmark
from hbkit.engine.progress import progress
from hbkit.language_bias import rank_spread, shares_sorted
from hbkit.metrics import count_at_least, group_codes, pad_relevant

#: Cells of a block extracted for exact counting; above this fraction, bucketing is used instead.
SPARSE_FRACTION = 1 / 16
#: R@k cut-off of the multilingual rows (PROTOCOL §1.4).
MULTI_K = 10

__all__ = ["MULTI_K", "SPARSE_FRACTION", "CaptionPool", "TextToImageRanks", "scan_blocks", "score_block"]


class CaptionPool:
    """The caption candidates: the rows of every score block, with their languages."""

    def __init__(self, bench: RetrievalBenchmark, c: torch.Tensor, c_cap: np.ndarray) -> None:
        codes, self.langs = group_codes([bench.candidates[j].lang for j in c_cap])
        self.ids = c_cap  # candidate index of each row
        self.codes = torch.from_numpy(np.where(codes >= 0, codes, len(self.langs)))  # int64 (n_c,), L = none
        lo = int(c_cap[0])
        contiguous = c_cap[-1] - lo == len(c_cap) - 1  # c_cap is increasing
        self.emb = c[lo:lo + len(c_cap)] if contiguous else c[torch.from_numpy(c_cap)]
        self.pos = np.full(len(bench.candidates) + 1, -1, dtype=np.int64)  # last entry: padding
        self.pos[c_cap] = np.arange(len(c_cap))
        self.ind = torch.nn.functional.one_hot(self.codes, len(self.langs) + 1).to(torch.float32)  # (n_c, L + 1)
        self.count = self.ind.sum(0)  # rows per language

    def relevant(self, bench: RetrievalBenchmark, queries: np.ndarray, drop_code: int | None = None) -> torch.Tensor:
        """Padded rows (n, m) of each query's relevant captions (-1 = padding), optionally without one language."""
        cache: dict[int, np.ndarray] = {}
        out = []
        for i in queries:
            arr = bench.relevant[i]
            r = cache.get(id(arr))
            if r is None:
                r = self.pos[arr]
                r = r[r >= 0]
                cache[id(arr)] = r
            out.append(r if drop_code is None else r[self.codes.numpy()[r] != drop_code])
        return pad_relevant(out)


def _extract(T: torch.Tensor, thr: torch.Tensor, buf: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
    """(rows, cols, values) of the cells with T >= thr (broadcast), or None when they exceed SPARSE_FRACTION."""
    torch.ge(T, thr, out=buf)
    if int(torch.count_nonzero(buf)) > SPARSE_FRACTION * buf.numel():
        return None
    rows, cols = buf.nonzero().unbind(1)
    return rows, cols, T[rows, cols]


def _count(thr: torch.Tensor, groups: torch.Tensor, n_groups: int, ext) -> torch.Tensor:
    """c[i, g, r] = #{extracted cells of column i in group g with value >= thr[i, r]}: int64 (b, n_groups, m),
    ``ext`` = (rows, cols, values) holding every cell >= a column's smallest threshold; +inf = padding."""
    b, m = thr.shape
    rows, cols, vals = ext
    out = torch.zeros(b * n_groups, m, dtype=torch.int64)
    key = cols * n_groups + groups[rows]
    step = max(1, 2**22 // max(m, 1))
    for a in range(0, len(vals), step):
        s = slice(a, a + step)
        out.index_add_(0, key[s], (vals[s, None] >= thr[cols[s]]).to(torch.int64))
    return out.view(b, n_groups, m)


def _shares(ext, b: int, codes: torch.Tensor, L: int, k_eff: torch.Tensor) -> torch.Tensor | None:
    """Top-k language shares (b, L) as :func:`hbkit.language_bias.top_k_language_share` from the extracted
    cells, None unless they hold each column's k_eff best."""
    rows, cols, vals = ext
    n_i = torch.bincount(cols, minlength=b)
    if not bool((n_i >= k_eff).all()):
        return None
    order = torch.argsort(vals, descending=True, stable=True)
    order = order[torch.argsort(cols[order], stable=True)]  # by column, best first
    start = n_i.cumsum(0) - n_i
    t = vals[order][(start + k_eff - 1).clamp(0, max(len(vals) - 1, 0))] if len(vals) else torch.zeros(b)
    key = cols * (L + 1) + codes[rows]
    c_gt = torch.zeros(b * (L + 1), dtype=torch.float64).index_add_(0, key, (vals > t[cols]).double()).view(b, -1)
    c_eq = torch.zeros(b * (L + 1), dtype=torch.float64).index_add_(0, key, (vals == t[cols]).double()).view(b, -1)
    w = (k_eff - c_gt.sum(1)) / c_eq.sum(1).clamp(min=1)
    share = (c_gt + w[:, None] * c_eq) / k_eff.clamp(min=1).double()[:, None]
    share[k_eff == 0] = float("nan")
    return share[:, :L]


def _lang_stats(T: torch.Tensor, pool: CaptionPool, D: torch.Tensor, ex_rows: torch.Tensor, ex_cols: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and 1/std per language and column, float32 (L, b), as :func:`hbkit.language_bias.zscore_by_language`:
    two passes, sums as products with the one-hot language indicator (n_c, L + 1); the excluded cells
    take no part; a std below 1e-6 of the RMS score counts as 0 (1/std := 1). ``D``: (n_c, b) scratch."""
    ind, L = pool.ind, len(pool.langs)
    T[ex_rows, ex_cols] = 0
    cnt = pool.count[:, None].expand(L + 1, T.shape[1]).clone()
    cnt[pool.codes[ex_rows], ex_cols] -= 1
    cnt.clamp_(min=1)
    mean = (ind.T @ T) / cnt
    mean[L] = 0
    torch.sub(T, torch.index_select(mean, 0, pool.codes, out=D), out=D)  # deviations from the language mean
    D[ex_rows, ex_cols] = 0
    T[ex_rows, ex_cols] = float("-inf")
    std = ((ind.T @ D.square_()) / cnt).sqrt()
    inv = torch.where(std > 1e-6 * (mean * mean + std * std).sqrt(), 1 / std, torch.ones(()))
    return mean[:L], inv[:L]


def _z(vals: torch.Tensor, g: torch.Tensor, cols: torch.Tensor, mean: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
    """z-scores (s − mean) · (1/std) of values in languages ``g`` (L = none: unchanged) and columns ``cols``."""
    L = mean.shape[0]
    if L == 0:
        return vals
    gi = g.clamp(max=L - 1)
    return torch.where(g < L, (vals - mean[gi, cols]) * inv[gi, cols], vals)


def _own_ranks(T: torch.Tensor, rs: torch.Tensor, w: torch.Tensor, g_rel: torch.Tensor, pool: CaptionPool,
               D: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
    """Rank of each relevant cell within its language's rows, int64 (b, m) (``w``: relevant with a language):
    per level l, the l-th relevant of each (query, language) is counted for all languages at once: cells at
    or above a per-row threshold, summed per language as an indicator product (exact below 2^24)."""
    b, m = rs.shape
    L, ind = len(pool.langs), pool.ind
    key = torch.where(w, g_rel, L + 1)
    order = torch.argsort(key, dim=1, stable=True)
    ks = key.gather(1, order)
    pos = torch.arange(m).expand(b, m)
    new = torch.ones_like(ks, dtype=torch.bool)
    new[:, 1:] = ks[:, 1:] != ks[:, :-1]
    level = torch.empty_like(order).scatter_(1, order, pos - torch.where(new, pos, 0).cummax(1).values)
    own = torch.zeros(b, m, dtype=torch.int64)
    for lv in range(int(level[w].max()) + 1 if bool(w.any()) else 0):
        sel = w & (level == lv)
        qi, ri = torch.nonzero(sel, as_tuple=True)
        thr = torch.full((L + 1, b), float("inf"))
        thr[g_rel[qi, ri], qi] = rs[qi, ri]
        torch.ge(T, torch.index_select(thr, 0, pool.codes, out=D), out=buf)  # per-row thresholds
        counts = ind.T @ D.copy_(buf)  # (L + 1, b)
        own[qi, ri] = counts[g_rel[qi, ri], qi].round().long()
    return own


def score_block(T: torch.Tensor, rel: torch.Tensor, pool: CaptionPool, buf: torch.Tensor, D: torch.Tensor, *,
           exclude: torch.Tensor | None = None, pooled: bool = True, group_ks: Sequence[int] = (),
           hit_ks: Sequence[int] = (), k: int = 10, ddof: int = 0) -> dict[str, np.ndarray]:
    """Per-query metrics of one score block T (n_c, b): caption rows × query columns (modified).

    ``rel`` (b, m): relevant rows per query, -1 = padding; ``exclude`` (b,): a row scored −inf
    per query (-1 = none); ``buf`` / ``D``: bool / float (n_c, b) scratch. ``pooled``: AP, R@10, rank distance,
    MRV, z-scored control and shares (b, L) over all rows; per language g: ``AP_g``, ``R@k_g``,
    ``hit@k_g`` (b, L) from the ranks within g's rows. NaN where undefined.
    """
    n_c, b = T.shape
    L, codes = len(pool.langs), pool.codes
    ar = torch.arange(b)
    ex = torch.full((b,), -1, dtype=torch.int64) if exclude is None else exclude
    ex_cols = torch.nonzero(ex >= 0).flatten()
    ex_rows = ex[ex_cols]
    T[ex_rows, ex_cols] = float("-inf")
    valid = rel >= 0
    relc = rel.clamp(min=0)
    rs = T[relc, ar[:, None]]  # (b, m) relevant scores
    thr = rs.masked_fill(~valid, float("inf"))
    g_rel = torch.where(valid, codes[relc], torch.full_like(rel, L + 1))  # L = no language, L + 1 = padding
    real, idx = g_rel < L, g_rel.clamp(max=L)
    n_rel = valid.sum(1)
    k_eff = (n_c - (ex >= 0).long()).clamp(max=k)
    tau = thr.amin(1)  # every rank counts cells >= the column's lowest relevant score
    cut = tau
    if pooled:
        need = torch.nonzero(n_rel < k_eff).flatten()
        if len(need):  # the extracted cells must also hold the column's top k
            stride = n_c // (256 * k)
            low = torch.topk(T[::stride], k, dim=0).values[k - 1] if stride >= 1 else torch.full((b,), -float("inf"))
            tau[need] = torch.minimum(tau[need], low[need])
        mean, inv = _lang_stats(T, pool, D, ex_rows, ex_cols)
        # each language's best relevant row: the z-scored control ranks it again (z is increasing per language)
        top = torch.full((b, L + 2), float("-inf")).scatter_reduce_(1, g_rel, rs.masked_fill(~real, float("-inf")),
                                                                   "amax")
        is_best = real & (rs == top.gather(1, g_rel))
        best_row = torch.full((b, L + 2), -1, dtype=torch.int64).scatter_(1, torch.where(is_best, g_rel, L + 1),
                                                                          torch.where(is_best, rel, -1))[:, :L]
        present = best_row >= 0
        zt = _z(T[best_row.clamp(min=0), ar[:, None]], torch.arange(L).expand(b, L), ar[:, None].expand(b, L),
                mean, inv).masked_fill(~present, float("inf"))
        zmin = zt.amin(1) if L else torch.full((b,), float("inf"))
        # cells with z >= zmin, in score space (a margin far above float32 rounding)
        off = zmin / inv
        s_thr = torch.where(torch.isfinite(zmin), mean + off - 1e-4 * (mean.abs() + off.abs()) - 1e-30,
                            torch.full((), float("inf")))
        cut = torch.index_select(torch.cat([torch.minimum(s_thr, tau), torch.minimum(zmin, tau)[None]]), 0, codes,
                                 out=D)  # per-row thresholds
    ext = _extract(T, cut, buf) if pooled else None
    if ext is not None:
        keep = ext[2] >= tau[ext[1]]
        raw = tuple(x[keep] for x in ext)
        cnt = _count(thr, codes, L + 1, raw)  # (b, L + 1, m)
        own, ranks = cnt.gather(1, idx[:, None, :]).squeeze(1), cnt.sum(1)  # within the language / pooled
    else:
        own = _own_ranks(T, rs, valid & real, g_rel, pool, D, buf) if group_ks or hit_ks else None
        if pooled:
            ranks = count_at_least(T.T, thr, torch.zeros(n_c, dtype=torch.int64), 1, None)[:, :, 0]
    ge = (rs[:, None, :] >= rs[:, :, None]) & valid[:, None, :]  # [i, r, r']: s_r' >= s_r
    out: dict[str, np.ndarray] = {}
    nan = torch.full((), float("nan"), dtype=torch.float64)
    zero_f = torch.zeros((), dtype=torch.float64)
    big = torch.iinfo(torch.int64).max
    if group_ks or hit_ks:
        above = (ge & (g_rel[:, None, :] == g_rel[:, :, None])).sum(2)
        w = valid & real

        def per_lang(x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(b, L + 1, dtype=torch.float64).scatter_add_(1, idx, x)[:, :L]

        n_g = per_lang(w.double())
        div = n_g.clamp(min=1)
        out["AP_g"] = torch.where(n_g > 0, per_lang(torch.where(w, above.double() / own.clamp(min=1).double(), zero_f)) / div, nan).numpy()
        for x in group_ks:
            out[f"R@{x}_g"] = torch.where(n_g > 0, per_lang((w & (own <= x)).double()) / div, nan).numpy()
        best_own = torch.full((b, L + 1), big).scatter_reduce_(1, idx, torch.where(w, own, big), "amin")[:, :L]
        for x in hit_ks:
            out[f"hit@{x}_g"] = torch.where(n_g > 0, (best_own <= x).double(), nan).numpy()
    if not pooled:
        return out
    nr = n_rel.double().clamp(min=1)
    ap = torch.where(valid, ge.sum(2).double() / ranks.clamp(min=1).double(), zero_f).sum(1)
    out["AP"] = torch.where(n_rel > 0, ap / nr, nan).numpy()
    out[f"R@{MULTI_K}"] = torch.where(n_rel > 0, (valid & (ranks <= MULTI_K)).sum(1) / nr, nan).numpy()
    best = torch.full((b, L + 1), big).scatter_reduce_(1, idx, torch.where(real, ranks, big), "amin")[:, :L]
    out["rank_distance"], out["MRV"] = rank_spread(torch.where(best < big, best.double(), nan).numpy(), ddof)
    shares = None if ext is None else _shares(raw, b, codes, L, k_eff)
    out["shares"] = (shares_sorted(T.T, codes, L, k) if shares is None else shares).numpy()
    if ext is not None:
        rows, cols, vals = ext
        z = _z(vals, codes[rows], cols, mean, inv)
        keep = z >= zmin[cols]
        ranks_z = _count(zt, torch.zeros(n_c, dtype=torch.int64), 1, (rows[keep], cols[keep], z[keep]))[:, 0]
    else:  # z-score the whole block
        zero = torch.zeros((1, b))
        torch.sub(T, torch.index_select(torch.cat([mean, zero]), 0, codes, out=D), out=D)
        D.mul_(torch.cat([inv, zero + 1])[codes])
        ranks_z = count_at_least(D.T, zt, torch.zeros(n_c, dtype=torch.int64), 1, None)[:, :, 0]
    out["rank_distance_z"], out["MRV_z"] = rank_spread(torch.where(present, ranks_z.double(), nan).numpy(), ddof)
    return out


def scan_blocks(pool: CaptionPool, emb: torch.Tensor, rel: torch.Tensor, step: int, desc: str, show: bool,
          exclude: torch.Tensor | None = None, on_block=None, **kw) -> dict[str, np.ndarray]:
    """:func:`score_block` over chunks of ``step`` queries (``emb`` (n, d)), results concatenated."""
    parts: dict[str, list[np.ndarray]] = {}
    n = emb.shape[0]
    T = buf = D = torch.empty(0)
    for lo in progress(range(0, n, step), show=show, desc=desc, leave=False):
        hi = min(n, lo + step)
        if T.shape[1:] != (hi - lo,):
            T = torch.empty(pool.emb.shape[0], hi - lo)
            buf, D = torch.empty(T.shape, dtype=torch.bool), torch.empty(T.shape)
        torch.mm(pool.emb, emb[lo:hi].T, out=T)
        if on_block is not None:
            on_block(T, lo, hi)
        res = score_block(T, rel[lo:hi], pool, buf, D, exclude=None if exclude is None else exclude[lo:hi], **kw)
        for key, v in res.items():
            parts.setdefault(key, []).append(v)
    return {key: np.concatenate(v) for key, v in parts.items()}


class TextToImageRanks:
    """Text→image ranks from the image blocks (shared embeddings, one image per caption): the rank of
    a caption is 1 + the number of other images scoring at least its own image's score. The own
    scores come from the same products as the blocks (``step`` images at a time), so that a score
    compared with them is rounded alike."""

    def __init__(self, pool: CaptionPool, img: torch.Tensor, rows: np.ndarray, cols: np.ndarray, step: int) -> None:
        self.rows, self.cols = torch.from_numpy(rows), torch.from_numpy(cols)  # pool row, own image column
        self.by_col = torch.argsort(self.cols, stable=True)
        self.col_sorted = self.cols[self.by_col].contiguous()
        self.s = torch.full((len(pool.ids),), float("inf"))
        for lo in range(0, img.shape[0], step):
            r, c = self._owned(lo, lo + step)
            self.s[r] = (pool.emb[r] @ img[lo:lo + step].T).gather(1, c[:, None]).flatten()
        self.above = torch.zeros(len(pool.ids), dtype=torch.int64)

    def _owned(self, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool rows of the captions whose image is one of the columns lo:hi, and that column − lo."""
        a, b = torch.searchsorted(self.col_sorted, torch.tensor([lo, hi])).tolist()
        sel = self.by_col[a:b]
        return self.rows[sel], self.cols[sel] - lo

    def __call__(self, T: torch.Tensor, lo: int, hi: int) -> None:
        r, c = self._owned(lo, hi)
        own = T[r, c]
        T[r, c] = float("-inf")  # the own image is not counted
        hot = torch.nonzero(T.amax(1) >= self.s).flatten()  # captions with another image at least as high
        if len(hot) > T.shape[0] // 4:
            self.above += (T >= self.s[:, None]).sum(1, dtype=torch.int32)
        elif len(hot):
            self.above.index_add_(0, hot, (T[hot] >= self.s[hot, None]).sum(1))
        T[r, c] = own

    def ranks(self) -> np.ndarray:
        """float64 (n,) rank of each caption query."""
        return (self.above[self.rows] + 1).double().numpy()
