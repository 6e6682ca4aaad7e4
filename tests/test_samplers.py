"""Tests for hbkit.samplers: X-X / X-Y / hybrid batch rules, seeding, distribution, resume."""
from __future__ import annotations

import itertools
import json
import math
from collections import Counter

import pytest

from hbkit.errors import ConfigError, DataError, UnknownLanguageError
from hbkit.parallel import ImageRef, PairRef, ParallelDataset, ParallelItem
from hbkit.samplers import (Batch, HybridBatchSampler, XXBatchSampler, XYBatchSampler, batch_language_histogram,
                            make_sampler)

LANGS = ["ar", "de", "en", "es", "zh"]


def text_dataset(n: int = 200, langs=LANGS, name: str = "toy") -> ParallelDataset:
    return ParallelDataset([ParallelItem(f"{name}{g}", lang, f"q {g} {lang}", f"p {g} {lang}", f"n {g} {lang}")
                            for g in range(n) for lang in langs], name)


def uneven_dataset() -> ParallelDataset:
    """300 groups: all have en; 0..249 also de; only 0..29 have th; 250..299 are English-only."""
    items = []
    for g in range(300):
        langs = ["en"] + (["de"] if g < 250 else []) + (["th"] if g < 30 else [])
        items += [ParallelItem(f"u{g}", lang, f"q {g} {lang}", f"p {g} {lang}") for lang in langs]
    return ParallelDataset(items, "uneven")


def image_dataset(n: int = 120, langs=("de", "en", "fr", "cs")) -> ParallelDataset:
    return ParallelDataset([ParallelItem(f"img{g}", lang, f"caption {g} {lang}", ImageRef(f"images/{g}.jpg"))
                            for g in range(n) for lang in langs], "multi30k-toy", passage_has_language=False)


def take(sampler: HybridBatchSampler, n: int) -> list[Batch]:
    return list(itertools.islice(sampler.batches(), n))


def key(batches: list[Batch]) -> list[tuple]:
    return [(b.refs, b.mode, b.dataset, b.step, b.epoch, b.language) for b in batches]


def binom_interval(n: int, p: float) -> tuple[float, float]:
    try:
        from scipy.stats import binom
        lo, hi = binom.interval(0.99, n, p)
        return float(lo), float(hi)
    except ImportError:  # normal approximation
        sd = math.sqrt(n * p * (1 - p))
        return n * p - 2.576 * sd, n * p + 2.576 * sd


# -- batch composition ----------------------------------------------------------------

def test_xx_batches_are_one_language_and_cover_each_group_once_per_epoch():
    ds = text_dataset()
    s = XXBatchSampler(ds, 10, seed=3)
    assert len(s) == 20
    for epoch in range(3):
        batches = list(s)
        assert len(batches) == 20 and all(b.epoch == epoch for b in batches)
        for b in batches:
            assert b.mode == "X-X" and b.language in LANGS
            assert {r.query_lang for r in b.refs} == {b.language} == {r.passage_lang for r in b.refs}
        groups = sorted(r.group for b in batches for r in b.refs)
        assert groups == list(range(200))  # every group exactly once per epoch
    assert s.epoch == 3


def test_xx_language_is_uniform_over_training_languages():
    s = XXBatchSampler(text_dataset(), 4, seed=0)
    counts = Counter(b.language for b in take(s, 2500))
    assert set(counts) == set(LANGS)
    lo, hi = binom_interval(2500, 0.2)
    assert all(lo <= c <= hi for c in counts.values()), counts


def test_xy_text_pairs_have_distinct_languages_of_the_group():
    ds = text_dataset()
    s = XYBatchSampler(ds, 10, seed=1)
    batches = take(s, 100)
    pairs = Counter()
    for b in batches:
        assert b.mode == "X-Y" and b.language is None
        for r in b.refs:
            assert r.query_lang != r.passage_lang
            assert {r.query_lang, r.passage_lang} <= ds.group_languages[r.group]
            pairs[(r.query_lang, r.passage_lang)] += 1
    assert len(pairs) == 20  # all 5*4 ordered pairs occur
    lo, hi = binom_interval(1000, 1 / 20)
    assert all(lo <= c <= hi for c in pairs.values()), pairs
    ds.pair(batches[0].refs[0])  # refs resolve to texts


