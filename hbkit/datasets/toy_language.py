"""The toy languages: a deterministic generator shared by the text demo world and the image world.

This is TOY machinery. It writes the synthetic languages of :mod:`hbkit.datasets.demo_world`
(questions and answer sentences) and :mod:`hbkit.datasets.image_world` (image captions):
languages labelled with real ISO codes (``en``, ``ru``, ``ar`` ...), each with an invented
lexicon in the real language's script and its own word order; none of it is real English,
Russian or Arabic.

What it provides (pure Python, no state; everything random comes from :func:`seeded_rng`):

- A latent syllable inventory (12 consonants x 5 vowels = 60 syllables, ids ``0..59``) and
  :func:`render`, which writes a syllable sequence in one script with that script's own
  characters (so different scripts share no characters); :func:`render_year` writes an
  integer in the script's digits.
- :class:`Grammar` and the :data:`GRAMMARS` table: the word order, question construction,
  adposition side and punctuation of each language (:data:`DEMO_LANGUAGES`), and the
  cognate ending of the Latin-script languages (:data:`COGNATE_SHARE`: how often a concept
  gets a shared stem).
- :func:`seeded_rng` (independent, platform-stable random streams keyed by seed and labels)
  and :func:`random_word` (a random latent word).
- The argument checks both worlds use: :func:`check_size` and :func:`check_langs`.

Each world draws its streams under its own keys, so neither world's streams depend on the
other's; the same seed and arguments always give identical output.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Iterable, Sequence

from hbkit.errors import ConfigError, UnknownLanguageError
from hbkit.languages import check_language

__all__ = ["render", "render_year", "Grammar", "GRAMMARS", "DEMO_LANGUAGES", "DEFAULT_TRAIN_LANGUAGES", "CASED",
           "COGNATE_SHARE", "seeded_rng", "random_word", "check_size", "check_langs"]

# --------------------------------------------------------------------------- scripts

_N_CONS, _N_VOW = 12, 5
_N_SYL = _N_CONS * _N_VOW
_LATIN_C, _LATIN_V = "ktmnsrlpdbgh", "aeiou"

#: Script -> (consonant characters, vowel characters, vowels written before the consonant).
_SCRIPT_TABLES: dict[str, tuple[Sequence[str], Sequence[str], frozenset[int]]] = {
    "Latin": (_LATIN_C, _LATIN_V, frozenset()),
    "Cyrillic": ("ктмнсрлпдбгх", "аеиоу", frozenset()),
    "Greek": ("κτμνσρλπδβγχ", "αειου", frozenset()),
    # a e i o u as alef, alef maksura, yeh, oe, waw; p as peh (U+067E)
    "Arabic": (["\u0643", "\u062a", "\u0645", "\u0646", "\u0633", "\u0631", "\u0644", "\u067e", "\u062f",
                "\u0628", "\u063a", "\u0647"], ["\u0627", "\u0649", "\u064a", "\u06c6", "\u0648"], frozenset()),
    "Devanagari": ("कतमनसरलपदबगह", ["\u093e", "\u0947", "\u093f", "\u094b", "\u0941"], frozenset()),
    "Thai": ("กตมนสรลปดบคห", ["\u0e32", "\u0e40", "\u0e34", "\u0e42", "\u0e38"], frozenset({1, 3})),
}
#: Han renders each syllable with one transliteration character (k/t/m/n/s/r/l/p/d/b/g/h x a/e/i/o/u).
_HAN = ("卡凯基科库" "塔特提托图" "马梅米莫穆" "纳内尼诺努" "萨塞西索苏" "拉雷里罗鲁"
        "兰莱利洛卢" "帕佩皮波普" "达德迪多杜" "巴贝比博布" "加格吉戈古" "哈赫希霍胡")
#: Scripts with upper and lower case (a capital is written only in these).
CASED = frozenset({"Latin", "Cyrillic", "Greek"})
_DIGITS = {"Arabic": "٠١٢٣٤٥٦٧٨٩", "Devanagari": "०१२३४५६७८९"}  # others: ASCII digits


def render(syllables: Sequence[int], script: str, capital: bool = False) -> str:
    """Write a latent syllable sequence (ids ``0..59``) in ``script``.

    Each syllable becomes one Han character or a consonant + vowel pair of the script's
    characters (vowel first where the script writes it so). ``capital`` upper-cases the
    first character in the :data:`CASED` scripts only.
    """
    if script == "Han":
        return "".join(_HAN[s] for s in syllables)
    cons, vows, pre = _SCRIPT_TABLES[script]
    out = []
    for s in syllables:
        c, v = divmod(s, _N_VOW)
        out.append(vows[v] + cons[c] if v in pre else cons[c] + vows[v])
    word = "".join(out)
    return word[:1].upper() + word[1:] if capital and script in CASED else word


def render_year(year: int, script: str) -> str:
    """Write a non-negative integer (a year, a count) in decimal with ``script``'s digits.

    Arabic-Indic digits in Arabic, Devanagari digits in Devanagari, ASCII digits elsewhere.
    """
    digits = _DIGITS.get(script)
    return "".join(digits[int(d)] for d in str(year)) if digits else str(year)


# --------------------------------------------------------------------------- grammars


@dataclass(frozen=True)
class Grammar:
    """Word order of one toy language.

    Slots: S subject (name), V verb, O object (value with its adposition), A auxiliary,
    W question phrase, P question particle. ``decl`` / ``question`` are the slot orders of a
    statement and a question (space-separated slot letters); ``postpositions`` puts the
    adposition after its phrase; ``which_after_noun`` writes "city which" instead of
    "which city"; ``end`` / ``qend`` end a statement / a question; ``cognate_ending`` (the
    Latin-script languages only, else ``None``) is appended to a shared cognate stem.
    """

    decl: str
    question: str
    postpositions: bool = False
    which_after_noun: bool = False
    end: str = "."
    qend: str = "?"
    cognate_ending: str | None = None  # Latin-script languages only


#: language code -> its :class:`Grammar`.
GRAMMARS: dict[str, Grammar] = {
    "en": Grammar("S A V O", "W A S V", cognate_ending=""),
    "es": Grammar("S V O", "W V S", cognate_ending="o"),
    "de": Grammar("S A O V", "W A S V", cognate_ending="en"),
    "fr": Grammar("S V O", "W P S V", cognate_ending="e"),
    "tr": Grammar("S O V", "S W V P", postpositions=True, cognate_ending="i"),
    "vi": Grammar("S V O", "S V W", which_after_noun=True, cognate_ending=""),
    "ru": Grammar("S V O", "W S V"),
    "el": Grammar("S V O", "W V S", qend=";"),
    "ar": Grammar("V S O", "W V S", qend="؟"),
    "hi": Grammar("S O V A", "S W V A", postpositions=True, end="।"),
    "th": Grammar("S V O", "S V W P", which_after_noun=True),
    "zh": Grammar("S O V", "S W V", end="。", qend="？"),
}
#: Languages the demo world can render (a subset of :data:`hbkit.languages.LANGUAGES`).
DEMO_LANGUAGES: tuple[str, ...] = tuple(sorted(GRAMMARS))
#: The default training languages of both toy worlds.
DEFAULT_TRAIN_LANGUAGES: tuple[str, ...] = ("en", "es", "de", "ru", "ar", "hi")

#: Probability that a lexicon concept gets a cognate stem shared by the Latin-script languages.
COGNATE_SHARE = 0.4


# --------------------------------------------------------------------------- random streams


def seeded_rng(seed: int, *key: object) -> random.Random:
    """An independent, platform-stable random stream for ``(seed, *key)``."""
    digest = hashlib.sha256(repr((seed,) + key).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def random_word(rng: random.Random, lo: int, hi: int) -> tuple[int, ...]:
    """A random latent word: ``lo`` to ``hi`` (inclusive) syllable ids drawn from ``rng``."""
    return tuple(rng.randrange(_N_SYL) for _ in range(rng.randint(lo, hi)))


# --------------------------------------------------------------------------- checks


def check_size(name: str, value: object, lo: int = 1, hi: int | None = None) -> int:
    """``value`` if it is an int (not bool) in ``[lo, hi]`` (no upper bound when ``hi`` is None).

    Raises ConfigError naming ``name`` otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
        raise ConfigError(f"{name} must be an integer {bound}, got {value!r}.")
    return value


def check_langs(codes: Iterable[str] | None, default: Sequence[str], what: str) -> tuple[str, ...]:
    """``codes`` as a tuple of normalised, distinct :data:`DEMO_LANGUAGES` codes (``default`` if None).

    ``what`` names the argument in the error messages. Raises ConfigError for a bare string or
    a repeated code, UnknownLanguageError for a code that is unknown or has no toy grammar.
    """
    if codes is None:
        return tuple(default)
    if isinstance(codes, str):
        raise ConfigError(f"{what} must be a list of language codes such as ['en', 'ru'], got the string {codes!r}.")
    codes = tuple(check_language(code, where=what) for code in codes)
    for code in codes:
        if code not in GRAMMARS:
            raise UnknownLanguageError(f"Language {code!r} is not available in the demo world ({what}). "
                                       f"Use some of: {', '.join(DEMO_LANGUAGES)}.")
    if len(set(codes)) != len(codes):
        raise ConfigError(f"{what} lists a language twice: {list(codes)}. List each code once.")
    return codes
