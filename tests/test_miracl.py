"""MIRACL dev: TREC readers on the real files, corpus streaming, and the end-to-end evaluation."""
from __future__ import annotations

import gzip
import json
import warnings

import numpy as np
import pytest
import torch

from hbkit.errors import ConfigError, DataError, UnknownLanguageError
from hbkit.datasets.miracl import (COLUMNS, MIRACL_LANGUAGES, PAPER_LANGUAGES, evaluate_miracl, iter_corpus,
                          load_miracl_dev, passage_text, read_qrels, read_topics)
from hbkit.trec_metrics import trec_evaluate


def write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_jsonl(path, rows, gz: bool = False):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


# ---------------------------------------------------------------- real topics and qrels

def test_real_swahili_files(shared_data):
    topics = read_topics(shared_data / "miracl/topics/topics.miracl-v1.0-sw-dev.tsv")
    qrels = read_qrels(shared_data / "miracl/qrels/qrels.miracl-v1.0-sw-dev.tsv")
    assert len(topics) == 482 and topics["6"] == "Bandari kubwa nchini Kenya iko wapi?"
    assert len(qrels) == 482
    assert sum(len(d) for d in qrels.values()) == 5092
    assert sum(r for d in qrels.values() for r in d.values()) == 910
    assert qrels["6"]["32589#0"] == 1 and qrels["6"]["33690#3"] == 0
    assert all(isinstance(d, str) and "#" in d for docs in qrels.values() for d in docs)


def test_all_dev_languages_load(shared_data):
    assert len(MIRACL_LANGUAGES) == 18 and len(PAPER_LANGUAGES) == 15
    assert set(PAPER_LANGUAGES) <= set(MIRACL_LANGUAGES) and set(MIRACL_LANGUAGES) - set(PAPER_LANGUAGES) == {
        "de", "en", "yo"}
    sizes = {}
    for lang in MIRACL_LANGUAGES:
        dev = load_miracl_dev(lang, shared_data)  # the parent of miracl/ works too
        assert dev.lang == lang and dev.query_ids == list(dev.topics)  # every topic is judged
        assert all(any(r > 0 for r in docs.values()) for docs in dev.qrels.values())
        sizes[lang] = len(dev.topics)
    assert sizes["ar"] == 2896 and sizes["yo"] == 119 and sizes["te"] == 828
    assert "judged_queries=119" in repr(load_miracl_dev("yo", shared_data / "miracl"))


# ---------------------------------------------------------------- malformed files

def test_malformed_topics_name_file_and_line(tmp_path):
    f = write(tmp_path / "t.tsv", "1\tfirst query\n\n2 no tab here\n")
    with pytest.raises(DataError, match=r"t\.tsv, line 3: expected 'qid<TAB>query text'"):
        read_topics(f)
    f = write(tmp_path / "q.tsv", "1\tQ0\t5#0\t1\n")
    with pytest.raises(DataError, match="line 1.*looks like a qrels line"):
        read_topics(f)
    f = write(tmp_path / "d.tsv", "1\ta\n2\tb\n1\tc\n")
    with pytest.raises(DataError, match="line 3: query id '1' already appeared on line 1"):
        read_topics(f)
    with pytest.raises(DataError, match="does not exist"):
        read_topics(tmp_path / "nope.tsv")
    f = tmp_path / "bad.tsv"
    f.write_bytes(b"1\tok\n2\t\xff\xfe\n")
    with pytest.raises(DataError, match="line 2: not valid UTF-8"):
        read_topics(f)


def test_malformed_qrels_name_file_and_line(tmp_path):
    with pytest.raises(DataError, match=r"r\.tsv, line 2: expected 4 fields"):
        read_qrels(write(tmp_path / "r.tsv", "1 Q0 5#0 1\n1 Q0 6#0\n"))
    with pytest.raises(DataError, match="line 1: relevance 'yes' is not an integer"):
        read_qrels(write(tmp_path / "r2.tsv", "1 Q0 5#0 yes\n"))
    with pytest.raises(DataError, match="line 2: document '5#0' is judged twice"):
        read_qrels(write(tmp_path / "r3.tsv", "1\tQ0\t5#0\t1\n1 0 5#0 0\n"))
    qrels = read_qrels(write(tmp_path / "ok.tsv", "7 Q0 0012#3 1\n7 0 12#3 0\n"))
    assert qrels == {"7": {"0012#3": 1, "12#3": 0}}  # ids stay strings: '0012#3' != '12#3'