def test_eligibility_rare_language_and_single_language_groups():
    ds = uneven_dataset()
    s = HybridBatchSampler(ds, 10, 0.5, seed=2)
    assert s.training_languages == [["de", "en", "th"]]
    assert len(s) == 30
    seen_th = 0
    for b in take(s, 300):
        groups = [r.group for r in b.refs]
        assert len(set(groups)) == len(groups) == 10
        if b.mode == "X-X":
            assert all(b.language in ds.group_languages[g] for g in groups)
            seen_th += b.language == "th"
        else:  # English-only groups 250..299 cannot serve X-Y
            assert all(g < 250 for g in groups)
            assert all(r.query_lang != r.passage_lang for r in b.refs)
    assert seen_th > 0


def test_languages_argument_restricts_training_languages():
    s = HybridBatchSampler(text_dataset(), 10, 0.5, languages=["en", "de"], seed=0)
    assert s.training_languages == [["de", "en"]]
    langs = {lang for b in take(s, 60) for r in b.refs for lang in (r.query_lang, r.passage_lang)}
    assert langs == {"de", "en"}


def test_image_text_batches():
    ds = image_dataset()
    for b in take(XXBatchSampler(ds, 8, seed=0), 60):
        assert {r.query_lang for r in b.refs} == {b.language}
        assert all(r.passage_lang is None for r in b.refs)
    for b in take(XYBatchSampler(ds, 8, seed=0), 60):
        assert len({r.query_lang for r in b.refs}) >= 2
        assert all(r.passage_lang is None for r in b.refs)
        assert ds.pair(b.refs[0]).positive.key.startswith("images/")


def test_image_xy_rejection_sampling_guarantees_two_languages():
    # Two caption languages and batch_size 2: without rejection half the batches would be monolingual.
    s = XYBatchSampler(image_dataset(40, ("de", "en")), 2, seed=5)
    for b in take(s, 400):
        assert sorted(r.query_lang for r in b.refs) == ["de", "en"]


@pytest.mark.parametrize("alpha", [0.3, 0.5])
def test_hybrid_fraction_of_xx_batches(alpha):
    s = HybridBatchSampler(text_dataset(), 4, alpha, seed=11)
    batches = take(s, 2000)
    n_xx = sum(b.mode == "X-X" for b in batches)
    lo, hi = binom_interval(2000, alpha)
    assert lo <= n_xx <= hi, (n_xx, lo, hi)
    for b in batches:
        if b.mode == "X-X":
            assert len({(r.query_lang, r.passage_lang) for r in b.refs}) == 1
        else:
            assert all(r.query_lang != r.passage_lang for r in b.refs)


@pytest.mark.parametrize("alpha, mode", [(0.0, "X-Y"), (1.0, "X-X")])
def test_alpha_extremes(alpha, mode):
    assert {b.mode for b in take(HybridBatchSampler(text_dataset(), 10, alpha), 100)} == {mode}


@pytest.mark.parametrize("make", [
    lambda: HybridBatchSampler(uneven_dataset(), 10, 0.5, seed=4, drop_last=False),
    lambda: HybridBatchSampler(image_dataset(), 12, 0.5, seed=4, drop_last=False),
    lambda: HybridBatchSampler([text_dataset(), uneven_dataset()], 10, 0.4, seed=4),
])
def test_no_group_repeats_within_a_batch(make):
    s = make()
    for b in take(s, 3 * len(s)):
        groups = [r.group for r in b.refs]
        assert len(groups) == s.batch_size and len(set(groups)) == len(groups)


def test_drop_last_false_uses_ceil_and_full_batches():
    s = HybridBatchSampler(text_dataset(205), 10, 0.5, drop_last=False)
    assert len(s) == 21 and len(HybridBatchSampler(text_dataset(205), 10, 0.5)) == 20
    batches = list(s)
    assert all(len(b.refs) == 10 for b in batches)
    assert set(r.group for b in batches for r in b.refs) == set(range(205))


# -- seeds, epochs, iteration ---------------------------------------------------------------

