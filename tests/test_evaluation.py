"""evaluate_embeddings / headline on a small synthetic benchmark, cross-checked with sklearn."""
from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import average_precision_score

from hbkit.benchmark import Candidate, Query, RetrievalBenchmark
from hbkit.errors import ConfigError, DataError
from hbkit.evaluation import (ALL_LANGUAGES, COLUMNS, DIRECTIONS, NO_LANGUAGE, TEXT_TO_TEXT, evaluate_embeddings,
                              evaluate_model, headline, per_query_language, rerank_top_k, row_keys)
from hbkit.kit.experiment import read_results

LANGS = ["de", "en", "fr"]


def _bench(seed: int = 0, n_items: int = 12, n_cand: int = 15) -> RetrievalBenchmark:
    """3 languages; every item has a query per language (fr misses one) and an answer per language."""
    rng = np.random.default_rng(seed)
    queries, cands = [], []
    for lang in LANGS:
        for i in range(n_items):
            if lang == "fr" and i == 0:
                continue
            queries.append(Query(f"{lang}:q{i}", f"x{i}", lang, f"question {i} in {lang}"))
        owner = rng.integers(0, n_cand, size=n_items)  # the sentence answering item i
        if lang == "de":
            owner[3] = owner[4] = 2  # one sentence answers two items
        for j in range(n_cand):
            xids = tuple(f"x{i}" for i in range(n_items) if owner[i] == j)
            cands.append(Candidate(f"{lang}:{j}", lang, f"sentence {j} in {lang}", f"paragraph {lang}", xids))
    return RetrievalBenchmark("synthetic", queries, cands)


def _embeddings(bench: RetrievalBenchmark, seed: int = 0, d: int = 8):
    """Quantised embeddings (multiples of 1/8): float32 dot products are exact, and ties occur."""
    rng = np.random.default_rng(seed)
    item = {f"x{i}": rng.normal(size=d) for i in range(20)}
    q = np.stack([item[qq.xid] + rng.normal(size=d) for qq in bench.queries])
    c = np.stack([sum((item[x] for x in cd.xids), np.zeros(d)) + rng.normal(size=d) for cd in bench.candidates])
    quant = lambda a: (np.round(a / np.linalg.norm(a, axis=1, keepdims=True) * 8) / 8).astype(np.float32)
    return quant(q), quant(c)


def _reranked(scores: np.ndarray, ids: np.ndarray, new: np.ndarray, k: int) -> np.ndarray:
    """Reference re-ranking of one query's scores: the top k (by score, then lower id) are put above
    the rest in the order of ``new`` (ties kept); the rest keep their scores."""
    top = np.lexsort((ids, -scores))[:k]
    out = scores.copy()
    out[top] = 1000.0 + np.array([(new[top] < v).sum() for v in new[top]])
    return out


def _reference(bench, q, c, ks=(1, 10), hit_ks=(), rescore=None, k=0) -> dict[tuple[str, str, str, str], float]:
    """Slow per-query reference: sklearn AP, numpy ranks; ``rescore(i, ids) -> new scores``
    re-ranks each setting's own top k."""
    s = q.astype(np.float64) @ c.astype(np.float64).T
    cl = np.array([cd.lang for cd in bench.candidates])
    acc: dict[tuple, list[float]] = {}
    for i, qq in enumerate(bench.queries):
        qlang = qq.lang or NO_LANGUAGE
        rel = np.zeros(len(bench.candidates), bool)
        rel[bench.relevant[i]] = True
        blocks = [("multilingual", ALL_LANGUAGES, np.ones(len(cl), bool))]
        if qq.lang is not None:
            blocks += [("monolingual" if lang == qq.lang else "cross-lingual", lang, cl == lang) for lang in LANGS]
        for setting, clang, cols in blocks:
            y, sc = rel[cols], s[i, cols]
            if not y.any():
                continue
            if rescore is not None:
                ids = np.flatnonzero(cols)
                sc = _reranked(sc, ids, rescore(i, ids), k)
            ranks = np.array([(sc >= v).sum() for v in sc[y]])
            acc.setdefault((setting, qlang, clang, "mAP"), []).append(average_precision_score(y, sc))
            for k_ in ks:
                acc.setdefault((setting, qlang, clang, f"R@{k_}"), []).append((ranks <= k_).mean())
            for k_ in hit_ks:
                acc.setdefault((setting, qlang, clang, f"hit@{k_}"), []).append(float((ranks <= k_).any()))
            if setting == "multilingual":
                best = {}
                for r, lang in zip(ranks, cl[cols][y]):
                    best[lang] = min(best.get(lang, r), r)
                if len(best) >= 2:
                    acc.setdefault((setting, qlang, clang, "rank_distance"), []).append(
                        max(best.values()) - min(best.values()))
    return {k: float(np.mean(v)) for k, v in acc.items()}


