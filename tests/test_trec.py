"""hbkit.datasets.trec: topics and qrels from explicit files (gzipped or not, TSV or SGML topics),
JSONL corpora in the common layouts, and evaluate_trec with exact expected scores."""
from __future__ import annotations

import gzip
import json
import math
import shutil

import pytest
import torch

from hbkit.datasets import miracl
from hbkit.datasets.trec import (TrecTopicsQrels, evaluate_trec, iter_jsonl_corpus, load_trec_topics_qrels,
                                 read_qrels, read_topics)
from hbkit.errors import ConfigError, DataError

TOPICS = "101\tWhere is the largest port?\n102\tWho wrote Kinjeketile?\n\n103\tNini maana ya albedo?\n"
QRELS = "101 Q0 7#0 1\n101 Q0 8#2 0\n102\tQ0\t0012#3\t1\n"
EXPECTED_TOPICS = {"101": "Where is the largest port?", "102": "Who wrote Kinjeketile?",
                   "103": "Nini maana ya albedo?"}
EXPECTED_QRELS = {"101": {"7#0": 1, "8#2": 0}, "102": {"0012#3": 1}}


def test_plain_and_gzipped_files_read_the_same(tmp_path):
    variants = {"t.tsv": TOPICS.encode(), "t.tsv.gz": gzip.compress(TOPICS.encode()),
                "T.TSV.GZ": gzip.compress(TOPICS.encode()),  # upper-case suffix
                "t-no-suffix.tsv": gzip.compress(TOPICS.encode())}  # gzip recognised by its content
    for name, data in variants.items():
        (tmp_path / name).write_bytes(data)
        assert read_topics(tmp_path / name) == EXPECTED_TOPICS, name
    (tmp_path / "q.txt.gz").write_bytes(gzip.compress(QRELS.encode()))
    assert read_qrels(tmp_path / "q.txt.gz") == EXPECTED_QRELS
    (tmp_path / "bad.tsv.gz").write_bytes(gzip.compress("1\tcaf\xe9\n".encode("latin-1")))
    with pytest.raises(DataError, match=r"bad\.tsv\.gz, line 1: not valid UTF-8 text .*byte offset 5 of the "
                                        r"uncompressed data \(counted from 0\)"):
        read_topics(tmp_path / "bad.tsv.gz")
    (tmp_path / "cut.tsv.gz").write_bytes(gzip.compress(TOPICS.encode() * 50)[:40])
    with pytest.raises(DataError, match=r"cut\.tsv\.gz: could not be read .*re-download"):
        read_topics(tmp_path / "cut.tsv.gz")


