"""MLQA-R builder: real MLQA dev files (ar SQuAD JSON, de datasets Arrow), the splitter,
the answer-in-sentence rule on hand-made data, and error cases."""
from __future__ import annotations

import functools
import json
import threading
import zipfile
from collections import Counter
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from hbkit.datasets import download as dl
from hbkit.datasets import mlqa_r
from hbkit.errors import DataError, UnknownLanguageError
from hbkit.datasets.mlqa_r import (LAREQA_CANDIDATES, LAREQA_QUESTIONS, MLQARecord, build_mlqa_r, find_mlqa_dev_files,
                          load_mlqa_r, read_mlqa_arrow, read_mlqa_squad_json, sentences, split_sentences)

AR_JSON = "mlqa/MLQA-dev-context-ar-question-ar.json"
DE_ARROW = "mlqa/xglue_mlqa_de_validation"

_CACHE: dict = {}


@pytest.fixture
def real(shared_data):
    """ar + de MLQA-R from the real files, built once (about 0.2 s)."""
    key = str(shared_data)
    if key not in _CACHE:
        _CACHE[key] = build_mlqa_r({"ar": shared_data / AR_JSON, "de": shared_data / DE_ARROW})
    return _CACHE[key]


# --------------------------------------------------------------------------- real data

def test_readers_on_real_files(shared_data):
    ar = read_mlqa_squad_json(shared_data / AR_JSON, "ar")
    assert len(ar) == 517 and len({r.qid for r in ar}) == 517 and len({r.context for r in ar}) == 439
    assert ar[0].qid == "569666f4dc3983dab5624e989212c1d9d0cd1798"
    assert ar[0].answers == (("وتبقى مصابة بالفيروس مدى حياتها", 248),)
    de = read_mlqa_arrow(shared_data / DE_ARROW, "de")
    assert len(de) == 512 and len({r.qid for r in de}) == 512 and len({r.context for r in de}) == 456
    assert de[0].qid == "b6fc947411e98316fd0790477c4dc3bd97f4df4c"
    assert de[0].answers == (("überwiegend antibritisch und prorussisch", 1591),)
    # the Arrow file can also be named directly, and answer_start points at the answer text
    assert read_mlqa_arrow(shared_data / DE_ARROW / "data-00000-of-00001.arrow", "de") == de
    for r in ar + de:
        (text, start), = r.answers
        assert r.context[start:start + len(text)] == text


def test_real_counts_match_lareqa(real):
    assert real.name == "mlqa-r" and real.query_langs == ["ar", "de"] == real.candidate_langs
    n_q = Counter(q.lang for q in real.queries)
    assert n_q == {"ar": LAREQA_QUESTIONS["ar"], "de": LAREQA_QUESTIONS["de"]} == {"ar": 517, "de": 512}
    n_c = Counter(c.lang for c in real.candidates)
    for lang in ("ar", "de"):
        assert abs(n_c[lang] - LAREQA_CANDIDATES[lang]) <= 0.02 * LAREQA_CANDIDATES[lang], (lang, n_c[lang])
    assert n_c == {"ar": 2538, "de": 2345}  # the counts documented in hbkit.datasets.mlqa_r
    assert len({c.cid for c in real.candidates}) == len(real.candidates)


def test_every_question_has_its_answer_sentence(real, shared_data):
    records = {("ar", r.qid): r for r in read_mlqa_squad_json(shared_data / AR_JSON, "ar")}
    records.update({("de", r.qid): r for r in read_mlqa_arrow(shared_data / DE_ARROW, "de")})
    cl = real.candidate_lang_array
    inside = 0
    for q, rel in zip(real.queries, real.relevant):
        own = [real.candidates[i] for i in rel if cl[i] == q.lang]
        assert len(own) == 1, q.qid  # one answer per MLQA dev question -> one sentence in its language
        rec = records[(q.lang, q.xid)]
        assert own[0].context == rec.context and q.text == rec.question
        inside += rec.answers[0][0] in own[0].text
    # the answer text lies inside its sentence except where it runs over a sentence break (ar 3, de 6)
    assert inside == 1029 - 9


def test_cross_lingual_relevance_through_shared_ids(real):
    ids = {lang: {q.xid for q in real.queries if q.lang == lang} for lang in ("ar", "de")}
    shared = ids["ar"] & ids["de"]
    assert len(shared) == 207
    cl = real.candidate_lang_array
    kinds = Counter()
    for q, rel in zip(real.queries, real.relevant):
        langs = sorted(cl[rel])
        if q.xid in shared:
            assert langs == ["ar", "de"], q.qid
        else:
            assert langs == [q.lang], q.qid
        kinds[(q.lang, tuple(langs))] += 1
    assert kinds == {("ar", ("ar", "de")): 207, ("de", ("ar", "de")): 207,
                     ("ar", ("ar",)): 310, ("de", ("de",)): 305}
    # the parallel ar and de questions retrieve the very same two sentences
    by_qid = {q.qid: set(r.tolist()) for q, r in zip(real.queries, real.relevant)}
    x = sorted(shared)[0]
    assert by_qid[f"ar:{x}"] == by_qid[f"de:{x}"]
    # a single-language build keeps only that language's sentence
    ar_only = real.subset(["ar"])
    assert all(len(r) == 1 for r in ar_only.relevant)