def test_same_seed_same_batches_and_epochs_reshuffle():
    ds = text_dataset()
    a, b = take(HybridBatchSampler(ds, 10, 0.5, seed=7), 60), take(HybridBatchSampler(ds, 10, 0.5, seed=7), 60)
    assert key(a) == key(b)
    c = take(HybridBatchSampler(ds, 10, 0.5, seed=8), 60)
    assert [x.refs for x in a] != [x.refs for x in c]
    ep0 = [x.refs for x in a[:20]]
    ep1 = [x.refs for x in a[20:40]]
    assert ep0 != ep1
    assert [x.step for x in a] == list(range(60))
    assert [x.epoch for x in a] == [0] * 20 + [1] * 20 + [2] * 20


def test_set_epoch_and_iteration_protocol():
    ds = text_dataset()
    full = take(HybridBatchSampler(ds, 10, 0.5, seed=7), 60)
    s = HybridBatchSampler(ds, 10, 0.5, seed=7)
    s.set_epoch(2)
    assert key(list(s)) == key(full[40:60])
    s = HybridBatchSampler(ds, 10, 0.5, seed=7)
    first = [b for _, b in zip(range(5), s)]  # break out mid-epoch
    assert s.batches_done_in_epoch == 5 and s.step == 5
    rest = list(s)  # continues the same epoch
    assert key(first + rest) == key(full[:20])
    s.set_epoch(1)  # already in epoch 1: a no-op
    assert s.batches_done_in_epoch == 0 and key(list(s)) == key(full[20:40])


def test_new_iterator_ends_the_previous_one():
    s = HybridBatchSampler(text_dataset(), 10, 0.5)
    old = iter(s)
    next(old)
    new = iter(s)
    assert next(new).step == 1
    assert list(old) == []


# -- distributed ----------------------------------------------------------------------------

