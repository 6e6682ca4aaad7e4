"""Evaluate embeddings on a retrieval benchmark by direction and setting (PROTOCOL §1.4, §2.2).

**Directions.** Queries and candidates are split by modality and every (query modality,
candidate modality) block is evaluated on its own, against the block's candidates only
(relevance is restricted to them): ``"text→text"``, ``"text→image"``, ``"image→text"``
(:data:`DIRECTIONS`). Image against image is not a direction of the protocol and is not
evaluated. Image items have no language; their language label is :data:`NO_LANGUAGE`.

**Settings** (``setting``, ``query_lang``, ``candidate_lang``; X, Y are languages):

============  ==============  =====  =====  ==================================================
direction     setting         query  cand.  queries → candidates
============  ==============  =====  =====  ==================================================
text→text     monolingual     X      X      texts in X → texts in X
text→text     cross-lingual   X      Y      texts in X → texts in Y ≠ X
text→text     multilingual    X      all    texts in X → texts of all languages pooled
text→image    monolingual     X      ``-``  captions in X → all images
image→text    monolingual     ``-``  X      all images → captions in X
image→text    multilingual    ``-``  all    all images → captions of all languages pooled
============  ==============  =====  =====  ==================================================

The two image–text "monolingual" rows are the per-language setting of §2.2 (text→image
and image→text per language X); "multilingual" with image queries is §2.2's pooled
setting, whose relevant items are the image's captions in every language. Language-less
*text* queries are evaluated in the multilingual setting only.

**Metrics.** ``mAP`` (full ranking), ``R@k`` = |relevant ∩ top k| / |relevant|, ``hit@k`` =
1 if any relevant item is in the top k (CLIP's "R@k"), and, in multilingual rows,
``rank_distance`` (max − min over languages of the best rank of a relevant candidate in
that language). Defaults: text→text reports R@1, R@10 in every setting and no hit@k;
text→image and image→text report hit@1/5/10 in every setting (§2.2's R@1/5/10) and, in the
multilingual setting, R@1 and R@10 as in §1.4. Explicit ``ks_mono`` / ``hit_ks`` apply to
every direction.

**Scoring.** First-stage scores are dot products of the (L2-normalised) embeddings, one
block (queries of a chunk × the direction's candidates, columns sorted by language) at a
time. Ranks are pessimistic: a candidate's rank is the number of candidates scoring at
least as high (:mod:`hbkit.metrics`). One ranking pass over the block gives the pooled
ranks and, counting per candidate language, the ranks within each language
(:func:`hbkit.metrics.grouped_ranking_metrics`).

**Re-scoring** (ALBEF's ITM re-ranking): with ``rescore=fn``, each setting re-ranks the
``rescore_k`` best first-stage candidates *of its own candidate set* (a language's
candidates for monolingual / cross-lingual, the pooled set for multilingual). ``fn``
returns their new scores; they are placed, ordered by the new scores, above every other
candidate, whose first-stage order is kept (so mAP and rank distance stay full-ranking
metrics); see :func:`rerank_top_k` for the tie policy.

**Table.** One row per (direction, setting, query_lang, candidate_lang, metric), columns
:data:`COLUMNS`; ``value`` is the mean over the queries with a defined value
(``n_queries``); rows where no query has one are left out. :func:`per_query_language` and
:func:`headline` aggregate it, never across directions; tables written before the
``direction`` column existed are read as text→text.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from hbkit.benchmark import RetrievalBenchmark
from hbkit.engine.progress import progress, progress_enabled
from hbkit.errors import ConfigError, DataError
from hbkit.metrics import group_codes, grouped_ranking_metrics, pad_relevant, ranking_metrics
from hbkit.parallel import IMAGE, TEXT

TEXT_TO_TEXT = "text→text"
TEXT_TO_IMAGE = "text→image"
IMAGE_TO_TEXT = "image→text"
#: Values of the ``direction`` column.
DIRECTIONS: tuple[str, ...] = (TEXT_TO_TEXT, TEXT_TO_IMAGE, IMAGE_TO_TEXT)
MONOLINGUAL, CROSS_LINGUAL, MULTILINGUAL = "monolingual", "cross-lingual", "multilingual"
SETTINGS: tuple[str, ...] = (MONOLINGUAL, CROSS_LINGUAL, MULTILINGUAL)
COLUMNS: list[str] = ["model", "strategy", "seed", "benchmark", "direction", "setting", "query_lang",
                      "candidate_lang", "metric", "value", "n_queries"]
#: Language label of language-less items (images) in ``query_lang`` / ``candidate_lang``.
NO_LANGUAGE = "-"
#: ``candidate_lang`` label of the pooled (multilingual) setting.
ALL_LANGUAGES = "all"
#: Score-block budget (bytes) per chunk of queries when ``chunk_size`` is None.
BLOCK_BYTES = 128 * 2**20
#: Default number of first-stage candidates re-scored per query.
DEFAULT_RESCORE_K = 128
#: Default cut-offs per direction: R@k in monolingual / cross-lingual rows, hit@k in all rows.
DEFAULT_KS_MONO: dict[str, tuple[int, ...]] = {TEXT_TO_TEXT: (1, 10), TEXT_TO_IMAGE: (), IMAGE_TO_TEXT: ()}
DEFAULT_HIT_KS: dict[str, tuple[int, ...]] = {TEXT_TO_TEXT: (), TEXT_TO_IMAGE: (1, 5, 10), IMAGE_TO_TEXT: (1, 5, 10)}

#: ``fn(query_indices (b,), candidate_indices (b, k)) -> scores (b, k)``, indices into
#: ``bench.queries`` / ``bench.candidates``, higher = better.
Rescorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_DIRECTION_OF = {(TEXT, TEXT): TEXT_TO_TEXT, (TEXT, IMAGE): TEXT_TO_IMAGE, (IMAGE, TEXT): IMAGE_TO_TEXT}
_KEYS = ["model", "strategy", "seed", "benchmark", "direction", "setting"]

__all__ = ["TEXT_TO_TEXT", "TEXT_TO_IMAGE", "IMAGE_TO_TEXT", "DIRECTIONS", "MONOLINGUAL", "CROSS_LINGUAL",
           "MULTILINGUAL", "SETTINGS", "COLUMNS", "NO_LANGUAGE", "ALL_LANGUAGES", "DEFAULT_RESCORE_K",
           "DEFAULT_KS_MONO", "DEFAULT_HIT_KS", "Rescorer", "evaluate_embeddings", "evaluate_model", "encode_items",
           "rerank_top_k", "per_query_language", "headline", "row_keys"]


def row_keys(meta: Mapping[str, Any] | None, benchmark: str, direction: str = TEXT_TO_TEXT) -> dict:
    """The identifying columns of a result row: ``model``, ``strategy``, ``seed`` from ``meta``
    (defaults "", "", -1), ``benchmark`` and ``direction``. Other meta keys raise ConfigError."""
    meta = dict(meta or {})
    unknown = set(meta) - {"model", "strategy", "seed"}
    if unknown:
        raise ConfigError(f"Unknown meta keys {sorted(unknown)}: use only model, strategy, seed.")
    if direction not in DIRECTIONS:
        raise ConfigError(f"Unknown direction {direction!r}: choose from {list(DIRECTIONS)}.")
    return {"model": str(meta.get("model", "")), "strategy": str(meta.get("strategy", "")),
            "seed": int(meta.get("seed", -1)), "benchmark": benchmark, "direction": direction}


def _as_matrix(x, name: str, n: int) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    t = t.detach().to("cpu", torch.float32)
    if t.ndim != 2 or t.shape[0] != n:
        raise DataError(f"{name} must have shape ({n}, d) to match the benchmark, got {tuple(t.shape)}: "
                        "encode exactly the benchmark's queries/candidates, in order.")
    if not torch.isfinite(t).all():
        raise DataError(f"{name} contains NaN or infinite values: the encoder is broken "
                        "(e.g. a diverged checkpoint); re-encode with a valid model.")
    return t


def _check_settings(settings: Sequence[str]) -> list[str]:
    settings = [settings] if isinstance(settings, str) else list(settings)
    bad = [s for s in settings if s not in SETTINGS]
    if bad or not settings:
        raise ConfigError(f"Unknown or no evaluation settings {bad or settings}: choose from {list(SETTINGS)}.")
    return settings


def _check_ks(ks: Sequence[int], name: str) -> list[int]:
    ks = [int(k) for k in ks]
    if any(k < 1 for k in ks):
        raise ConfigError(f"{name} must hold positive cut-offs, got {ks}.")
    return sorted(set(ks))


# --------------------------------------------------------------------------- re-scoring
def _top_k_columns(scores: torch.Tensor, column_ids: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Column positions (b, k) of each row's k best scores, best first, ties broken by lower
    ``column_ids`` (at the cut-off too); and each row's highest score (b, 1)."""
    b, n = scores.shape
    if k < n:
        vals, top = torch.topk(scores, k + 1, dim=1)  # sorted, descending
        top = top[:, :k]
        straddle = torch.nonzero(vals[:, k - 1] == vals[:, k]).flatten()  # a tie across the cut-off
        if len(straddle):  # take the tied columns with the lowest ids
            s = scores[straddle]
            kth = vals[straddle, k - 1:k]
            take = s > kth
            tied = s == kth
            need = k - take.sum(dim=1, keepdim=True)
            by_id = torch.argsort(column_ids)
            first = torch.empty_like(tied).scatter_(1, by_id.expand(len(straddle), n),
                                                    tied[:, by_id].cumsum(1, dtype=torch.int32) <= need)
            top[straddle] = (take | (tied & first)).nonzero()[:, 1].view(-1, k)
        row_max = vals[:, :1]
    else:
        top = torch.arange(n).expand(b, n)
        row_max = scores.max(dim=1, keepdim=True).values
    # best first, ties by lower id: sort by id, then stably by score
    top = top.gather(1, torch.argsort(column_ids[top], dim=1))
    return top.gather(1, torch.sort(scores.gather(1, top), dim=1, descending=True, stable=True).indices), row_max


