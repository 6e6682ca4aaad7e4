"""The embedded demo world: determinism, scripts, parallel structure, benchmark relevance, errors."""
from __future__ import annotations

import itertools
import unicodedata

import pytest

from hbkit.datasets.demo_world import ATTRIBUTES, DEMO_LANGUAGES, make_demo_world
from hbkit.errors import ConfigError, UnknownLanguageError
from hbkit.languages import script_of

SMALL = dict(n_train_entities=30, n_val_entities=8, n_test_entities=6)


@pytest.fixture(scope="module")
def world():
    return make_demo_world(seed=0, **SMALL)


def _letters(text: str) -> set[str]:
    """Characters that are not spaces or punctuation."""
    return {ch for ch in text if not unicodedata.category(ch).startswith(("P", "Z"))}


def test_same_seed_same_world_different_seed_different():
    a, b, c = (make_demo_world(seed=s, **SMALL) for s in (3, 3, 4))
    assert a.texts() == b.texts()
    assert [q.text for q in a.benchmark.queries] == [q.text for q in b.benchmark.queries]
    assert [(i.query, i.positive, i.negative) for i in a.train.items()] == \
        [(i.query, i.positive, i.negative) for i in b.train.items()]
    assert a.texts() != c.texts()
    assert len(set(a.texts()) & set(c.texts())) < len(a.texts()) // 10


def test_default_world_languages_scripts_and_sizes():
    w = make_demo_world()
    assert w.seconds < 5.0  # ~0.2 s on one free core
    assert w.train_languages == ("en", "es", "de", "ru", "ar", "hi")
    assert w.eval_only_languages == ("el",)
    assert len(w.languages) == 7
    assert len({script_of(lang) for lang in w.languages}) == 5
    assert len(w.train) == 400 * 5 and w.train.num_items == 400 * 5 * 6
    assert len(w.validation) == 100 * 5
    assert {lang: len(w.benchmark.queries_in(lang)) for lang in w.languages} == dict.fromkeys(w.languages, 400)
    info = w.describe()
    assert info["splits"]["benchmark"]["queries"] == 2800
    assert info["languages"]["el"] == {"name": "Greek", "script": "Greek", "role": "eval-only"}
    assert "TOY" in info["name"]
    assert set(info["example"]) == set(w.languages)


def test_name_renderings_share_no_characters_across_scripts():
    w = make_demo_world(seed=1, languages=[c for c in DEMO_LANGUAGES if c != "el"], eval_only_languages=["el"],
                        **SMALL)
    chars: dict[str, set[str]] = {}
    for e in w.entities:
        for lang in w.languages:
            chars.setdefault(script_of(lang), set()).update(_letters(w.name(e.eid, lang)))
    assert len(chars) == 7  # Latin Cyrillic Greek Arabic Devanagari Thai Han
    for (s1, c1), (s2, c2) in itertools.combinations(chars.items(), 2):
        assert not c1 & c2, (s1, s2, sorted(c1 & c2))
    e = w.entities[0]
    assert w.name(e.eid, "en") == w.name(e.eid, "es") == w.name(e.eid, "vi")  # same script: same name
    assert w.name(e.eid, "ru") != w.name(e.eid, "en")


def test_lexicons_cognates_within_latin_none_across_scripts(world):
    en, es, de, ru = (world.lexicon(lang) for lang in ("en", "es", "de", "ru"))
    assert en.keys() == ru.keys()
    cognates = [c for c in en if es[c] == en[c] + "o" and de[c] == en[c] + "en"]
    distinct = [c for c in en if not es[c].startswith(en[c])]
    assert 5 <= len(cognates) <= len(en) // 2
    assert len(distinct) >= len(en) // 2
    assert len(set(en.values())) == len(en)  # no two concepts share a word
    assert not set("".join(en.values())) & set("".join(ru.values()))


def test_train_groups_are_parallel_with_hard_negatives(world):
    train = world.train
    assert all(langs == frozenset(world.train_languages) for langs in train.group_languages)
    group = train.groups[0]
    eid, attr = group.split(":")
    assert attr in ATTRIBUTES
    for lang in world.train_languages:
        item = train.item(0, lang)
        name = world.name(eid, lang)
        assert name in item.query and name in item.positive and name in item.negative
        assert item.negative != item.positive
        assert item.query.endswith(("?", "؟", ";", "？"))
    en, ru = train.item(0, "en"), train.item(0, "ru")
    assert not _letters(en.positive) & _letters(ru.positive) - set("0123456789")


def test_eval_only_languages_only_in_benchmark(world):
    assert "el" not in world.train.languages and "el" not in world.validation.languages
    assert "el" in world.benchmark.query_langs and "el" in world.benchmark.candidate_langs
    greek = _letters("".join(world.lexicon("el").values()))
    assert not any(greek & set(item.query + item.positive) for item in world.train.items())
    assert any(greek & set(t) for t in world.texts())  # pre-training text covers Greek
    assert not any(greek & set(t) for t in world.texts(include_eval_only=False))


def test_benchmark_one_relevant_candidate_per_language(world):
    bench = world.benchmark
    n_lang = len(world.languages)
    assert bench.name == "demo-lareqa"
    assert len(bench.queries) == len(bench.candidates) == SMALL["n_test_entities"] * 5 * n_lang
    for q, rel in zip(bench.queries, bench.relevant):
        langs = [bench.candidates[i].lang for i in rel]
        assert sorted(langs) == sorted(world.languages), q
        own = next(bench.candidates[i] for i in rel if bench.candidates[i].lang == q.lang)
        assert own.text in own.context
        assert world.name(q.xid[1:].split(":")[0], q.lang) in q.text


def test_splits_have_disjoint_entities(world):
    train = {g.split(":")[0] for g in world.train.groups}
    val = {g.split(":")[0] for g in world.validation.groups}
    test = {q.xid[1:].split(":")[0] for q in world.benchmark.queries}
    assert (len(train), len(val), len(test)) == (30, 8, 6)
    assert not train & val and not train & test and not val & test
    test_names = {world.name(eid, "en") for eid in test}
    assert not any(name in t for name in test_names for t in world.texts())


@pytest.mark.parametrize("kwargs, error, match", [
    ({"languages": ["en", "xx"]}, UnknownLanguageError, "xx"),
    ({"languages": ["en", "ja"]}, UnknownLanguageError, "not available in the demo world"),
    ({"eval_only_languages": ["ko"]}, UnknownLanguageError, "ko"),
    ({"languages": ["en"]}, ConfigError, "at least 2 training languages"),
    ({"languages": "en"}, ConfigError, "list of language codes"),
    ({"languages": ["en", "ru"], "eval_only_languages": ["ru"]}, ConfigError, "both training and eval-only"),
    ({"languages": ["en", "ru", "en"]}, ConfigError, "twice"),
    ({"n_train_entities": 0}, ConfigError, "n_train_entities"),
    ({"n_test_entities": -3}, ConfigError, "n_test_entities"),
    ({"n_val_entities": 2.5}, ConfigError, "n_val_entities"),
    ({"attributes_per_entity": 1}, ConfigError, "attributes_per_entity"),
    ({"seed": "zero"}, ConfigError, "seed"),
])
def test_bad_arguments_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_demo_world(**{**SMALL, **kwargs})
