"""Image–text evaluation in all of PROTOCOL §2.2's settings, from one call.

Input: a benchmark as :meth:`hbkit.datasets.images.ImageCaptionSet.to_benchmark` builds it (images
and captions both as queries and as candidates; relevance by image) and L2-normalised embeddings
of its queries and candidates. Output: one tidy table, columns :data:`hbkit.evaluation.COLUMNS`:

=================  ============  =====  =====  ==================================================
direction          setting       query  cand.  metrics
=================  ============  =====  =====  ==================================================
text→image         monolingual   X      ``-``  hit@1/5/10 (CLIP's R@k), hit_mean, mAP
image→text         monolingual   ``-``  X      hit@1/5/10, hit_mean, mAP
text→text          cross-lingual X      Y≠X    mAP, R@1 (captions → captions of the same image)
image→text         multilingual  ``-``  all    mAP, R@10, rank_distance, MRV, MRV_z,
                                               rank_distance_z, top10_share:<lang>, ..._max_minus_min
caption→caption    multilingual  X      all    mAP, R@10, rank_distance(_z), MRV(_z),
                                               own_language_top10_share, top10 shares
=================  ============  =====  =====  ==================================================

``hit_mean`` is the mean of hit@1, hit@5 and hit@10 (CLIP's "mean recall"). The first three row
kinds come from :func:`hbkit.evaluation.evaluate_embeddings` on the benchmark's (caption, image),
(image, caption) and (caption, caption) parts, the last two from
:func:`hbkit.language_bias.language_bias_table`, so every number has one definition. The
caption→caption rows replace the evaluator's text→text monolingual and multilingual rows, in which
a caption would be relevant to itself.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from hbkit.benchmark import RetrievalBenchmark
from hbkit.errors import ConfigError, DataError
from hbkit.evaluation import (
    COLUMNS,
    CROSS_LINGUAL,
    DEFAULT_RESCORE_K,
    MONOLINGUAL,
    MULTILINGUAL,
    _encode,
    evaluate_embeddings,
)
from hbkit.language_bias import language_bias_table
from hbkit.parallel import IMAGE, TEXT

__all__ = ["evaluate_image_text", "evaluate_image_text_embeddings", "HIT_MEAN"]

#: Name of the mean of hit@1, hit@5 and hit@10.
HIT_MEAN = "hit_mean"


def _matrix(x, name: str, n: int) -> torch.Tensor:
    m = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().cpu().float()
    if m.ndim != 2 or m.shape[0] != n:
        raise DataError(f"{name} has shape {tuple(m.shape)}; expected ({n}, d), one row per item of the benchmark "
                        "in order. Encode the benchmark's queries and candidates with one model.")
    return m


def _part(bench: RetrievalBenchmark, q_idx: np.ndarray, c_idx: np.ndarray) -> RetrievalBenchmark:
    return RetrievalBenchmark(bench.name, [bench.queries[i] for i in q_idx], [bench.candidates[j] for j in c_idx])


def _with_hit_mean(df: pd.DataFrame, hit_ks: Sequence[int]) -> pd.DataFrame:
    names = [f"hit@{k}" for k in hit_ks]
    hits = df[df.metric.isin(names)]
    if hits.empty:
        return df
    keys = [c for c in COLUMNS if c not in ("metric", "value", "n_queries")]
    mean = hits.groupby(keys, sort=False).agg(value=("value", "mean"), n_queries=("n_queries", "min"),
                                             k=("metric", "nunique")).reset_index()
    mean = mean[mean.k == len(names)].drop(columns="k")
    mean["metric"] = HIT_MEAN
    return pd.concat([df, mean[COLUMNS]], ignore_index=True)


def evaluate_image_text_embeddings(bench: RetrievalBenchmark, query_emb, cand_emb, *,
                                   meta: Mapping[str, Any] | None = None, hit_ks: Sequence[int] = (1, 5, 10),
                                   k: int = 10, ddof: int = 0, cross_lingual: bool = True,
                                   caption_setting: bool = True, caption_queries: Sequence[int] | None = None,
                                   rescore=None, rescore_k: int = DEFAULT_RESCORE_K, chunk_size: int | None = None,
                                   show_progress: bool | None = None) -> pd.DataFrame:
    """The table of the module docstring for precomputed embeddings.

    Args:
        query_emb: (n_queries, d) L2-normalised, in ``bench.queries`` order.
        cand_emb: (n_candidates, d) L2-normalised, in ``bench.candidates`` order.
        hit_ks: CLIP-convention cut-offs of the monolingual rows (``hit_mean`` averages them).
        k: the top-k of the language shares (``top{k}_share``).
        ddof: MRV's degrees of freedom (0: population standard deviation).
        cross_lingual: the caption → caption per language pair rows (all pairs; costs a
            captions × captions score pass).
        caption_setting: the caption → pooled captions rows (:data:`CAPTION_TO_CAPTION`).
        caption_queries: indices into ``bench.candidates`` of the caption queries of that
            setting (all captions when None; a sample at Crossmodal-3600 scale).
        rescore / rescore_k: a re-scorer of the image–text rows' first-stage top k (ALBEF's
            matching head; see :func:`hbkit.evaluation.rerank_top_k`).
        meta: fills ``model``, ``strategy``, ``seed``.
    """
    q_mod = np.array([q.modality for q in bench.queries])
    c_mod = np.array([c.modality for c in bench.candidates])
    q = _matrix(query_emb, "query_emb", len(bench.queries))
    c = _matrix(cand_emb, "cand_emb", len(bench.candidates))
    qi, qt = np.flatnonzero(q_mod == IMAGE), np.flatnonzero(q_mod == TEXT)
    ci, ct = np.flatnonzero(c_mod == IMAGE), np.flatnonzero(c_mod == TEXT)
    if not len(qi) or not len(ci):
        raise ConfigError(f"Benchmark {bench.name!r} has no images: evaluate a text benchmark with "
                          "hbkit.evaluation.evaluate_embeddings, or build this one with ImageCaptionSet.to_benchmark.")
    if not len(qt) or not len(ct):
        raise ConfigError(f"Benchmark {bench.name!r} has no captions among its queries and candidates; build it with "
                          "ImageCaptionSet.to_benchmark, which makes every caption a query and a candidate.")
    kw = dict(meta=meta, hit_ks=hit_ks, ks_mono=(), chunk_size=chunk_size, show_progress=show_progress)
    t = torch.from_numpy

    def part_rescore(q_idx: np.ndarray, c_idx: np.ndarray) -> dict:
        if rescore is None:
            return {}
        qm, cm = t(q_idx), t(c_idx)  # the part's indices -> the benchmark's
        return {"rescore": lambda a, b: rescore(qm[a], cm[b]), "rescore_k": rescore_k}

    frames = [
        evaluate_embeddings(_part(bench, qt, ci), q[t(qt)], c[t(ci)], settings=(MONOLINGUAL,), **kw,
                            **part_rescore(qt, ci)),
        evaluate_embeddings(_part(bench, qi, ct), q[t(qi)], c[t(ct)], settings=(MONOLINGUAL, MULTILINGUAL),
                            ks_multi=(10,), **kw, **part_rescore(qi, ct)),
    ]
    img_multi = frames[1].setting == MULTILINGUAL
    frames[1] = frames[1][~img_multi | frames[1].metric.isin(["mAP", "R@10", "rank_distance"])]
    if cross_lingual:
        xl = evaluate_embeddings(_part(bench, qt, ct), q[t(qt)], c[t(ct)], settings=(CROSS_LINGUAL,),
                                 ks_mono=(1,), hit_ks=(), meta=meta, chunk_size=chunk_size,
                                 show_progress=show_progress)
        frames.append(xl[xl.metric.isin(["mAP", "R@1"])])
    bias = language_bias_table(bench, q, c, meta=meta, k=k, ddof=ddof, caption_setting=caption_setting,
                               caption_queries=caption_queries, chunk_size=chunk_size)
    frames.append(bias)
    df = pd.concat([f for f in frames if len(f)], ignore_index=True)
    df = _add_mean(df, hit_ks)
    return df.astype({"seed": "int64", "n_queries": "int64", "value": "float64"})[COLUMNS]


def _add_mean(df: pd.DataFrame, hit_ks: Sequence[int]) -> pd.DataFrame:
    mono = df.setting == MONOLINGUAL
    return pd.concat([_with_hit_mean(df[mono], hit_ks), df[~mono]], ignore_index=True)


def evaluate_image_text(model, bench: RetrievalBenchmark, *, batch_size: int = 64,
                        meta: Mapping[str, Any] | None = None, show_progress: bool | None = None,
                        **kw: Any) -> pd.DataFrame:
    """Encode ``bench`` with an image–text ``model`` (``encode`` for captions, ``encode_images`` for
    images) and evaluate it (``kw`` go to :func:`evaluate_image_text_embeddings`). A model with a
    ``rescore(bench)`` hook has the image–text rows' top ``model.rescore_k`` re-scored by it."""
    from hbkit.engine.progress import progress_enabled

    if not hasattr(model, "encode_images"):
        raise ConfigError(f"{type(model).__name__} has no image tower (no encode_images method): evaluate "
                          "image–text benchmarks with an image–text model such as CLIP.")
    show = progress_enabled(show_progress)
    q = _encode(model, bench.queries, "query", batch_size, show)
    c = _encode(model, bench.candidates, "passage", batch_size, show)
    if "rescore" not in kw and callable(getattr(model, "rescore", None)):
        fn = model.rescore(bench)
        if fn is not None:
            kw["rescore"] = fn
            kw.setdefault("rescore_k", int(getattr(model, "rescore_k", DEFAULT_RESCORE_K)))
    return evaluate_image_text_embeddings(bench, q, c, meta=meta, show_progress=show, **kw)
