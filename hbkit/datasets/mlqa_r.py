"""MLQA-R builder (LAReQA, Roy et al. 2020): MLQA dev questions vs. all context sentences.

MLQA-R is built from the MLQA dev set (https://github.com/facebookresearch/MLQA, file
``MLQA_V1/dev/dev-context-{l}-question-{l}.json`` for l in ar de en es hi vi zh,
SQuAD format) with the construction of XQuAD-R (:mod:`hbkit.datasets.xquad_r`):

- queries: every question of the language; ``qid = "<lang>:<id>"``, ``xid = id``. MLQA
  gives parallel questions the same ``id`` in every language, so all questions of the
  dev file are used (LAReQA: ar 517, de 512, en 1148, es 500, hi 507, vi 511, zh 504);
- candidates: every sentence of every distinct context paragraph of the language, in
  file order, without merging identical sentences (LAReQA's counts include repeats):
  ``cid = "<lang>:<paragraph>:<sentence>"``, ``text`` = the sentence, ``context`` = the
  paragraph;
- relevance: a sentence answers a question when the answer's ``answer_start`` falls in
  the sentence (each sentence owns the paragraph from its start up to the next
  sentence's start, so an answer that runs over a sentence break belongs to the
  sentence where it starts). Its ``xids`` hold the ids of those questions, so in the
  pooled benchmark a question's relevant set is its answer sentence in every language
  whose dev file has that id (2–4 in the full 7-language pool).

Sentence splitting (:mod:`hbkit.datasets.sentences`: :data:`SENTENCE_SPLITTER`,
:func:`split_sentences`, re-exported here): MLQA contexts carry no sentence breaks, and
LAReQA annotated them with an unreleased splitter. hbkit uses its own small rule-based
splitter (standard library ``re`` only, no package covers all seven languages and
scripts), tuned to reproduce LAReQA's sentence counts. Compared
with the sentence breaks LAReQA released for MLQA-R (historical revision of
github.com/google-research-datasets/lareqa, folder ``mlqa-dev-r``), the candidate counts
per language are:

====  ======  =====  ========
lang  LAReQA  hbkit  diff
====  ======  =====  ========
ar     2545   2538   -0.28 %
de     2362   2345   -0.72 %
en     6264   6226   -0.61 %
es     1787   1770   -0.95 %
hi     2426   2405   -0.87 %
vi     2828   2798   -1.06 %
zh     2322   2315   -0.30 %
====  ======  =====  ========

97–99 % of the breaks coincide, and the answer sentence of a question is the same
sentence as LAReQA's for 96–99.6 % of the questions (ar 98.3 %, de 98.8 %, en 98.3 %,
es 96.2 %, hi 99.6 %, vi 96.9 %, zh 98.4 %). The remaining differences come from
LAReQA's splitter being inconsistent in ways a rule set cannot follow without
overfitting. It sometimes splits after "Inc." or "Dr." or before a lowercase word, splits
Vietnamese text after abbreviations, never splits Chinese text before a digit, and
splits Arabic "ق.م" ("BC"). Some of its Chinese and Arabic break offsets also land a
character or two away from the punctuation. hbkit follows it where it is consistent
(no break without a following space in Latin-script text, "aus.Der"; no break before a
digit right after a CJK terminator). Model scores on hbkit's MLQA-R are therefore close
to, but not exactly, those computed on LAReQA's released files.
"""
from __future__ import annotations

from bisect import bisect_right
import os
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple, Sequence

from hbkit.benchmark import Candidate, Query, RetrievalBenchmark
from hbkit.datasets.sentences import SENTENCE_SPLITTER, sentences, split_sentences
from hbkit.datasets.squad_json import read_squad_json
from hbkit.errors import DataError, UnknownLanguageError
from hbkit.languages import check_language, check_languages

#: The 7 MLQA-R languages.
MLQA_R_LANGUAGES: tuple[str, ...] = ("ar", "de", "en", "es", "hi", "vi", "zh")

#: Official MLQA archive (75,719,050 bytes; dev files under ``MLQA_V1/dev/``).
MLQA_URL = "https://dl.fbaipublicfiles.com/MLQA/MLQA_V1.zip"
#: sha256 of :data:`MLQA_URL` (as recorded for this URL in the ``datasets`` MLQA loading script's metadata).
MLQA_SHA256 = "246e8089933d13007fe80684d5c5c0713d6834cf8b3b4a0ec7c66f0a0d2baac8"