def test_gzipped_topics(tmp_path):
    path = tmp_path / "t.tsv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("3\tNini?\n")
    assert read_topics(path) == {"3": "Nini?"}


# ---------------------------------------------------------------- load_miracl_dev

def test_load_errors(tmp_path):
    root = tmp_path / "m"
    write(root / "topics/topics.miracl-v1.0-sw-dev.tsv", "1\tswali\n2\tjingine\n")
    write(root / "qrels/qrels.miracl-v1.0-sw-dev.tsv", "1 Q0 4#0 1\n")
    dev = load_miracl_dev("sw", root)
    assert dev.query_ids == ["1"] and dev.qrels == {"1": {"4#0": 1}}
    with pytest.raises(UnknownLanguageError, match="No MIRACL dev topics for language 'fi'.*Available there: sw"):
        load_miracl_dev("fi", root)
    with pytest.raises(UnknownLanguageError, match="no dev set for language 'xx'.*ar, bn, de"):
        load_miracl_dev("xx", root)
    with pytest.raises(DataError, match="needs 'topics/' and 'qrels/' subfolders"):
        load_miracl_dev("sw", tmp_path)
    write(root / "qrels/qrels.miracl-v1.0-sw-dev.tsv", "1 Q0 4#0 1\n9 Q0 4#0 1\n")
    with pytest.raises(DataError, match="1 judged queries .* have no topic"):
        load_miracl_dev("sw", root)


def test_hub_failure_is_explained():
    # conftest sets HF_HUB_OFFLINE=1: nothing is downloaded
    with pytest.raises(DataError, match="offline.*root="):
        load_miracl_dev("sw")
    with pytest.raises(DataError, match="offline.*corpus source"):
        iter_corpus("sw", None)


# ---------------------------------------------------------------- corpus streaming

def test_iter_corpus_streams_shards_in_natural_order(tmp_path):
    folder = tmp_path / "corpus" / "miracl-corpus-v1.0-sw"
    write_jsonl(folder / "docs-10.jsonl.gz", [{"docid": "30#0", "title": "C", "text": "c"}], gz=True)
    write_jsonl(folder / "docs-2.jsonl", [{"docid": "20#0", "title": "", "text": "b"},
                                          {"docid": "20#1", "title": "", "text": "  "}])
    write_jsonl(folder / "docs-1.jsonl.gz", [{"docid": f"1{i}#{i}", "title": "Kenya", "text": f"t{i}"}
                                             for i in range(5)], gz=True)
    write(folder / "README.md", "not a shard")
    with pytest.warns(UserWarning, match="Skipped 1 MIRACL sw passages"):
        chunks = list(iter_corpus("sw", tmp_path / "corpus", chunk_size=4))
    assert [len(ids) for ids, _ in chunks] == [4, 3]
    ids = [d for c, _ in chunks for d in c]
    texts = [t for _, c in chunks for t in c]
    assert ids == ["10#0", "11#1", "12#2", "13#3", "14#4", "20#0", "30#0"]
    assert texts[0] == "Kenya t0" and texts[5] == "b" and texts[6] == "C c"
    with pytest.warns(UserWarning, match="Skipped 1"):
        single = list(iter_corpus("sw", folder / "docs-2.jsonl", chunk_size=10))  # one file
    assert single == [(["20#0"], ["b"])]


def test_passage_text():
    assert passage_text("Albedo", "Albedo is ...") == "Albedo Albedo is ..."
    assert passage_text(" ", "text") == "text" and passage_text("T", None) == "T" and passage_text("", "") == ""