@pytest.fixture(scope="module")
def case():
    bench = _bench()
    q, c = _embeddings(bench)
    df = evaluate_embeddings(bench, q, c, meta={"model": "toy", "strategy": "hybrid", "seed": 3})
    return bench, q, c, df


def test_tidy_shape_and_columns(case):
    bench, _, _, df = case
    assert list(df.columns) == COLUMNS
    assert (df.direction == TEXT_TO_TEXT).all()
    counts = df.groupby("setting").size().to_dict()
    assert counts == {"monolingual": 3 * 3, "cross-lingual": 6 * 3, "multilingual": 3 * 4}
    assert set(df.metric) == {"mAP", "R@1", "R@10", "rank_distance"}
    assert set(df[df.setting == "multilingual"].candidate_lang) == {ALL_LANGUAGES}
    assert (df.model == "toy").all() and (df.strategy == "hybrid").all() and (df.seed == 3).all()
    assert (df.benchmark == "synthetic").all()
    mono = df[df.setting == "monolingual"]
    assert (mono.query_lang == mono.candidate_lang).all()
    assert df.set_index(["setting", "query_lang", "candidate_lang", "metric"]).index.is_unique
    # fr has one query fewer; every query has a relevant candidate in every language here
    n = df[(df.metric == "mAP")].set_index(["setting", "query_lang", "candidate_lang"]).n_queries
    assert n[("monolingual", "fr", "fr")] == 11 and n[("cross-lingual", "en", "de")] == 12
    assert n[("multilingual", "de", ALL_LANGUAGES)] == 12


def test_values_match_sklearn_reference(case):
    bench, q, c, df = case
    ref = _reference(bench, q, c)
    got = {(r.setting, r.query_lang, r.candidate_lang, r.metric): r.value for r in df.itertuples()}
    assert set(got) == set(ref)
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    # the synthetic signal makes metrics non-trivial
    assert 0.2 < got[("monolingual", "en", "en", "mAP")] < 1.0


def test_headline_macro_averages(case):
    _, _, _, df = case
    pq = per_query_language(df)
    cross = pq[(pq.setting == "cross-lingual") & (pq.metric == "mAP")].set_index("query_lang")
    for lang in LANGS:
        rows = df[(df.setting == "cross-lingual") & (df.metric == "mAP") & (df.query_lang == lang)]
        assert len(rows) == 2 and cross.loc[lang, "n_candidate_langs"] == 2
        assert cross.loc[lang, "value"] == pytest.approx(rows.value.mean())
    hl = headline(df).set_index(["setting", "metric"])
    assert len(hl) == 3 + 3 + 4
    assert hl.loc[("cross-lingual", "mAP"), "value"] == pytest.approx(cross.value.mean())
    mono = df[(df.setting == "monolingual") & (df.metric == "R@1")].value.mean()
    assert hl.loc[("monolingual", "R@1"), "value"] == pytest.approx(mono)
    assert (hl.n_query_langs == 3).all() and (hl.model == "toy").all()
    # runs with different seeds stay apart
    both = headline(pd.concat([df, df.assign(seed=4)]))
    assert sorted(both.seed.unique()) == [3, 4]


def test_chunking_and_settings_subset(case):
    bench, q, c, df = case
    small = evaluate_embeddings(bench, torch.from_numpy(q), torch.from_numpy(c), chunk_size=2,
                                meta={"model": "toy", "strategy": "hybrid", "seed": 3})
    pd.testing.assert_frame_equal(small, df)
    multi = evaluate_embeddings(bench, q, c, settings=("multilingual",), ks_multi=(5,))
    assert set(multi.metric) == {"mAP", "R@5", "rank_distance"} and len(multi) == 9
    assert (multi.model == "").all() and (multi.seed == -1).all()


def test_candidate_order_does_not_matter(case):
    bench, q, c, df = case
    perm = np.random.default_rng(7).permutation(len(bench.candidates))  # languages interleaved
    shuffled = RetrievalBenchmark(bench.name, bench.queries, [bench.candidates[j] for j in perm])
    got = evaluate_embeddings(shuffled, q, c[perm], meta={"model": "toy", "strategy": "hybrid", "seed": 3})
    pd.testing.assert_frame_equal(got, df)


