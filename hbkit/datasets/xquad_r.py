"""XQuAD-R loader (LAReQA, Roy et al. 2020): questions vs. all answer sentences, 11 languages.

Files: ``<folder>/<lang>.json`` from https://github.com/google-research-datasets/lareqa
(folder ``xquad-r``). Each is SQuAD-format JSON whose paragraphs also carry
``sentences`` (authoritative) and ``sentence_breaks`` (not used: one Turkish paragraph
has breaks that do not match its sentences).

Construction (following LAReQA):
- queries: every question; ``qid = "<lang>:<id>"``, ``xid = id`` (the question id is
  shared by the translations of a question);
- candidates: every sentence of every paragraph; ``cid = "<lang>:<para>:<sent>"`` with
  the paragraph index counted over the whole file; ``text`` = the sentence,
  ``context`` = the paragraph;
- relevance: a sentence answers a question when the answer's ``answer_start`` falls in
  the sentence's span of the paragraph; its ``xids`` are the ids of those questions.

Sentence spans are found by locating each sentence in the paragraph in order. A
sentence that cannot be located (the Turkish paragraph holds a mis-encoded "1⁄2" that
differs between sentence and paragraph) is given the stretch of paragraph between its
located neighbours (split by length when several in a row fail); when the answer
falls in such an estimated stretch, a sentence of that stretch that contains the answer
text is preferred. Each sentence owns the paragraph from its start to the next
sentence's start, so every answer start maps to exactly one sentence. With this, every
question has exactly one answer sentence per language (11 in the pooled set).
"""
from __future__ import annotations

from bisect import bisect_right
import os
from pathlib import Path
from typing import Sequence

from hbkit.benchmark import Candidate, Query, RetrievalBenchmark
from hbkit.datasets.squad_json import read_squad_json
from hbkit.errors import DataError
from hbkit.languages import check_languages

#: The 11 XQuAD-R languages.
XQUAD_R_LANGUAGES: tuple[str, ...] = ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")

_HOW_TO_GET = ("Get the files from the LAReQA repository https://github.com/google-research-datasets/lareqa "
               "(folder xquad-r, one <lang>.json per language) and pass that folder.")

__all__ = ["XQUAD_R_LANGUAGES", "load_xquad_r", "sentence_spans", "answer_sentence"]


def sentence_spans(context: str, sentences: Sequence[str]) -> tuple[list[tuple[int, int]], list[bool]]:
    """Character spans [start, end) of ``sentences`` in ``context``, and which were located.

    Sentences are searched in order, each after the previous one's end. Unlocated runs
    share the stretch between their located neighbours in proportion to their lengths
    (their ``located`` flag is False).
    """
    n = len(sentences)
    found: list[tuple[int, int] | None] = []
    pos = 0
    for s in sentences:
        k = context.find(s, pos) if s else -1
        if k < 0:
            found.append(None)
        else:
            found.append((k, k + len(s)))
            pos = k + len(s)
    spans: list[tuple[int, int]] = []
    i = 0
    while i < n:
        if found[i] is not None:
            spans.append(found[i])  # type: ignore[arg-type]
            i += 1
            continue
        j = i
        while j < n and found[j] is None:
            j += 1
        lo = spans[-1][1] if spans else 0
        hi = found[j][0] if j < n else len(context)  # type: ignore[index]
        hi = max(hi, lo)
        weights = [len(sentences[t]) + 1 for t in range(i, j)]
        total = sum(weights)
        start = float(lo)
        for w in weights:
            end = start + (hi - lo) * w / total
            spans.append((int(round(start)), int(round(end))))
            start = end
        i = j
    return spans, [f is not None for f in found]


def answer_sentence(context: str, sentences: Sequence[str], answer_start: int, answer_text: str,
                    spans: tuple[list[tuple[int, int]], list[bool]] | None = None) -> int:
    """Index of the sentence holding an answer that starts at ``answer_start``.

    Each sentence owns [its start, next sentence's start); the first also owns anything
    before it. If that sentence's span is estimated (not located), a sentence of the
    same unlocated run that contains ``answer_text`` is preferred.
    """
    spans_, located = spans if spans is not None else sentence_spans(context, sentences)
    idx = max(0, bisect_right([start for start, _ in spans_], answer_start) - 1)
    if not located[idx] and answer_text and answer_text not in sentences[idx]:
        a = idx
        while a > 0 and not located[a - 1]:
            a -= 1
        b = idx
        while b + 1 < len(located) and not located[b + 1]:
            b += 1
        hits = [t for t in range(a, b + 1) if answer_text in sentences[t]]
        if len(hits) == 1:
            idx = hits[0]
    return idx


def _resolve_folder(path: str | os.PathLike) -> Path:
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(f"XQuAD-R folder not found: {folder}. {_HOW_TO_GET}")
    if not any(folder.glob("*.json")) and (folder / "xquad-r").is_dir():
        folder = folder / "xquad-r"
    return folder


def _read_file(file: Path) -> dict:
    return read_squad_json(file, "XQuAD-R file", _HOW_TO_GET)


def _load_language(file: Path, lang: str) -> tuple[list[Query], list[Candidate]]:
    data = _read_file(file)
    queries: list[Query] = []
    candidates: list[Candidate] = []
    para_index = 0
    try:
        for article in data["data"]:
            for para in article["paragraphs"]:
                context: str = para["context"]
                sentences: list[str] = list(para["sentences"])
                spans = sentence_spans(context, sentences)
                answered: list[list[str]] = [[] for _ in sentences]
                for qa in para["qas"]:
                    qid = str(qa["id"])
                    queries.append(Query(qid=f"{lang}:{qid}", xid=qid, lang=lang, text=qa["question"]))
                    for ans in qa["answers"][:1]:  # XQuAD has one answer per question
                        t = answer_sentence(context, sentences, int(ans["answer_start"]), ans["text"], spans)
                        if qid not in answered[t]:
                            answered[t].append(qid)
                for s_index, sent in enumerate(sentences):
                    candidates.append(Candidate(cid=f"{lang}:{para_index}:{s_index}", lang=lang, text=sent,
                                                context=context, xids=tuple(answered[s_index])))
                para_index += 1
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise DataError(f"XQuAD-R file {file} does not have the expected LAReQA structure "
                        f"(data/paragraphs/context/sentences/qas): {exc!r}. Re-download it: {_HOW_TO_GET}") from exc
    return queries, candidates


def load_xquad_r(path: str | os.PathLike, languages: Sequence[str] | None = None) -> RetrievalBenchmark:
    """Load XQuAD-R as a :class:`RetrievalBenchmark` named ``"xquad-r"``.

    Args:
        path: the folder holding ``<lang>.json`` (a folder containing ``xquad-r/`` works too).
        languages: subset of :data:`XQUAD_R_LANGUAGES` (default: all 11).

    Full data: 1190 questions per language, 13,014 pooled candidate sentences, 11
    relevant sentences per question in the pool (one per language).
    """
    if isinstance(languages, str):
        languages = [languages]
    langs = list(XQUAD_R_LANGUAGES) if languages is None else check_languages(
        languages, allowed=XQUAD_R_LANGUAGES, where="XQuAD-R")
    folder = _resolve_folder(path)
    queries: list[Query] = []
    candidates: list[Candidate] = []
    for lang in langs:
        q, c = _load_language(folder / f"{lang}.json", lang)
        queries.extend(q)
        candidates.extend(c)
    return RetrievalBenchmark("xquad-r", queries, candidates)
