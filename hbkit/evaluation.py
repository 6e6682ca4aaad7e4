"""Evaluate embeddings on a retrieval benchmark in the three settings of PROTOCOL §1.4.

- monolingual: queries of X_Q against the candidates of X_C = X_Q;
- cross-lingual: queries of X_Q against the candidates of each X_C != X_Q;
- multilingual: queries of X_Q against all candidates pooled (also gives rank distance).

Scores are dot products of L2-normalised embeddings (= cosine). For each query
language the score block against *all* candidates is computed once per chunk of
queries, and one ranking pass over it counts, for every relevant candidate, the
candidates of each language scoring at least as high: summed over languages this is
the multilingual rank, and the count within the candidate's own language is its rank
in that language's monolingual / cross-lingual setting
(:func:`hbkit.metrics.grouped_ranking_metrics`, pessimistic ties). Metrics are averaged
over the queries with at least one relevant candidate in the setting.

The result is a tidy table, one row per (setting, query_lang, candidate_lang, metric):
``model, strategy, seed, benchmark, setting, query_lang, candidate_lang, metric, value,
n_queries``. ``candidate_lang`` is ``"all"`` for multilingual. Language-less queries
(images) appear only in the multilingual setting, with ``query_lang = "image"``;
language-less candidates are pooled in the multilingual setting but belong to no
language for rank distance. Rows where no query has a defined value are left out.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from hbkit.benchmark import RetrievalBenchmark
from hbkit.errors import ConfigError, DataError
from hbkit.metrics import group_codes, grouped_ranking_metrics, pad_relevant
from hbkit.engine.progress import progress, progress_enabled

SETTINGS: tuple[str, ...] = ("monolingual", "cross-lingual", "multilingual")
COLUMNS: list[str] = ["model", "strategy", "seed", "benchmark", "setting", "query_lang", "candidate_lang",
                      "metric", "value", "n_queries"]
#: ``query_lang`` label of language-less queries (images).
NO_LANGUAGE = "image"
#: ``candidate_lang`` label of the pooled (multilingual) setting.
ALL_LANGUAGES = "all"
#: Score-block budget (bytes) per chunk of queries when ``chunk_size`` is None.
BLOCK_BYTES = 128 * 2**20

_KEYS = ["model", "strategy", "seed", "benchmark", "setting"]

__all__ = ["SETTINGS", "COLUMNS", "NO_LANGUAGE", "ALL_LANGUAGES", "evaluate_embeddings", "evaluate_model",
           "per_query_language", "headline", "row_keys"]


def row_keys(meta: Mapping[str, Any] | None, benchmark: str) -> dict:
    """The identifying columns of a result row: ``model``, ``strategy``, ``seed`` from ``meta``
    (defaults "", "", -1) and ``benchmark``. Other meta keys raise ConfigError."""
    meta = dict(meta or {})
    unknown = set(meta) - {"model", "strategy", "seed"}
    if unknown:
        raise ConfigError(f"Unknown meta keys {sorted(unknown)}: use only model, strategy, seed.")
    return {"model": str(meta.get("model", "")), "strategy": str(meta.get("strategy", "")),
            "seed": int(meta.get("seed", -1)), "benchmark": benchmark}


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


def evaluate_embeddings(bench: RetrievalBenchmark, query_emb, cand_emb, *,
                        settings: Sequence[str] = SETTINGS, ks_mono: Sequence[int] = (1, 10),
                        ks_multi: Sequence[int] = (1, 10), chunk_size: int | None = None,
                        meta: Mapping[str, Any] | None = None, show_progress: bool | None = None) -> pd.DataFrame:
    """Tidy metrics table (see module doc) for precomputed embeddings.

    Args:
        query_emb: (n_queries, d) L2-normalised, in ``bench.queries`` order (tensor or array).
        cand_emb: (n_candidates, d) L2-normalised, in ``bench.candidates`` order.
        settings: any of ``SETTINGS``.
        ks_mono: R@k cut-offs for monolingual and cross-lingual; ``ks_multi`` for multilingual.
        chunk_size: queries per score block (default: block <= ``BLOCK_BYTES``).
        meta: fills ``model``, ``strategy``, ``seed`` (defaults "", "", -1).
        show_progress: a bar over query languages; None = on unless HBKIT_PROGRESS is "0".
    Metrics: ``mAP``, ``R@k``; multilingual adds ``rank_distance``.
    """
    settings = _check_settings(settings)
    ks_mono, ks_multi = _check_ks(ks_mono, "ks_mono"), _check_ks(ks_multi, "ks_multi")
    q = _as_matrix(query_emb, "query_emb", len(bench.queries))
    c = _as_matrix(cand_emb, "cand_emb", len(bench.candidates))
    if q.shape[1] != c.shape[1]:
        raise DataError(f"query_emb has dimension {q.shape[1]} but cand_emb has {c.shape[1]}: "
                        "encode both with the same model.")
    base = row_keys(meta, bench.name)
    n_c = c.shape[0]
    if chunk_size is None:
        step = max(1, BLOCK_BYTES // (4 * n_c))
    elif int(chunk_size) < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}.")
    else:
        step = int(chunk_size)

    # Candidates reordered by language so each language is a contiguous column range of
    # the score block (faster counting); metrics do not depend on column order.
    cand_codes, code_names = group_codes([cd.lang for cd in bench.candidates])  # -1 = language-less
    perm = torch.from_numpy(np.argsort(cand_codes, kind="stable"))
    inv = torch.empty(n_c + 1, dtype=torch.int64)
    inv[perm] = torch.arange(n_c)
    inv[n_c] = -1  # padding stays padding
    c = c[perm]
    sorted_codes = cand_codes[perm.numpy()]
    rel_pad = pad_relevant(bench.relevant, n_c)  # (n_q, m) original indices, -1 padding
    rel_pad = inv[torch.where(rel_pad >= 0, rel_pad, n_c)]  # -> positions in the reordered candidates

    q_groups: list[tuple[str, np.ndarray, bool]] = [(lang, bench.queries_in(lang), True) for lang in bench.query_langs]
    langless = np.flatnonzero(np.array([qq.lang is None for qq in bench.queries], dtype=bool))
    if len(langless):
        q_groups.append((NO_LANGUAGE, langless, False))

    rows: list[dict] = []
    sums: dict[tuple[str, str, str, str], list[float]] = {}

    def add(setting: str, ql: str, cl: str, res: dict[str, np.ndarray], ks: list[int]) -> None:
        names = [("mAP", "AP")] + [(f"R@{k}", f"R@{k}") for k in ks]
        if setting == "multilingual":
            names.append(("rank_distance", "rank_distance"))
        for metric, key in names:
            v = res[key]
            ok = ~np.isnan(v)
            acc = sums.setdefault((setting, ql, cl, metric), [0.0, 0])
            acc[0] += float(v[ok].sum())
            acc[1] += int(ok.sum())

    for ql, q_idx, has_lang in progress(q_groups, show=show_progress, desc="evaluate", leave=False):
        for a in range(0, len(q_idx), step):
            rows_idx = torch.from_numpy(q_idx[a:a + step])
            block = q[rows_idx] @ c.T  # (b, n_c)
            rel = rel_pad[rows_idx]
            # one ranking pass gives the pooled (multilingual) metrics and, per candidate
            # language, the metrics on that language's columns (monolingual / cross-lingual)
            pooled, per_lang = grouped_ranking_metrics(block, rel, sorted_codes, ks=ks_multi, group_ks=ks_mono,
                                                       chunk_size=None, validate=False)
            if "multilingual" in settings:
                add("multilingual", ql, ALL_LANGUAGES, pooled, ks_multi)
            if not has_lang:
                continue
            for code, cl in enumerate(code_names):
                setting = "monolingual" if cl == ql else "cross-lingual"
                if setting in settings:
                    add(setting, ql, cl, per_lang[code], ks_mono)

    order = {s: i for i, s in enumerate(SETTINGS)}
    for (setting, ql, cl, metric), (total, n) in sorted(
            sums.items(), key=lambda kv: (order[kv[0][0]], kv[0][1], kv[0][2])):
        if n == 0:
            continue
        rows.append({**base, "setting": setting, "query_lang": ql, "candidate_lang": cl, "metric": metric,
                     "value": total / n, "n_queries": n})
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.astype({"seed": "int64", "n_queries": "int64", "value": "float64"})


def evaluate_model(encoder, bench: RetrievalBenchmark, *, batch_size: int = 64, use_context: bool = False,
                   show_progress: bool | None = None, **kw) -> pd.DataFrame:
    """Encode ``bench`` with ``encoder`` and evaluate (keywords ``kw`` go to :func:`evaluate_embeddings`).

    ``encoder.encode(texts, kind="query"|"passage", batch_size=..., show_progress=...)``
    must return L2-normalised float embeddings (n, d); with ``use_context`` candidates are
    encoded with ``contexts=[paragraph, ...]`` (LAReQA's sentence + context input).
    ``show_progress=None``: on unless the environment variable HBKIT_PROGRESS is "0".
    """
    show = progress_enabled(show_progress)
    if not hasattr(encoder, "encode"):
        raise ConfigError(f"{type(encoder).__name__} has no encode(texts, kind=...) method: pass an hbkit encoder.")
    q_emb = encoder.encode([qq.text for qq in bench.queries], kind="query", batch_size=batch_size, show_progress=show)
    extra = {"contexts": [cd.context for cd in bench.candidates]} if use_context else {}
    c_emb = encoder.encode([cd.text for cd in bench.candidates], kind="passage", batch_size=batch_size,
                           show_progress=show, **extra)
    return evaluate_embeddings(bench, q_emb, c_emb, show_progress=show, **kw)


def per_query_language(df: pd.DataFrame) -> pd.DataFrame:
    """One value per (model, strategy, seed, benchmark, setting, query_lang, metric).

    Cross-lingual rows are averaged over their candidate languages (PROTOCOL §1.4);
    monolingual and multilingual rows are unchanged. Adds ``n_candidate_langs``.
    """
    _check_columns(df)
    keys = _KEYS + ["query_lang", "metric"]
    out = (df.groupby(keys, sort=False, dropna=False)
             .agg(value=("value", "mean"), n_candidate_langs=("candidate_lang", "nunique"))
             .reset_index())
    return out


def headline(df: pd.DataFrame) -> pd.DataFrame:
    """Macro average over query languages of :func:`per_query_language`.

    One row per (model, strategy, seed, benchmark, setting, metric) with ``value`` and
    ``n_query_langs``.
    """
    pq = per_query_language(df)
    out = (pq.groupby(_KEYS + ["metric"], sort=False, dropna=False)
             .agg(value=("value", "mean"), n_query_langs=("query_lang", "nunique"))
             .reset_index())
    return out


def _check_columns(df: pd.DataFrame) -> None:
    missing = [col for col in COLUMNS if col not in df.columns]
    if missing:
        raise DataError(f"Results table lacks columns {missing}: pass the output of evaluate_embeddings "
                        "(or a concatenation of such tables).")
