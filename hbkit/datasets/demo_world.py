"""The embedded demo world: a small, deterministic, parallel multilingual QA world.

This is a TOY. Its "languages" are synthetic languages labelled with real ISO codes
(``en``, ``ru``, ``ar`` ...): each has its own invented lexicon written in the real
language's script and its own word order, but none of it is real English, Russian or
Arabic. Numbers computed on it show the mechanics of the kit, never the paper's results.

How the world is built (all from one seed, pure Python; the shared toy-language machinery
of syllables, scripts, grammars and seeded streams is :mod:`hbkit.datasets.toy_language`):

- A latent syllable inventory (12 consonants x 5 vowels). Each writing system renders
  a syllable with its own characters, so different scripts share no characters.
- Entities (people) have a name (given + family name, latent syllables) and attributes:
  birthplace, residence (cities), birth year, profession, hobby, pet. Names and cities
  are proper names: languages sharing a script write them identically (surface overlap,
  as real names), other scripts transliterate them syllable by syllable.
- Every other word (verbs, question words, professions, animals ...) comes from a
  per-language lexicon. Within the Latin-script languages some content words are
  cognates (shared stem plus a language-specific ending); across scripts nothing is shared.
- Each language has a word order (SVO, SOV, VSO, verb-final with auxiliary ...), its own
  question construction (fronted or in-situ question word, particles) and punctuation.
  Surface variation: a question uses either a question word ("where") or "which" + noun
  ("in which city"); a sentence may start with a discourse word ("also", "indeed").
- Years are written in digits (Arabic-Indic in ar, Devanagari in hi, ASCII elsewhere), a
  small anchor shared across some scripts, as in real text.
- A paragraph states each attribute of one entity in one sentence (a shuffled order per
  entity, the same across languages, as translations keep it). A question asks for one
  attribute; its answer is that sentence; the training hard negative is another sentence
  of the same paragraph.

Why the studied effect *can* appear (nothing is hard-coded): within one language the entity
name appears in both the question and its answer, so monolingual (X-X) batches can be
solved by surface matching; matching across scripts needs the syllable correspondence of
names and the translation of lexicon words, which only cross-lingual (X-Y) batches show.
Test entities have unseen names (new syllable combinations), so this must generalise.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable

from hbkit.benchmark import Candidate, Query, RetrievalBenchmark
from hbkit.config import check_seed
from hbkit.datasets.toy_language import (COGNATE_SHARE, DEFAULT_TRAIN_LANGUAGES, DEMO_LANGUAGES, GRAMMARS,
                                         check_langs, check_size, random_word, render, render_year, seeded_rng)
from hbkit.errors import ConfigError
from hbkit.languages import LANGUAGES, check_language, script_of
from hbkit.parallel import ParallelDataset, ParallelItem

__all__ = ["DemoEntity", "DemoWorld", "make_demo_world", "DEMO_LANGUAGES", "DEFAULT_TRAIN_LANGUAGES",
           "ATTRIBUTES"]

# --------------------------------------------------------------------------- concepts

#: attribute -> (verb, adposition or None, value kind, question word, type noun)
_ATTRS: dict[str, tuple[str, str | None, str, str, str]] = {
    "birthplace": ("born", "in_place", "city", "where", "city"),
    "residence": ("live", "in_place", "city", "where", "city"),
    "birth_year": ("born", "in_time", "year", "when", "year"),
    "profession": ("work", "as", "job", "what", "job"),
    "hobby": ("enjoy", None, "hobby", "what", "pastime"),
    "pet": ("own", None, "animal", "what", "animal"),
}
ATTRIBUTES: tuple[str, ...] = tuple(_ATTRS)

_VALUES: dict[str, tuple[str, ...]] = {
    "job": ("teacher", "doctor", "baker", "farmer", "painter", "pilot", "nurse", "lawyer", "writer", "singer",
            "tailor", "fisher", "judge", "miner", "cook", "driver", "builder", "dancer", "poet", "sailor"),
    "hobby": ("chess", "fishing", "gardening", "cycling", "swimming", "knitting", "hiking", "singing",
              "cooking", "reading", "dancing", "running", "skating", "rowing", "climbing", "pottery"),
    "animal": ("cat", "dog", "parrot", "horse", "rabbit", "goat", "turtle", "hamster", "canary", "donkey",
               "lizard", "goldfish"),
}
_N_CITIES = 24
_YEARS = tuple(range(1900, 2000))
_FUNCTION_WORDS = ("aux", "qpart", "in_place", "in_time", "as", "where", "when", "what", "which", "also",
                   "indeed")
_CONTENT_WORDS = ("born", "live", "work", "enjoy", "own", "city", "year", "job", "pastime", "animal")
_FILLERS = ("also", "indeed")


def _concepts() -> list[tuple[str, int, int]]:
    """(concept key, min syllables, max syllables) of every lexicon entry, in a fixed order."""
    out = [(c, 1, 2) for c in _FUNCTION_WORDS] + [(c, 2, 2) for c in _CONTENT_WORDS]
    for kind, values in _VALUES.items():
        out += [(f"{kind}:{v}", 2, 3) for v in values]
    return out


def _build_lexicon(seed: int, lang: str, protos: dict[str, tuple[int, ...]]) -> dict[str, str]:
    """concept -> word of one language (lower case, in its script)."""
    grammar, script = GRAMMARS[lang], script_of(lang)
    rng = seeded_rng(seed, "lexicon", lang)
    lexicon: dict[str, str] = {}
    used: set[str] = set()
    for concept, lo, hi in _concepts():
        own = render(random_word(rng, lo, hi), script)
        if concept in protos and grammar.cognate_ending is not None:
            cognate = render(protos[concept], script) + grammar.cognate_ending
            if cognate not in used:
                own = cognate
        while own in used:
            own = render(random_word(rng, lo, hi), script)
        used.add(own)
        lexicon[concept] = own
    return lexicon


def _cognate_protos(seed: int) -> dict[str, tuple[int, ...]]:
    """Shared stems of the content words that are cognates across the Latin-script languages."""
    rng = seeded_rng(seed, "cognates")
    protos: dict[str, tuple[int, ...]] = {}
    for concept, lo, hi in _concepts():
        stem, is_cognate = random_word(rng, max(lo, 2), hi), rng.random() < COGNATE_SHARE
        if is_cognate and concept not in _FUNCTION_WORDS:
            protos[concept] = stem
    return protos


# --------------------------------------------------------------------------- entities


@dataclass(frozen=True)
class DemoEntity:
    """One person of the toy world.

    ``values`` maps attribute -> value key (``"city:3"``, ``"job:baker"``, ``"year:1931"`` ...);
    ``attributes`` is the paragraph's sentence order; ``negatives`` maps attribute -> the
    attribute whose sentence is the training hard negative.
    """

    eid: str
    split: str
    given: tuple[int, ...]
    family: tuple[int, ...]
    attributes: tuple[str, ...]
    values: dict[str, str] = field(hash=False)
    negatives: dict[str, str] = field(hash=False)


def _make_entities(seed: int, sizes: dict[str, int],
                   per_entity: int) -> tuple[list[DemoEntity], list[tuple[int, ...]]]:
    """The entities of all splits (unique family names) and the latent city names."""
    rng = seeded_rng(seed, "entities")
    city_rng = seeded_rng(seed, "cities")
    cities: list[tuple[int, ...]] = []
    while len(cities) < _N_CITIES:
        form = random_word(city_rng, 2, 3)
        if form not in cities:
            cities.append(form)
    families: set[tuple[int, ...]] = set(cities)
    entities: list[DemoEntity] = []
    index = 0
    for split, n in sizes.items():
        for _ in range(n):
            given = random_word(rng, 2, 2)
            family = random_word(rng, 2, 3)
            tries = 0
            while family in families:
                family, tries = random_word(rng, 2, 3), tries + 1
                if tries > 10_000:
                    raise ConfigError("Too many demo entities for the name inventory; use fewer than 100,000.")
            families.add(family)
            born, lives = rng.sample(range(_N_CITIES), 2)
            values = {"birthplace": f"city:{born}", "residence": f"city:{lives}",
                      "birth_year": f"year:{rng.choice(_YEARS)}",
                      "profession": f"job:{rng.choice(_VALUES['job'])}",
                      "hobby": f"hobby:{rng.choice(_VALUES['hobby'])}",
                      "pet": f"animal:{rng.choice(_VALUES['animal'])}"}
            attrs = tuple(rng.sample(ATTRIBUTES, per_entity))
            negatives = {a: rng.choice([b for b in attrs if b != a]) for a in attrs}
            entities.append(DemoEntity(f"e{index:05d}", split, given, family, attrs,
                                       {a: values[a] for a in attrs}, negatives))
            index += 1
    return entities, cities


# --------------------------------------------------------------------------- sentences

_NAME_JOINER = {"Han": "·"}  # given and family name; others: a space


class _Renderer:
    """Writes names, sentences and questions of one language."""

    def __init__(self, seed: int, lang: str, lexicon: dict[str, str], cities: list[tuple[int, ...]]) -> None:
        self.lang, self.script, self.grammar, self.lex = lang, script_of(lang), GRAMMARS[lang], lexicon
        self.cities = [render(c, self.script, capital=True) for c in cities]
        self.rng = seeded_rng(seed, "surface", lang)

    def name(self, e: DemoEntity) -> str:
        joiner = _NAME_JOINER.get(self.script, " ")
        return render(e.given, self.script, True) + joiner + render(e.family, self.script, True)

    def value(self, key: str) -> str:
        kind, _, v = key.partition(":")
        if kind == "city":
            return self.cities[int(v)]
        if kind == "year":
            return render_year(int(v), self.script)
        return self.lex[key]

    def _adp_phrase(self, adp: str | None, phrase: list[str]) -> list[str]:
        if adp is None:
            return phrase
        return phrase + [self.lex[adp]] if self.grammar.postpositions else [self.lex[adp]] + phrase

    def _join(self, order: str, slots: dict[str, list[str]], end: str) -> str:
        words = [w for slot in order.split() for w in slots[slot]]
        return " ".join(words) + end

    def texts(self, e: DemoEntity) -> dict[str, tuple[str, str]]:
        """attribute -> (question, answer sentence). Consumes this language's surface stream."""
        out = {}
        name = self.name(e)
        for attr in e.attributes:
            verb, adp, _, wh, noun = _ATTRS[attr]
            use_which, filler_draw, filler = self.rng.random() < 0.5, self.rng.random(), self.rng.choice(_FILLERS)
            slots = {"S": [name], "V": [self.lex[verb]], "A": [self.lex["aux"]], "P": [self.lex["qpart"]],
                     "O": self._adp_phrase(adp, [self.value(e.values[attr])])}
            sentence = self._join(self.grammar.decl, slots, self.grammar.end)
            if filler_draw < 0.25:
                sentence = self.lex[filler] + " " + sentence
            if use_which:
                pair = [self.lex[noun], self.lex["which"]] if self.grammar.which_after_noun else \
                    [self.lex["which"], self.lex[noun]]
                slots["W"] = self._adp_phrase(adp, pair)
            else:
                slots["W"] = self._adp_phrase(adp if wh == "what" else None, [self.lex[wh]])
            out[attr] = (self._join(self.grammar.question, slots, self.grammar.qend), sentence)
        return out


