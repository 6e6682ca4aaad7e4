"""A small rule-based multilingual sentence splitter (standard library ``re`` only).

Used to cut MLQA contexts into candidate sentences (:mod:`hbkit.datasets.mlqa_r`; MLQA
carries no sentence breaks and LAReQA's own splitter is unreleased) and SQuADShifts
paragraphs into positive and negative sentences (:mod:`hbkit.datasets.squadshifts`). No
package covers all seven MLQA languages and scripts; the rules are tuned to reproduce
LAReQA's MLQA-R sentence counts (the comparison is in :mod:`hbkit.datasets.mlqa_r`).
:data:`SENTENCE_SPLITTER` states the rules; :func:`split_sentences` gives character spans,
:func:`sentences` the strings.
"""
from __future__ import annotations

import re

from hbkit.languages import check_language

__all__ = ["SENTENCE_SPLITTER", "split_sentences", "sentences"]

SENTENCE_SPLITTER = """\
hbkit rule-based multilingual sentence splitter (hbkit.datasets.sentences.split_sentences), v1.
A sentence ends after a run of terminators  . ! ? … ؟ ۔ । ॥ 。 ！ ？ ｡  plus any closing
quotes or brackets, where the next sentence starts at the next non-space character, except:
- never before a lowercase letter (cased scripts);
- with no space after the terminator, only when the next character is a letter of a
  caseless script (Arabic, Devanagari, Han, ...) or the terminator is CJK (。！？) and the
  next character is not a digit; in Vietnamese also before an uppercase letter when the
  terminator follows a digit or a closing bracket/quote ("năm 2008.Tại");
- not after a known abbreviation (Dr. St. Inc. e.g. z. B. d. h. n. Chr. ...), a single
  uppercase letter (initials: "J. C. Bose"), a dotted acronym (U.S. S.H.I.E.L.D.),
  and in German not after a Roman numeral ("Wilhelm I.") or a day/ordinal number
  before a month or "Jahrhundert" or after an article/preposition ("am 25. Januar",
  "des 19. Jahrhunderts", "die 12. FIFA ...").
Whitespace between sentences belongs to neither sentence."""

_TERMINATORS = ".!?…؟۔।॥。！？｡"
_CJK_TERMINATORS = "。！？｡"
_CLOSERS = "\"'”’»)]}」』）›"
_BOUNDARY = re.compile("([" + re.escape(_TERMINATORS) + "]+)([" + re.escape(_CLOSERS) + r"]*)(\s*)")
_OPENERS = "([{\"“„«‚‘'"

_COMMON_ABBREVIATIONS = ("mr mrs ms dr prof st jr sr vs etc e.g i.e inc ltd co corp bros no nos vol vols p pp c ca "
                         "approx fig gen col lt sgt capt gov rev hon mt ft jan feb mar apr jun jul aug sep sept oct "
                         "nov dec est dept univ")
_ABBREVIATIONS: dict[str, frozenset[str]] = {
    lang: frozenset((_COMMON_ABBREVIATIONS + " " + extra).split()) for lang, extra in {
        "ar": "",
        "de": "engl ste chr nr bzw z.b d.h u.a usw vgl sog evtl inkl ggf geb gest jh jhd hl hrsg bd abs art str "
              "mio mrd",
        "en": "",
        "es": "sr sra srta dra etc ee.uu pág núm a.c d.c av",
        "hi": "",
        "vi": "tp ts ths gs pgs",
        "zh": "",
    }.items()
}
_COMMON = frozenset(_COMMON_ABBREVIATIONS.split())
_ROMAN = re.compile(r"[IVXLC]+")
_DE_ORDINAL_NEXT = re.compile(r"(Januar|Jänner|Februar|März|April|Mai|Juni|Juli|August|September|Oktober|"
                              r"November|Dezember|Jahrhundert\w*|Jahrtausend\w*|Jh)\b")
