"""1-to-K batches: each image with its captions in K languages, B/K images per batch, provenance and resume."""
from __future__ import annotations

import itertools
from collections import Counter

import pytest

from hbkit.errors import ConfigError
from hbkit.one_to_k import OneToKBatchSampler
from hbkit.parallel import ImageRef, ParallelDataset, ParallelItem
from hbkit.samplers import make_sampler


def _images(n=30, langs=("cs", "de", "en", "fr"), missing=None):
    items = []
    for g in range(n):
        for lang in langs:
            if missing and (g, lang) in missing:
                continue
            for k in range(2 if lang == "en" else 1):
                items.append(ParallelItem(f"img{g}", lang, f"{lang} caption {g} {k}", ImageRef(f"{g}.jpg")))
    return ParallelDataset(items, "multi30k-toy")


def _take(sampler, n):
    return list(itertools.islice(sampler.batches(), n))


def test_each_image_brings_its_k_captions_in_distinct_languages():
    ds = _images()
    sampler = make_sampler("1-to-K", ds, 12, seed=0)
    assert isinstance(sampler, OneToKBatchSampler) and sampler.k == 4 and sampler.groups_per_batch == 3
    assert len(sampler) == 30 // 3  # each image about once per epoch
    epoch = _take(sampler, len(sampler))
    seen = Counter()
    for b in epoch:
        assert b.mode == "1-to-K" and len(b.refs) == 12
        by_group = {}
        for r in b.refs:
            by_group.setdefault(r.group, []).append(r.query_lang)
            assert r.passage_lang is None
        assert len(by_group) == 3 and all(sorted(v) == ["cs", "de", "en", "fr"] for v in by_group.values())
        # the K pairs of one image are adjacent
        groups = [r.group for r in b.refs]
        assert groups == [g for g in dict.fromkeys(groups) for _ in range(4)]
        seen.update(by_group.keys())
    assert sorted(seen) == list(range(30)) and set(seen.values()) == {1}
    # several English captions per image are drawn per batch
    assert {r.query_item for b in _take(make_sampler("1-to-K", ds, 12, seed=1), 40) for r in b.refs
            if r.query_lang == "en"} == {0, 1}


def test_k_below_the_number_of_languages_and_images_missing_a_language():
    ds = _images(missing={(0, "fr"), (1, "fr"), (1, "de")})
    s = OneToKBatchSampler(ds, 6, k=2, seed=0)
    for b in _take(s, 50):
        langs = Counter(r.group for r in b.refs)
        assert set(langs.values()) == {2} and len(langs) == 3
        for g in langs:
            ls = [r.query_lang for r in b.refs if r.group == g]
            assert len(set(ls)) == 2 and ls == sorted(ls)
    full = OneToKBatchSampler(ds, 8, seed=0)  # k = 4: image 1 (two languages missing) and 0 are never used
    used = {r.group for b in _take(full, 60) for r in b.refs}
    assert 0 not in used and 1 not in used and len(used) == 28


def test_same_seed_same_batches_exact_resume_and_rank_slices():
    ds = _images()
    a = _take(make_sampler("1-to-K", ds, 8, seed=3), 25)
    s = make_sampler("1-to-K", ds, 8, seed=3)
    _take(s, 11)
    state = s.state_dict()
    t = make_sampler("1-to-K", ds, 8, seed=3)
    t.load_state_dict(state)
    assert [b.refs for b in a[11:25]] == [b.refs for b in _take(t, 14)]
    r0 = _take(make_sampler("1-to-K", ds, 8, seed=3, rank=0, world_size=2), 5)
    r1 = _take(make_sampler("1-to-K", ds, 8, seed=3, rank=1, world_size=2), 5)
    for g, x, y in zip(a, r0, r1):
        assert x.refs + y.refs == g.refs
        assert not {r.group for r in x.refs} & {r.group for r in y.refs}  # whole images per process


def test_bad_1_to_k_configurations():
    text = ParallelDataset([ParallelItem(f"g{i}", lang, "q", "p") for i in range(10) for lang in ("en", "de")], "t")
    with pytest.raises(ConfigError, match="1-to-K batches are for image–caption data"):
        make_sampler("1-to-K", text, 4)
    with pytest.raises(ConfigError, match=r"batch_size 10 \(per process 10\) must be a multiple of k=4"):
        make_sampler("1-to-K", _images(), 10)
    with pytest.raises(ConfigError, match="fewer than the 40 a batch of 160 needs"):
        make_sampler("1-to-K", _images(), 160)
    with pytest.raises(ConfigError, match="has no alpha"):
        make_sampler("1-to-K", _images(), 8, alpha=0.5)
    with pytest.raises(ConfigError, match="k=5 is more than the 4 training languages"):
        OneToKBatchSampler(_images(), 10, k=5)