def test_load_mlqa_r_finds_the_files_and_names_missing_languages(shared_data):
    assert find_mlqa_dev_files(shared_data / "mlqa") == {"ar": shared_data / AR_JSON}
    bench = load_mlqa_r(shared_data / "mlqa", languages=["ar"])
    assert len(bench.queries) == 517 and len(bench.candidates) == 2538
    with pytest.raises(DataError, match=r"no dev file for \['de'\].*found languages: ar.*download=True"):
        load_mlqa_r(shared_data / "mlqa", languages=["ar", "de"])


# --------------------------------------------------------------------------- splitter

@pytest.mark.parametrize("lang,text,expected", [
    ("de", "Am 25. Januar 1858 heiratete er. Wilhelm I. wurde König. Das ist z. B. gut. Im 19. Jahrhundert "
           "auch. Die 12. FIFA-WM fand statt. Er kam 1858. Danach ging er.",
     ["Am 25. Januar 1858 heiratete er.", "Wilhelm I. wurde König.", "Das ist z. B. gut.",
      "Im 19. Jahrhundert auch.", "Die 12. FIFA-WM fand statt.", "Er kam 1858.", "Danach ging er."]),
    ("de", "Er kam heraus.Der Ort war klein. Es gab 3.5 Tore.",  # no space after '.': no break (as LAReQA)
     ["Er kam heraus.Der Ort war klein.", "Es gab 3.5 Tore."]),
    ("en", "J. C. Bose was born in 1858. He worked in the U.S. for years. Dr. Luke said no! Why? "
           "Because e.g. it rained... and stopped.",
     ["J. C. Bose was born in 1858.", "He worked in the U.S. for years.", "Dr. Luke said no!", "Why?",
      "Because e.g. it rained... and stopped."]),
    ("en", 'He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
    ("ar", "ذهب الولد إلى المدرسة.ثم عاد إلى البيت. هل أكل؟ نعم أكل.",
     ["ذهب الولد إلى المدرسة.", "ثم عاد إلى البيت.", "هل أكل؟", "نعم أكل."]),
    ("hi", "यह एक वाक्य है। यह दूसरा वाक्य है।तीसरा वाक्य।",
     ["यह एक वाक्य है।", "यह दूसरा वाक्य है।", "तीसरा वाक्य।"]),
    ("zh", "他来了。她走了！你好吗？“是的。”好。", ["他来了。", "她走了！", "你好吗？", "“是的。”", "好。"]),
    ("vi", "Năm 2008.Tại Hoa Kỳ, ông sống. Ông mất năm 2010.", ["Năm 2008.", "Tại Hoa Kỳ, ông sống.",
                                                              "Ông mất năm 2010."]),
    ("es", "El Sr. García llegó. Luego volvió.", ["El Sr. García llegó.", "Luego volvió."]),
])
def test_splitter(lang, text, expected):
    assert sentences(text, lang) == expected
    spans = split_sentences(text, lang)
    assert all(a < b <= c for (a, b), (c, _) in zip(spans, spans[1:]))
    assert all(text[a:b] == text[a:b].strip() for a, b in spans)
    assert "".join(text[a:b] for a, b in spans).replace(" ", "") == text.replace(" ", "")


def test_splitter_spans_cover_text():
    text = "  First one.   Second one!  "
    assert split_sentences(text, "en") == [(2, 12), (15, 26)]
    assert split_sentences("", "en") == [] and split_sentences("   ", "de") == []
    assert sentences("no terminator at all", "en") == ["no terminator at all"]
    with pytest.raises(UnknownLanguageError, match="xx"):
        split_sentences("Hi.", "xx")
    assert "।" in mlqa_r.SENTENCE_SPLITTER and "؟" in mlqa_r.SENTENCE_SPLITTER


def test_splitter_module_and_language_codes():
    from hbkit.datasets import sentences as splitter

    assert mlqa_r.split_sentences is splitter.split_sentences and mlqa_r.sentences is splitter.sentences
    assert mlqa_r.SENTENCE_SPLITTER is splitter.SENTENCE_SPLITTER
    assert "hbkit.datasets.sentences.split_sentences" in splitter.SENTENCE_SPLITTER
    # codes are normalised: German rules apply to "DEU" ("am 25. Januar" is no sentence end)
    text = "Er kam am 25. Januar an. Dann ging er."
    assert splitter.sentences(text, "DEU") == splitter.sentences(text, "de") == ["Er kam am 25. Januar an.",
                                                                                 "Dann ging er."]
    rec = MLQARecord("q1", "Q?", CTX_EN, (("Alpha", 0),))
    assert build_mlqa_r({"EN": [rec]}).query_langs == ["en"]
    with pytest.raises(UnknownLanguageError, match="one language twice"):
        build_mlqa_r({"en": [rec], "eng": [rec]})


# --------------------------------------------------------------------------- answer-in-sentence rule

CTX_EN = "Alpha is a town. It has a river. Its mayor is Bob Smith. It has a river. The end."
CTX_DE = "Alpha ist eine Stadt. Sie hat einen Fluss. Ihr Bürgermeister ist Bob Smith."


def _tiny():
    en = [
        # answer inside the 3rd sentence
        MLQARecord("q-mayor", "Who is the mayor?", CTX_EN, (("Bob Smith", CTX_EN.index("Bob")),)),
        # "It has a river." occurs twice: only the second occurrence holds this answer
        MLQARecord("q-river2", "What does it have (again)?", CTX_EN,
                   (("a river", CTX_EN.rindex("a river")),)),
        # the answer runs over a sentence break: it belongs to the sentence where it starts
        MLQARecord("q-span", "What spans?", CTX_EN, (("town. It has", CTX_EN.index("town")),)),
    ]
    de = [("q-mayor", "Wer ist Bürgermeister?", CTX_DE, [("Bob Smith", CTX_DE.index("Bob"))]),
          ("q-only-de", "Was hat sie?", CTX_DE, [("einen Fluss", CTX_DE.index("einen"))])]
    return build_mlqa_r({"en": en, "de": de})


def test_answer_in_sentence_rule_on_tiny_example():
    b = _tiny()
    assert [c.text for c in b.candidates if c.lang == "en"] == [
        "Alpha is a town.", "It has a river.", "Its mayor is Bob Smith.", "It has a river.", "The end."]
    assert [c.cid for c in b.candidates][:2] == ["de:0:0", "de:0:1"]  # languages in MLQA-R order: de before en
    rel = {q.qid: [b.candidates[i].cid for i in r] for q, r in zip(b.queries, b.relevant)}
    assert rel == {
        "de:q-mayor": ["de:0:2", "en:0:2"],
        "de:q-only-de": ["de:0:1"],
        "en:q-mayor": ["de:0:2", "en:0:2"],
        "en:q-river2": ["en:0:3"],
        "en:q-span": ["en:0:0"],
    }
    assert b.candidates[b.relevant[0][0]].context == CTX_DE
    # repeated sentence text stays two candidates, only one of them relevant
    river = [c for c in b.candidates if c.text == "It has a river."]
    assert [c.xids for c in river] == [(), ("q-river2",)]
    assert build_mlqa_r({"en": _tiny_en()}, languages=["en"]).query_langs == ["en"]


def _tiny_en():
    return [MLQARecord("q1", "Q?", CTX_EN, (("Alpha", 0),))]


def test_json_reader_and_load_from_mlqa_folder(tmp_path):
    dev = tmp_path / "MLQA_V1" / "dev"
    dev.mkdir(parents=True)
    for lang, ctx in (("en", CTX_EN), ("de", CTX_DE)):
        data = {"version": "1.0", "data": [{"title": "t", "paragraphs": [
            {"context": ctx, "qas": [{"id": "q-mayor", "question": "?",
                                      "answers": [{"text": "Bob Smith", "answer_start": ctx.index("Bob")}]}]}]}]}
        (dev / f"dev-context-{lang}-question-{lang}.json").write_text(json.dumps(data), encoding="utf-8")
    for root in (tmp_path, tmp_path / "MLQA_V1", dev):
        assert sorted(find_mlqa_dev_files(root)) == ["de", "en"]
    b = load_mlqa_r(tmp_path / "MLQA_V1", languages=["de", "en"])
    assert len(b.queries) == 2 and len(b.candidates) == 8
    assert [sorted(b.candidate_lang_array[r]) for r in b.relevant] == [["de", "en"], ["de", "en"]]
    with pytest.raises(DataError, match=r"no dev file for \['ar'\].*found languages: de, en"):
        load_mlqa_r(tmp_path, languages=["ar"])
    with pytest.raises(UnknownLanguageError, match="'fr'.*ar, de, en, es, hi, vi, zh"):
        load_mlqa_r(tmp_path, languages=["fr"])


def test_load_with_download_from_local_server(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    data = {"data": [{"paragraphs": [{"context": CTX_EN, "qas": [
        {"id": "q1", "question": "Who?", "answers": [{"text": "Bob", "answer_start": CTX_EN.index("Bob")}]}]}]}]}
    with zipfile.ZipFile(site / "MLQA_V1.zip", "w") as zf:
        zf.writestr("MLQA_V1/dev/dev-context-en-question-en.json", json.dumps(data))
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        monkeypatch.setattr(mlqa_r, "MLQA_URL", f"http://127.0.0.1:{httpd.server_address[1]}/MLQA_V1.zip")
        monkeypatch.setenv("HBKIT_CACHE", str(tmp_path / "cache"))
        with pytest.raises(DataError, match="download=True"):
            load_mlqa_r(languages=["en"])
        # the archive is checked against the official digest: this stand-in does not match
        with pytest.raises(DataError, match=f"Checksum mismatch.*expected sha256 {mlqa_r.MLQA_SHA256}"):
            load_mlqa_r(languages=["en"], download=True)
        assert not (tmp_path / "cache" / "mlqa" / "MLQA_V1.zip").exists()
        monkeypatch.setattr(mlqa_r, "MLQA_SHA256", dl.sha256_of(site / "MLQA_V1.zip"))
        b = load_mlqa_r(languages=["en"], download=True)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
    assert len(b.queries) == 1 and len(b.candidates) == 5
    assert (tmp_path / "cache" / "mlqa" / "MLQA_V1.zip").is_file()
    # later calls find the unpacked files without network (the server is gone)
    assert len(load_mlqa_r(languages=["en"]).candidates) == 5


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


# --------------------------------------------------------------------------- errors

def test_build_errors(tmp_path):
    rec = MLQARecord("q1", "Q?", CTX_EN, (("Alpha", 0),))
    with pytest.raises(UnknownLanguageError, match="'fr'"):
        build_mlqa_r({"fr": [rec]})
    with pytest.raises(UnknownLanguageError, match=r"no source for \['de'\].*\['en'\]"):
        build_mlqa_r({"en": [rec]}, languages=["en", "de"])
    with pytest.raises(DataError, match="no sources"):
        build_mlqa_r({})
    with pytest.raises(DataError, match="occurs twice"):
        build_mlqa_r({"en": [rec, rec]})
    with pytest.raises(DataError, match="outside its context"):
        build_mlqa_r({"en": [MLQARecord("q1", "Q?", CTX_EN, (("x", 999),))]})
    with pytest.raises(DataError, match="no answer"):
        build_mlqa_r({"en": [MLQARecord("q1", "Q?", CTX_EN, ())]})
    with pytest.raises(DataError, match=r"\(question_id, question, context"):
        build_mlqa_r({"en": [("q1", "Q?")]})
    with pytest.raises(DataError, match="not found or not recognised"):
        build_mlqa_r({"en": tmp_path / "nothing.txt"})


def test_reader_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match="not valid JSON"):
        read_mlqa_squad_json(bad, "en")
    bad.write_text('{"rows": []}', encoding="utf-8")
    with pytest.raises(DataError, match="SQuAD format"):
        read_mlqa_squad_json(bad, "en")
    bad.write_text('{"data": [{"paragraphs": [{"context": "c", "qas": [{"question": "q"}]}]}]}', encoding="utf-8")
    with pytest.raises(DataError, match="SQuAD structure"):
        read_mlqa_squad_json(bad, "en")
    with pytest.raises(DataError, match="not found"):
        read_mlqa_squad_json(tmp_path / "missing.json", "en")
    with pytest.raises(UnknownLanguageError):
        read_mlqa_squad_json(bad, "xx")

    import pyarrow as pa

    table = pa.table({"id": ["a"], "question": ["q"], "context": ["c"]})
    arrow = tmp_path / "ds" / "data-00000-of-00001.arrow"
    arrow.parent.mkdir()
    with pa.OSFile(str(arrow), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    with pytest.raises(DataError, match=r"lacks the column\(s\) \['answers'\]"):
        read_mlqa_arrow(arrow.parent, "de")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="No .arrow file"):
        read_mlqa_arrow(tmp_path / "empty", "de")
    junk = tmp_path / "junk.arrow"
    junk.write_bytes(b"not arrow at all")
    with pytest.raises(DataError, match="not an Arrow"):
        read_mlqa_arrow(junk, "de")
    # the Arrow IPC *file* format (not only the stream format) is read too
    good = pa.table({"id": ["a"], "question": ["q"], "context": ["Ctx here."],
                     "answers": [{"text": ["Ctx"], "answer_start": [0]}]})
    ipc_file = tmp_path / "good.arrow"
    with pa.OSFile(str(ipc_file), "wb") as sink, pa.ipc.new_file(sink, good.schema) as writer:
        writer.write_table(good)
    assert read_mlqa_arrow(ipc_file, "de") == [MLQARecord("a", "q", "Ctx here.", (("Ctx", 0),))]
    assert np.array_equal(build_mlqa_r({"de": ipc_file}).relevant[0], [0])