_DE_ORDINAL_PREV = frozenset("der die das des dem den am im vom zum zur beim ab bis seit um und oder bzw zwischen "
                             "ein eine einem einer eines ihres seines ihrem seinem ihrer seiner nach vor auf an in "
                             "zu mit".split())
_SHORT_ABBREVIATION_NEXT = re.compile(r"[^\W\d_]{1,4}\.")


def _cased(ch: str) -> bool:
    return ch.isalpha() and ch.upper() != ch.lower()


def _token_before(text: str, end: int, floor: int) -> tuple[str, int]:
    """The whitespace-delimited token ending at ``end`` (opening quotes/brackets stripped) and its start."""
    k = end
    while k > floor and not text[k - 1].isspace() and text[k - 1] not in _OPENERS:
        k -= 1
    return text[k:end], k


def _word_before(text: str, k: int) -> str:
    m = re.search(r"(\w+)\W*$", text[max(0, k - 40):k])
    return m.group(1) if m else ""


def _period_exception(text: str, tok: str, tok_start: int, next_pos: int, lang: str) -> bool:
    """True when a '.' after ``tok`` does not end a sentence (abbreviation, initial, ordinal...)."""
    low = tok.lower()
    abbreviations = _ABBREVIATIONS.get(lang, _COMMON)
    if low in abbreviations or low.rstrip(".") in abbreviations:
        return True
    if len(tok) == 1 and _cased(tok):
        if tok.isupper():  # an initial: "J. C. Bose", "Ulysses S. Grant"
            return True
        if _SHORT_ABBREVIATION_NEXT.match(text, next_pos):  # "z. B.", "d. h.", "n. Chr."
            return True
    if "." in tok and tok.replace(".", "").isalpha() and all(len(p) <= 2 for p in tok.split(".")):
        return True  # dotted acronym: "U.S", "e.g", "z.B", "S.H.I.E.L.D"
    if lang == "de":
        if _ROMAN.fullmatch(tok):  # "Wilhelm I.", "Friedrich III."
            return True
        if tok.isdigit() and len(tok) <= 3 and (_DE_ORDINAL_NEXT.match(text, next_pos)
                                                or _word_before(text, tok_start).lower() in _DE_ORDINAL_PREV):
            return True
    return False


def split_sentences(text: str, lang: str) -> list[tuple[int, int]]:
    """Character spans ``[start, end)`` of the sentences of ``text`` (see :data:`SENTENCE_SPLITTER`).

    Spans are in order, do not overlap, exclude the whitespace between sentences and
    cover every non-space character of ``text``. An empty or blank text has no sentence.
    """
    if lang not in _ABBREVIATIONS:
        lang = check_language(lang, where="the sentence splitter")
    n = len(text.rstrip())
    start = len(text) - len(text.lstrip())
    if start >= n:
        return []
    spans: list[tuple[int, int]] = []
    for m in _BOUNDARY.finditer(text, start, n):
        next_pos = m.end()
        if next_pos >= n:
            break
        nxt = text[next_pos]
        terms = m.group(1)
        spaced = bool(m.group(3))
        cjk = terms[-1] in _CJK_TERMINATORS
        if _cased(nxt) and nxt.islower():
            continue
        if not spaced:
            if cjk:
                if nxt.isdigit():
                    continue
            elif not (nxt.isalpha() and not _cased(nxt)):
                prev = text[m.start(1) - 1] if m.start(1) > 0 else ""
                if not (lang == "vi" and nxt.isupper() and (prev.isdigit() or prev in ")]\"”»")):
                    continue
        if terms[-1] == "." and not cjk:
            tok, tok_start = _token_before(text, m.start(1), start)
            if tok and _period_exception(text, tok, tok_start, next_pos, lang):
                continue
        spans.append((start, m.end(2)))
        start = next_pos
    spans.append((start, n))
    return spans


def sentences(text: str, lang: str) -> list[str]:
    """The sentences of ``text`` as strings (see :func:`split_sentences`)."""
    return [text[a:b] for a, b in split_sentences(text, lang)]
