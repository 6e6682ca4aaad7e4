"""XQuAD-R loader: real LAReQA files (counts, relevance) and synthetic error cases."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from hbkit.errors import DataError, UnknownLanguageError
from hbkit.datasets.xquad_r import XQUAD_R_LANGUAGES, answer_sentence, load_xquad_r, sentence_spans


_CACHE: dict = {}


@pytest.fixture
def full(shared_data):
    """The full benchmark, loaded once per test session (about 0.3 s)."""
    key = str(shared_data)
    if key not in _CACHE:
        _CACHE[key] = load_xquad_r(shared_data / "xquad-r")
    return _CACHE[key]


def test_real_counts(full):
    assert full.name == "xquad-r"
    assert full.query_langs == list(XQUAD_R_LANGUAGES) == full.candidate_langs
    assert Counter(q.lang for q in full.queries) == {lang: 1190 for lang in XQUAD_R_LANGUAGES}
    assert len(full.candidates) == 13014
    assert len({c.cid for c in full.candidates}) == 13014 and len({q.qid for q in full.queries}) == 13090
    n_sent = Counter(c.lang for c in full.candidates)
    assert n_sent["en"] == 1180 and n_sent["th"] == 852 and n_sent["de"] == 1276


def test_every_question_has_one_answer_sentence_per_language(full):
    n_rel = np.array([len(r) for r in full.relevant])
    assert (n_rel == 11).all(), f"{(n_rel != 11).sum()} questions without 11 relevant candidates"
    cl = full.candidate_lang_array
    assert all(sorted(cl[r]) == list(XQUAD_R_LANGUAGES) for r in full.relevant)
    # the question's own-language answer sentence comes from its own language file
    assert all(q.lang in set(cl[r]) for q, r in zip(full.queries, full.relevant))


def test_real_examples(full):
    qi = next(i for i, q in enumerate(full.queries) if q.qid == "en:56beb4343aeaaa14008c925b")
    q = full.queries[qi]
    assert q.xid == "56beb4343aeaaa14008c925b" and q.text == "How many points did the Panthers defense surrender?"
    en = [full.candidates[j] for j in full.relevant[qi] if full.candidates[j].lang == "en"]
    assert len(en) == 1 and "308 points" in en[0].text and en[0].text in en[0].context
    assert en[0].cid.startswith("en:") and en[0].cid.count(":") == 2
    # the Turkish paragraph whose sentence and paragraph disagree on a mis-encoded "1/2"
    tr = [c for c in full.candidates if c.lang == "tr" and "standart demir yoluna" in c.text]
    assert len(tr) == 1 and tr[0].text not in tr[0].context  # not locatable in its paragraph
    assert len(tr[0].xids) == 1
    xi = [i for i, q in enumerate(full.queries) if q.xid == tr[0].xids[0]]
    assert len(xi) == 11 and all(full.candidates.index(tr[0]) in full.relevant[i] for i in xi)


def test_language_subset(shared_data):
    bench = load_xquad_r(shared_data / "xquad-r", languages=["en", "de"])
    assert len(bench.queries) == 2380 and len(bench.candidates) == 1180 + 1276
    assert all(len(r) == 2 for r in bench.relevant)
    # passing the data folder itself also works
    assert len(load_xquad_r(shared_data, languages="en").queries) == 1190


def test_sentence_spans_with_unlocatable_sentence():
    ctx = "Alpha one. Beta two is long. Gamma three."
    sents = ["Alpha one.", "Bxta two is long.", "Gamma three."]  # middle one does not match
    spans, located = sentence_spans(ctx, sents)
    assert located == [True, False, True]
    assert spans[0] == (0, 10) and spans[2] == (29, 41)
    assert spans[1] == (10, 29)  # the stretch between its neighbours
    assert answer_sentence(ctx, sents, ctx.index("two"), "two") == 1
    assert answer_sentence(ctx, sents, ctx.index("three"), "three") == 2
    assert answer_sentence(ctx, sents, 0, "Alpha") == 0
    # two unlocatable sentences in a row: the answer text decides when the estimate is wrong
    sents2 = ["Alpha one.", "Bxta two", "is lxng.", "Gamma three."]
    assert answer_sentence(ctx, sents2, ctx.index("two"), "two") == 1


def _write(folder, lang, paragraphs):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{lang}.json").write_text(json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}),
                                         encoding="utf-8")


def _para(qid, ctx, sents, answer):
    return {"context": ctx, "sentences": sents, "sentence_breaks": [],
            "qas": [{"id": qid, "question": f"q {qid}?", "answers": [{"text": answer, "answer_start": ctx.index(answer)}]}]}


def test_synthetic_files_and_relevance(tmp_path):
    ctx_en, ctx_de = "Cats sleep. Dogs bark loudly.", "Katzen schlafen. Hunde bellen laut."
    _write(tmp_path, "en", [_para("a1", ctx_en, ["Cats sleep.", "Dogs bark loudly."], "bark")])
    _write(tmp_path, "de", [_para("a1", ctx_de, ["Katzen schlafen.", "Hunde bellen laut."], "bellen")])
    bench = load_xquad_r(tmp_path, languages=["de", "en"])
    assert [c.cid for c in bench.candidates] == ["de:0:0", "de:0:1", "en:0:0", "en:0:1"]
    assert [q.qid for q in bench.queries] == ["de:a1", "en:a1"]
    assert [r.tolist() for r in bench.relevant] == [[1, 3], [1, 3]]
    assert bench.candidates[3].context == ctx_en and bench.candidates[3].xids == ("a1",)


def test_errors(tmp_path):
    with pytest.raises(DataError, match="google-research-datasets/lareqa"):
        load_xquad_r(tmp_path / "nope")
    _write(tmp_path, "en", [_para("a1", "A b.", ["A b."], "b")])
    with pytest.raises(DataError, match=r"XQuAD-R file not found: .*de\.json"):
        load_xquad_r(tmp_path, languages=["en", "de"])
    (tmp_path / "de.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match=r"de\.json is not valid JSON .*Re-download it"):
        load_xquad_r(tmp_path, languages=["de"])
    (tmp_path / "de.json").write_text(json.dumps({"data": [{"paragraphs": [{"context": "x"}]}]}), encoding="utf-8")
    with pytest.raises(DataError, match="structure"):
        load_xquad_r(tmp_path, languages=["de"])
    with pytest.raises(UnknownLanguageError, match="ar, de, el"):
        load_xquad_r(tmp_path, languages=["fr"])