def test_language_less_queries_do_not_crash():
    # images as queries (lang None) against captions in 2 languages
    rng = np.random.default_rng(1)
    queries = [Query(f"img{i}", f"x{i}", None, f"img{i}.jpg") for i in range(6)]
    cands = [Candidate(f"{lang}:{i}", lang, f"caption {i}", "", (f"x{i}",)) for lang in ("de", "en") for i in range(6)]
    bench = RetrievalBenchmark("toy-images", queries, cands)
    q = (np.round(rng.normal(size=(6, 4)) * 4) / 4).astype(np.float32)
    c = (np.round(rng.normal(size=(12, 4)) * 4) / 4).astype(np.float32)
    df = evaluate_embeddings(bench, q, c)
    assert set(df.setting) == {"multilingual"} and set(df.query_lang) == {NO_LANGUAGE}
    got = {(r.setting, r.query_lang, r.candidate_lang, r.metric): r.value for r in df.itertuples()}
    ref = {k: v for k, v in _reference(bench, q, c).items()}
    assert set(got) == set(ref)
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, abs=1e-12)
    assert headline(df).set_index("metric").loc["rank_distance", "n_query_langs"] == 1
    # the other direction: captions as queries, language-less images as candidates
    t2i = RetrievalBenchmark("toy-t2i", [Query(f"{cd.cid}", cd.xids[0], cd.lang, cd.text) for cd in cands],
                             [Candidate(q_.qid, None, q_.text, "", (q_.xid,)) for q_ in queries])
    df2 = evaluate_embeddings(t2i, c, q)
    assert set(df2.setting) == {"multilingual"} and set(df2.query_lang) == {"de", "en"}
    assert set(df2.metric) == {"mAP", "R@1", "R@10"}  # no rank distance without candidate languages
    ref2 = _reference(t2i, c, q)
    got2 = {(r.setting, r.query_lang, r.candidate_lang, r.metric): r.value for r in df2.itertuples()}
    assert set(got2) == set(ref2) and all(got2[k] == pytest.approx(v, abs=1e-12) for k, v in ref2.items())


class _HashEncoder:
    """A deterministic toy encoder with the hbkit encode() interface (records its calls)."""

    def __init__(self, d: int = 8):
        self.d, self.calls = d, []

    def encode(self, texts, kind="passage", batch_size=64, show_progress=None, contexts=None):
        self.calls.append((kind, batch_size, show_progress, contexts is not None))
        out = []
        for j, t in enumerate(texts):
            key = t + (contexts[j] if contexts is not None else "")
            v = np.random.default_rng(zlib.crc32(f"{kind}|{key}".encode())).normal(size=self.d)
            out.append(v / np.linalg.norm(v))
        return torch.tensor(np.stack(out), dtype=torch.float32)


def test_evaluate_model_encodes_queries_and_passages():
    bench = _bench(seed=2)
    enc = _HashEncoder()
    df = evaluate_model(enc, bench, batch_size=7, use_context=True, meta={"model": "hash"})
    assert enc.calls == [("query", 7, False, False), ("passage", 7, False, True)]  # HBKIT_PROGRESS=0 under test
    q = enc.encode([x.text for x in bench.queries], kind="query")
    c = enc.encode([x.text for x in bench.candidates], kind="passage", contexts=[x.context for x in bench.candidates])
    pd.testing.assert_frame_equal(df, evaluate_embeddings(bench, q, c, meta={"model": "hash"}))


def test_errors_name_the_problem(case):
    bench, q, c, _ = case
    with pytest.raises(DataError, match="shape"):
        evaluate_embeddings(bench, q[:-1], c)
    with pytest.raises(DataError, match="dimension"):
        evaluate_embeddings(bench, q, c[:, :4])
    bad = q.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        evaluate_embeddings(bench, bad, c)
    with pytest.raises(ConfigError, match="settings"):
        evaluate_embeddings(bench, q, c, settings=("bilingual",))
    with pytest.raises(ConfigError, match="meta"):
        evaluate_embeddings(bench, q, c, meta={"modle": "x"})
    with pytest.raises(DataError, match="columns"):
        headline(pd.DataFrame({"value": [1.0]}))


def _hash_rescorer(qi: torch.Tensor, ci: torch.Tensor) -> torch.Tensor:
    """Deterministic pseudo-random re-scores with many ties (13 levels)."""
    return ((qi.unsqueeze(1) * 7919 + ci * 104729) % 13).to(torch.float32)


