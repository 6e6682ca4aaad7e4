"""Language codes known to hbkit, their writing systems, and normalisation of user input.

hbkit stores one code per language: ISO 639-1 (two letters, lower case) where one exists,
else ISO 639-3 (``fil``, ``quz``). :func:`check_language` also accepts, and turns into
that code, the ISO 639-3 / 639-2 codes of every known language (``ara`` -> ``ar``,
``deu`` and ``ger`` -> ``de``, ``zho``, ``chi`` and ``cmn`` -> ``zh``), the deprecated
ISO 639-1 codes ``iw`` (Hebrew) and ``in`` (Indonesian), and any of these in upper or
mixed case (``EN``, ``Deu``). Codes that could mean several hbkit languages, and region
or script tags (``pt-BR``, ``zh-Hant``), are not guessed: the error suggests the closest
codes instead.
"""
from __future__ import annotations

import difflib
import re
from typing import Iterable

from hbkit.errors import UnknownLanguageError

#: hbkit code -> (English name, main writing system).
LANGUAGES: dict[str, tuple[str, str]] = {
    "ar": ("Arabic", "Arabic"),
    "bn": ("Bengali", "Bengali"),
    "cs": ("Czech", "Latin"),
    "da": ("Danish", "Latin"),
    "de": ("German", "Latin"),
    "el": ("Greek", "Greek"),
    "en": ("English", "Latin"),
    "es": ("Spanish", "Latin"),
    "fa": ("Persian", "Arabic"),
    "fi": ("Finnish", "Latin"),
    "fil": ("Filipino", "Latin"),
    "fr": ("French", "Latin"),
    "he": ("Hebrew", "Hebrew"),
    "hi": ("Hindi", "Devanagari"),
    "hr": ("Croatian", "Latin"),
    "hu": ("Hungarian", "Latin"),
    "id": ("Indonesian", "Latin"),
    "it": ("Italian", "Latin"),
    "ja": ("Japanese", "Japanese"),
    "ko": ("Korean", "Hangul"),
    "mi": ("Maori", "Latin"),
    "nl": ("Dutch", "Latin"),
    "no": ("Norwegian", "Latin"),
    "pl": ("Polish", "Latin"),
    "pt": ("Portuguese", "Latin"),
    "quz": ("Cusco Quechua", "Latin"),
    "ro": ("Romanian", "Latin"),
    "ru": ("Russian", "Cyrillic"),
    "sv": ("Swedish", "Latin"),
    "sw": ("Swahili", "Latin"),
    "te": ("Telugu", "Telugu"),
    "th": ("Thai", "Thai"),
    "tr": ("Turkish", "Latin"),
    "uk": ("Ukrainian", "Cyrillic"),
    "vi": ("Vietnamese", "Latin"),
    "yo": ("Yoruba", "Latin"),
    "zh": ("Chinese", "Han"),
}

#: Other codes accepted for a known language -> its hbkit code: ISO 639-3 (the macrolanguage
#: and, where hbkit's data means it, the main individual language), ISO 639-2/B, and the
#: deprecated ISO 639-1 codes ``iw`` and ``in``.
ALIASES: dict[str, str] = {
    "ara": "ar", "arb": "ar",
    "ben": "bn",
    "ces": "cs", "cze": "cs",
    "dan": "da",
    "deu": "de", "ger": "de",
    "ell": "el", "gre": "el",
    "eng": "en",
    "spa": "es",
    "fas": "fa", "per": "fa", "pes": "fa",
    "fin": "fi",
    "fra": "fr", "fre": "fr",
    "heb": "he", "iw": "he",
    "hin": "hi",
    "hrv": "hr",
    "hun": "hu",
    "ind": "id", "in": "id",
    "ita": "it",
    "jpn": "ja",
    "kor": "ko",
    "mri": "mi", "mao": "mi",
    "nld": "nl", "dut": "nl",
    "nor": "no",
    "pol": "pl",
    "por": "pt",
    "ron": "ro", "rum": "ro",
    "rus": "ru",
    "swe": "sv",
    "swa": "sw", "swh": "sw",
    "tel": "te",
    "tha": "th",
    "tur": "tr",
    "ukr": "uk",
    "vie": "vi",
    "yor": "yo",
    "zho": "zh", "chi": "zh", "cmn": "zh",
}

#: Country codes often typed for a language (suggested, never mapped): "jp" is Japan, not a language.
_COUNTRY_HINTS: dict[str, str] = {
    "jp": "ja", "dk": "da", "se": "sv", "gr": "el", "cn": "zh", "tw": "zh", "kr": "ko", "ua": "uk", "cz": "cs",
    "il": "he", "ir": "fa", "vn": "vi", "br": "pt", "us": "en", "gb": "en",
}

