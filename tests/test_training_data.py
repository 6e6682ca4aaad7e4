"""Parallel files, mMARCO, SQuADShifts and mix_summary (through hbkit.datasets.training_data, which re-exports
them) on small synthetic files in tmp_path; no network."""
from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import pytest

from hbkit.datasets import mmarco
from hbkit.datasets import squadshifts
from hbkit.datasets import training_data as td
from hbkit.errors import ConfigError, DataError, UnknownLanguageError
from hbkit.parallel import ImageRef, ParallelDataset, ParallelItem

# ----------------------------------------------------------------------------- bring your own file

TRICKY = [
    ParallelItem("007", "en", "Where, exactly?", 'He said "hi"\tthen left.\nNext line.', "NA"),
    ParallelItem("007", "de", "Wo genau?", "Er sagte „hallo“.", None),
    ParallelItem("007", "ru", "Где именно?", "Он сказал «привет».", "Отрицательный."),
    ParallelItem("g2", "en", "Who?", "  leading and trailing spaces  ", "None"),
    ParallelItem("g2", "zh", "谁？", "他说你好。", "不是这个。"),
    ParallelItem("3", "ar", "من؟", "قال مرحبا.", None),
]


def _tricky_dataset() -> ParallelDataset:
    return ParallelDataset(TRICKY, name="tricky")


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json", ".parquet", ".csv.gz", ".tsv.gz",
                                    ".jsonl.gz"])
def test_round_trip_every_format(tmp_path, suffix):
    path = td.write_parallel_file(_tricky_dataset(), tmp_path / f"corpus{suffix}")
    assert path.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
    back = td.read_parallel_file(path)
    assert back.name == "corpus"
    assert back.items() == TRICKY
    assert back.groups == ["007", "g2", "3"]
    assert back.languages == ["ar", "de", "en", "ru", "zh"]
    if suffix.endswith(".gz"):
        with gzip.open(path, "rb") as fh:
            assert fh.read(5)  # really gzipped


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


GOOD_CSV = "group,lang,query,positive,negative\n1,en,q1,p1,n1\n1,de,q1de,p1de,\n2,en,q2,p2,n2\n"


def test_csv_by_hand_languages_and_max_groups(tmp_path):
    path = _write(tmp_path / "mine.csv", GOOD_CSV + "3,de,q3,p3,n3\n")
    ds = td.read_parallel_file(path, name="hand")
    assert ds.name == "hand" and len(ds) == 3 and ds.num_items == 4
    assert ds.item(0, "de") == ParallelItem("1", "de", "q1de", "p1de", None)
    assert ds.item(1, "en").negative == "n2"
    only_de = td.read_parallel_file(path, languages=["de"])
    assert only_de.groups == ["1", "3"] and only_de.languages == ["de"]
    first2 = td.read_parallel_file(path, max_groups=2)
    assert first2.groups == ["1", "2"] and first2.num_items == 3
    # extra columns are ignored; the negative column is optional
    extra = _write(tmp_path / "extra.csv", "note,group,lang,query,positive\nx,a,en,q,p\n")
    assert td.read_parallel_file(extra).items() == [ParallelItem("a", "en", "q", "p", None)]


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"not found: .*nothere\.csv"):
        td.read_parallel_file(tmp_path / "nothere.csv")


def test_unsupported_extension(tmp_path):
    path = _write(tmp_path / "data.xlsx", "x")
    with pytest.raises(DataError, match=r"data\.xlsx: unsupported file type.*\.csv, \.tsv, \.jsonl"):
        td.read_parallel_file(path)


def test_missing_columns_listed_with_expected_header(tmp_path):
    path = _write(tmp_path / "cols.csv", "group,language,query,answer\n1,en,q,p\n")
    with pytest.raises(DataError) as err:
        td.read_parallel_file(path)
    msg = str(err.value)
    assert "cols.csv" in msg and "['lang', 'positive']" in msg and "group,lang,query,positive[,negative]" in msg


def test_unknown_language_names_the_row(tmp_path):
    path = _write(tmp_path / "lang.tsv", "group\tlang\tquery\tpositive\n1\ten\tq\tp\n2\txx\tq\tp\n")
    with pytest.raises(UnknownLanguageError, match=r"'xx' in .*lang\.tsv, row 2"):
        td.read_parallel_file(path)