@pytest.mark.parametrize("world", [2, 4])
def test_rank_slices_concatenate_to_global_batch(world):
    dss = [text_dataset(), image_dataset()]
    glob = take(HybridBatchSampler(dss, 8, 0.5, seed=9), 120)
    ranks = [take(HybridBatchSampler(dss, 8, 0.5, seed=9, rank=r, world_size=world), 120) for r in range(world)]
    for i, g in enumerate(glob):
        parts = [ranks[r][i] for r in range(world)]
        assert all(len(p.refs) == 8 // world for p in parts)
        assert sum((p.refs for p in parts), ()) == g.refs
        assert {(p.mode, p.dataset, p.step, p.language) for p in parts} == {(g.mode, g.dataset, g.step, g.language)}


# -- resume ---------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [0, 7, 30, 41])
def test_resume_continues_exact_sequence(k):
    ds = uneven_dataset()  # rare language: top-up draws and skipped groups must be replayed exactly
    make = lambda **kw: HybridBatchSampler(ds, 10, 0.5, seed=13, drop_last=False, **kw)  # noqa: E731
    full = take(make(), k + 45)
    s = make()
    assert key(take(s, k)) == key(full[:k])
    state = json.loads(json.dumps(s.state_dict()))
    assert state["epoch"] == k // 30 and state["batches_done_in_epoch"] == k % 30 and state["seed"] == 13
    fresh = make()
    fresh.load_state_dict(state)
    assert key(take(fresh, 45)) == key(full[k:k + 45])  # crosses an epoch boundary


def test_resume_on_a_different_world_size():
    dss = [text_dataset(), uneven_dataset()]
    full = take(HybridBatchSampler(dss, 8, 0.5, seed=1), 80)
    s = HybridBatchSampler(dss, 8, 0.5, seed=1)
    take(s, 33)
    state = json.loads(json.dumps(s.state_dict()))
    for r in range(2):
        t = HybridBatchSampler(dss, 8, 0.5, seed=1, rank=r, world_size=2)
        t.load_state_dict(state)
        assert [b.refs for b in take(t, 40)] == [b.refs[r * 4:(r + 1) * 4] for b in full[33:73]]


def test_load_state_dict_checks_configuration():
    ds = text_dataset()
    state = HybridBatchSampler(ds, 10, 0.5).state_dict()
    with pytest.raises(ConfigError, match=r"batch_size: saved 10, now 20"):
        HybridBatchSampler(ds, 20, 0.5).load_state_dict(state)
    with pytest.raises(ConfigError, match="alpha"):
        HybridBatchSampler(ds, 10, 0.3).load_state_dict(state)
    with pytest.raises(ConfigError, match="Not a sampler state"):
        HybridBatchSampler(ds, 10, 0.5).load_state_dict({"epoch": 1})
    with pytest.raises(ConfigError, match="an epoch has 20 batches"):
        HybridBatchSampler(ds, 10, 0.5).load_state_dict({**state, "batches_done_in_epoch": 20})


# -- several datasets -------------------------------------------------------------------------

def test_multi_dataset_proportional_and_never_mixed():
    big, small = text_dataset(200, name="big"), text_dataset(100, LANGS[:3], name="small")
    s = HybridBatchSampler([big, small], 10, 0.5, seed=6)
    assert s.batches_per_dataset == [20, 10] and len(s) == 30
    assert s.training_languages == [LANGS, ["ar", "de", "en"]]
    batches = take(s, 30 * 40)
    counts = Counter(b.dataset for b in batches)
    assert counts == {0: 800, 1: 400}  # exactly proportional to size in every epoch
    for b in batches:
        assert {r.dataset for r in b.refs} == {b.dataset}
        n = len(big) if b.dataset == 0 else len(small)
        assert all(0 <= r.group < n for r in b.refs)
        if b.dataset == 1:
            assert all(r.query_lang in ("ar", "de", "en") for r in b.refs)
    # interleaved, not in blocks: the first batch of an epoch comes from 'big' with probability 2/3
    first = sum(batches[30 * e].dataset == 0 for e in range(40))
    lo, hi = binom_interval(40, 2 / 3)
    assert lo <= first <= hi
    assert len({tuple(b.dataset for b in batches[30 * e:30 * (e + 1)]) for e in range(40)}) == 40


def test_language_missing_from_one_dataset_is_allowed_but_not_from_all():
    big, small = text_dataset(200, name="big"), text_dataset(100, ["en", "de"], name="small")
    s = HybridBatchSampler([big, small], 10, 0.5, languages=["en", "de", "zh"])
    assert s.training_languages == [["de", "en", "zh"], ["de", "en"]]
    with pytest.raises(UnknownLanguageError, match=r"'fr' has no examples in dataset\(s\) 'big', 'small'"):
        HybridBatchSampler([big, small], 10, 0.5, languages=["en", "fr"])
    with pytest.raises(DataError, match="Dataset 'small' has none of the training languages"):
        HybridBatchSampler([big, small], 10, 0.5, languages=["zh", "ar"])


# -- factory, helpers, errors -------------------------------------------------------------------

@pytest.mark.parametrize("name, alpha", [("X-X", 1.0), ("xx", 1.0), ("x-y", 0.0), ("XY", 0.0), ("Hybrid", 0.5)])
def test_make_sampler_aliases(name, alpha):
    assert make_sampler(name, text_dataset(), 10).alpha == alpha


def test_make_sampler_errors():
    with pytest.raises(ConfigError, match="Unknown batch sampling strategy 'mixed'; choose one of X-X, X-Y, hybrid"):
        make_sampler("mixed", text_dataset(), 10)
    with pytest.raises(ConfigError, match="X-X fixes alpha to 1"):
        make_sampler("xx", text_dataset(), 10, alpha=0.3)
    assert make_sampler("hybrid", text_dataset(), 10, alpha=0.3, seed=2).alpha == 0.3


def test_batch_language_histogram():
    refs = (PairRef(0, 0, "en", "de"), PairRef(0, 1, "en", "zh"), PairRef(0, 2, "de", "en"))
    batch = Batch(refs, "X-Y", 0, 0, 0)
    assert batch_language_histogram(batch) == {"query": {"de": 1, "en": 2}, "passage": {"de": 1, "en": 1, "zh": 1}}
    img = [PairRef(0, 0, "fr", None), PairRef(0, 1, "cs", None)]
    assert batch_language_histogram(img) == {"query": {"cs": 1, "fr": 1}, "passage": {}}


@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(alpha=1.5), ConfigError, r"alpha must be in \[0, 1\], got 1.5; alpha is the probability of a monolingual"),
    (dict(alpha="0.5"), ConfigError, r"alpha must be in \[0, 1\], got '0.5'"),
    (dict(batch_size=0), ConfigError, "batch_size must be an integer >= 1, got 0"),
    (dict(batch_size=300), ConfigError, "batch_size 300 is larger than dataset 'toy', which has 200 groups.*"
                                        "lower batch_size to at most 200 or add data"),
    (dict(batch_size=10, world_size=4), ConfigError, "batch_size 10 is not divisible by world_size 4"),
    (dict(rank=2, world_size=2), ConfigError, r"rank must be an integer in \[0, world_size\) = \[0, 2\), got 2"),
    (dict(languages=["xx"]), UnknownLanguageError, "Unknown language code 'xx'"),
    (dict(languages=["fr"]), UnknownLanguageError, "'fr' has no examples in dataset\\(s\\) 'toy'"),
    (dict(languages="en"), ConfigError, "write languages=\\['en'\\]"),
    (dict(languages=["en"]), ConfigError, r"X-Y batches need at least 2 training languages.*\['en'\].*alpha=1"),
    (dict(seed=-1), ConfigError, "seed must be an integer >= 0"),
])
def test_bad_inputs(kwargs, exc, message):
    args = dict(batch_size=10, alpha=0.5) | kwargs
    with pytest.raises(exc, match=message):
        HybridBatchSampler(text_dataset(), args.pop("batch_size"), args.pop("alpha"), **args)