__all__ = ["LANGUAGES", "ALIASES", "normalize_language", "suggest_languages", "check_language",
           "check_languages", "script_of"]


def normalize_language(code: str) -> str | None:
    """The hbkit code for ``code`` (a known code or alias, any case, surrounding spaces ignored), else None."""
    if not isinstance(code, str):
        return None
    key = code.strip().lower()
    if key in LANGUAGES:
        return key
    return ALIASES.get(key)


def suggest_languages(code: str, choices: Iterable[str] | None = None, n: int = 3) -> list[str]:
    """Up to ``n`` codes of ``choices`` (default: all known) closest to an unknown ``code``.

    First the language of a tag's primary subtag (``pt-BR`` -> ``pt``) and of a country
    code (``jp`` -> ``ja``), then :mod:`difflib` matches against the codes, their aliases
    and their English names (``"german"`` -> ``de``).
    """
    if not isinstance(code, str) or not code.strip():
        return []
    allowed = list(LANGUAGES) if choices is None else [c for c in choices]
    terms: dict[str, str] = {}
    for c in allowed:
        terms.setdefault(c.lower(), c)
        if c in LANGUAGES:
            terms.setdefault(LANGUAGES[c][0].lower(), c)
    for alias, c in ALIASES.items():
        if c in allowed:
            terms.setdefault(alias, c)
    key = code.strip().lower()
    out: list[str] = []
    for first in (normalize_language(re.split(r"[-_]", key)[0]), _COUNTRY_HINTS.get(key)):
        if first is not None and first in allowed and first not in out:
            out.append(first)  # "pt-BR" -> "pt", "jp" -> "ja"
    cutoff = 0.5 if len(key) <= 3 else 0.6
    for term in difflib.get_close_matches(key, list(terms), n=4 * n, cutoff=cutoff):
        if terms[term] not in out:
            out.append(terms[term])
    return out[:n]


def _describe(codes: Iterable[str]) -> str:
    return ", ".join(f"{c!r} ({LANGUAGES[c][0]})" if c in LANGUAGES else repr(c) for c in codes)


def check_language(code: str, allowed: Iterable[str] | None = None, where: str = "") -> str:
    """The normalised hbkit code of ``code`` (see the module doc), checked against ``allowed`` when given.

    ``check_language("DEU") == "de"``. Callers that store a code must store the returned
    value. Raises :class:`UnknownLanguageError` naming the code and suggesting the
    closest valid codes.
    """
    place = f" in {where}" if where else ""
    norm = normalize_language(code)
    choices = None if allowed is None else sorted({normalize_language(a) or a for a in allowed})
    if norm is None:
        hint = suggest_languages(code, choices)
        guess = f" Did you mean {_describe(hint)}?" if hint else ""
        if choices is not None:
            listing = f" Use one of: {', '.join(choices)}."
        elif hint:
            listing = f" All {len(LANGUAGES)} known codes are in hbkit.languages.LANGUAGES."
        else:
            listing = f" Use one of: {', '.join(sorted(LANGUAGES))}."
        raise UnknownLanguageError(f"Unknown language code {code!r}{place}.{guess}{listing} Codes are ISO 639-1 "
                                   "(ISO 639-3 is accepted too: 'deu' -> 'de').")
    if choices is not None and norm not in choices:
        seen = f" ({LANGUAGES[norm][0]}{', given as ' + repr(code) if code != norm else ''})"
        raise UnknownLanguageError(f"Unknown language code {code!r}{place}: {norm!r}{seen} is not available there. "
                                   f"Use one of: {', '.join(choices)}.")
    return norm


def check_languages(codes: Iterable[str], allowed: Iterable[str] | None = None, where: str = "") -> list[str]:
    """Validate and normalise a list of language codes (non-empty, no duplicates after normalising)."""
    codes = list(codes)
    suffix = f" in {where}" if where else ""
    if not codes:
        raise UnknownLanguageError(f"No languages given{(' for ' + where) if where else ''}: pass at least one code.")
    allowed = list(allowed) if allowed is not None else None
    out = [check_language(c, allowed, where) for c in codes]
    if len(set(out)) != len(out):
        dup = sorted({c for c in out if out.count(c) > 1})
        same = "" if out == codes else f" (normalised: {out})"
        raise UnknownLanguageError(f"Duplicate language codes {codes}{same}{suffix}: {dup} given more than once. "
                                   "List each language once.")
    return out


def script_of(code: str) -> str:
    """The main writing system of a language, e.g. ``script_of('ru') == 'Cyrillic'``."""
    return LANGUAGES[check_language(code)][1]