# --------------------------------------------------------------------------- the world


@dataclass
class DemoWorld:
    """A generated TOY world: training/validation data and a LAReQA-style benchmark.

    ``train`` and ``validation`` hold the training languages only (groups
    ``"<entity>:<attribute>"``); ``benchmark`` ("demo-lareqa") holds every language,
    eval-only ones included, on disjoint test entities.
    """

    seed: int
    languages: tuple[str, ...]
    train_languages: tuple[str, ...]
    eval_only_languages: tuple[str, ...]
    train: ParallelDataset
    validation: ParallelDataset
    benchmark: RetrievalBenchmark
    entities: tuple[DemoEntity, ...] = field(repr=False)
    _qa: dict[tuple[str, str], dict[str, tuple[str, str]]] = field(repr=False)
    _lexicons: dict[str, dict[str, str]] = field(repr=False)
    _names: dict[tuple[str, str], str] = field(repr=False)
    seconds: float = field(default=0.0, repr=False)

    def __repr__(self) -> str:
        return (f"DemoWorld(TOY, seed={self.seed}, train_languages={list(self.train_languages)}, "
                f"eval_only={list(self.eval_only_languages)}, train={len(self.train)} groups, "
                f"validation={len(self.validation)} groups, benchmark={len(self.benchmark.queries)} queries)")

    def texts(self, include_eval_only: bool = True) -> list[str]:
        """Every question and sentence of the train and validation entities (no test entity).

        For tokenizer training and masked-LM pre-training. With ``include_eval_only`` the
        eval-only languages' texts of those entities are included too, as real encoders
        were pre-trained on those languages; they never appear in ``train``/``validation``.
        """
        langs = self.languages if include_eval_only else self.train_languages
        seen: dict[str, None] = {}
        for e in self.entities:
            if e.split == "test":
                continue
            for lang in langs:
                qa = self._qa[(lang, e.eid)]
                for attr in e.attributes:
                    seen.setdefault(qa[attr][0])
                    seen.setdefault(qa[attr][1])
        return list(seen)

    def lexicon(self, lang: str) -> dict[str, str]:
        """The toy lexicon of ``lang``: concept -> word (a copy)."""
        lang = check_language(lang, self.languages, where="this demo world")
        return dict(self._lexicons[lang])

    def name(self, eid: str, lang: str) -> str:
        """Entity ``eid``'s name as written in ``lang``."""
        lang = check_language(lang, self.languages, where="this demo world")
        return self._names[(lang, eid)]

    def example(self, eid: str | None = None, attribute: str | None = None) -> dict[str, tuple[str, str]]:
        """lang -> (question, answer) for one entity and attribute (default: the first training ones)."""
        e = next((x for x in self.entities if eid is None or x.eid == eid), None)
        if e is None:
            raise ConfigError(f"No entity {eid!r} in this demo world; ids look like 'e00000'.")
        attribute = attribute or e.attributes[0]
        if attribute not in e.attributes:
            raise ConfigError(f"Entity {e.eid} has no attribute {attribute!r}; it has {list(e.attributes)}.")
        return {lang: self._qa[(lang, e.eid)][attribute] for lang in self.languages}

    def describe(self) -> dict:
        """A small summary for notebooks: languages, scripts, split sizes and one example."""
        splits: dict[str, dict[str, int]] = {}
        for name, data in (("train", self.train), ("validation", self.validation)):
            splits[name] = {"entities": sum(e.split == name for e in self.entities), "groups": len(data),
                            "items": data.num_items}
        bench = self.benchmark
        splits["benchmark"] = {
            "entities": sum(e.split == "test" for e in self.entities), "queries": len(bench.queries),
            "candidates": len(bench.candidates),
            "queries_per_language": {lang: int(len(bench.queries_in(lang))) for lang in self.languages},
            "candidates_per_language": {lang: int(len(bench.candidates_in(lang))) for lang in self.languages}}
        return {
            "name": "hbkit demo world (a TOY: synthetic languages labelled with real ISO codes)",
            "seed": self.seed,
            "languages": {lang: {"name": LANGUAGES[lang][0], "script": script_of(lang),
                                 "role": "train" if lang in self.train_languages else "eval-only"}
                          for lang in self.languages},
            "scripts": sorted({script_of(lang) for lang in self.languages}),
            "attributes": list(ATTRIBUTES),
            "splits": splits,
            "example": self.example(),
            "generation_seconds": round(self.seconds, 3),
        }