#: LAReQA's MLQA-R statistics: questions and candidate sentences per language.
LAREQA_QUESTIONS: dict[str, int] = {"ar": 517, "de": 512, "en": 1148, "es": 500, "hi": 507, "vi": 511, "zh": 504}
LAREQA_CANDIDATES: dict[str, int] = {"ar": 2545, "de": 2362, "en": 6264, "es": 1787, "hi": 2426, "vi": 2828,
                                     "zh": 2322}

__all__ = ["MLQA_R_LANGUAGES", "MLQA_URL", "MLQA_SHA256", "LAREQA_QUESTIONS", "LAREQA_CANDIDATES",
           "SENTENCE_SPLITTER", "MLQARecord", "split_sentences", "sentences", "read_mlqa_squad_json", "read_mlqa_arrow",
           "build_mlqa_r", "load_mlqa_r", "find_mlqa_dev_files"]

_EXTRACTED = "MLQA_V1.extracted"  # where load_mlqa_r(download=True) unpacks the archive
_HOW_TO_GET = (f"Get MLQA from https://github.com/facebookresearch/MLQA ({MLQA_URL}), unzip it and pass the "
               "MLQA_V1 folder (or call load_mlqa_r(download=True)).")


class MLQARecord(NamedTuple):
    """One MLQA question: id (shared by its translations), text, paragraph and answers."""

    qid: str
    question: str
    context: str
    answers: tuple[tuple[str, int], ...]  # (answer text, answer_start in context)


# --------------------------------------------------------------------------- readers

def _answer_pairs(raw, where: str) -> tuple[tuple[str, int], ...]:
    """Answers as (text, start) from SQuAD's list of dicts or datasets' dict of lists."""
    if isinstance(raw, Mapping):
        texts, starts = raw.get("text"), raw.get("answer_start")
        if texts is None or starts is None or len(texts) != len(starts):
            raise DataError(f"{where}: 'answers' must hold equally long 'text' and 'answer_start' lists. "
                            f"{_HOW_TO_GET}")
        return tuple((str(t), int(s)) for t, s in zip(texts, starts))
    return tuple((str(a["text"]), int(a["answer_start"])) for a in raw)


def read_mlqa_squad_json(path: str | os.PathLike, lang: str) -> list[MLQARecord]:
    """Read an MLQA file in SQuAD format (e.g. ``dev-context-ar-question-ar.json``).

    Returns one :class:`MLQARecord` per question, in file order.
    """
    check_language(lang, MLQA_R_LANGUAGES, where="MLQA-R")
    file = Path(path).expanduser()
    data = read_squad_json(file, "MLQA file", _HOW_TO_GET)
    records: list[MLQARecord] = []
    try:
        for article in data["data"]:
            for para in article["paragraphs"]:
                context = str(para["context"])
                for qa in para["qas"]:
                    records.append(MLQARecord(str(qa["id"]), str(qa["question"]), context,
                                              _answer_pairs(qa["answers"], f"MLQA file {file}")))
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"MLQA file {file} does not have the SQuAD structure data/paragraphs/context/qas/"
                        f"(id, question, answers): {exc!r}. {_HOW_TO_GET}") from exc
    if not records:
        raise DataError(f"MLQA file {file} holds no questions. {_HOW_TO_GET}")
    return records


def _arrow_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(path.glob("*.arrow"))
        if files:
            return files
        raise DataError(f"No .arrow file in {path}. Pass the folder written by datasets' save_to_disk (it holds "
                        "data-00000-of-0000N.arrow) or one .arrow file.")
    raise DataError(f"MLQA Arrow file or folder not found: {path}. Pass the folder written by datasets' "
                    "save_to_disk or one .arrow file.")


def _read_arrow_table(file: Path):
    import pyarrow as pa

    try:
        with pa.memory_map(str(file)) as source:
            try:
                return pa.ipc.open_stream(source).read_all()
            except pa.ArrowInvalid:
                source.seek(0)
                return pa.ipc.open_file(source).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{file} is not an Arrow IPC stream or file ({exc}). Pass a Hugging Face datasets "
                        "Arrow file (save_to_disk output) or use read_mlqa_squad_json for MLQA's JSON files.") from exc