def rerank_top_k(scores: torch.Tensor, query_ids: torch.Tensor, column_ids: torch.Tensor, rescore: Rescorer,
                 k: int, *, inplace: bool = False) -> torch.Tensor:
    """A score block after re-scoring each row's first-stage top k: float (b, n).

    Args:
        scores: first-stage scores (b, n), float32 or float64.
        query_ids: int64 (b,) query index (into ``bench.queries``) of each row.
        column_ids: int64 (n,) candidate index (into ``bench.candidates``) of each column.
        rescore: ``fn(query_ids (b,), candidate_ids (b, k')) -> (b, k')`` new scores of each
            row's top k' = min(k, n) candidates, given as candidate indices, best first.
        k: how many candidates to re-score per row (>= 1).
        inplace: overwrite ``scores`` (float32, k < 2^22) instead of returning a new tensor.

    Tie policy: the top k are the k highest first-stage scores, ties at the cut-off broken by
    the lower candidate index. They then score above every other candidate, in the order of
    their new scores; equal new scores stay tied (and are ranked pessimistically like any
    tie). The other candidates keep their first-stage scores, hence their order and ties.
    Concretely, a re-scored candidate gets ``m + max(1, |m|) * (1 + #new scores of its row
    strictly below its own)``, with ``m`` the row's highest first-stage score: integer levels
    above ``m``, exact in float32 for k < 2^22 and independent of the new scores' scale.
    """
    b, n = scores.shape
    k = min(int(k), n)
    if b == 0 or n == 0:
        return scores if inplace else scores.clone()
    top, m = _top_k_columns(scores, column_ids, k)  # (b, k) column positions, (b, 1)
    new = rescore(query_ids, column_ids[top])
    new = torch.as_tensor(new).detach().to("cpu", torch.float64)
    if tuple(new.shape) != (b, k):
        raise DataError(f"The rescore function returned shape {tuple(new.shape)}; expected ({b}, {k}): "
                        "one new score per (query, candidate) it was given.")
    if not torch.isfinite(new).all():
        raise DataError("The rescore function returned NaN or infinite scores: check the re-scoring model.")
    below = torch.searchsorted(torch.sort(new, dim=1).values, new.contiguous())  # #new scores < each one
    if k >= 2**22 and scores.dtype != torch.float64:
        out = scores.to(torch.float64)
    else:
        out = scores if inplace else scores.clone()
    m = m.to(torch.float64)
    levels = m + m.abs().clamp(min=1.0) * (below + 1).to(torch.float64)
    out.scatter_(1, top, levels.to(out.dtype))
    return out


