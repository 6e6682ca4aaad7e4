"""Language-bias measures (MRV, z-scored control, top-k shares, caption→caption) on hand-made
score matrices and embeddings; every expected value is worked out in the comments."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hbkit.benchmark import Candidate, Query, RetrievalBenchmark
from hbkit.errors import DataError
from hbkit.evaluation import ALL_LANGUAGES, COLUMNS, IMAGE_TO_TEXT, NO_LANGUAGE
from hbkit.language_bias import (
    CAPTION_TO_CAPTION,
    best_rank_by_language,
    caption_relevance,
    language_bias_table,
    pooled_bias,
    pooled_bias_from_embeddings,
    rank_spread,
    top_k_language_share,
    zscore_by_language,
)
from hbkit.metrics import ranking_metrics
from hbkit.parallel import ImageRef

# 3 images; captions e0 e0b e1 e2 (en), d0 d1 d2 (de); rows = images, columns = captions
S = np.array([[.9, .2, .5, .1, .4, .6, .0],
              [.3, .1, .8, .2, .85, .5, .6],
              [.1, .3, .8, .7, .2, .3, .9]], dtype=np.float32)
LANGS = ["en"] * 4 + ["de"] * 3
REL = [[0, 1, 4], [2, 5], [3, 6]]


def test_toy_ranks_mrv_and_zscore():
    res = pooled_bias(S, REL, LANGS, k=3)
    pq = res.per_query
    # pooled ranks: img0 e0 1, e0b 5, d0 4; img1 e1 2, d1 4; img2 e2 3, d2 1
    np.testing.assert_allclose(pq["AP"], [.7, .5, 5 / 6])
    np.testing.assert_array_equal(pq["rank_distance"], [3, 2, 2])
    # best ranks per language: (1, 4), (2, 4), (3, 1) -> population std 1.5, 1, 1
    np.testing.assert_allclose(pq["MRV"], [1.5, 1.0, 1.0])
    # z-scored, img0: en .9 .2 .5 .1 -> 1.53 -.72 .24 -1.04; de .4 .6 .0 -> .27 1.07 -1.34:
    #   e0 rank 1, d0 rank 3 -> 2;  img1: e1 1.67 rank 1, d1 -1.02 (de's lowest) rank 7 -> 6;
    #   img2: en .1 .3 .8 .7 -> e2 .94 (rank 3 behind e1 1.13 and d2 1.39), d2 rank 1 -> 2
    np.testing.assert_array_equal(pq["rank_distance_z"], [2, 6, 2])
    np.testing.assert_allclose(pq["MRV_z"], [1.0, 3.0, 1.0])
    # top 3: img0 e0 d1 e1; img1 d0 e1 d2; img2 d2 e1 e2 (languages sorted: de, en)
    assert res.languages == ["de", "en"]
    np.testing.assert_allclose(res.shares, [[1 / 3, 2 / 3], [2 / 3, 1 / 3], [1 / 3, 2 / 3]])


def test_population_std_is_the_default_and_ddof_is_a_parameter():
    best = np.array([[1, 2, 3], [5, np.nan, np.nan], [2, 4, np.nan]], dtype=float)
    dist, std0 = rank_spread(best)
    np.testing.assert_array_equal(dist, [2, np.nan, 2])
    np.testing.assert_allclose(std0, [np.sqrt(2 / 3), np.nan, 1.0])
    _, std1 = rank_spread(best, ddof=1)
    np.testing.assert_allclose(std1, [1.0, np.nan, np.sqrt(2)])
    _, std2 = rank_spread(best, ddof=2)  # n <= ddof -> undefined
    np.testing.assert_allclose(std2, [np.sqrt(2), np.nan, np.nan])
    np.testing.assert_allclose(pooled_bias(S, REL, LANGS, ddof=1).per_query["MRV"], [np.sqrt(4.5), np.sqrt(2), np.sqrt(2)])


def _preference_scores(shift_b: float, c_like_a: bool) -> tuple[np.ndarray, list, list]:
    """4 images × 3 languages (a, b, c), one caption per image and language.

    a: own caption .5, others 0; b: a + shift_b (pure preference); c: own .25 below a
    distractor .5 (worse quality), or c = a."""
    n = 4
    a = np.full((n, n), 0.0)
    np.fill_diagonal(a, .5)
    if c_like_a:
        c = a.copy()
    else:
        c = np.zeros((n, n))
        np.fill_diagonal(c, .25)
        for i in range(n):
            c[i, (i + 1) % n] = .5
    s = np.concatenate([a, a + shift_b, c], axis=1).astype(np.float32)
    langs = ["a"] * n + ["b"] * n + ["c"] * n
    rel = [[i, n + i, 2 * n + i] for i in range(n)]
    return s, langs, rel


def test_zscore_removes_a_pure_preference():
    # shifted: b's 4 candidates take ranks 1-4; a's own .5 ties c's distractor -> rank 6; c's own .25 -> 7
    s, langs, rel = _preference_scores(1.0, c_like_a=False)
    pq = pooled_bias(s, rel, langs).per_query
    np.testing.assert_array_equal(pq["rank_distance"], [6] * 4)
    np.testing.assert_allclose(pq["MRV"], [np.std([6, 1, 7])] * 4)
    # z-scored: a and b own = 1.732 (tied -> rank 2 each), c distractor 1.508, c own .302 -> rank 4
    np.testing.assert_array_equal(pq["rank_distance_z"], [2] * 4)
    np.testing.assert_allclose(pq["MRV_z"], [np.sqrt(8) / 3] * 4)
    # the same as without the shift: the z-scored value is the quality-only one
    s0, langs0, rel0 = _preference_scores(0.0, c_like_a=False)
    pq0 = pooled_bias(s0, rel0, langs0).per_query
    np.testing.assert_array_equal(pq0["rank_distance_z"], [2] * 4)
    np.testing.assert_array_equal(pq0["rank_distance"], [1] * 4)  # a, b own tie c's distractor (3), c own 4
    # equal quality: raw 5 (b own 1, a and c own tied at 6), z-scored all tied at 3 -> 0
    s, langs, rel = _preference_scores(1.0, c_like_a=True)
    pq = pooled_bias(s, rel, langs).per_query
    np.testing.assert_array_equal(pq["rank_distance"], [5] * 4)
    np.testing.assert_array_equal(pq["rank_distance_z"], [0] * 4)
    np.testing.assert_array_equal(pq["MRV_z"], [0] * 4)


def test_zscore_constant_language_is_centred_and_minus_inf_ignored():
    s = torch.tensor([[1.0, 3.0, 2.0, 2.0, float("-inf"), 5.0]])
    z = zscore_by_language(s, ["x", "x", "y", "y", "z", "z"])
    # x: mean 2, std 1 -> -1, 1; y: constant -> centred 0, 0; z: only 5 counts -> 0, -inf stays
    np.testing.assert_array_equal(z.numpy(), [[-1, 1, 0, 0, float("-inf"), 0]])


def test_top_k_share_splits_ties_and_skips_minus_inf():
    s = np.array([[1, .5, .5, .5], [1, .5, .5, .5], [float("-inf"), 1, 0, 0]], dtype=np.float32)
    shares, names = top_k_language_share(s, ["a", "a", "b", "b"], k=2)
    # row 0: a's 1 above; three tied .5 share the last slot (1/3 each): a (1 + 1/3)/2, b (2/3)/2
    # row 2: -inf never ranked; 1 (a) then a 0-0 tie of b's: a 1/2, b 1/2
    np.testing.assert_allclose(shares, [[2 / 3, 1 / 3], [2 / 3, 1 / 3], [1 / 2, 1 / 2]])
    assert names == ["a", "b"]
    # fewer rankable candidates than k: k becomes their number
    sh, _ = top_k_language_share(np.array([[float("-inf"), 1, 0]]), ["a", "b", "b"], k=10)
    np.testing.assert_allclose(sh, [[0, 1]])


# caption pool: images x0, x1 in en, de, fr; caption embeddings chosen so every score is dyadic
CAPS = [("e0", "en", "x0", [1, 0]), ("d0", "de", "x0", [.75, .25]), ("f0", "fr", "x0", [.5, 0]),
        ("e1", "en", "x1", [0, 1]), ("d1", "de", "x1", [.25, .75]), ("f1", "fr", "x1", [0, .5])]
CAP_EMB = np.array([c[3] for c in CAPS], dtype=np.float32)
IMG_EMB = np.eye(2, dtype=np.float32)


def _bench() -> RetrievalBenchmark:
    queries = [Query(f"img{i}", f"x{i}", None, "", image=ImageRef(f"img{i}.jpg")) for i in range(2)]
    return RetrievalBenchmark("toy", queries, [Candidate(cid, lang, cid, "", (x,)) for cid, lang, x, _ in CAPS])


def _values(df) -> dict:
    return {(r.direction, r.query_lang, r.metric): (r.value, r.n_queries) for r in df.itertuples()}


def test_caption_relevance_other_languages_only():
    rel = caption_relevance([("x0",), ("x0",), ("x0",), ("x1",)], ["en", "en", "de", "de"])
    assert [r.tolist() for r in rel] == [[2], [2], [0, 1], []]


def test_table_image_and_caption_rows():
    df = language_bias_table(_bench(), IMG_EMB, CAP_EMB, k=2, meta={"model": "m", "seed": 1})
    assert list(df.columns) == COLUMNS
    assert (df.setting == "multilingual").all() and (df.candidate_lang == ALL_LANGUAGES).all()
    assert set(df.direction) == {IMAGE_TO_TEXT, CAPTION_TO_CAPTION} and (df.model == "m").all()
    assert (df[df.direction == IMAGE_TO_TEXT].query_lang == NO_LANGUAGE).all()
    got = _values(df)
    img = lambda m: got[(IMAGE_TO_TEXT, NO_LANGUAGE, m)]
    # image 0: e0 1, d0 .75, f0 .5 -> ranks 1, 2, 3 (image 1 symmetric): std sqrt(2/3)
    assert img("MRV") == (pytest.approx(np.sqrt(2 / 3)), 2)
    # z per language: own caption 1, other -1 in each language -> three-way tie at rank 3
    assert img("MRV_z") == (0.0, 2) and img("rank_distance_z") == (0.0, 2)
    # top 2: e0, d0 (image 1: e1, d1)
    assert img("top2_share:en") == (.5, 2) and img("top2_share:de") == (.5, 2) and img("top2_share:fr") == (0, 2)
    assert img("top2_share_max_minus_min") == (.5, 2)
    cap = lambda lang, m: got[(CAPTION_TO_CAPTION, lang, m)][0]
    # e0 (self excluded): d0 .75 rank 1, f0 .5 rank 2 -> AP 1, distance 1, std .5
    # d0: e0 .75 rank 1; f0 .375 tied with d1 .375 -> rank 3: AP (1 + 2/3)/2, distance 2, std 1
    # f0: e0 .5, d0 .375 -> ranks 1, 2; image 1 symmetric
    for lang, ap, dist, std in [("en", 1, 1, .5), ("de", 5 / 6, 2, 1), ("fr", 1, 1, .5)]:
        assert cap(lang, "mAP") == pytest.approx(ap)
        assert cap(lang, "R@10") == 1.0
        assert cap(lang, "rank_distance") == dist and cap(lang, "MRV") == pytest.approx(std)
        # z-scored, e.g. e0: de .75 .25 -> 1 -1, fr .5 0 -> 1 -1, en only e1 -> centred 0: tie at 2
        assert cap(lang, "rank_distance_z") == 0 and cap(lang, "MRV_z") == 0
    # top 2: e0 -> d0 f0; d0 -> e0 then f0/d1 tied (1/4 each); f0 -> e0 d0
    assert cap("en", "own_language_top2_share") == 0
    assert cap("de", "own_language_top2_share") == pytest.approx(.25)
    assert cap("fr", "own_language_top2_share") == 0
    assert (cap("de", "top2_share:en"), cap("de", "top2_share:fr")) == (.5, .25)
    assert cap("de", "top2_share_max_minus_min") == .25 and cap("en", "top2_share_max_minus_min") == .5
    assert got[(CAPTION_TO_CAPTION, "de", "mAP")][1] == 2
    # only some caption queries
    sub = _values(language_bias_table(_bench(), IMG_EMB, CAP_EMB, k=2, caption_queries=[1]))
    assert {k[1] for k in sub if k[0] == CAPTION_TO_CAPTION} == {"de"}
    assert sub[(CAPTION_TO_CAPTION, "de", "mAP")] == (pytest.approx(5 / 6), 1)


def test_exclusion_matches_minus_inf_ranking_and_chunking():
    rng = np.random.default_rng(0)
    langs = [["a", "b", "c"][i % 3] for i in range(60)]
    xids = [(f"x{i // 3}",) for i in range(60)]
    emb = rng.normal(size=(60, 8)).astype(np.float32)
    rel = caption_relevance(xids, langs)
    got = pooled_bias_from_embeddings(emb, emb, rel, langs, exclude=np.arange(60), query_groups=langs)
    s = emb @ emb.T
    np.fill_diagonal(s, -np.inf)
    want = ranking_metrics(torch.from_numpy(s), rel, ks=(10,), candidate_groups=langs)
    for m in ["AP", "R@10", "rank_distance"]:
        np.testing.assert_allclose(got.per_query[m], want[m], rtol=1e-6)
    chunked = pooled_bias(emb @ emb.T, rel, langs, query_groups=langs, exclude=np.arange(60), chunk_size=7)
    for m, v in got.per_query.items():
        np.testing.assert_allclose(chunked.per_query[m], v, rtol=1e-6, err_msg=m)
    np.testing.assert_allclose(chunked.shares, got.shares)
    np.testing.assert_allclose(got.shares.sum(1), 1.0)
    own = got.shares[np.arange(60), [ord(x) - ord("a") for x in langs]]
    np.testing.assert_allclose(got.per_query["own_language_top10_share"], own)
    # the z-scored control of the sorted pass equals z-scoring the −inf matrix directly
    best_z = best_rank_by_language(s, rel, langs, zscore=True)
    np.testing.assert_allclose(got.per_query["rank_distance_z"], rank_spread(best_z)[0])
    np.testing.assert_allclose(got.per_query["MRV_z"], rank_spread(best_z)[1])
    np.testing.assert_allclose(got.shares, top_k_language_share(s, langs)[0])
    with pytest.raises(DataError, match=r"excluded \(own\) candidate is listed as relevant"):
        pooled_bias(emb @ emb.T, [[0, 1]] + [[]] * 59, langs, exclude=np.arange(60))
    with pytest.raises(DataError, match="scores must be finite"):
        pooled_bias(s, rel, langs)