def read_mlqa_arrow(path: str | os.PathLike, lang: str) -> list[MLQARecord]:
    """Read MLQA questions from a Hugging Face ``datasets`` Arrow export.

    ``path`` is a ``save_to_disk`` folder (its ``*.arrow`` shards are read in name order)
    or one ``.arrow`` file, with the columns of the ``mlqa`` dataset: ``id``,
    ``question``, ``context`` and ``answers`` (``{"text": [...], "answer_start": [...]}``).
    Returns one :class:`MLQARecord` per row, in file order.
    """
    check_language(lang, MLQA_R_LANGUAGES, where="MLQA-R")
    records: list[MLQARecord] = []
    for file in _arrow_files(Path(path).expanduser()):
        table = _read_arrow_table(file)
        missing = {"id", "question", "context", "answers"} - set(table.column_names)
        if missing:
            raise DataError(f"{file} lacks the column(s) {sorted(missing)} (has {table.column_names}); MLQA-R "
                            "needs id, question, context and answers with answer_start. Export the 'mlqa' dataset "
                            "(e.g. config mlqa.de.de) or use the official JSON files. " + _HOW_TO_GET)
        columns = {name: table.column(name).to_pylist() for name in ("id", "question", "context", "answers")}
        try:
            for qid, question, context, answers in zip(columns["id"], columns["question"], columns["context"],
                                                       columns["answers"]):
                records.append(MLQARecord(str(qid), str(question), str(context),
                                          _answer_pairs(answers, f"MLQA Arrow file {file}")))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{file}: unexpected 'answers' column ({exc!r}); it must hold text and answer_start. "
                            + _HOW_TO_GET) from exc
    if not records:
        raise DataError(f"{path} holds no MLQA questions. " + _HOW_TO_GET)
    return records


def _read_source(source, lang: str) -> list[MLQARecord]:
    if isinstance(source, (str, os.PathLike)):
        p = Path(source).expanduser()
        if p.is_file() and p.suffix.lower() == ".json":
            return read_mlqa_squad_json(p, lang)
        if p.is_dir() or p.suffix.lower() == ".arrow":
            return read_mlqa_arrow(p, lang)
        raise DataError(f"MLQA source for {lang!r} not found or not recognised: {p}. Pass a SQuAD-format .json "
                        f"file, a datasets Arrow folder/file, or a list of MLQARecord. {_HOW_TO_GET}")
    try:
        return [r if isinstance(r, MLQARecord) else MLQARecord(str(r[0]), str(r[1]), str(r[2]),
                                                                tuple((str(t), int(s)) for t, s in r[3]))
                for r in source]
    except (TypeError, ValueError, IndexError) as exc:
        raise DataError(f"MLQA records for {lang!r} must be (question_id, question, context, [(answer_text, "
                        f"answer_start), ...]) tuples: {exc!r}.") from exc


# --------------------------------------------------------------------------- builder

def _language_part(records: Sequence[MLQARecord], lang: str) -> tuple[list[Query], list[Candidate]]:
    queries: list[Query] = []
    seen_ids: set[str] = set()
    paragraphs: dict[str, list[str]] = {}  # context -> ids of its questions (first-appearance order)
    for rec in records:
        if rec.qid in seen_ids:
            raise DataError(f"MLQA {lang}: question id {rec.qid!r} occurs twice; ids must be unique within a "
                            "language (they link a question to its translations). Check the source file.")
        seen_ids.add(rec.qid)
        queries.append(Query(qid=f"{lang}:{rec.qid}", xid=rec.qid, lang=lang, text=rec.question))
        paragraphs.setdefault(rec.context, []).append(rec.qid)
    by_id = {rec.qid: rec for rec in records}
    candidates: list[Candidate] = []
    for p_index, (context, qids) in enumerate(paragraphs.items()):
        spans = split_sentences(context, lang)
        answered: list[list[str]] = [[] for _ in spans]
        for qid in qids:
            rec = by_id[qid]
            if not rec.answers:
                raise DataError(f"MLQA {lang}: question {qid!r} has no answer; every MLQA dev question has one. "
                                "Check the source file.")
            for text, start in rec.answers:
                if not 0 <= start < len(context):
                    raise DataError(f"MLQA {lang}: question {qid!r} has answer_start {start} outside its context "
                                    f"({len(context)} characters). The source file is damaged: re-download it.")
                idx = max(0, bisect_right([a for a, _ in spans], start) - 1)  # the sentence the answer starts in
                if qid not in answered[idx]:
                    answered[idx].append(qid)
        for s_index, (a, b) in enumerate(spans):
            candidates.append(Candidate(cid=f"{lang}:{p_index}:{s_index}", lang=lang, text=context[a:b],
                                        context=context, xids=tuple(answered[s_index])))
    return queries, candidates


