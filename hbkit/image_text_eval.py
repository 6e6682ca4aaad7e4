"""Image–text evaluation in every setting of PROTOCOL §2.2, from one pass over the image score blocks.

:func:`evaluate_image_text_embeddings` takes a benchmark as
:meth:`hbkit.datasets.images.ImageCaptionSet.to_benchmark` builds it (images and captions both as
queries and as candidates) and returns rows with the columns :data:`hbkit.evaluation.COLUMNS`:

===============  =============  =====  =====  ==================================================
direction        setting        query  cand.  metrics
===============  =============  =====  =====  ==================================================
text→image       monolingual    X      ``-``  hit@k (``hit_ks``), hit_mean, mAP
image→text       monolingual    ``-``  X      hit@k, hit_mean, mAP (the captions in X only)
text→text        cross-lingual  X      Y      mAP, R@1 (captions in X → captions in Y ≠ X)
image→text       multilingual   ``-``  all    mAP, R@10, rank_distance, MRV, MRV_z,
                                              rank_distance_z, top{k}_share:<lang>, ..._max_minus_min
caption→caption  multilingual   X      all    the caption rows of ``language_bias_table``
===============  =============  =====  =====  ==================================================

Each value is the one :func:`hbkit.evaluation.evaluate_embeddings` (mAP, R@k, hit@k, rank
distance) or :func:`hbkit.language_bias.language_bias_table` (MRV, z-scored control, shares,
caption rows) gives: pessimistic ranks (the number of candidates scoring at least as high),
``hit@k`` = 1 if any relevant item is in the top k (CLIP's R@k), ``hit_mean`` = a query's mean
hit@k over ``hit_ks``; ``value`` = the mean over the queries with a defined value (``n_queries``).
The evaluator's text→text monolingual / multilingual rows, where a caption is relevant to itself,
are replaced by the caption→caption rows (query excluded).

**Cost.** Each chunk of image queries gets one float32 score block (all captions × the chunk)
that yields all its metrics: per-language means and standard deviations as products with a
one-hot language indicator; then the cells at or above each image's lowest relevant score (or
above the z threshold of its language's best relevant caption, mapped back to scores) are
extracted, and the pooled ranks, the ranks within each language, the top-k shares and the
z-scored ranks are counted from them. The text→image ranks come from the same blocks: each
caption's score for its own image is computed first (by the same products, so rounded alike),
then each block adds, per caption, the number of other images scoring at least as high. That
needs shared embeddings (each caption query equal to its candidate twin, each image query to
its candidate — what :func:`evaluate_image_text` gives a model whose text embedding does not
depend on ``kind``) and one image per caption; otherwise the text→image rows take a second pass.
A poor model, whose relevant items spread over the ranking, leaves too many cells to extract
(above :data:`SPARSE_FRACTION` of a block): the ranks are then bucketed as in :mod:`hbkit.metrics`
(same values; about 4× slower for an uninformative model). Cross-lingual rows (ranks within
each language by per-row thresholds) and caption→caption rows cost one caption × caption block
per caption query: cheap for XTD10, about 72× the image pass for all of Crossmodal-3600
(``caption_queries`` samples the latter).

**Re-scoring.** With ``rescore`` (ALBEF's ITM head), the image–text monolingual rows and the
multilingual mAP / R@10 / rank distance come from :func:`hbkit.evaluation.evaluate_embeddings`
with the re-scorer (slower: a pass per direction); the language-bias measures and the
text-tower rows use first-stage scores, as ``language_bias_table`` does.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from hbkit import evaluation as ev
from hbkit import language_bias as lb
from hbkit.benchmark import RetrievalBenchmark
from hbkit.engine.progress import progress, progress_enabled
from hbkit.errors import ConfigError, DataError
from hbkit.metrics import _count_ge, group_codes, pad_relevant, ranking_metrics
from hbkit.parallel import IMAGE, TEXT

#: Budget (bytes) of one float32 score block when ``chunk_size`` is None.
BLOCK_BYTES = 128 * 2**20
#: Cells of a block extracted for exact counting; above this fraction, bucketing is used instead.
SPARSE_FRACTION = 1 / 16
#: R@k cut-off of the multilingual rows (PROTOCOL §1.4).
MULTI_K = 10
#: Name of the mean of a query's hit@k over ``hit_ks``.
HIT_MEAN = "hit_mean"

__all__ = ["BLOCK_BYTES", "HIT_MEAN", "SPARSE_FRACTION", "evaluate_image_text", "evaluate_image_text_embeddings"]


def _matrix(x, name: str, n: int) -> torch.Tensor:
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    t = t.to("cpu", torch.float32)
    if t.ndim != 2 or t.shape[0] != n:
        raise DataError(f"{name} has shape {tuple(t.shape)}; expected ({n}, d), one row per item of the benchmark "
                        "in order. Encode the benchmark's queries and candidates with one model.")
    # a finite sum has no NaN / inf terms; an infinite one is checked cell by cell
    if not all(bool(torch.isfinite(t[a:a + 65536].sum())) or bool(torch.isfinite(t[a:a + 65536]).all())
               for a in range(0, n, 65536)):
        raise DataError(f"{name} contains NaN or infinite values: the encoder is broken "
                        "(e.g. a diverged checkpoint); re-encode with a valid model.")
    return t


class _Pool:
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


def _lang_stats(T: torch.Tensor, pool: _Pool, D: torch.Tensor, ex_rows: torch.Tensor, ex_cols: torch.Tensor
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


def _own_ranks(T: torch.Tensor, rs: torch.Tensor, w: torch.Tensor, g_rel: torch.Tensor, pool: _Pool,
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


def _block(T: torch.Tensor, rel: torch.Tensor, pool: _Pool, buf: torch.Tensor, D: torch.Tensor, *,
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
            ranks = _count_ge(T.T, thr, torch.zeros(n_c, dtype=torch.int64), 1, None)[:, :, 0]
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
    out["rank_distance"], out["MRV"] = lb.rank_spread(torch.where(best < big, best.double(), nan).numpy(), ddof)
    shares = None if ext is None else _shares(raw, b, codes, L, k_eff)
    out["shares"] = (lb._shares_sorted(T.T, codes, L, k) if shares is None else shares).numpy()
    if ext is not None:
        rows, cols, vals = ext
        z = _z(vals, codes[rows], cols, mean, inv)
        keep = z >= zmin[cols]
        ranks_z = _count(zt, torch.zeros(n_c, dtype=torch.int64), 1, (rows[keep], cols[keep], z[keep]))[:, 0]
    else:  # z-score the whole block
        zero = torch.zeros((1, b))
        torch.sub(T, torch.index_select(torch.cat([mean, zero]), 0, codes, out=D), out=D)
        D.mul_(torch.cat([inv, zero + 1])[codes])
        ranks_z = _count_ge(D.T, zt, torch.zeros(n_c, dtype=torch.int64), 1, None)[:, :, 0]
    out["rank_distance_z"], out["MRV_z"] = lb.rank_spread(torch.where(present, ranks_z.double(), nan).numpy(), ddof)
    return out


def _scan(pool: _Pool, emb: torch.Tensor, rel: torch.Tensor, step: int, desc: str, show: bool,
          exclude: torch.Tensor | None = None, on_block=None, **kw) -> dict[str, np.ndarray]:
    """:func:`_block` over chunks of ``step`` queries (``emb`` (n, d)), results concatenated."""
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
        res = _block(T, rel[lo:hi], pool, buf, D, exclude=None if exclude is None else exclude[lo:hi], **kw)
        for key, v in res.items():
            parts.setdefault(key, []).append(v)
    return {key: np.concatenate(v) for key, v in parts.items()}


def _same_rows(a: torch.Tensor, ia: np.ndarray, b: torch.Tensor, ib: np.ndarray) -> bool:
    """Whether rows ``ia`` of ``a`` equal rows ``ib`` of ``b``."""
    if a.data_ptr() == b.data_ptr() and a.stride() == b.stride() and np.array_equal(ia, ib):
        return True
    return all(torch.equal(a[torch.from_numpy(ia[s:s + 32768])], b[torch.from_numpy(ib[s:s + 32768])])
               for s in range(0, len(ia), 32768))


def _t2i_plan(bench, q, c, q_img, q_cap, c_img, pool) -> tuple[np.ndarray, np.ndarray] | None:
    """(pool row, image column) of each caption query when text→image can use the image blocks, else None."""
    if not len(q_img) or not len(q_cap) or len(c_img) != len(q_img):
        return None
    col_of = {bench.queries[i].qid: n for n, i in enumerate(q_img)}
    cand_col = np.array([col_of.get(bench.candidates[j].cid, -1) for j in c_img])
    if (cand_col < 0).any() or len(np.unique(cand_col)) != len(cand_col) or not _same_rows(q, q_img[cand_col], c,
                                                                                              c_img):
        return None
    cap_of = {bench.candidates[j].cid: j for j in pool.ids}
    match = np.array([cap_of.get(bench.queries[i].qid, -1) for i in q_cap])
    if (match < 0).any() or len(np.unique(match)) != len(match) or not _same_rows(q, q_cap, c, match):
        return None
    img_pos = np.full(len(bench.candidates), -1, dtype=np.int64)
    img_pos[c_img] = np.arange(len(c_img))
    cache: dict[int, int] = {}
    own = np.empty(len(q_cap), dtype=np.int64)
    for n, i in enumerate(q_cap):
        arr = bench.relevant[i]
        if id(arr) not in cache:
            r = img_pos[arr]
            r = r[r >= 0]
            cache[id(arr)] = int(r[0]) if len(r) == 1 else -1
        own[n] = cache[id(arr)]
    if (own < 0).any():
        return None
    return pool.pos[match], cand_col[own]


class _TextToImage:
    """Text→image ranks from the image blocks (shared embeddings, one image per caption): the rank of
    a caption is 1 + the number of other images scoring at least its own image's score. The own
    scores come from the same products as the blocks (``step`` images at a time), so that a score
    compared with them is rounded alike."""

    def __init__(self, pool: _Pool, img: torch.Tensor, rows: np.ndarray, cols: np.ndarray, step: int) -> None:
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


def _mean_rows(keys: dict, direction: str, setting: str, ql: str, cl: str,
               metrics: Mapping[str, np.ndarray]) -> list[dict]:
    """One row per metric: the mean over the queries with a defined (non-NaN) value."""
    base = {**keys, "direction": direction, "setting": setting, "query_lang": ql, "candidate_lang": cl}
    return [{**base, "metric": m, "value": float(v[~np.isnan(v)].mean()), "n_queries": int((~np.isnan(v)).sum())}
            for m, v in metrics.items() if (~np.isnan(v)).any()]


def _hit_metrics(hits: Mapping[int, np.ndarray], ap: np.ndarray) -> dict[str, np.ndarray]:
    return {**{f"hit@{x}": v for x, v in hits.items()}, HIT_MEAN: np.mean(np.stack(list(hits.values())), axis=0),
            "mAP": ap}


def _t2i_second_pass(bench, q, c, q_cap, c_img, hks, step, show) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """hit@k and AP of the caption queries from caption × image blocks (:func:`ranking_metrics`)."""
    pos = np.full(len(bench.candidates) + 1, -1, dtype=np.int64)
    pos[c_img] = np.arange(len(c_img))
    rel = pad_relevant([r[r >= 0] for r in (pos[bench.relevant[i]] for i in q_cap)])
    cim = c[torch.from_numpy(c_img)]
    parts: dict[str, list] = {}
    for a in progress(range(0, len(q_cap), step), show=show, desc="caption queries", leave=False):
        out = ranking_metrics(q[torch.from_numpy(q_cap[a:a + step])] @ cim.T, rel[a:a + step], hit_ks=hks,
                              validate=False)
        for key, v in out.items():
            parts.setdefault(key, []).append(v)
    return {x: np.concatenate(parts[f"hit@{x}"]) for x in hks}, np.concatenate(parts["AP"])


def _rescored_rows(bench, q, c, parts, hks, rescore, rescore_k, meta) -> list[dict]:
    """The image–text rows of :func:`hbkit.evaluation.evaluate_embeddings` with the re-scorer."""
    frames = []
    for qi, ci in parts:
        sub = RetrievalBenchmark(bench.name, [bench.queries[i] for i in qi], [bench.candidates[j] for j in ci])
        qm, cm = torch.from_numpy(qi), torch.from_numpy(ci)

        def fn(a: torch.Tensor, b: torch.Tensor, qm: torch.Tensor = qm, cm: torch.Tensor = cm) -> torch.Tensor:
            return rescore(qm[a], cm[b])  # the part's indices -> the benchmark's

        frames.append(ev.evaluate_embeddings(sub, q[qm], c[cm], settings=(ev.MONOLINGUAL, ev.MULTILINGUAL),
                                             ks_multi=(MULTI_K,), hit_ks=hks, rescore=fn, rescore_k=rescore_k,
                                             meta=meta, show_progress=False))
    df = pd.concat(frames, ignore_index=True)
    multi = df.setting == ev.MULTILINGUAL
    df = df[(~multi & df.metric.isin(["mAP"] + [f"hit@{x}" for x in hks]))
            | (multi & df.metric.isin(["mAP", f"R@{MULTI_K}", "rank_distance"]))]
    hits = df[df.metric.str.startswith("hit@")]  # defined for the same queries at every k
    mean = hits.groupby([col for col in ev.COLUMNS if col not in ("metric", "value", "n_queries")], sort=False).agg(
        value=("value", "mean"), n_queries=("n_queries", "max")).reset_index().assign(metric=HIT_MEAN)
    return pd.concat([df, mean[ev.COLUMNS]], ignore_index=True).to_dict("records")


def _pooled_rows(keys: dict, ql: str, res: dict[str, np.ndarray], sel: np.ndarray, langs: list, k: int,
                 ddof: int, metrics: list[str]) -> list[dict]:
    bias = lb.PooledBias({m: v for m, v in res.items() if v.ndim == 1}, res["shares"], langs, k, ddof)
    return lb._rows(keys, ql, bias, sel, metrics)


def evaluate_image_text_embeddings(bench: RetrievalBenchmark, query_emb, cand_emb, *,
                                   meta: Mapping[str, Any] | None = None, hit_ks: Sequence[int] = (1, 5, 10),
                                   k: int = 10, ddof: int = 0, cross_lingual: bool = True,
                                   caption_setting: bool = True, caption_queries: Sequence[int] | None = None,
                                   chunk_size: int | None = None, show_progress: bool | None = None,
                                   rescore: ev.Rescorer | None = None, rescore_k: int = ev.DEFAULT_RESCORE_K
                                   ) -> pd.DataFrame:
    """All §2.2 rows (module doc) of an image–caption benchmark from precomputed embeddings.

    Args:
        bench: as :meth:`ImageCaptionSet.to_benchmark` builds it (image and caption queries and candidates).
        query_emb: (n_queries, d) L2-normalised, in ``bench.queries`` order (tensor or array).
        cand_emb: (n_candidates, d) L2-normalised, in ``bench.candidates`` order.
        meta: fills ``model``, ``strategy``, ``seed``.
        hit_ks: hit@k cut-offs of the monolingual rows (``hit_mean`` is their mean).
        k: top-k cut-off of the language shares. ddof: of MRV's standard deviation (0: population).
        cross_lingual / caption_setting: produce those rows; ``caption_queries``: indices into
            ``bench.candidates`` of the caption→caption queries (default: every caption).
        chunk_size: queries per score block (default: a float32 block of at most :data:`BLOCK_BYTES`).
        rescore / rescore_k: a re-scorer of the image–text rows' first-stage top k (module doc).
    """
    hks = sorted({int(x) for x in hit_ks})
    if not hks or hks[0] < 1:
        raise ConfigError(f"hit_ks must hold positive cut-offs, got {list(hit_ks)}.")
    if isinstance(k, bool) or int(k) < 1 or isinstance(ddof, bool) or int(ddof) < 0:
        raise ConfigError(f"k must be a positive integer and ddof >= 0, got k={k!r}, ddof={ddof!r}.")
    if chunk_size is not None and int(chunk_size) < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}.")
    if rescore is not None and (not callable(rescore) or isinstance(rescore_k, bool) or int(rescore_k) < 1):
        raise ConfigError("rescore must be a function (query_indices, candidate_indices) -> scores and rescore_k a "
                          f"positive integer, got {type(rescore).__name__} and {rescore_k!r}.")
    k, ddof = int(k), int(ddof)
    keys = ev.row_keys(meta, bench.name)
    q = _matrix(query_emb, "query_emb", len(bench.queries))
    c = q if cand_emb is query_emb else _matrix(cand_emb, "cand_emb", len(bench.candidates))
    if q.shape[1] != c.shape[1]:
        raise DataError(f"query_emb has dimension {q.shape[1]} but cand_emb has {c.shape[1]}: "
                        "encode both with the same model.")
    q_img, q_cap = (np.flatnonzero(np.array([x.modality == m for x in bench.queries])) for m in (IMAGE, TEXT))
    c_img, c_cap = (np.flatnonzero(np.array([x.modality == m for x in bench.candidates])) for m in (IMAGE, TEXT))
    if not len(q_img) and not len(c_img):
        raise ConfigError(f"{bench.name}: the benchmark holds no images; evaluate a text benchmark with hbkit."
                          "evaluation.evaluate_embeddings, or build an image one with ImageCaptionSet.to_benchmark().")
    if not len(c_cap):
        raise ConfigError(f"{bench.name}: the benchmark holds no caption candidates; build it with "
                          "ImageCaptionSet.to_benchmark(), which adds every caption as a candidate.")
    show = progress_enabled(show_progress)
    pool = _Pool(bench, c, c_cap)
    L, n_c = len(pool.langs), len(pool.ids)
    step = int(chunk_size) if chunk_size is not None else max(1, BLOCK_BYTES // (4 * n_c))
    q_langs = np.array([bench.queries[i].lang or "" for i in q_cap], dtype=object)
    rows: list[dict] = []
    # image queries: every image→text measure, and the text→image ranks from the same blocks
    img, t2i = None, None
    if len(q_img):
        plan = None if rescore is not None else _t2i_plan(bench, q, c, q_img, q_cap, c_img, pool)
        emb = q[torch.from_numpy(q_img)]
        t2i = None if plan is None else _TextToImage(pool, emb, *plan, step)
        img = _scan(pool, emb, pool.relevant(bench, q_img), step, "image queries", show, on_block=t2i,
                    hit_ks=hks, k=k, ddof=ddof)
    if rescore is not None:
        rows += _rescored_rows(bench, q, c, [(a, b) for a, b in ((q_cap, c_img), (q_img, c_cap)) if len(a) and len(b)],
                               hks, rescore, int(rescore_k), meta)
    elif len(q_cap) and len(c_img):
        if t2i is not None:
            rank = t2i.ranks()
            hits, ap = {x: (rank <= x).astype(np.float64) for x in hks}, 1.0 / rank
        else:
            st = int(chunk_size) if chunk_size is not None else max(1, BLOCK_BYTES // (4 * len(c_img)))
            hits, ap = _t2i_second_pass(bench, q, c, q_cap, c_img, hks, st, show)
        for ql in sorted(set(q_langs)):
            sel = q_langs == ql
            rows += _mean_rows(keys, ev.TEXT_TO_IMAGE, ev.MONOLINGUAL, ql or ev.NO_LANGUAGE, ev.NO_LANGUAGE,
                               _hit_metrics({x: v[sel] for x, v in hits.items()}, ap[sel]))
    if img is not None:
        if rescore is None:
            for g, cl in enumerate(pool.langs):
                rows += _mean_rows(keys, ev.IMAGE_TO_TEXT, ev.MONOLINGUAL, ev.NO_LANGUAGE, cl,
                                   _hit_metrics({x: img[f"hit@{x}_g"][:, g] for x in hks}, img["AP_g"][:, g]))
        img["mAP"] = img["AP"]
        metrics = ([] if rescore is not None else ["mAP", f"R@{MULTI_K}", "rank_distance"]) + ["MRV", "MRV_z",
                                                                                               "rank_distance_z"]
        rows += _pooled_rows({**keys, "direction": ev.IMAGE_TO_TEXT}, ev.NO_LANGUAGE, img, np.arange(len(q_img)),
                             pool.langs, k, ddof, metrics)
    # cross-lingual: captions in X → captions in Y ≠ X (text tower)
    if cross_lingual and L > 1:
        for ql in sorted(set(q_langs) - {""}):
            sel = q_cap[q_langs == ql]
            rel = pool.relevant(bench, sel, drop_code=pool.langs.index(ql) if ql in pool.langs else None)
            res = _scan(pool, q[torch.from_numpy(sel)], rel, step, f"cross-lingual {ql}", show, pooled=False,
                        group_ks=(1,))
            for g, cl in enumerate(pool.langs):
                if cl != ql:
                    rows += _mean_rows(keys, ev.TEXT_TO_TEXT, ev.CROSS_LINGUAL, ql, cl,
                                       {"mAP": res["AP_g"][:, g], "R@1": res["R@1_g"][:, g]})
    # caption → pooled captions (text tower, the query itself excluded)
    if caption_setting:
        qpos = np.arange(n_c) if caption_queries is None else pool.pos[np.asarray(caption_queries, dtype=np.int64)]
        if (qpos < 0).any():
            raise ConfigError("caption_queries must index caption (text) candidates of the benchmark.")
        langs = [bench.candidates[j].lang for j in pool.ids]
        rel = pad_relevant(lb.caption_relevance([bench.candidates[j].xids for j in pool.ids], langs, qpos))
        qp = torch.from_numpy(qpos)
        res = _scan(pool, pool.emb if caption_queries is None else pool.emb[qp], rel, step, "caption queries", show,
                    exclude=qp, k=k, ddof=ddof)
        own = pool.codes[qp].numpy()
        res["mAP"] = res["AP"]
        res[f"own_language_top{k}_share"] = np.where(own < L, res["shares"][np.arange(len(qpos)), own.clip(max=L - 1)],
                                                     np.nan)
        q_l = np.array([langs[i] or "" for i in qpos], dtype=object)
        for ql in sorted(set(q_l) - {""}):
            rows += _pooled_rows({**keys, "direction": lb.CAPTION_TO_CAPTION}, ql, res, np.flatnonzero(q_l == ql),
                                 pool.langs, k, ddof, ["mAP", f"R@{MULTI_K}", "rank_distance", "rank_distance_z",
                                                       "MRV", "MRV_z", f"own_language_top{k}_share"])
    return pd.DataFrame(rows, columns=ev.COLUMNS).astype({"seed": "int64", "n_queries": "int64", "value": "float64"})


def _as_float(e) -> torch.Tensor:
    return torch.as_tensor(np.asarray(e) if not isinstance(e, torch.Tensor) else e).detach().cpu().float()


def evaluate_image_text(model, bench: RetrievalBenchmark, *, batch_size: int = 64,
                        meta: Mapping[str, Any] | None = None, show_progress: bool | None = None,
                        **kw) -> pd.DataFrame:
    """Encode ``bench`` with ``model`` and evaluate it with :func:`evaluate_image_text_embeddings` (``kw``).

    Texts: ``model.encode(texts, kind="query" | "passage", ...)``; images:
    ``model.encode_images(refs, ...)``, each distinct image once (an image's query and candidate
    share one embedding), via :func:`hbkit.evaluation.encode_items`. A model with a
    ``rescore(bench)`` hook gets it as in :func:`hbkit.evaluation.evaluate_model`
    (``rescore=`` in ``kw`` overrides it).
    """
    show = progress_enabled(show_progress)
    name = type(model).__name__
    if not hasattr(model, "encode"):
        raise ConfigError(f"{name} has no encode(texts, kind=...) method: pass an hbkit image–text model.")
    if not hasattr(model, "encode_images"):
        raise ConfigError(f"{name} has no image tower (no encode_images method), but benchmark {bench.name!r} "
                          "holds images: evaluate it with an image–text model such as CLIP or ALBEF.")
    q_emb = _as_float(ev.encode_items(model, bench.queries, "query", batch_size, show))
    row_of = {x.image: i for i, x in enumerate(bench.queries) if x.modality == IMAGE}
    reuse = [j for j, x in enumerate(bench.candidates) if x.modality == IMAGE and x.image in row_of]
    reused = set(reuse)
    rest = [j for j in range(len(bench.candidates)) if j not in reused]
    c_emb = torch.empty(len(bench.candidates), q_emb.shape[1])
    if reuse:
        c_emb[torch.tensor(reuse)] = q_emb[torch.tensor([row_of[bench.candidates[j].image] for j in reuse])]
    if rest:
        e = _as_float(ev.encode_items(model, [bench.candidates[j] for j in rest], "passage", batch_size, show))
        if e.shape != (len(rest), q_emb.shape[1]):
            raise DataError(f"{name} returned candidate embeddings of shape {tuple(e.shape)} for {len(rest)} items; "
                            f"expected ({len(rest)}, {q_emb.shape[1]}), like the queries.")
        c_emb[torch.tensor(rest)] = e
    if "rescore" not in kw and callable(getattr(model, "rescore", None)):
        fn = model.rescore(bench)
        if fn is not None:
            kw["rescore"] = fn
            kw.setdefault("rescore_k", int(getattr(model, "rescore_k", ev.DEFAULT_RESCORE_K)))
    return evaluate_image_text_embeddings(bench, q_emb, c_emb, meta=meta, show_progress=show, **kw)
