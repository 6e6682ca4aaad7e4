"""nDCG@k and Recall@k with trec_eval semantics (``ndcg_cut.k`` and ``recall.k``).

Inputs, as in ``pytrec_eval``:

- ``run``: ``{qid: {docid: score}}`` — a system's scored documents per query;
- ``qrels``: ``{qid: {docid: relevance}}`` — integer judgements (MIRACL: 0 or 1).

Query and document ids are strings and compared as strings (``"81674#0"``; never cast
to int). The definitions reproduce trec_eval 9 (checked against pytrec-eval-terrier in
``tests/test_trec_metrics.py``):

- **Ranking**: trec_eval ignores the rank column of a run and sorts by score, descending,
  ties broken by document id *descending* (``strcmp``; Python's ``str`` order is the same
  as the UTF-8 byte order). trec_eval stores scores as C ``float``, so scores are compared
  after rounding to float32: two scores equal in float32 are a tie even if they differ
  in float64.
- **nDCG@k** (``ndcg_cut.k``): DCG = sum over ranks i = 1..k of gain_i / log2(i + 1) with
  linear gain = the judged relevance (unjudged = 0, negative judgements count 0); the
  ideal DCG ranks the judged documents by relevance; nDCG = DCG / ideal DCG, and 0 when
  the query has no document with relevance > 0.
- **Recall@k** (``recall.k``): |relevant in the top k| / |relevant|, relevant meaning
  relevance >= 1 (trec_eval's default ``relevance_level``); 0 when nothing is relevant.
- **Which queries count**: like trec_eval without ``-c`` (and pytrec_eval), the mean is
  over the queries that are both in ``qrels`` and in ``run`` (a query in the run with an
  empty dict counts, with value 0; a judged query with no relevant document counts, with
  value 0). Run queries without judgements are ignored. ``missing="zero"`` is trec_eval's
  ``-c``: every query in ``qrels`` counts and those absent from the run score 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from hbkit.errors import ConfigError, DataError

MISSING_POLICIES = ("ignore", "zero")

__all__ = ["MISSING_POLICIES", "TrecScore", "rank_documents", "ndcg_at_k", "recall_at_k", "trec_evaluate"]


@dataclass(frozen=True)
class TrecScore:
    """One measure: its value per query, the mean and how many queries the mean covers."""

    measure: str
    per_query: dict[str, float] = field(repr=False)
    mean: float
    n_queries: int

    def __float__(self) -> float:
        return float(self.mean)


def _check_k(k, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {k!r}.")
    return int(k)


def _f32(score, qid: str, docid: str) -> float:
    try:
        value = float(np.float32(score))
    except (TypeError, ValueError):
        raise DataError(f"Run score for query {qid!r}, document {docid!r} is {score!r}, not a number. "
                        "Scores must be floats (higher = better).") from None
    if math.isnan(value):
        raise DataError(f"Run score for query {qid!r}, document {docid!r} is NaN. "
                        "Fix the scores (NaN embeddings?) before evaluating.")
    return value


def _rel(value, qid: str, docid: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer, float, np.floating)) \
            or (isinstance(value, (float, np.floating)) and not float(value).is_integer()):
        raise DataError(f"Relevance of document {docid!r} for query {qid!r} is {value!r}: trec_eval needs "
                        "integer judgements (e.g. 0 = not relevant, 1 = relevant).")
    return int(value)


def rank_documents(scores: Mapping[str, float], qid: str = "?") -> list[str]:
    """Document ids in trec_eval order: float32 score descending, then docid descending."""
    items = [(_f32(s, qid, d), d) for d, s in scores.items()]
    for _, d in items:
        if not isinstance(d, str):
            raise DataError(f"Document id {d!r} of query {qid!r} is a {type(d).__name__}, not a string. "
                            "Use string ids (e.g. '81674#0'), as in the qrels.")
    items.sort(reverse=True)
    return [d for _, d in items]


def _check_inputs(run, qrels) -> None:
    if not isinstance(run, Mapping) or not isinstance(qrels, Mapping):
        raise DataError("run and qrels must be dicts {qid: {docid: value}}; got "
                        f"{type(run).__name__} and {type(qrels).__name__}.")
    for name, obj in (("run", run), ("qrels", qrels)):
        for qid, docs in obj.items():
            if not isinstance(qid, str):
                raise DataError(f"Query id {qid!r} in {name} is a {type(qid).__name__}, not a string. "
                                "Use string query ids in both run and qrels.")
            if not isinstance(docs, Mapping):
                raise DataError(f"{name}[{qid!r}] must be a dict {{docid: value}}, got {type(docs).__name__}.")


def _queries(run, qrels, missing: str) -> list[str]:
    if missing not in MISSING_POLICIES:
        raise ConfigError(f"missing must be one of {MISSING_POLICIES}, got {missing!r}: 'ignore' averages over "
                          "queries in both run and qrels (trec_eval default), 'zero' counts absent ones as 0 (-c).")
    common = [q for q in qrels if q in run]
    if not common:
        raise DataError(f"run ({len(run)} queries) and qrels ({len(qrels)} queries) share no query id. "
                        "Check that both use the same ids as strings (e.g. '6', not 6) and the same dataset.")
    return sorted(qrels) if missing == "zero" else sorted(common)


def _ndcg(ranked: list[str], judged: Mapping[str, int], k: int) -> float:
    gains = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    ideal = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    if ideal <= 0:
        return 0.0
    dcg = 0.0
    for i, d in enumerate(ranked[:k]):
        g = judged.get(d, 0)
        if g > 0:
            dcg += g / math.log2(i + 2)
    return dcg / ideal


def _recall(ranked: list[str], judged: Mapping[str, int], k: int) -> float:
    n_rel = sum(1 for g in judged.values() if g >= 1)
    if n_rel == 0:
        return 0.0
    return sum(1 for d in ranked[:k] if judged.get(d, 0) >= 1) / n_rel


def trec_evaluate(run: Mapping[str, Mapping[str, float]], qrels: Mapping[str, Mapping[str, int]], *,
                  ndcg_ks=(10,), recall_ks=(100,), missing: str = "ignore") -> dict[str, TrecScore]:
    """Several measures at once (each query ranked once): ``{"nDCG@10": TrecScore, "R@100": ...}``."""
    _check_inputs(run, qrels)
    ndcg_ks = [_check_k(k, "ndcg k") for k in ndcg_ks]
    recall_ks = [_check_k(k, "recall k") for k in recall_ks]
    qids = _queries(run, qrels, missing)
    per = {f"nDCG@{k}": {} for k in ndcg_ks} | {f"R@{k}": {} for k in recall_ks}
    for qid in qids:
        judged = {d: _rel(r, qid, d) for d, r in qrels[qid].items()}
        ranked = rank_documents(run[qid], qid) if qid in run else []
        for k in ndcg_ks:
            per[f"nDCG@{k}"][qid] = _ndcg(ranked, judged, k)
        for k in recall_ks:
            per[f"R@{k}"][qid] = _recall(ranked, judged, k)
    return {name: TrecScore(name, values, float(np.mean(list(values.values()))), len(values))
            for name, values in per.items()}


def ndcg_at_k(run: Mapping[str, Mapping[str, float]], qrels: Mapping[str, Mapping[str, int]], k: int = 10, *,
              missing: str = "ignore") -> TrecScore:
    """trec_eval ``ndcg_cut.k`` per query and its mean (see module doc for ties and query sets)."""
    return trec_evaluate(run, qrels, ndcg_ks=(k,), recall_ks=(), missing=missing)[f"nDCG@{_check_k(k)}"]


def recall_at_k(run: Mapping[str, Mapping[str, float]], qrels: Mapping[str, Mapping[str, int]], k: int = 100, *,
                missing: str = "ignore") -> TrecScore:
    """trec_eval ``recall.k`` per query and its mean (see module doc for ties and query sets)."""
    return trec_evaluate(run, qrels, ndcg_ks=(), recall_ks=(k,), missing=missing)[f"R@{_check_k(k)}"]
