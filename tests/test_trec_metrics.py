"""trec_eval semantics: hand-computed cases and agreement with pytrec_eval on the real MIRACL qrels."""
from __future__ import annotations

import math

import numpy as np
import pytest

from hbkit.errors import ConfigError, DataError
from hbkit.datasets.miracl import read_qrels
from hbkit.trec_metrics import ndcg_at_k, rank_documents, recall_at_k, trec_evaluate


def L(i: int) -> float:  # discount of 1-based rank i
    return 1 / math.log2(i + 1)


def test_hand_computed_graded_ndcg_and_recall():
    qrels = {"q": {"a": 2, "b": 1, "c": 0, "d": 1}}
    run = {"q": {"x": 0.9, "b": 0.8, "c": 0.7, "a": 0.6}}  # ranks: x b c a ; d not retrieved
    ideal = 2 + 1 * L(2) + 1 * L(3)
    assert ndcg_at_k(run, qrels, 10).per_query["q"] == pytest.approx((1 * L(2) + 2 * L(4)) / ideal, abs=1e-12)
    assert ndcg_at_k(run, qrels, 2).mean == pytest.approx(1 * L(2) / (2 + L(2)), abs=1e-12)
    assert recall_at_k(run, qrels, 100).mean == pytest.approx(2 / 3)
    assert recall_at_k(run, qrels, 2).mean == pytest.approx(1 / 3)


def test_ties_are_broken_by_docid_descending_as_strings():
    qrels = {"q": {"9#0": 1}}
    # '9#0' > '10#0' as strings, so the relevant document ranks first among the tie.
    assert rank_documents({"10#0": 0.5, "9#0": 0.5, "1#0": 0.7}) == ["1#0", "9#0", "10#0"]
    assert ndcg_at_k({"q": {"10#0": 0.5, "9#0": 0.5}}, qrels).mean == 1.0
    assert ndcg_at_k({"q": {"A": 0.5, "9#0": 0.5}}, qrels).mean == pytest.approx(L(2))  # 'A' > '9#0'
    # scores equal after rounding to float32 are a tie (trec_eval keeps C floats)
    assert rank_documents({"a": 1.0 + 5e-8, "b": 1.0}) == ["b", "a"]
    assert rank_documents({"a": 1.0 + 2e-7, "b": 1.0}) == ["a", "b"]


def test_query_sets_follow_trec_eval():
    qrels = {"q1": {"a": 1}, "q2": {"a": 0, "b": 0}, "q3": {"c": 1}}
    run = {"q1": {"a": 1.0}, "q2": {"a": 1.0}, "q9": {"a": 1.0}}
    nd = ndcg_at_k(run, qrels)
    # q2 has no relevant document: counted with 0; q3 is not in the run: ignored; q9 is unjudged: ignored
    assert nd.per_query == {"q1": 1.0, "q2": 0.0} and nd.mean == 0.5 and nd.n_queries == 2
    c = recall_at_k(run, qrels, missing="zero")  # trec_eval -c
    assert c.per_query == {"q1": 1.0, "q2": 0.0, "q3": 0.0} and c.mean == pytest.approx(1 / 3)
    assert ndcg_at_k({"q1": {}}, qrels).per_query == {"q1": 0.0}  # an empty ranking counts as 0
    assert float(nd) == 0.5


def test_negative_judgements_count_as_zero_gain():
    qrels = {"q": {"a": 2, "b": 1, "c": -1}}
    run = {"q": {"c": 3.0, "b": 2.0, "a": 1.0}}
    assert ndcg_at_k(run, qrels).mean == pytest.approx((L(2) + 2 * L(3)) / (2 + L(2)))
    assert recall_at_k(run, qrels).mean == 1.0


def test_errors():
    with pytest.raises(DataError, match="share no query id"):
        ndcg_at_k({"1": {"a": 1.0}}, {"2": {"a": 1}})
    with pytest.raises(DataError, match="not a string"):
        ndcg_at_k({1: {"a": 1.0}}, {"1": {"a": 1}})
    with pytest.raises(DataError, match="NaN"):
        ndcg_at_k({"1": {"a": float("nan")}}, {"1": {"a": 1}})
    with pytest.raises(DataError, match="integer judgements"):
        ndcg_at_k({"1": {"a": 1.0}}, {"1": {"a": 0.5}})
    with pytest.raises(ConfigError, match="k must be"):
        ndcg_at_k({"1": {"a": 1.0}}, {"1": {"a": 1}}, k=0)
    with pytest.raises(ConfigError, match="missing"):
        ndcg_at_k({"1": {"a": 1.0}}, {"1": {"a": 1}}, missing="all")


def synthetic_run(qrels: dict, rng: np.random.Generator) -> dict:
    """Random scores for a random part of the judged documents plus distractors, with many ties."""
    run = {}
    qids = sorted(qrels)
    for qid in qids[: int(len(qids) * 0.9)]:  # the last 10% are absent from the run
        judged = sorted(qrels[qid])
        keep = [d for d in judged if rng.random() < 0.7]
        distractors = [f"{rng.integers(1, 10**6)}#{rng.integers(0, 60)}" for _ in range(rng.integers(0, 150))]
        docs = keep + distractors
        scores = np.round(rng.normal(size=len(docs)), 1)  # one decimal: many tied scores
        run[qid] = {d: float(s) for d, s in zip(docs, scores)}
    run["not-judged"] = {"1#1": 1.0}
    return run


@pytest.mark.parametrize("lang", ["sw", "te", "yo", "ko", "fr"])
def test_equal_to_pytrec_eval_on_real_miracl_qrels(shared_data, lang):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    qrels = read_qrels(shared_data / "miracl" / "qrels" / f"qrels.miracl-v1.0-{lang}-dev.tsv")
    run = synthetic_run(qrels, np.random.default_rng(len(lang) + ord(lang[0])))
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100", "ndcg_cut.3", "recall.5"}).evaluate(run)
    ours = trec_evaluate(run, qrels, ndcg_ks=(10, 3), recall_ks=(100, 5))
    for name, key in [("nDCG@10", "ndcg_cut_10"), ("nDCG@3", "ndcg_cut_3"),
                      ("R@100", "recall_100"), ("R@5", "recall_5")]:
        assert set(ours[name].per_query) == set(ref)
        got = np.array([ours[name].per_query[q] for q in sorted(ref)])
        want = np.array([ref[q][key] for q in sorted(ref)])
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
        assert ours[name].mean == pytest.approx(float(np.mean(want)), abs=1e-6)
    assert 0 < ours["nDCG@10"].mean < 1 and ours["nDCG@10"].n_queries == len(ref)


def test_float32_ties_equal_pytrec_eval():
    pytrec_eval = pytest.importorskip("pytrec_eval")
    qrels = {"q": {"b": 1, "c": 1}}
    run = {"q": {"a": 1.0 + 5e-8, "b": 1.0, "c": 0.3, "d": 0.1 + 0.2}}
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)["q"]["ndcg_cut_10"]
    assert ndcg_at_k(run, qrels).mean == pytest.approx(ref, abs=1e-12)
    assert ref == pytest.approx((1 + L(4)) / (1 + L(2)))  # ranking b a d c: b before a, d before c
