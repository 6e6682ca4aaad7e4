"""Ranking metrics: sklearn agreement, hand-computed ties, chunking, rank distance."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from hbkit.errors import ConfigError, DataError
from hbkit.metrics import (average_precision, group_codes, grouped_ranking_metrics, hit_at_k, pad_relevant,
                           rank_distance, rank_distance_from_ranks, ranking_metrics, recall_at_k, relevant_ranks)


def _random_case(seed: int, n_q: int = 40, n_c: int = 60, max_rel: int = 9, decimals: int = 1):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.normal(size=(n_q, n_c)), decimals).astype(np.float32)  # many ties
    rel = [rng.choice(n_c, size=rng.integers(0, max_rel + 1), replace=False) for _ in range(n_q)]
    return scores, rel


def _naive_ranks(scores: np.ndarray, rel: list[np.ndarray]) -> list[np.ndarray]:
    return [np.array([(scores[i] >= scores[i, r]).sum() for r in rs], dtype=np.int64) for i, rs in enumerate(rel)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ap_matches_sklearn_with_ties(seed):
    scores, rel = _random_case(seed)
    ap = average_precision(torch.from_numpy(scores), rel)
    for i, rs in enumerate(rel):
        if len(rs) == 0:
            assert np.isnan(ap[i])
            continue
        y = np.zeros(scores.shape[1])
        y[rs] = 1
        assert ap[i] == pytest.approx(average_precision_score(y, scores[i]), abs=1e-12)
    assert np.isnan(ap).sum() == sum(len(r) == 0 for r in rel)


def test_hand_computed_ties():
    # scores of 5 candidates; candidate 2 ties with irrelevant candidate 1 -> pessimistic rank 3
    scores = torch.tensor([[0.9, 0.8, 0.8, 0.5, 0.1],
                           [0.5, 0.5, 0.5, 0.2, 0.0]])
    rel = [np.array([2, 4]), np.array([0, 1])]
    ranks = relevant_ranks(scores, rel)
    assert ranks.tolist() == [[3, 5], [3, 3]]
    ap = average_precision(scores, rel)
    # query 0: (1/3 + 2/5) / 2 ; query 1: both relevant tied with one irrelevant: (2/3 + 2/3) / 2
    assert ap[0] == pytest.approx(11 / 30)
    assert ap[1] == pytest.approx(2 / 3)
    r = recall_at_k(scores, rel, ks=(1, 2, 3, 5))
    assert r[1].tolist() == [0.0, 0.0]
    assert r[2].tolist() == [0.0, 0.0]  # pessimistic: the tie at the top pushes both to rank 3
    assert r[3].tolist() == [0.5, 1.0]
    assert r[5].tolist() == [1.0, 1.0]
    h = hit_at_k(scores, rel, ks=(1, 3))
    assert h[1].tolist() == [0.0, 0.0]
    assert h[3].tolist() == [1.0, 1.0]


def test_recall_hand_cases_and_empty_queries():
    scores = torch.tensor([[0.1, 0.9, 0.3, 0.7],
                           [0.4, 0.3, 0.2, 0.1],
                           [0.4, 0.3, 0.2, 0.1]])
    rel = [np.array([1, 2, 0]), np.array([], dtype=np.int64), np.array([3])]  # ranks 1, 3, 4 for query 0
    r = recall_at_k(scores, rel, ks=(1, 2, 3, 4))
    assert r[1][0] == pytest.approx(1 / 3) and r[2][0] == pytest.approx(1 / 3)
    assert r[3][0] == pytest.approx(2 / 3) and r[4][0] == 1.0
    assert np.isnan(r[1][1]) and np.isnan(r[4][1])
    assert r[1][2] == 0.0 and r[4][2] == 1.0
    h = hit_at_k(scores, rel, ks=(1,))
    assert h[1][0] == 1.0 and np.isnan(h[1][1]) and h[1][2] == 0.0
    ap = average_precision(scores, rel)
    assert ap[0] == pytest.approx((1 / 1 + 2 / 3 + 3 / 4) / 3)
    assert np.isnan(ap[1]) and ap[2] == pytest.approx(1 / 4)


@pytest.mark.parametrize("max_rel,boost", [(3, 0.0), (9, 0.0), (9, 3.0)])
def test_ranks_match_naive_and_chunking_is_exact(max_rel, boost):
    # paths: direct comparison (m <= 4), searchsorted (m > 4), and the sparse path used
    # when relevant candidates score high (boost) so few scores reach the lowest one
    scores, rel = _random_case(5, n_q=37, n_c=80, max_rel=max_rel)
    for i, r in enumerate(rel):
        scores[i, r] += boost
    naive = _naive_ranks(scores, rel)
    full = relevant_ranks(scores, rel)
    for i, rs in enumerate(rel):
        assert full[i, : len(rs)].tolist() == naive[i].tolist()
        assert (full[i, len(rs):] == 0).all()
    groups = np.array(["en", "de", "fr", "zh"] * 20)
    ref = ranking_metrics(scores, rel, ks=(1, 10), hit_ks=(5,), candidate_groups=groups)
    for chunk in (1, 3, 16):
        got = ranking_metrics(scores, rel, ks=(1, 10), hit_ks=(5,), candidate_groups=groups, chunk_size=chunk)
        assert set(got) == set(ref)
        for key in ref:
            np.testing.assert_array_equal(got[key], ref[key])


@pytest.mark.parametrize("max_rel,boost,sort_cols", [(3, 0.0, True), (3, 0.0, False), (9, 0.0, False),
                                                     (9, 3.0, True)])
def test_grouped_metrics_equal_metrics_on_column_slices(max_rel, boost, sort_cols):
    scores, rel = _random_case(11, n_q=30, n_c=90, max_rel=max_rel)
    for i, r in enumerate(rel):
        scores[i, r] += boost
    langs = np.array(["de", "en", "fr", None], dtype=object)[np.random.default_rng(3).integers(0, 4, 90)]
    if sort_cols:  # columns grouped by language (direct-comparison path for small m)
        order = np.argsort([str(x) for x in langs], kind="stable")
        scores, langs = scores[:, order], langs[order]
        where = np.argsort(order)
        rel = [where[r] for r in rel]
    pooled, per = grouped_ranking_metrics(scores, rel, langs, ks=(1, 10), group_ks=(1, 5), hit_ks=(3,), chunk_size=7)
    ref = ranking_metrics(scores, rel, ks=(1, 10), hit_ks=(3,), candidate_groups=langs)
    assert set(pooled) == set(ref)
    for key in ref:
        np.testing.assert_array_equal(pooled[key], ref[key])
    assert sorted(per) == ["de", "en", "fr"]
    for lang, got in per.items():
        cols = np.flatnonzero(langs == lang)
        local = np.full(90, -1)
        local[cols] = np.arange(len(cols))
        sub_rel = [local[r][local[r] >= 0] for r in rel]
        want = ranking_metrics(scores[:, cols], sub_rel, ks=(1, 5), hit_ks=(3,))
        assert set(got) == set(want)
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=0, atol=1e-15, equal_nan=True)


def test_padded_input_keeps_layout():
    scores = torch.tensor([[0.2, 0.9, 0.1, 0.5]])
    ranks = relevant_ranks(scores, np.array([[3, -1, 1, -1]]))
    assert ranks.tolist() == [[2, 0, 1, 0]]
    assert pad_relevant([np.array([4, 2]), np.array([], dtype=np.int64)]).tolist() == [[4, 2], [-1, -1]]


def test_rank_distance_from_hand_rankings():
    ranks = np.array([[1, 5, 3, 0],     # en 1, de 5, fr 3 -> 5 - 1
                      [2, 7, 4, 0],     # two relevant in lang 0: best 2; lang 1: 4 -> 2
                      [6, 9, 0, 0],     # a single language -> NaN
                      [0, 0, 0, 0],     # no relevant -> NaN
                      [10, 3, 8, 12]])  # lang 2 (12) and lang -1 (ignored) -> 10 vs 3 vs... see groups
    groups = np.array([[0, 1, 2, -1],
                       [0, 0, 1, -1],
                       [1, 1, -1, -1],
                       [-1, -1, -1, -1],
                       [0, 1, -1, 2]])
    rd = rank_distance_from_ranks(ranks, groups)
    assert rd[0] == 4.0 and rd[1] == 2.0
    assert np.isnan(rd[2]) and np.isnan(rd[3])
    assert rd[4] == 12.0 - 3.0


def test_rank_distance_from_scores():
    # candidates: langs en, en, de, de, fr ; query relevant = {0 (en), 3 (de), 4 (fr)}
    scores = torch.tensor([[0.95, 0.99, 0.10, 0.50, 0.60]])
    langs = ["en", "en", "de", "de", "fr"]
    rd = rank_distance(scores, [np.array([0, 3, 4])], langs)
    # ranks: cand0 -> 2, cand3 -> 4, cand4 -> 3 ; max - min = 2
    assert rd.tolist() == [2.0]
    # a second relevant English candidate with a better rank replaces en's rank (best per language)
    rd2 = rank_distance(scores, [np.array([0, 1, 3, 4])], langs)
    assert rd2.tolist() == [3.0]
    codes, names = group_codes(["en", None, "de", "", "en"])
    assert names == ["de", "en"] and codes.tolist() == [1, -1, 0, -1, 1]


def test_errors_name_the_problem():
    with pytest.raises(DataError, match="NaN"):
        average_precision(torch.tensor([[0.1, float("nan")]]), [np.array([0])])
    with pytest.raises(DataError, match="out of range"):
        average_precision(torch.zeros(1, 3), [np.array([3])])
    with pytest.raises(ConfigError, match="positive"):
        recall_at_k(torch.zeros(1, 3), [np.array([0])], ks=(0,))
    with pytest.raises(ConfigError, match="2-d"):
        average_precision(torch.zeros(3), [np.array([0])])
    with pytest.raises(ConfigError, match="queries"):
        average_precision(torch.zeros(2, 3), [np.array([0])])