def test_batch_size_larger_than_groups_of_a_language_or_xy_pool():
    with pytest.raises(ConfigError, match="only 30 groups in language 'th', fewer than batch_size 40.*"
                                          "Lower batch_size to at most 30"):
        HybridBatchSampler(uneven_dataset(), 40, 0.5)
    with pytest.raises(ConfigError, match="only 250 groups with at least 2 training languages, fewer than "
                                          "batch_size 260"):
        HybridBatchSampler(uneven_dataset(), 260, 0.0)
    with pytest.raises(ConfigError, match="at least two caption languages, impossible with batch_size 1"):
        XYBatchSampler(image_dataset(), 1)
    assert len(XXBatchSampler(image_dataset(), 1)) == 120  # fine for X-X
    with pytest.raises(ConfigError, match="No datasets given"):
        HybridBatchSampler([], 10, 0.5)
    with pytest.raises(ConfigError, match="epoch must be an integer >= 0"):
        HybridBatchSampler(text_dataset(), 10, 0.5).set_epoch(-1)


def test_batch_statistics_counts_modes_languages_and_repeats():
    from hbkit.parallel import PairRef
    from hbkit.samplers import Batch, batch_statistics

    def batch(mode, refs):
        return Batch(refs=tuple(PairRef(0, g, q, p) for g, q, p in refs), mode=mode, dataset=0, step=0, epoch=0)

    batches = [batch("X-X", [(0, "en", "en"), (1, "en", "en")]),
               batch("X-Y", [(2, "en", "de"), (2, "de", "ru"), (3, "ru", "ru")]),
               batch("X-X", [(4, "de", "de")])]
    stats = batch_statistics(iter(batches))
    assert stats == {"batches": 3, "X-X batches": 2, "pairs with query lang == passage lang": 4,
                     "max groups repeated in a batch": 1}
    assert batch_statistics(iter(batches), n=1)["batches"] == 1


def test_several_captions_per_image_are_drawn_uniformly_and_never_repeat_an_image():
    langs = ["en", "de"]
    items = [ParallelItem(f"img{g}", lang, f"caption {g} {lang} {k}", ImageRef(f"{g}.jpg"))
             for g in range(40) for lang in langs for k in range(5 if lang == "en" else 1)]
    ds = ParallelDataset(items, "coco-toy")
    seen = Counter()
    for b in take(HybridBatchSampler(ds, 8, 0.5, seed=3), 200):
        assert len({r.group for r in b.refs}) == len(b.refs)  # no image twice in a batch
        for r in b.refs:
            assert 0 <= r.query_item < ds.count(r.group, r.query_lang)
            if r.query_lang == "en":
                seen[r.query_item] += 1
            else:
                assert r.query_item == 0
            assert ds.pair(r).query == f"caption {ds.groups[r.group][3:]} {r.query_lang} {r.query_item}"
    # five English captions per image, each drawn about a fifth of the time
    total = sum(seen.values())
    assert set(seen) == set(range(5)) and all(abs(n / total - 0.2) < 0.04 for n in seen.values())
    a = [b.refs for b in take(HybridBatchSampler(ds, 8, 0.5, seed=3), 30)]
    again = [b.refs for b in take(HybridBatchSampler(ds, 8, 0.5, seed=3), 30)]
    assert a == again