def test_sgml_topics(tmp_path):
    text = ("<top>\n<num> Number: 301\n<title> International Organized\nCrime\n\n<desc> Description:\n"
            "Identify organizations.\n<narr> Narrative:\nA relevant document ...\n</top>\n\n"
            "<top>\n<num>302</num>\n<title>Topic: Poliomyelitis and Post-Polio</title>\n</top>\n")
    path = tmp_path / "topics.robust04.txt"
    path.write_text(text, encoding="utf-8")
    assert read_topics(path) == {"301": "International Organized Crime", "302": "Poliomyelitis and Post-Polio"}
    (tmp_path / "open.txt").write_text("<top>\n<num> Number: 1\n<title> x\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"open\.txt: the topic opened on line 1 is not closed with </top>"):
        read_topics(tmp_path / "open.txt")
    (tmp_path / "notitle.txt").write_text("<top>\n<num> Number: 1\n<desc> d\n</top>\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"notitle\.txt, line 1: the topic has no <title>"):
        read_topics(tmp_path / "notitle.txt")
    (tmp_path / "dup.txt").write_text("<top><num>1<title>a\n</top>\n<top><num>1<title>b\n</top>\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"dup\.txt, line 3: query id '1' already appeared on line 1"):
        read_topics(tmp_path / "dup.txt")


def test_load_trec_topics_qrels_cross_checks(tmp_path):
    (tmp_path / "t.tsv").write_text(TOPICS, encoding="utf-8")
    (tmp_path / "q.tsv").write_text(QRELS, encoding="utf-8")
    judged = load_trec_topics_qrels(tmp_path / "t.tsv", tmp_path / "q.tsv")
    assert judged.topics == EXPECTED_TOPICS and judged.qrels == EXPECTED_QRELS
    assert judged.query_ids == ["101", "102"]  # 103 has no judgements
    assert repr(judged).startswith("TrecTopicsQrels(queries=3, judged_queries=2, relevant=2")
    (tmp_path / "q2.tsv").write_text(QRELS + "999 Q0 1#0 1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"1 judged queries of .*q2\.tsv have no topic in .*t\.tsv "
                                        r"\(e\.g\. \['999'\]\)"):
        load_trec_topics_qrels(tmp_path / "t.tsv", tmp_path / "q2.tsv")
    with pytest.raises(DataError, match="topics file .*missing.tsv does not exist"):
        load_trec_topics_qrels(tmp_path / "missing.tsv", tmp_path / "q.tsv")


def test_real_miracl_files_gzipped(shared_data, tmp_path):
    src = shared_data / "miracl"
    topics, qrels = read_topics(src / "topics/topics.miracl-v1.0-sw-dev.tsv"), read_qrels(
        src / "qrels/qrels.miracl-v1.0-sw-dev.tsv")
    for sub, name in (("topics", "topics.miracl-v1.0-sw-dev.tsv"), ("qrels", "qrels.miracl-v1.0-sw-dev.tsv")):
        (tmp_path / "m" / sub).mkdir(parents=True)
        with open(src / sub / name, "rb") as fin, gzip.open(tmp_path / "m" / sub / (name + ".gz"), "wb") as fout:
            shutil.copyfileobj(fin, fout)
    judged = load_trec_topics_qrels(tmp_path / "m/topics/topics.miracl-v1.0-sw-dev.tsv.gz",
                                    tmp_path / "m/qrels/qrels.miracl-v1.0-sw-dev.tsv.gz")
    assert judged.topics == topics and judged.qrels == qrels
    assert len(judged.topics) == 482 and sum(len(d) for d in judged.qrels.values()) == 5092
    assert judged.topics["6"] == "Bandari kubwa nchini Kenya iko wapi?" and judged.qrels["6"]["32589#0"] == 1
    dev = miracl.load_miracl_dev("SW", tmp_path / "m")  # gzipped files in the MIRACL layout; code normalised
    assert dev.lang == "sw" and dev.topics == topics and dev.qrels == qrels
    for lang in ("ar", "yo"):  # the other real files load the same way
        plain = miracl.load_miracl_dev(lang, src)
        assert load_trec_topics_qrels(src / f"topics/topics.miracl-v1.0-{lang}-dev.tsv",
                                      src / f"qrels/qrels.miracl-v1.0-{lang}-dev.tsv").qrels == plain.qrels


# --------------------------------------------------------------------------- corpus and evaluation

class BagOfWords:
    """A deterministic stand-in encoder: L2-normalised word counts."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}

    def encode(self, texts, kind="query", batch_size=64, show_progress=False):
        out = torch.zeros(len(texts), 64)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                out[i, self.vocab.setdefault(w, len(self.vocab))] += 1
        return out / out.norm(dim=1, keepdim=True)


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_corpus_layouts(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    _write_jsonl(folder / "docs-10.jsonl", [{"_id": "c", "title": "T", "text": "beir"}])
    _write_jsonl(folder / "docs-2.jsonl", [{"id": "b", "contents": "pyserini"}, {"id": "e", "contents": " "}])
    with gzip.open(folder / "docs-1.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"docid": "a", "title": "Kenya", "text": "mr tydi"}) + "\n")
    with pytest.warns(UserWarning, match="Skipped 1 corpus .* passages with empty title and text"):
        chunks = list(iter_jsonl_corpus(folder, chunk_size=2))
    assert chunks == [(["a", "b"], ["Kenya mr tydi", "pyserini"]), (["c"], ["T beir"])]
    with pytest.raises(ConfigError, match="chunk_size"):
        iter_jsonl_corpus(folder, chunk_size=0)
    with pytest.raises(DataError, match="does not exist"):
        iter_jsonl_corpus(tmp_path / "nope")


@pytest.fixture
def collection(tmp_path):
    (tmp_path / "topics.tsv").write_text("q1\tred apple\nq2\tblue sky\nq3\tgreen grass\n", encoding="utf-8")
    (tmp_path / "qrels.txt").write_text("q1 0 d1 1\nq1 0 d2 0\nq2 0 d3 1\nq2 0 d9 1\nq2 0 d4 0\n", encoding="utf-8")
    _write_jsonl(tmp_path / "corpus.jsonl", [
        {"docid": "d1", "title": "", "text": "red apple"}, {"docid": "d2", "title": "", "text": "red car"},
        {"docid": "d3", "title": "blue", "text": "sky today"}, {"docid": "d4", "title": "", "text": "blue car"},
        {"docid": "d5", "title": "", "text": "green grass"}])
    return tmp_path


def test_evaluate_trec_exact_scores(collection):
    with pytest.warns(UserWarning, match=r"1 of 5 judged mrtydi-test documents \(1 of 3 relevant\) are not in the "
                                         r"corpus \(5 passages\)"):
        df, run = evaluate_trec(BagOfWords(), "SW", collection / "topics.tsv", collection / "qrels.txt",
                                collection / "corpus.jsonl", benchmark="mrtydi-test", chunk_size=2,
                                meta={"model": "bow", "seed": 1}, return_run=True)
    got = dict(zip(df.metric, df.value))
    # q1: d1 (relevant) ranks first -> nDCG 1, recall 1; q2: d3 first, d9 is not in the corpus ->
    # nDCG = 1 / (1 + 1/log2(3)), recall 1/2; q3 has no judgements and is not evaluated
    assert got["nDCG@10"] == pytest.approx((1 + 1 / (1 + 1 / math.log2(3))) / 2, abs=1e-9)
    assert got["R@100"] == pytest.approx(0.75, abs=1e-12)
    assert df.n_queries.tolist() == [2, 2] and set(df.benchmark) == {"mrtydi-test"}
    assert set(df.query_lang) == {"sw"} and set(df.candidate_lang) == {"sw"} and set(df.model) == {"bow"}
    assert df.attrs == {"n_passages": 5, "missing_judged_docs": 1, "missing_relevant_docs": 1}
    assert sorted(run) == ["q1", "q2"] and max(run["q1"], key=run["q1"].get) == "d1"
    # the same from a TrecTopicsQrels
    judged = load_trec_topics_qrels(collection / "topics.tsv", collection / "qrels.txt")
    assert isinstance(judged, TrecTopicsQrels)
    with pytest.warns(UserWarning):
        again = evaluate_trec(BagOfWords(), "sw", judged, None, collection / "corpus.jsonl", benchmark="mrtydi-test")
    assert again.value.tolist() == df.value.tolist()


def test_evaluate_trec_arguments(collection):
    args = (collection / "topics.tsv", collection / "qrels.txt", collection / "corpus.jsonl")
    with pytest.raises(ConfigError, match="k must be an integer >= 100"):
        evaluate_trec(BagOfWords(), "sw", *args, benchmark="b", k=10)
    with pytest.raises(ConfigError, match="benchmark must be a non-empty name"):
        evaluate_trec(BagOfWords(), "sw", *args, benchmark="")
    with pytest.raises(ConfigError, match="needs the qrels file"):
        evaluate_trec(BagOfWords(), "sw", collection / "topics.tsv", None, collection / "corpus.jsonl", benchmark="b")
    with pytest.raises(ConfigError, match="no encode"):
        evaluate_trec(object(), "sw", *args, benchmark="b")