# --------------------------------------------------------------------------- evaluation
@dataclass
class _Block:
    """One direction: its candidates (columns sorted by language) and its query groups."""

    direction: str
    cand_ids: torch.Tensor  # int64 (n_b,) candidate indices, in column order
    emb: torch.Tensor  # (n_b, d)
    codes: np.ndarray  # int64 (n_b,) language code per column, -1 = none
    langs: list[str]  # language of each code
    bounds: list[tuple[int, int]]  # column range of each code
    rel: torch.Tensor  # int64 (n_q, m): relevant column positions per query, -1 = padding
    groups: list[tuple[str, np.ndarray, bool]]  # (query_lang label, query indices, has a language)


def _blocks(bench: RetrievalBenchmark, c: torch.Tensor) -> list[_Block]:
    q_mod = np.array([qq.modality for qq in bench.queries])
    c_mod = np.array([cd.modality for cd in bench.candidates])
    q_lang = [qq.lang if qq.modality == TEXT else None for qq in bench.queries]
    rel_all = pad_relevant(bench.relevant, len(bench.candidates))
    blocks = []
    for (qm, cm), direction in _DIRECTION_OF.items():
        q_sel, c_sel = np.flatnonzero(q_mod == qm), np.flatnonzero(c_mod == cm)
        if not len(q_sel) or not len(c_sel):
            continue
        langs_c = [bench.candidates[j].lang if cm == TEXT else None for j in c_sel]
        codes, names = group_codes(langs_c)
        key = np.where(codes >= 0, codes, len(names))  # by language, language-less (-1) last
        order = np.argsort(key, kind="stable")
        codes = codes[order]
        cand_ids = torch.from_numpy(c_sel[order])
        edges = np.searchsorted(key[order], np.arange(len(names) + 1))
        pos = torch.full((len(bench.candidates) + 1,), -1, dtype=torch.int64)
        pos[cand_ids] = torch.arange(len(cand_ids))
        rel = pos[torch.where(rel_all >= 0, rel_all, len(bench.candidates))]
        groups: list[tuple[str, np.ndarray, bool]] = []
        if qm == TEXT:
            for lang in sorted({q_lang[i] for i in q_sel if q_lang[i] is not None}):
                groups.append((lang, np.array([i for i in q_sel if q_lang[i] == lang], dtype=np.int64), True))
        langless = np.array([i for i in q_sel if q_lang[i] is None], dtype=np.int64)
        if len(langless):
            groups.append((NO_LANGUAGE, langless, False))
        blocks.append(_Block(direction, cand_ids, c[cand_ids], codes, names,
                             [(int(edges[g]), int(edges[g + 1])) for g in range(len(names))], rel, groups))
    if not blocks:
        raise ConfigError(f"{bench.name}: no evaluated direction (queries {bench.query_modalities}, candidates "
                          f"{bench.candidate_modalities}); image→image retrieval is not evaluated. Use text "
                          f"queries or text candidates ({', '.join(DIRECTIONS)}).")
    return blocks


