"""hbkit.languages: normalisation of ISO 639-3 / 639-2 codes and case, suggestions for unknown codes."""
from __future__ import annotations

import pytest

from hbkit.errors import UnknownLanguageError
from hbkit.languages import (ALIASES, LANGUAGES, check_language, check_languages, normalize_language, script_of,
                             suggest_languages)

#: ISO 639-3 code of every known language (the macrolanguage code where there is one).
ISO_639_3 = {
    "ar": "ara", "bn": "ben", "cs": "ces", "da": "dan", "de": "deu", "el": "ell", "en": "eng", "es": "spa",
    "fa": "fas", "fi": "fin", "fil": "fil", "fr": "fra", "he": "heb", "hi": "hin", "hr": "hrv", "hu": "hun",
    "id": "ind", "it": "ita", "ja": "jpn", "ko": "kor", "mi": "mri", "nl": "nld", "no": "nor", "pl": "pol",
    "pt": "por", "quz": "quz", "ro": "ron", "ru": "rus", "sv": "swe", "sw": "swa", "te": "tel", "th": "tha",
    "tr": "tur", "uk": "ukr", "vi": "vie", "yo": "yor", "zh": "zho",
}


def test_every_known_language_has_its_iso_639_3_code():
    assert set(ISO_639_3) == set(LANGUAGES)
    for code, three in ISO_639_3.items():
        assert check_language(three) == code
        assert check_language(three.upper()) == code
        assert check_language(code.upper()) == code
        assert check_language(f" {code.title()} ") == code


def test_iso_639_2b_individual_and_deprecated_codes():
    expected = {"ger": "de", "chi": "zh", "cmn": "zh", "fre": "fr", "cze": "cs", "gre": "el", "per": "fa",
                "pes": "fa", "dut": "nl", "rum": "ro", "mao": "mi", "arb": "ar", "swh": "sw", "iw": "he", "in": "id"}
    for alias, code in expected.items():
        assert check_language(alias) == code
    assert all(code in LANGUAGES and alias not in LANGUAGES for alias, code in ALIASES.items())
    assert normalize_language("pt-BR") is None and normalize_language(None) is None  # tags are not guessed
    assert script_of("RUS") == "Cyrillic" and script_of("jpn") == "Japanese"


def test_unknown_codes_get_the_closest_suggestions():
    with pytest.raises(UnknownLanguageError) as err:
        check_language("german", where="my file, row 3")
    msg = str(err.value)
    assert msg.startswith("Unknown language code 'german' in my file, row 3. Did you mean 'de' (German)")
    assert "Use one of" not in msg  # the suggestion replaces the list of all codes
    assert suggest_languages("jp") == ["ja", "pt", "pl"]  # a country code
    assert suggest_languages("pt-BR") == ["pt"] and suggest_languages("zh_Hant") == ["zh"]
    assert suggest_languages("en-US")[0] == "en" and suggest_languages("dk")[0] == "da"
    with pytest.raises(UnknownLanguageError, match=r"'zh-TW'\. Did you mean 'zh' \(Chinese\)"):
        check_language("zh-TW")
    with pytest.raises(UnknownLanguageError, match=r"Unknown language code 'xx'\. Use one of: ar, bn, cs, da, de"):
        check_language("xx")  # nothing close: the list


def test_allowed_languages():
    assert check_language("DEU", allowed=["en", "de"]) == "de"
    with pytest.raises(UnknownLanguageError, match=r"'ell' in mMARCO: 'el' \(Greek, given as 'ell'\) is not "
                                                   r"available there\. Use one of: de, en\."):
        check_language("ell", allowed=["en", "de"], where="mMARCO")
    with pytest.raises(UnknownLanguageError, match=r"'deutch'\. Did you mean 'de' \(German\)\? Use one of: de, en"):
        check_language("deutch", allowed=["en", "de"])


def test_check_languages_normalises_and_refuses_duplicates():
    assert check_languages(["EN", "deu", "zh"]) == ["en", "de", "zh"]
    with pytest.raises(UnknownLanguageError, match=r"Duplicate language codes \['de', 'ger'\] \(normalised: "
                                                   r"\['de', 'de'\]\) in training: \['de'\] given more than once"):
        check_languages(["de", "ger"], where="training")
    with pytest.raises(UnknownLanguageError, match="No languages given"):
        check_languages([])
