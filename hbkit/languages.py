"""Language codes known to hbkit and their writing systems."""
from __future__ import annotations

from typing import Iterable

from hbkit.errors import UnknownLanguageError

#: ISO 639-1 code -> (English name, main writing system).
LANGUAGES: dict[str, tuple[str, str]] = {
    "ar": ("Arabic", "Arabic"),
    "bn": ("Bengali", "Bengali"),
    "cs": ("Czech", "Latin"),
    "de": ("German", "Latin"),
    "el": ("Greek", "Greek"),
    "en": ("English", "Latin"),
    "es": ("Spanish", "Latin"),
    "fa": ("Persian", "Arabic"),
    "fi": ("Finnish", "Latin"),
    "fr": ("French", "Latin"),
    "he": ("Hebrew", "Hebrew"),
    "hi": ("Hindi", "Devanagari"),
    "id": ("Indonesian", "Latin"),
    "it": ("Italian", "Latin"),
    "ja": ("Japanese", "Japanese"),
    "ko": ("Korean", "Hangul"),
    "pl": ("Polish", "Latin"),
    "pt": ("Portuguese", "Latin"),
    "ru": ("Russian", "Cyrillic"),
    "sw": ("Swahili", "Latin"),
    "te": ("Telugu", "Telugu"),
    "th": ("Thai", "Thai"),
    "tr": ("Turkish", "Latin"),
    "uk": ("Ukrainian", "Cyrillic"),
    "vi": ("Vietnamese", "Latin"),
    "yo": ("Yoruba", "Latin"),
    "zh": ("Chinese", "Han"),
}


def check_language(code: str, allowed: Iterable[str] | None = None, where: str = "") -> str:
    """Return ``code`` if it is a known language (and in ``allowed`` when given).

    Raises :class:`UnknownLanguageError` naming the code and the valid choices.
    """
    choices = sorted(LANGUAGES) if allowed is None else sorted(set(allowed))
    if not isinstance(code, str) or code not in LANGUAGES or code not in choices:
        place = f" in {where}" if where else ""
        raise UnknownLanguageError(
            f"Unknown language code {code!r}{place}. Use one of: {', '.join(choices)} "
            "(ISO 639-1, lower case)."
        )
    return code


def check_languages(codes: Iterable[str], allowed: Iterable[str] | None = None, where: str = "") -> list[str]:
    """Validate a list of language codes (non-empty, no duplicates)."""
    codes = list(codes)
    if not codes:
        raise UnknownLanguageError(f"No languages given{(' for ' + where) if where else ''}: pass at least one code.")
    if len(set(codes)) != len(codes):
        raise UnknownLanguageError(f"Duplicate language codes {codes}{(' in ' + where) if where else ''}: list each once.")
    allowed = list(allowed) if allowed is not None else None
    return [check_language(c, allowed, where) for c in codes]


def script_of(code: str) -> str:
    """The main writing system of a language, e.g. ``script_of('ru') == 'Cyrillic'``."""
    return LANGUAGES[check_language(code)][1]