def _sub_relevant(rel: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    inside = (rel >= lo) & (rel < hi)
    return torch.where(inside, rel - lo, torch.full_like(rel, -1))


def evaluate_embeddings(bench: RetrievalBenchmark, query_emb, cand_emb, *,
                        settings: Sequence[str] = SETTINGS, ks_mono: Sequence[int] | None = None,
                        ks_multi: Sequence[int] = (1, 10), hit_ks: Sequence[int] | None = None,
                        rescore: Rescorer | None = None, rescore_k: int = DEFAULT_RESCORE_K,
                        chunk_size: int | None = None, meta: Mapping[str, Any] | None = None,
                        show_progress: bool | None = None) -> pd.DataFrame:
    """Tidy metrics table (see module doc) for precomputed embeddings.

    Args:
        query_emb: (n_queries, d) L2-normalised, in ``bench.queries`` order (tensor or array),
            text and image queries alike.
        cand_emb: (n_candidates, d) L2-normalised, in ``bench.candidates`` order.
        settings: any of ``SETTINGS``.
        ks_mono: R@k cut-offs for monolingual and cross-lingual rows; None = per direction
            (:data:`DEFAULT_KS_MONO`: (1, 10) for text→text, none for image–text).
        ks_multi: R@k cut-offs for multilingual rows (all directions).
        hit_ks: hit@k cut-offs for every row; None = per direction (:data:`DEFAULT_HIT_KS`:
            none for text→text, (1, 5, 10) for image–text).
        rescore: optional re-scorer of each setting's first-stage top ``rescore_k`` (see
            :func:`rerank_top_k`); it gets a whole chunk of queries at once (CPU int64
            tensors) and should batch internally.
        rescore_k: candidates re-scored per query and setting (all when larger than the set).
        chunk_size: queries per score block (default: block <= ``BLOCK_BYTES``).
        meta: fills ``model``, ``strategy``, ``seed`` (defaults "", "", -1).
        show_progress: a bar over query groups; None = on unless HBKIT_PROGRESS is "0".
    """
    settings = _check_settings(settings)
    ks_multi = _check_ks(ks_multi, "ks_multi")
    ks_mono_of = {d: _check_ks(DEFAULT_KS_MONO[d] if ks_mono is None else ks_mono, "ks_mono") for d in DIRECTIONS}
    hit_ks_of = {d: _check_ks(DEFAULT_HIT_KS[d] if hit_ks is None else hit_ks, "hit_ks") for d in DIRECTIONS}
    if rescore is not None:
        if not callable(rescore):
            raise ConfigError(f"rescore must be a function (query_indices, candidate_indices) -> scores, "
                              f"got {type(rescore).__name__}.")
        if isinstance(rescore_k, bool) or int(rescore_k) < 1:
            raise ConfigError(f"rescore_k must be a positive integer, got {rescore_k!r}.")
        rescore_k = int(rescore_k)
    q = _as_matrix(query_emb, "query_emb", len(bench.queries))
    c = _as_matrix(cand_emb, "cand_emb", len(bench.candidates))
    if q.shape[1] != c.shape[1]:
        raise DataError(f"query_emb has dimension {q.shape[1]} but cand_emb has {c.shape[1]}: "
                        "encode both with the same model.")
    if chunk_size is not None and int(chunk_size) < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}.")
    meta_keys = row_keys(meta, bench.name)
    blocks = _blocks(bench, c)

    sums: dict[tuple[str, str, str, str, str], list[float]] = {}

    def add(direction: str, setting: str, ql: str, cl: str, res: dict[str, np.ndarray], ks: list[int],
            hks: list[int]) -> None:
        names = [("mAP", "AP")] + [(f"R@{k}", f"R@{k}") for k in ks] + [(f"hit@{k}", f"hit@{k}") for k in hks]
        if setting == MULTILINGUAL:
            names.append(("rank_distance", "rank_distance"))
        for metric, key in names:
            if key not in res:
                continue
            v = res[key]
            ok = ~np.isnan(v)
            acc = sums.setdefault((direction, setting, ql, cl, metric), [0.0, 0])
            acc[0] += float(v[ok].sum())
            acc[1] += int(ok.sum())

    work = [(blk, g) for blk in blocks for g in blk.groups]
    for blk, (ql, q_idx, has_lang) in progress(work, show=show_progress, desc="evaluate", leave=False):
        d = blk.direction
        kmono, hks = ks_mono_of[d], hit_ks_of[d]
        n_b = len(blk.cand_ids)
        step = int(chunk_size) if chunk_size is not None else max(1, BLOCK_BYTES // (4 * n_b))
        # which candidate sets this query group is evaluated against
        if d == TEXT_TO_IMAGE:  # all images, one per-language setting of the caption language
            pooled_as = MONOLINGUAL if MONOLINGUAL in settings else None
            per_lang: list[tuple[int, str]] = []
        else:
            pooled_as = MULTILINGUAL if MULTILINGUAL in settings else None
            per_lang = []
            if has_lang or d == IMAGE_TO_TEXT:
                for code, cl in enumerate(blk.langs):
                    setting = MONOLINGUAL if (d == IMAGE_TO_TEXT or cl == ql) else CROSS_LINGUAL
                    if setting in settings:
                        per_lang.append((code, setting))
        if pooled_as is None and not per_lang:
            continue
        pooled_ks = kmono if pooled_as == MONOLINGUAL else ks_multi
        pooled_cl = NO_LANGUAGE if d == TEXT_TO_IMAGE else ALL_LANGUAGES
        groups = blk.codes if blk.langs else None
        for a in range(0, len(q_idx), step):
            rows_idx = torch.from_numpy(q_idx[a:a + step])
            block = q[rows_idx] @ blk.emb.T  # (b, n_b) first-stage scores
            rel = blk.rel[rows_idx]
            if rescore is None and groups is not None:
                # one ranking pass: pooled metrics and the metrics within each candidate language
                pooled, by_code = grouped_ranking_metrics(block, rel, groups, ks=pooled_ks, group_ks=kmono,
                                                          hit_ks=hks, chunk_size=None, validate=False)
                per_res = {code: by_code[code] for code, _ in per_lang}
            else:
                per_res = {}
                for code, _ in per_lang:  # each language's candidates re-rank their own top k
                    lo, hi = blk.bounds[code]
                    sub = rerank_top_k(block[:, lo:hi], rows_idx, blk.cand_ids[lo:hi], rescore, rescore_k)
                    per_res[code] = ranking_metrics(sub, _sub_relevant(rel, lo, hi), ks=kmono, hit_ks=hks,
                                                    validate=False)
                pooled = None
                if pooled_as is not None:  # last: the pooled re-ranking may overwrite the block
                    scored = block if rescore is None else rerank_top_k(block, rows_idx, blk.cand_ids, rescore,
                                                                        rescore_k, inplace=True)
                    pooled = ranking_metrics(scored, rel, ks=pooled_ks, hit_ks=hks, candidate_groups=groups,
                                             validate=False)
            if pooled_as is not None:
                add(d, pooled_as, ql, pooled_cl, pooled, pooled_ks, hks)
            for code, setting in per_lang:
                add(d, setting, ql, blk.langs[code], per_res[code], kmono, hks)

    d_order = {x: i for i, x in enumerate(DIRECTIONS)}
    s_order = {x: i for i, x in enumerate(SETTINGS)}
    rows = [{**meta_keys, "direction": d, "setting": s, "query_lang": ql, "candidate_lang": cl, "metric": metric,
             "value": total / n, "n_queries": n}
            for (d, s, ql, cl, metric), (total, n) in sorted(
                sums.items(), key=lambda kv: (d_order[kv[0][0]], s_order[kv[0][1]], kv[0][2], kv[0][3]))
            if n > 0]
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.astype({"seed": "int64", "n_queries": "int64", "value": "float64"})


def encode_items(model, items: Sequence, kind: str, batch_size: int, show: bool,
                 contexts: list[str] | None = None) -> torch.Tensor:
    """Embeddings (n, d) of queries or candidates, text items with ``encode`` and images with
    ``encode_images``, in ``items`` order."""
    text = [i for i, x in enumerate(items) if x.modality == TEXT]
    image = [i for i, x in enumerate(items) if x.modality == IMAGE]
    parts = []
    if text:
        extra = {"contexts": [contexts[i] for i in text]} if contexts is not None else {}
        parts.append((text, model.encode([items[i].text for i in text], kind=kind, batch_size=batch_size,
                                         show_progress=show, **extra)))
    if image:
        parts.append((image, model.encode_images([items[i].image for i in image], batch_size=batch_size,
                                                 show_progress=show)))
    if len(parts) == 1:
        return parts[0][1]
    mats = [(idx, torch.as_tensor(np.asarray(e) if not isinstance(e, torch.Tensor) else e).detach().cpu().float())
            for idx, e in parts]
    for idx, m in mats:
        if m.ndim != 2 or m.shape[0] != len(idx):
            raise DataError(f"{type(model).__name__} returned embeddings of shape {tuple(m.shape)} for {len(idx)} "
                            "items: one (d,) row per item expected.")
    dims = {m.shape[1] for _, m in mats}
    if len(dims) != 1:
        raise DataError(f"{type(model).__name__} embeds texts and images with different dimensions {sorted(dims)}: "
                        "both towers must project into one space.")
    out = torch.empty(len(items), dims.pop())
    for idx, m in mats:
        out[torch.as_tensor(idx)] = m
    return out


_encode = encode_items


def evaluate_model(model, bench: RetrievalBenchmark, *, batch_size: int = 64, use_context: bool = False,
                   show_progress: bool | None = None, **kw) -> pd.DataFrame:
    """Encode ``bench`` with ``model`` by modality and evaluate it (``kw`` go to :func:`evaluate_embeddings`).

    - text queries: ``model.encode(texts, kind="query", batch_size=..., show_progress=...)``;
    - text candidates: ``kind="passage"``, plus ``contexts=[paragraph, ...]`` with
      ``use_context`` (LAReQA's sentence + context input);
    - image queries / candidates: ``model.encode_images([ImageRef, ...], batch_size=...,
      show_progress=...)``; a model without it raises ConfigError on a benchmark with images.

    All must return L2-normalised float embeddings (n, d) in one space.

    Optional evaluation hook: a model with a ``rescore(bench)`` method returning a
    :data:`Rescorer` (or None) has each query's top ``model.rescore_k`` (default
    :data:`DEFAULT_RESCORE_K`) re-scored by it (e.g. ALBEF's image–text matching head);
    ``rescore(bench)`` is called once, after encoding. Passing ``rescore=`` (None included)
    overrides the hook. ``show_progress=None``: on unless HBKIT_PROGRESS is "0".
    """
    show = progress_enabled(show_progress)
    mods = set(bench.query_modalities) | set(bench.candidate_modalities)
    name = type(model).__name__
    if TEXT in mods and not hasattr(model, "encode"):
        raise ConfigError(f"{name} has no encode(texts, kind=...) method: pass an hbkit encoder.")
    if IMAGE in mods and not hasattr(model, "encode_images"):
        raise ConfigError(f"{name} has no image tower (no encode_images method), but benchmark {bench.name!r} "
                          "holds images: evaluate it with an image–text model such as CLIP or ALBEF.")
    q_emb = encode_items(model, bench.queries, "query", batch_size, show)
    contexts = [cd.context for cd in bench.candidates] if use_context else None
    c_emb = encode_items(model, bench.candidates, "passage", batch_size, show, contexts)
    if "rescore" not in kw and callable(getattr(model, "rescore", None)):
        fn = model.rescore(bench)
        if fn is not None:
            kw["rescore"] = fn
            kw.setdefault("rescore_k", int(getattr(model, "rescore_k", DEFAULT_RESCORE_K)))
    return evaluate_embeddings(bench, q_emb, c_emb, show_progress=show, **kw)


# --------------------------------------------------------------------------- aggregation
def _prepared(df: pd.DataFrame) -> pd.DataFrame:
    missing = [col for col in COLUMNS if col not in df.columns and col != "direction"]
    if missing:
        raise DataError(f"Results table lacks columns {missing}: pass the output of evaluate_embeddings "
                        "(or a concatenation of such tables).")
    if "direction" not in df.columns:
        return df.assign(direction=TEXT_TO_TEXT)
    if df.direction.isna().any():  # a concatenation with older tables
        return df.assign(direction=df.direction.fillna(TEXT_TO_TEXT))
    return df


def per_query_language(df: pd.DataFrame) -> pd.DataFrame:
    """One value per (model, strategy, seed, benchmark, direction, setting, query_lang, metric).

    Rows of one query language are averaged over their candidate languages: cross-lingual
    rows (PROTOCOL §1.4) and the per-language image→text rows (query_lang ``-``); other rows
    are unchanged. Adds ``n_candidate_langs`` and ``n_queries_min`` / ``n_queries_max`` over
    the averaged rows. A table without ``direction`` is read as text→text.
    """
    df = _prepared(df)
    out = (df.groupby(_KEYS + ["query_lang", "metric"], sort=False, dropna=False)
             .agg(value=("value", "mean"), n_candidate_langs=("candidate_lang", "nunique"),
                  n_queries_min=("n_queries", "min"), n_queries_max=("n_queries", "max"))
             .reset_index())
    return out


def headline(df: pd.DataFrame) -> pd.DataFrame:
    """Macro average over query languages of :func:`per_query_language`, per direction.

    One row per (model, strategy, seed, benchmark, direction, setting, metric) with
    ``value``, ``n_query_langs`` and ``n_queries_min`` / ``n_queries_max``: the smallest and
    largest ``n_queries`` of the rows averaged (language pairs for cross-lingual), so an
    imbalance between languages or pairs is visible. Directions are never averaged together.
    """
    pq = per_query_language(df)
    out = (pq.groupby(_KEYS + ["metric"], sort=False, dropna=False)
             .agg(value=("value", "mean"), n_query_langs=("query_lang", "nunique"),
                  n_queries_min=("n_queries_min", "min"), n_queries_max=("n_queries_max", "max"))
             .reset_index())
    return out