def test_empty_text_cell_names_row_and_column(tmp_path):
    path = _write(tmp_path / "empty.csv", "group,lang,query,positive\n1,en,q,p\n2,en,q2,p2\n3,de,   ,p3\n")
    with pytest.raises(DataError, match=r"empty\.csv, row 3: empty query cell \(group '3', language 'de'\)"):
        td.read_parallel_file(path)
    path = _write(tmp_path / "nullpos.jsonl", '{"group": 1, "lang": "en", "query": "q", "positive": null}\n')
    with pytest.raises(DataError, match=r"nullpos\.jsonl, line 1: empty positive cell"):
        td.read_parallel_file(path)


def test_several_rows_per_group_and_language_are_kept_in_order(tmp_path):
    path = _write(tmp_path / "dup.csv", GOOD_CSV + "1,en,again,p1b\n")
    ds = td.read_parallel_file(path)
    assert ds.count(0, "en") == 2 and ds.count(0, "de") == 1 and ds.num_items == 4
    assert [it.query for it in ds.items() if it.group == "1" and it.lang == "en"] == ["q1", "again"]
    assert ds.item(0, "en", 1) == ParallelItem("1", "en", "again", "p1b", None)
    assert ds.max_items_per_language == 2


def test_requested_language_absent_lists_available(tmp_path):
    path = _write(tmp_path / "two.csv", GOOD_CSV)
    with pytest.raises(UnknownLanguageError, match=r"no rows in language\(s\) \['hi'\]\. Available: \['de', 'en'\]"):
        td.read_parallel_file(path, languages=["en", "hi"])


def test_corrupt_jsonl_names_the_line(tmp_path):
    lines = ['{"group": "1", "lang": "en", "query": "q", "positive": "p"}',
             "",
             '{"group": "2", "lang": "en", "query": "q2", "positive": "p2"',
             '{"group": "3", "lang": "en", "query": "q3", "positive": "p3"}']
    path = _write(tmp_path / "bad.jsonl", "\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl, line 3: not valid JSON"):
        td.read_parallel_file(path)
    arr = _write(tmp_path / "array.json", json.dumps([{"group": "1"}]))
    with pytest.raises(DataError, match=r"array\.json, line 1: .*JSON array; write JSON Lines"):
        td.read_parallel_file(arr)
    nokey = _write(tmp_path / "nokey.jsonl", lines[0] + '\n{"group": "2", "lang": "en", "query": "q"}\n')
    with pytest.raises(DataError, match=r"nokey\.jsonl, line 2: missing key\(s\) \['positive'\]"):
        td.read_parallel_file(nokey)


def test_corrupt_binary_files_name_the_file(tmp_path):
    gz = tmp_path / "broken.csv.gz"
    gz.write_bytes(gzip.compress(GOOD_CSV.encode())[:25])  # truncated gzip
    with pytest.raises(DataError, match=r"broken\.csv\.gz could not be read as CSV \(gzip\)"):
        td.read_parallel_file(gz)
    pq_path = tmp_path / "broken.parquet"
    pq_path.write_bytes(b"PAR1 this is not parquet at all")
    with pytest.raises(DataError, match=r"broken\.parquet could not be read as Parquet"):
        td.read_parallel_file(pq_path)
    jgz = tmp_path / "broken.jsonl.gz"
    jgz.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"broken\.jsonl\.gz could not be read"):
        td.read_parallel_file(jgz)
    for name, text, row in (("ragged1.csv", "group,lang,query,positive\n1,en,q,p,extra,more\n", 1),
                            ("ragged2.tsv", "group\tlang\tquery\tpositive\n1\ten\tq\tp\n2\ten\tq\tp\tx\n", 2)):
        with pytest.raises(DataError, match=rf"{name}, row {row}: more cells than the header has columns"):
            td.read_parallel_file(_write(tmp_path / name, text))
    unclosed = _write(tmp_path / "quote.csv", 'group,lang,query,positive\n1,en,"q,p\n')
    with pytest.raises(DataError, match=r"quote\.csv could not be read as CSV \(ParserError"):
        td.read_parallel_file(unclosed)
    empty = _write(tmp_path / "empty.tsv", "")
    with pytest.raises(DataError, match=r"empty\.tsv is empty"):
        td.read_parallel_file(empty)