def make_demo_world(seed: int = 0, languages: Iterable[str] | None = None,
                    eval_only_languages: Iterable[str] = ("el",), n_train_entities: int = 400,
                    n_val_entities: int = 100, n_test_entities: int = 80,
                    attributes_per_entity: int = 5) -> DemoWorld:
    """Generate the TOY demo world (deterministic: the same arguments give identical output).

    Args:
        seed: the world's seed (names, lexicons, values, sentence forms).
        languages: training languages (default en, es, de, ru, ar, hi); at least 2,
            from :data:`DEMO_LANGUAGES`.
        eval_only_languages: languages that appear only in the benchmark (default el,
            like the paper's unseen Greek); must not overlap ``languages``.
        n_train_entities / n_val_entities / n_test_entities: people per split (disjoint).
        attributes_per_entity: sentences per paragraph (2 to 6).
    """
    start = time.perf_counter()
    seed = check_seed(seed)
    train_langs = check_langs(languages, DEFAULT_TRAIN_LANGUAGES, "languages")
    eval_only = check_langs(eval_only_languages, (), "eval_only_languages")
    if len(train_langs) < 2:
        raise ConfigError(f"The demo world needs at least 2 training languages, got {list(train_langs)}. "
                          "Pass languages=['en', 'ru', ...] with two or more codes.")
    overlap = sorted(set(train_langs) & set(eval_only))
    if overlap:
        raise ConfigError(f"{overlap} are both training and eval-only languages; remove them from one of "
                          "`languages` or `eval_only_languages`.")
    sizes = {"train": check_size("n_train_entities", n_train_entities),
             "validation": check_size("n_val_entities", n_val_entities),
             "test": check_size("n_test_entities", n_test_entities)}
    per_entity = check_size("attributes_per_entity", attributes_per_entity, 2, len(ATTRIBUTES))

    all_langs = train_langs + eval_only
    entities, cities = _make_entities(seed, sizes, per_entity)
    protos = _cognate_protos(seed)
    lexicons = {lang: _build_lexicon(seed, lang, protos) for lang in all_langs}
    qa: dict[tuple[str, str], dict[str, tuple[str, str]]] = {}
    names: dict[tuple[str, str], str] = {}
    for lang in all_langs:
        renderer = _Renderer(seed, lang, lexicons[lang], cities)
        for e in entities:
            qa[(lang, e.eid)] = renderer.texts(e)
            names[(lang, e.eid)] = renderer.name(e)

    def dataset(split: str) -> ParallelDataset:
        items = []
        for e in entities:
            if e.split != split:
                continue
            for attr in e.attributes:
                for lang in train_langs:
                    texts = qa[(lang, e.eid)]
                    items.append(ParallelItem(f"{e.eid}:{attr}", lang, texts[attr][0], texts[attr][1],
                                              texts[e.negatives[attr]][1]))
        return ParallelDataset(items, name=f"demo-{split}")

    queries: list[Query] = []
    candidates: list[Candidate] = []
    for lang in all_langs:
        for e in entities:
            if e.split != "test":
                continue
            texts = qa[(lang, e.eid)]
            paragraph = " ".join(texts[a][1] for a in e.attributes)
            for attr in e.attributes:
                xid = f"q{e.eid}:{attr}"
                queries.append(Query(f"{lang}:{xid}", xid, lang, texts[attr][0]))
                candidates.append(Candidate(f"{lang}:{e.eid}:{attr}", lang, texts[attr][1], paragraph, (xid,)))

    return DemoWorld(seed=seed, languages=all_langs, train_languages=train_langs, eval_only_languages=eval_only,
                     train=dataset("train"), validation=dataset("validation"),
                     benchmark=RetrievalBenchmark("demo-lareqa", queries, candidates),
                     entities=tuple(entities), _qa=qa, _lexicons=lexicons, _names=names,
                     seconds=time.perf_counter() - start)
