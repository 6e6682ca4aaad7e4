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
(above :data:`~hbkit.block_scan.SPARSE_FRACTION` of a block): the ranks are then bucketed as in
:mod:`hbkit.metrics` (same values; about 4× slower for an uninformative model). The scan itself
is :mod:`hbkit.block_scan`. Cross-lingual rows (ranks within
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
from hbkit.block_scan import MULTI_K, CaptionPool, TextToImageRanks, scan_blocks
from hbkit.engine.progress import progress, progress_enabled
from hbkit.errors import ConfigError, DataError
from hbkit.metrics import pad_relevant, ranking_metrics
from hbkit.parallel import IMAGE, TEXT

#: Budget (bytes) of one float32 score block when ``chunk_size`` is None.
BLOCK_BYTES = 128 * 2**20
#: Name of the mean of a query's hit@k over ``hit_ks``.
HIT_MEAN = "hit_mean"

__all__ = ["BLOCK_BYTES", "HIT_MEAN", "evaluate_image_text", "evaluate_image_text_embeddings"]


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
    return lb.bias_rows(keys, ql, bias, sel, metrics)


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
    pool = CaptionPool(bench, c, c_cap)
    L, n_c = len(pool.langs), len(pool.ids)
    step = int(chunk_size) if chunk_size is not None else max(1, BLOCK_BYTES // (4 * n_c))
    q_langs = np.array([bench.queries[i].lang or "" for i in q_cap], dtype=object)
    rows: list[dict] = []
    # image queries: every image→text measure, and the text→image ranks from the same blocks
    img, t2i = None, None
    if len(q_img):
        plan = None if rescore is not None else _t2i_plan(bench, q, c, q_img, q_cap, c_img, pool)
        emb = q[torch.from_numpy(q_img)]
        t2i = None if plan is None else TextToImageRanks(pool, emb, *plan, step)
        img = scan_blocks(pool, emb, pool.relevant(bench, q_img), step, "image queries", show, on_block=t2i,
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
            res = scan_blocks(pool, q[torch.from_numpy(sel)], rel, step, f"cross-lingual {ql}", show,
                              pooled=False, group_ks=(1,))
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
        res = scan_blocks(pool, pool.emb if caption_queries is None else pool.emb[qp], rel, step, "caption queries",
                          show, exclude=qp, k=k, ddof=ddof)
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