@pytest.mark.parametrize("k", [1, 5, 200])
def test_rescore_matches_reference(case, k):
    # each setting re-ranks its own top k; beyond k the first-stage order (and its ties) is kept
    bench, q, c, _ = case
    df = evaluate_embeddings(bench, q, c, rescore=_hash_rescorer, rescore_k=k, chunk_size=5)
    ref = _reference(bench, q, c, rescore=lambda i, ids: _hash_rescorer(torch.tensor([i]), torch.from_numpy(ids))
                     .numpy()[0], k=k)
    got = {(r.setting, r.query_lang, r.candidate_lang, r.metric): r.value for r in df.itertuples()}
    assert set(got) == set(ref)
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_identity_rescore_changes_nothing():
    # continuous scores (no ties at the cut-off): re-scoring the top k by the same scores is a no-op
    bench = _bench(seed=4)
    rng = np.random.default_rng(4)
    q = rng.normal(size=(len(bench.queries), 8)).astype(np.float32)
    c = rng.normal(size=(len(bench.candidates), 8)).astype(np.float32)
    qt, ct = torch.from_numpy(q), torch.from_numpy(c)
    ident = lambda qi, ci: qt[qi].unsqueeze(1).mul(ct[ci]).sum(-1)  # noqa: E731
    plain = evaluate_embeddings(bench, q, c)
    for k in (3, 1000):
        pd.testing.assert_frame_equal(evaluate_embeddings(bench, q, c, rescore=ident, rescore_k=k), plain)


def test_rerank_top_k_order_ties_and_beyond_k():
    scores = torch.tensor([[0.5, 0.9, 0.1, 0.7, 0.3, 0.7]])
    seen = []

    def reverse(qi, ci):
        seen.append((qi.tolist(), ci.tolist()))
        return -scores[0, ci - 10]

    out = rerank_top_k(scores, torch.tensor([4]), torch.arange(10, 16), reverse, 2)
    # top 2: 0.9 (col 1) and, of the tied 0.7s, the lower id (col 3); reversed: col 3 above col 1
    assert seen == [([4], [[11, 13]])]
    assert torch.argsort(out[0], descending=True, stable=True).tolist() == [3, 1, 5, 0, 4, 2]
    keep = [0, 2, 4, 5]
    assert torch.equal(out[:, keep], scores[:, keep]) and out[0, 3] > out[0, 1] > scores.max()
    # ids decide ties at the cut-off: with descending ids, the tied 0.7 of col 5 (id 10) is taken
    out = rerank_top_k(scores, torch.tensor([0]), torch.arange(15, 9, -1), lambda qi, ci: torch.ones(1, 2), 2)
    assert out[0, 5] == out[0, 1] > scores.max() and out[0, 3] == scores[0, 3]  # equal re-scores stay tied
    # k >= n: everything ordered by the re-scores; works for large and negative score scales
    big = torch.tensor([[-3e6, 5e6, 1e6]])
    out = rerank_top_k(big, torch.tensor([0]), torch.arange(3), lambda qi, ci: -big[0, ci], 10)
    assert torch.argsort(out[0], descending=True).tolist() == [0, 2, 1] and out.min() > big.max()


def test_rescore_errors(case):
    bench, q, c, _ = case
    with pytest.raises(DataError, match="shape"):
        evaluate_embeddings(bench, q, c, rescore=lambda qi, ci: torch.zeros(len(qi), 1), rescore_k=3)
    with pytest.raises(DataError, match="NaN"):
        evaluate_embeddings(bench, q, c, rescore=lambda qi, ci: torch.full(ci.shape, float("nan")), rescore_k=3)
    with pytest.raises(ConfigError, match="rescore_k"):
        evaluate_embeddings(bench, q, c, rescore=_hash_rescorer, rescore_k=0)
    with pytest.raises(ConfigError, match="rescore must be a function"):
        evaluate_embeddings(bench, q, c, rescore=3)


def test_hit_at_k_rows_when_asked(case):
    bench, q, c, df = case
    assert not df.metric.str.startswith("hit@").any()  # text→text default: none
    hits = evaluate_embeddings(bench, q, c, hit_ks=(1, 5))
    ref = _reference(bench, q, c, hit_ks=(1, 5))
    got = {(r.setting, r.query_lang, r.candidate_lang, r.metric): r.value for r in hits.itertuples()}
    assert set(got) == set(ref) and {"hit@1", "hit@5"} <= set(hits.metric)
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    # several relevant candidates: hit@k >= R@k, strictly somewhere
    m = hits[hits.setting == "multilingual"].pivot_table(index="query_lang", columns="metric", values="value")
    assert (m["hit@1"] >= m["R@1"]).all() and (m["hit@1"] > m["R@1"]).any()