def test_corpus_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        iter_corpus("sw", tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="No .jsonl or .jsonl.gz files"):
        iter_corpus("sw", tmp_path / "empty")
    bad = write(tmp_path / "bad.jsonl", '{"docid": "1#0", "text": "a"}\n{"docid": \n')
    with pytest.raises(DataError, match=r"bad\.jsonl, line 2: not valid JSON"):
        list(iter_corpus("sw", bad))
    noid = write_jsonl(tmp_path / "noid.jsonl", [{"docid": 5, "text": "a"}])
    with pytest.raises(DataError, match="line 1: passage without a string 'docid'"):
        list(iter_corpus("sw", noid))
    (tmp_path / "fake.jsonl.gz").write_bytes(b"not gzip at all\n")
    with pytest.raises(DataError, match=r"fake\.jsonl\.gz: could not be read"):
        list(iter_corpus("sw", tmp_path / "fake.jsonl.gz"))
    with pytest.raises(ConfigError, match="chunk_size"):
        iter_corpus("sw", noid, chunk_size=0)
    with pytest.raises(UnknownLanguageError):
        iter_corpus("xx", noid)


# ---------------------------------------------------------------- end to end on real Yoruba topics/qrels

@pytest.fixture(scope="module")
def yo_setup(tmp_path_factory):
    from conftest import shared_data_dir

    from hbkit.models.bi_encoder import BiEncoder, EncoderConfig
    from hbkit.models.tiny import make_tiny_model

    data = shared_data_dir()
    if data is None:
        pytest.skip("real data folder not found: set HBKIT_SHARED_DATA or place shared/data next to the repo")
    dev = load_miracl_dev("yo", data)
    # A synthetic corpus over the real judged ids: a relevant passage repeats its query's words.
    rng = np.random.default_rng(0)
    owner = {}
    for qid, docs in dev.qrels.items():
        for d, r in docs.items():
            if r > 0 or d not in owner:
                owner[d] = qid
    judged = sorted(owner)
    relevant = sorted({d for docs in dev.qrels.values() for d, r in docs.items() if r > 0})
    dropped = set(relevant[:2]) | set(sorted(set(judged) - set(relevant))[:3])
    qtexts = list(dev.topics.values())
    rows = []
    for i, d in enumerate(judged):
        if d in dropped:
            continue
        q = owner[d] if dev.qrels[owner[d]][d] > 0 else rng.choice(list(dev.topics))
        rows.append({"docid": d, "title": f"Akole {i}", "text": dev.topics[q]})
    rows += [{"docid": f"{900000 + i}#{i % 7}", "title": "", "text": f"{qtexts[i % len(qtexts)]} {i}"}
             for i in range(300)]
    order = rng.permutation(len(rows))
    rows = [rows[i] for i in order]
    root = tmp_path_factory.mktemp("miracl_yo")
    corpus = root / "corpus"
    write_jsonl(corpus / "docs-0.jsonl.gz", rows[:700], gz=True)
    write_jsonl(corpus / "docs-1.jsonl.gz", rows[700:], gz=True)
    model = make_tiny_model("xlmr", root / "model", qtexts + [r["text"] for r in rows[:200]], seed=0,
                            vocab_size=300, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
    encoder = BiEncoder(EncoderConfig(model=str(model)))
    return {"data": data, "dev": dev, "corpus": corpus, "encoder": encoder, "n_rows": len(rows),
            "dropped": dropped, "relevant": relevant, "judged": judged}


def test_evaluate_miracl_matches_brute_force_and_pytrec_eval(yo_setup):
    s = yo_setup
    enc, dev = s["encoder"], s["dev"]
    with pytest.warns(UserWarning, match="5 of .* judged MIRACL yo documents \\(2 of .* relevant\\) are not in"):
        df, run = evaluate_miracl(enc, "yo", s["corpus"], root=s["data"], chunk_size=256, batch_size=64,
                                  meta={"model": "tiny", "strategy": "hybrid", "seed": 3}, return_run=True)
    assert list(df.columns) == COLUMNS and len(df) == 2
    assert df.attrs == {"n_passages": s["n_rows"], "missing_judged_docs": 5, "missing_relevant_docs": 2}
    assert set(df["benchmark"]) == {"miracl-dev"} and set(df["setting"]) == {"monolingual"}
    assert set(df["query_lang"]) == {"yo"} and set(df["candidate_lang"]) == {"yo"}
    assert df["n_queries"].tolist() == [119, 119] and df["seed"].tolist() == [3, 3]
    got = dict(zip(df["metric"], df["value"]))
    assert set(got) == {"nDCG@10", "R@100"}

    # Reference: the same encoder on the same chunks, the full score matrix in float64.
    q = enc.encode([dev.topics[x] for x in dev.query_ids], kind="query", show_progress=False).double()
    ids, embs = [], []
    for chunk_ids, texts in iter_corpus("yo", s["corpus"], chunk_size=256):
        ids += chunk_ids
        embs.append(enc.encode(texts, kind="passage", show_progress=False))
    full = q @ torch.cat(embs).double().T
    ref_run = {}
    for qid, row in zip(dev.query_ids, full.numpy()):
        top = np.lexsort((np.arange(len(ids)), -row))[:100]
        ref_run[qid] = {ids[j]: float(row[j]) for j in top}
    for qid in dev.query_ids:
        assert len(run[qid]) == 100
        kth = sorted(ref_run[qid].values())[0]
        differ = set(run[qid]) ^ set(ref_run[qid])
        assert all(abs(full[dev.query_ids.index(qid), ids.index(d)] - kth) < 1e-5 for d in differ)
        for d, v in run[qid].items():
            assert v == pytest.approx(float(full[dev.query_ids.index(qid), ids.index(d)]), abs=1e-5)
    ref = trec_evaluate(ref_run, dev.qrels)
    assert got["nDCG@10"] == pytest.approx(ref["nDCG@10"].mean, abs=1e-6)
    assert got["R@100"] == pytest.approx(ref["R@100"].mean, abs=1e-6)
    pytrec_eval = pytest.importorskip("pytrec_eval")
    pte = pytrec_eval.RelevanceEvaluator(dev.qrels, {"ndcg_cut.10", "recall.100"}).evaluate(run)
    assert got["nDCG@10"] == pytest.approx(np.mean([v["ndcg_cut_10"] for v in pte.values()]), abs=1e-6)
    assert got["R@100"] == pytest.approx(np.mean([v["recall_100"] for v in pte.values()]), abs=1e-6)
    # relevant passages repeat their query: even a random tiny encoder finds many of them
    assert 0.2 < got["nDCG@10"] < 1 and got["R@100"] > got["nDCG@10"] * 0.5


def test_evaluate_miracl_arguments(yo_setup):
    s = yo_setup
    with pytest.raises(ConfigError, match="k must be an integer >= 100"):
        evaluate_miracl(s["encoder"], "yo", s["corpus"], root=s["data"], k=10)
    with pytest.raises(ConfigError, match="no encode"):
        evaluate_miracl(object(), "yo", s["corpus"], root=s["data"])
    with pytest.raises(ConfigError, match="Unknown meta keys"):
        evaluate_miracl(s["encoder"], "yo", s["corpus"], root=s["data"], meta={"lr": 1})
    with pytest.raises(UnknownLanguageError):
        evaluate_miracl(s["encoder"], "vi", s["corpus"], root=s["data"])


def test_full_corpus_gives_no_missing_warning(yo_setup, tmp_path):
    s = yo_setup
    rows = [{"docid": d, "title": "", "text": f"kan {i}"} for i, d in enumerate(s["judged"])]
    write_jsonl(tmp_path / "c.jsonl", rows)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = evaluate_miracl(s["encoder"], "yo", tmp_path / "c.jsonl", root=s["data"], chunk_size=5000)
    assert df.attrs["missing_judged_docs"] == 0 and df.attrs["n_passages"] == len(s["judged"])
    assert ((df["value"] >= 0) & (df["value"] <= 1)).all()