def build_mlqa_r(sources: Mapping[str, str | os.PathLike | Iterable], languages: Sequence[str] | None = None,
                 ) -> RetrievalBenchmark:
    """Build MLQA-R as a :class:`RetrievalBenchmark` named ``"mlqa-r"``.

    Args:
        sources: per language, a SQuAD-format ``.json`` file, a ``datasets`` Arrow folder
            or file, or a list of :class:`MLQARecord` / ``(id, question, context,
            [(answer_text, answer_start), ...])`` tuples.
        languages: the languages to include (default: all keys of ``sources``, in
            :data:`MLQA_R_LANGUAGES` order).
    """
    if not sources:
        raise DataError("build_mlqa_r got no sources: pass {language: path or records}, e.g. "
                        "{'ar': '.../dev-context-ar-question-ar.json'}.")
    normalised = {check_language(lang, MLQA_R_LANGUAGES, where="MLQA-R sources"): lang for lang in sources}
    if len(normalised) != len(sources):
        raise UnknownLanguageError(f"MLQA-R sources name one language twice ({sorted(sources)}, e.g. 'de' and "
                                   "'deu'): give one source per language.")
    sources = {code: sources[given] for code, given in normalised.items()}
    if isinstance(languages, str):
        languages = [languages]
    if languages is None:
        langs = [lang for lang in MLQA_R_LANGUAGES if lang in sources]
    else:
        langs = check_languages(languages, allowed=MLQA_R_LANGUAGES, where="MLQA-R")
        absent = [lang for lang in langs if lang not in sources]
        if absent:
            raise UnknownLanguageError(f"MLQA-R: no source for {absent}; sources are given for "
                                       f"{sorted(sources)}. Add them to sources or drop them from languages.")
    queries: list[Query] = []
    candidates: list[Candidate] = []
    for lang in langs:
        q, c = _language_part(_read_source(sources[lang], lang), lang)
        queries.extend(q)
        candidates.extend(c)
    return RetrievalBenchmark("mlqa-r", queries, candidates)


def find_mlqa_dev_files(root: str | os.PathLike) -> dict[str, Path]:
    """The MLQA dev files under ``root``: ``{lang: path}`` for ``[MLQA-]dev-context-{l}-question-{l}.json``.

    ``root`` may be the MLQA_V1 folder, its ``dev`` folder, or a folder above MLQA_V1.
    """
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise DataError(f"MLQA folder not found: {folder}. {_HOW_TO_GET}")
    found: dict[str, Path] = {}
    for lang in MLQA_R_LANGUAGES:
        names = (f"dev-context-{lang}-question-{lang}.json", f"MLQA-dev-context-{lang}-question-{lang}.json")
        for sub in (folder, folder / "dev", folder / "MLQA_V1" / "dev", folder / _EXTRACTED / "MLQA_V1" / "dev"):
            hits = [sub / n for n in names if (sub / n).is_file()]
            if hits:
                found[lang] = hits[0]
                break
    return found


def load_mlqa_r(root: str | os.PathLike | None = None, languages: Sequence[str] | None = None,
                download: bool = False) -> RetrievalBenchmark:
    """Load MLQA-R from the official MLQA dev files.

    Args:
        root: a folder holding ``dev-context-{l}-question-{l}.json`` (MLQA_V1, its ``dev``
            folder or a folder above). Default: the hbkit cache (``$HBKIT_CACHE`` or
            ``~/.cache/hbkit``) under ``mlqa/``.
        languages: subset of :data:`MLQA_R_LANGUAGES` (default: all 7).
        download: if the files are not under ``root``, fetch :data:`MLQA_URL` with
            :func:`hbkit.datasets.download.download` (resumable, checked against
            :data:`MLQA_SHA256`) and unpack it there.

    Raises:
        UnknownLanguageError: a language that is not an MLQA-R language.
        DataError: a requested language has no dev file (the message lists those found).
    """
    from hbkit.datasets import download as dl

    if isinstance(languages, str):
        languages = [languages]
    langs = list(MLQA_R_LANGUAGES) if languages is None else check_languages(
        languages, allowed=MLQA_R_LANGUAGES, where="MLQA-R")
    folder = Path(root).expanduser() if root is not None else dl.default_cache_dir() / "mlqa"
    found = find_mlqa_dev_files(folder) if folder.is_dir() else {}
    missing = [lang for lang in langs if lang not in found]
    if missing and download:
        archive = dl.download(MLQA_URL, folder, sha256=MLQA_SHA256)
        dl.extract_zip(archive, folder / _EXTRACTED)
        found = find_mlqa_dev_files(folder)
        missing = [lang for lang in langs if lang not in found]
    if missing:
        have = ", ".join(sorted(found)) or "none"
        hint = ("" if download else " Pass download=True to fetch the official archive, or") + \
            " pass root= the MLQA_V1 folder that holds dev/dev-context-<l>-question-<l>.json."
        raise DataError(f"MLQA-R: no dev file for {missing} under {folder} (found languages: {have}).{hint} "
                        f"{_HOW_TO_GET}")
    return build_mlqa_r({lang: found[lang] for lang in langs}, langs)