def _old_headline(df: pd.DataFrame) -> pd.DataFrame:
    """The headline as computed before directions existed."""
    keys = ["model", "strategy", "seed", "benchmark", "setting"]
    pq = df.groupby(keys + ["query_lang", "metric"], sort=False).agg(value=("value", "mean")).reset_index()
    return pq.groupby(keys + ["metric"], sort=False).agg(value=("value", "mean")).reset_index()


def test_headline_unchanged_for_text_results_and_old_tables(case, tmp_path):
    _, _, _, df = case
    hl = headline(df)
    old = _old_headline(df.drop(columns="direction"))
    assert len(hl) == len(old) and (hl.direction == TEXT_TO_TEXT).all()
    pd.testing.assert_frame_equal(hl[old.columns], old)
    # a results CSV written before the direction column: read as text→text, same numbers
    path = tmp_path / "results.csv"
    df.drop(columns="direction").to_csv(path, index=False)
    pd.testing.assert_frame_equal(headline(read_results(path)), hl)
    mixed = pd.concat([read_results(path), df.assign(seed=4)], ignore_index=True)  # old + new rows
    both = headline(mixed)
    assert (both.direction == TEXT_TO_TEXT).all() and len(both) == 2 * len(hl)


def test_headline_shows_query_count_range(case):
    _, _, _, df = case
    hl = headline(df).set_index(["setting", "metric"])
    # fr has 11 queries, de and en 12: the cross-lingual macro average mixes pairs of 11 and 12 queries
    assert tuple(hl.loc[("cross-lingual", "mAP"), ["n_queries_min", "n_queries_max"]]) == (11, 12)
    cross = df[(df.setting == "cross-lingual") & (df.metric == "mAP")]
    assert (cross.n_queries.min(), cross.n_queries.max()) == (11, 12)
    pq = per_query_language(df).set_index(["setting", "query_lang", "metric"])
    assert tuple(pq.loc[("cross-lingual", "fr", "mAP"), ["n_queries_min", "n_queries_max"]]) == (11, 11)
    assert tuple(pq.loc[("cross-lingual", "de", "mAP"), ["n_queries_min", "n_queries_max"]]) == (12, 12)


def test_row_keys_carry_the_direction():
    keys = row_keys({"model": "m", "seed": 2}, "miracl-dev")
    assert keys == {"model": "m", "strategy": "", "seed": 2, "benchmark": "miracl-dev", "direction": TEXT_TO_TEXT}
    row = {**keys, "setting": "monolingual", "query_lang": "sw", "candidate_lang": "sw", "metric": "nDCG@10",
           "value": 0.5, "n_queries": 3}
    assert list(pd.DataFrame([row], columns=COLUMNS).iloc[0]) == [row[col] for col in COLUMNS]
    assert row_keys(None, "b", direction=DIRECTIONS[2])["direction"] == "image→text"
    with pytest.raises(ConfigError, match="direction"):
        row_keys(None, "b", direction="audio→text")


@pytest.mark.parametrize("k", [1, 4, 9, 30])
def test_rerank_top_k_matches_reference_with_ties(k):
    rng = np.random.default_rng(k)
    scores = torch.from_numpy(rng.integers(0, 4, size=(20, 30)).astype(np.float32) / 4)  # many ties
    ids = torch.from_numpy(rng.permutation(30) + 100)  # unsorted candidate ids
    new_of = lambda qi, ci: ((qi.unsqueeze(1) * 31 + ci * 17) % 5).to(torch.float32)  # noqa: E731
    calls = []
    out = rerank_top_k(scores, torch.arange(20), ids, lambda qi, ci: calls.append(ci) or new_of(qi, ci), k)
    for i in range(20):
        s, idn = scores[i].numpy(), ids.numpy()
        want = _reranked(s.astype(np.float64), idn, new_of(torch.tensor([i]), ids).numpy()[0].astype(np.float64), k)
        order = np.lexsort((idn, -s))[:k]
        assert calls[0][i].tolist() == idn[order].tolist()  # the top k, best first, ties by lower id
        got = out[i].numpy()
        # same ranking: equal pairwise order (ties included) as the reference
        assert np.array_equal(np.sign(got[:, None] - got[None, :]), np.sign(want[:, None] - want[None, :]))