def test_write_refuses_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="needs a ParallelDataset"):
        td.write_parallel_file([1, 2], tmp_path / "x.csv")
    img = ParallelDataset([ParallelItem("i1", "en", "a cat", ImageRef("img1.jpg"))], "img")
    with pytest.raises(DataError, match=r"x\.xlsx: unsupported file type"):
        td.write_parallel_file(img, tmp_path / "x.xlsx")
    with pytest.raises(DataError, match="Parquet files are compressed internally"):
        td.write_parallel_file(img, tmp_path / "x.parquet.gz")
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------- mMARCO, aligned joined triples

LANGS3 = ["en", "de", "ru"]


def _triple(lang: str, i: int) -> tuple[str, str, str]:
    return f"{lang} query {i}?", f"{lang} positive passage {i}.", f"{lang} negative passage {i}."


def _write_rows(folder: Path, lang: str, n: int, fmt: str = "tsv", start: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{lang}.{fmt}"
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(start, start + n):
            q, p, ng = _triple(lang, i)
            if fmt == "tsv":
                fh.write(f"{q}\t{p}\t{ng}\n")
            else:
                fh.write(json.dumps({"id": f"t{i}", "query": q, "positive": p, "negative": ng}) + "\n")
    return path


def test_mmarco_aligned_folder(tmp_path):
    for lang in LANGS3:
        _write_rows(tmp_path, lang, 20)
    ds = td.load_mmarco(LANGS3, source=tmp_path)
    assert ds.name == "mmarco" and len(ds) == 20 and ds.num_items == 60
    assert ds.groups[:3] == ["mmarco:0", "mmarco:1", "mmarco:2"]
    assert all(gl == frozenset(LANGS3) for gl in ds.group_languages)
    it = ds.item(7, "ru")
    assert (it.group, it.query, it.positive, it.negative) == ("mmarco:7", *_triple("ru", 7))
    assert ds.item(19, "de").positive == "de positive passage 19."
    # a subset of the languages, max_groups and seed blocks
    two = td.load_mmarco(["de", "en"], source=tmp_path, max_groups=5)
    assert two.groups == [f"mmarco:{i}" for i in range(5)] and two.languages == ["de", "en"]
    block = td.load_mmarco(["de", "en"], source=tmp_path, max_groups=5, seed=2)
    assert block.groups == [f"mmarco:{i}" for i in range(10, 15)]
    assert block.item(0, "en").query == "en query 10?"


def test_mmarco_jsonl_ids_and_mixed_formats(tmp_path):
    _write_rows(tmp_path, "en", 6, fmt="jsonl")
    _write_rows(tmp_path, "es", 6, fmt="jsonl")
    ds = td.load_mmarco(["en", "es"], source=tmp_path)
    assert ds.groups == [f"mmarco:t{i}" for i in range(6)]
    assert ds.item(3, "es").negative == "es negative passage 3."
    # ids that disagree between languages = misaligned
    rows = (tmp_path / "es.jsonl").read_text(encoding="utf-8").splitlines()
    rows[4] = rows[4].replace('"t4"', '"t99"')
    (tmp_path / "es.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"Misaligned mMARCO files at line 5"):
        td.load_mmarco(["en", "es"], source=tmp_path)


def test_mmarco_streams_only_what_it_needs(tmp_path, monkeypatch):
    n = 100_000
    for lang in ("en", "hi"):
        path = _write_rows(tmp_path, lang, n)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write("this line is malformed and must never be parsed\n")
    consumed = {"lines": 0}
    real = mmarco.iter_lines

    def counting(*args, **kwargs):
        for row in real(*args, **kwargs):
            consumed["lines"] += 1
            yield row

    monkeypatch.setattr(mmarco, "iter_lines", counting)
    t0 = time.perf_counter()
    ds = td.load_mmarco(["en", "hi"], source=tmp_path, max_groups=10)
    elapsed = time.perf_counter() - t0
    assert len(ds) == 10 and ds.item(9, "hi").query == "hi query 9?"
    assert consumed["lines"] <= 2 * 11  # lockstep: at most one line past the last group, per file
    assert elapsed < 2.0


def test_mmarco_skips_repeated_queries_and_positives(tmp_path):
    for lang in ("en", "de"):
        with open(tmp_path / f"{lang}.tsv", "w", encoding="utf-8") as fh:
            fh.write(f"{lang} q0\t{lang} p0\t{lang} n0\n")
            fh.write(f"{lang} q0\t{lang} p1\t{lang} n1\n")  # same query again
            fh.write(f"{lang} q2\t{lang} p0\t{lang} n2\n")  # same positive again
            fh.write(f"{lang} q3\t{lang} p3\t{lang} n3\n")
    ds = td.load_mmarco(["en", "de"], source=tmp_path)
    assert ds.groups == ["mmarco:0", "mmarco:3"]
    assert ds.item(1, "de").query == "de q3"


def test_mmarco_misaligned_files(tmp_path):
    _write_rows(tmp_path, "en", 20)
    _write_rows(tmp_path, "de", 20)
    _write_rows(tmp_path, "ru", 15)
    with pytest.raises(DataError) as err:
        td.load_mmarco(LANGS3, source=tmp_path)
    msg = str(err.value)
    assert "ru.tsv ends after 15 triples" in msg and "not aligned" in msg and "en.tsv" in msg
    # within max_groups the short file is not reached: fine
    assert len(td.load_mmarco(LANGS3, source=tmp_path, max_groups=15)) == 15


def test_mmarco_bad_lines_and_folders(tmp_path):
    _write_rows(tmp_path, "en", 3)
    with open(tmp_path / "de.tsv", "w", encoding="utf-8") as fh:
        fh.write("q\tp\tn\nonly two\tfields\n")
    with pytest.raises(DataError, match=r"de\.tsv, line 2: expected 3 tab-separated fields"):
        td.load_mmarco(["en", "de"], source=tmp_path)
    with open(tmp_path / "de.tsv", "w", encoding="utf-8") as fh:
        fh.write("q\tp\tn\nq2\tp2\t \n")
    with pytest.raises(DataError, match=r"de\.tsv, line 2: empty negative cell"):
        td.load_mmarco(["en", "de"], source=tmp_path)
    with pytest.raises(UnknownLanguageError, match=r"No triples file for \['es'\].*Languages with a file there: "
                                                   r"\['de', 'en'\]"):
        td.load_mmarco(["en", "es"], source=tmp_path)
    with pytest.raises(DataError, match="source folder not found"):
        td.load_mmarco(["en"], source=tmp_path / "nope")
    with pytest.raises(DataError, match="holds no mMARCO data"):
        td.load_mmarco(["fr"], source=tmp_path)


def test_mmarco_unknown_language_and_bad_arguments(tmp_path):
    _write_rows(tmp_path, "en", 3)
    with pytest.raises(UnknownLanguageError, match="'xx'"):
        td.load_mmarco(["en", "xx"], source=tmp_path)
    with pytest.raises(UnknownLanguageError, match="'el' in mMARCO"):  # a real code mMARCO lacks
        td.load_mmarco(["el"], source=tmp_path)
    with pytest.raises(ConfigError, match="max_groups"):
        td.load_mmarco(["en"], source=tmp_path, max_groups=0)
    with pytest.raises(ConfigError, match="pass max_groups too"):
        td.load_mmarco(["en"], source=tmp_path, seed=1)


# ----------------------------------------------------------------------------- mMARCO, id-aligned raw files

def _write_id_files(root: Path, hub_layout: bool) -> None:
    """mMARCO's own files: shared id triples, per-language queries and collection."""
    triples = ["10\t100\t200", "11\t101\t201", "10\t102\t202", "12\t100\t203", "13\t103\t204"]
    qids = [10, 11, 12, 13, 14]
    pids = list(range(100, 104)) + list(range(200, 205)) + [999]
    for lang in ("english", "german"):
        tag = lang[:2]
        qdir = root / "data/google/queries/train" if hub_layout else root
        cdir = root / "data/google/collections" if hub_layout else root
        qdir.mkdir(parents=True, exist_ok=True)
        cdir.mkdir(parents=True, exist_ok=True)
        (qdir / f"{lang}_queries.train.tsv").write_text(
            "".join(f"{q}\t{tag} query {q}\n" for q in reversed(qids)), encoding="utf-8")
        (cdir / f"{lang}_collection.tsv").write_text(
            "".join(f"{p}\t{tag} passage {p}\n" for p in pids), encoding="utf-8")
    tdir = root / "data" if hub_layout else root
    tdir.mkdir(parents=True, exist_ok=True)
    (tdir / "triples.train.ids.small.tsv").write_text("\n".join(triples) + "\n", encoding="utf-8")


@pytest.mark.parametrize("hub_layout", [False, True])
def test_mmarco_id_files(tmp_path, hub_layout):
    _write_id_files(tmp_path, hub_layout)
    ds = td.load_mmarco(["en", "de"], source=tmp_path)
    # triple 3 repeats query 10, triple 4 repeats positive 100: one per query and per positive
    assert ds.groups == ["mmarco:10", "mmarco:11", "mmarco:13"]
    it = ds.item(2, "de")
    assert (it.query, it.positive, it.negative) == ("ge query 13", "ge passage 103", "ge passage 204")
    assert ds.item(0, "en").negative == "en passage 200"
    assert td.load_mmarco(["en"], source=tmp_path, max_groups=1, seed=1).groups == ["mmarco:11"]


def test_mmarco_id_files_stop_reading_early_and_detect_gaps(tmp_path, monkeypatch):
    _write_id_files(tmp_path, hub_layout=False)
    consumed: dict[str, int] = {}
    real = mmarco.iter_lines

    def counting(label, *args, **kwargs):
        for row in real(label, *args, **kwargs):
            consumed[Path(label).name] = consumed.get(Path(label).name, 0) + 1
            yield row

    monkeypatch.setattr(mmarco, "iter_lines", counting)
    td.load_mmarco(["en"], source=tmp_path, max_groups=1)
    assert consumed["triples.train.ids.small.tsv"] == 1
    assert consumed["english_collection.tsv"] == 5  # needs pids 100 (line 1) and 200 (line 5) of 10
    # a collection lacking a needed passage
    coll = tmp_path / "german_collection.tsv"
    coll.write_text("".join(line + "\n" for line in coll.read_text(encoding="utf-8").splitlines()
                            if not line.startswith("103\t")), encoding="utf-8")
    with pytest.raises(DataError, match=r"german_collection\.tsv lacks 1 of the \d+ needed ids \(e\.g\. \['103'\]\)"):
        td.load_mmarco(["en", "de"], source=tmp_path)
    with pytest.raises(DataError, match=r"spanish_queries\.train\.tsv not found"):
        td.load_mmarco(["es"], source=tmp_path)


# ----------------------------------------------------------------------------- mMARCO, hub

def test_mmarco_hub_offline_fails_fast_with_hint(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(DataError) as err:
        td.load_mmarco(["en", "de"], max_groups=10)
    assert time.perf_counter() - t0 < 5
    msg = str(err.value)
    assert "unicamp-dl/mmarco" in msg and "offline" in msg and "source=" in msg


def test_mmarco_hub_library_errors_become_data_errors(monkeypatch):
    """Past hbkit's own offline check, huggingface_hub's refusal is wrapped too (no network is used)."""
    from huggingface_hub import constants

    if not constants.HF_HUB_OFFLINE:
        pytest.skip("huggingface_hub was imported with offline mode off; this test must not touch the network")
    monkeypatch.setattr(mmarco, "_hub_offline", lambda: False)
    with pytest.raises(DataError, match=r"hf://datasets/unicamp-dl/mmarco/data/triples\.train\.ids\.small\.tsv.*"
                                        r"OfflineModeIsEnabled.*source="):
        td.load_mmarco(["en"], max_groups=3)


def test_mmarco_hub_reads_the_repository_files(tmp_path, monkeypatch):
    """The hub path asks huggingface_hub for exactly mMARCO's repository files and joins them like local ones.

    HfFileSystem is replaced by a local stand-in serving a copy of the repository layout (no network)."""
    import huggingface_hub

    _write_id_files(tmp_path, hub_layout=True)
    opened: list[str] = []

    class LocalHub:
        def open(self, path, mode="rb", block_size=None):
            assert mode == "rb" and block_size == 0  # streamed, never downloaded whole
            opened.append(path)
            prefix = "datasets/unicamp-dl/mmarco/"
            assert path.startswith(prefix)
            return open(tmp_path / path[len(prefix):], "rb")

    monkeypatch.setattr(huggingface_hub, "HfFileSystem", LocalHub)
    monkeypatch.setattr(mmarco, "_hub_offline", lambda: False)
    ds = td.load_mmarco(["de", "en"], max_groups=2)
    assert ds.groups == ["mmarco:10", "mmarco:11"]
    assert ds.item(1, "de").positive == "ge passage 101"
    assert opened == ["datasets/unicamp-dl/mmarco/data/triples.train.ids.small.tsv",
                      "datasets/unicamp-dl/mmarco/data/google/queries/train/german_queries.train.tsv",
                      "datasets/unicamp-dl/mmarco/data/google/collections/german_collection.tsv",
                      "datasets/unicamp-dl/mmarco/data/google/queries/train/english_queries.train.tsv",
                      "datasets/unicamp-dl/mmarco/data/google/collections/english_collection.tsv"]


def test_mmarco_hub_needs_max_groups():
    with pytest.raises(ConfigError, match="needs max_groups"):
        td.load_mmarco(["en"])


# ----------------------------------------------------------------------------- SQuADShifts

def _squad_file(path: Path) -> Path:
    ctx1 = ("The bridge opened in 1932. Its designer was John Bradfield. It carries trains, cars and people. "
            "Dr. Smith painted it in May.")
    ctx2 = "Only one sentence here about the harbour ferry."
    ctx3 = "The ferry runs every 20 minutes. Tickets cost two dollars."
    ctx4 = "A lonely paragraph with one sentence about Nauru."

    def qa(qid, question, answer, context):
        return {"id": qid, "question": question,
                "answers": [{"text": answer, "answer_start": context.index(answer)},
                            {"text": answer, "answer_start": context.index(answer)}]}

    data = {"version": "1.0", "data": [
        {"title": "Bridge", "paragraphs": [{"context": ctx1, "qas": [
            qa("b1", "When did the bridge open?", "1932", ctx1),
            qa("b2", "Who designed the bridge?", "John Bradfield", ctx1),
            qa("b3", "What does it carry?", "trains, cars and people", ctx1),
            qa("b4", "Which year did it open?", "1932", ctx1),  # same answer sentence as b1
            qa("b5", "Who painted it?", "Dr. Smith", ctx1),
        ]}]},
        {"title": "Ferry", "paragraphs": [
            {"context": ctx2, "qas": [qa("f1", "What is the sentence about?", "harbour ferry", ctx2)]},
            {"context": ctx3, "qas": [qa("f2", "How often does the ferry run?", "every 20 minutes", ctx3)]},
        ]},
        {"title": "Nauru", "paragraphs": [{"context": ctx4, "qas": [qa("n1", "Which island?", "Nauru", ctx4)]}]},
    ]}
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_squadshifts_local_file(tmp_path):
    path = _squad_file(tmp_path / "nyt_v1.0.json")
    ds = td.load_squadshifts("nyt", source=path)
    assert ds.name == "squadshifts-nyt" and ds.languages == ["en"]
    by_id = {it.group.split(":", 1)[1]: it for it in ds.items()}
    # b4 shares b1's answer sentence; n1's article has no other sentence
    assert sorted(by_id) == ["b1", "b2", "b3", "b5", "f1", "f2"]
    answers = {"b1": "1932", "b2": "John Bradfield", "b3": "trains, cars and people", "b5": "Dr. Smith",
               "f1": "harbour ferry", "f2": "every 20 minutes"}
    raw = json.loads(path.read_text(encoding="utf-8"))
    contexts = {qa["id"]: p["context"] for a in raw["data"] for p in a["paragraphs"] for qa in p["qas"]}
    articles = {qa["id"]: " ".join(p["context"] for p in a["paragraphs"])
                for a in raw["data"] for p in a["paragraphs"] for qa in p["qas"]}
    for qid, it in by_id.items():
        assert it.lang == "en" and it.group == f"squadshifts-nyt:{qid}"
        assert answers[qid] in it.positive
        assert it.positive in contexts[qid]
        assert it.negative is not None and it.negative != it.positive
        assert answers[qid] not in it.negative
        assert it.negative in articles[qid]
    # nearest other sentence of the same paragraph: next, or previous for the last sentence
    assert by_id["b1"].positive == "The bridge opened in 1932."
    assert by_id["b1"].negative == "Its designer was John Bradfield."
    assert by_id["b5"].positive == "Dr. Smith painted it in May."
    assert by_id["b5"].negative == "It carries trains, cars and people."
    for qid in ("b1", "b2", "b3", "b5", "f2"):
        assert by_id[qid].negative in contexts[qid]
    # a one-sentence paragraph borrows from the nearest paragraph of the same article
    assert by_id["f1"].negative == "The ferry runs every 20 minutes."


def test_squadshifts_max_items_folder_and_cache(tmp_path, monkeypatch):
    folder = tmp_path / "shifts"
    folder.mkdir()
    _squad_file(folder / "reddit_v1.0.json")
    full = td.load_squadshifts("reddit", source=folder)
    three = td.load_squadshifts("reddit", source=folder, max_items=3)
    assert [it.group for it in three.items()] == [full.items()[k].group for k in (0, 2, 4)]
    # source=None asks the checksummed download for the official file...
    from hbkit.datasets import download as dl

    cache = tmp_path / "cache"
    (cache / "squadshifts").mkdir(parents=True)
    cached = _squad_file(cache / "squadshifts" / "amazon_reviews_v1.0.json")
    monkeypatch.setenv("HBKIT_CACHE", str(cache))
    calls = []
    real_download = dl.download

    def recording(url, dest_dir=None, **kw):
        calls.append((url, Path(dest_dir), kw))
        return cached

    monkeypatch.setattr(dl, "download", recording)
    expected = [ParallelItem(it.group.replace("reddit", "amazon"), "en", it.query, it.positive, it.negative)
                for it in full.items()]
    assert td.load_squadshifts("amazon").items() == expected
    assert calls == [(td.SQUADSHIFTS_URL + "amazon_reviews_v1.0.json", cache / "squadshifts",
                      {"sha256": "9db7bdee84a91f0fb80b9e74f365042fbbb217cb8e0a7e73bb071245472589b6"})]
    # ...and a cached file with the pinned digest is used without network
    monkeypatch.setattr(dl, "download", real_download)
    monkeypatch.setitem(squadshifts.SQUADSHIFTS_SHA256, "amazon", dl.sha256_of(cached))
    assert td.load_squadshifts("amazon").items() == expected


def test_squadshifts_errors(tmp_path):
    with pytest.raises(ConfigError, match="new_wiki, nyt, reddit, amazon"):
        td.load_squadshifts("wiki", source=tmp_path)
    with pytest.raises(DataError, match=r"No nyt_v1\.0\.json in"):
        td.load_squadshifts("nyt", source=tmp_path)
    with pytest.raises(DataError, match="SQuADShifts file not found"):
        td.load_squadshifts("nyt", source=tmp_path / "missing.json")
    bad = _write(tmp_path / "bad.json", '{"data": [')
    with pytest.raises(DataError, match=r"bad\.json is not valid JSON"):
        td.load_squadshifts("nyt", source=bad)
    wrong = _write(tmp_path / "wrong.json", json.dumps({"data": [{"paragraphs": [{"qas": []}]}]}))
    with pytest.raises(DataError, match=r"wrong\.json does not have the SQuAD structure"):
        td.load_squadshifts("nyt", source=wrong)
    broken = json.loads(_squad_file(tmp_path / "x.json").read_text(encoding="utf-8"))
    broken["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 10_000
    damaged = _write(tmp_path / "damaged.json", json.dumps(broken))
    with pytest.raises(DataError, match=r"question 'b1' has answer_start 10000 outside its context"):
        td.load_squadshifts("nyt", source=damaged)


# ----------------------------------------------------------------------------- mix_summary

def test_mix_summary(tmp_path):
    for lang in ("en", "de"):
        _write_rows(tmp_path, lang, 30)
    mm = td.load_mmarco(["en", "de"], source=tmp_path)
    own = ParallelDataset([ParallelItem("a", "en", "q", "p"), ParallelItem("b", "en", "q2", "p2", "n2"),
                           ParallelItem("b", "fr", "q3", "p3")], name="own")
    table = td.mix_summary([mm, own])
    assert list(table.columns) == ["name", "groups", "items", "languages", "negatives", "share", "modality"]
    assert table["modality"].tolist() == ["text", "text"]
    assert table["name"].tolist() == ["mmarco", "own"]
    assert table["groups"].tolist() == [30, 2]
    assert table["items"].tolist() == [60, 3]
    assert table["languages"].tolist() == ["de, en", "en, fr"]
    assert table["negatives"].tolist() == pytest.approx([1.0, 1 / 3])
    assert table["share"].tolist() == pytest.approx([30 / 32, 2 / 32])
    fr_only = td.mix_summary({"mine": own}, languages=["fr"])
    assert fr_only.loc[0, "name"] == "mine" and fr_only.loc[0, "groups"] == 1 and fr_only.loc[0, "share"] == 1.0
    with pytest.raises(ConfigError, match="not a ParallelDataset"):
        td.mix_summary([mm, "x"])
