"""Batches as tables, language-pair counts, one query's answer ranks, and what a run's log and state say."""
from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pytest
import torch

from hbkit.benchmark import Candidate, Query, RetrievalBenchmark
from hbkit.errors import ConfigError, DataError
from hbkit.kit import inspection
from hbkit.metrics import rank_distance
from hbkit.parallel import PairRef, ParallelDataset, ParallelItem
from hbkit.samplers import make_sampler


def _dataset() -> ParallelDataset:
    items = [ParallelItem(group=f"g{g}", lang=lang, query=f"q{g}-{lang}", positive=f"p{g}-{lang}",
                          negative=f"n{g}-{lang}") for g in range(12) for lang in ("en", "de", "ru")]
    return ParallelDataset(items, name="toy")


def test_batch_table_shows_the_pairs_texts_and_languages():
    ds = _dataset()
    for strategy in ("X-X", "X-Y"):
        batch = next(iter(make_sampler(strategy, ds, 6, seed=3)))
        table = inspection.batch_table(batch, [ds], n=4)
        assert list(table.columns) == inspection.BATCH_COLUMNS and len(table) == 4
        for row, ref in zip(table.itertuples(index=False), batch.refs):
            group = ds.groups[ref.group]
            assert row[0] == f"q{group[1:]}-{ref.query_lang}"
            assert row[1] == f"p{group[1:]}-{ref.passage_lang}" and row[2] == f"n{group[1:]}-{ref.passage_lang}"
            assert (row[3], row[4]) == (ref.query_lang, ref.passage_lang)
        same = (table["query language"] == table["passage language"]).all()
        assert same if strategy == "X-X" else not (table["query language"] == table["passage language"]).any()
    with pytest.raises(ConfigError, match="dataset 0"):
        inspection.batch_table(batch, [], n=2)


def test_language_pair_counts_count_every_pair_of_the_first_batches():
    class B:
        def __init__(self, refs):
            self.refs = refs

    batches = [B([PairRef(0, 0, "en", "en"), PairRef(0, 1, "de", "en")]),
               B([PairRef(0, 2, "de", "en"), PairRef(0, 3, "ru", None)]),
               B([PairRef(0, 4, "ru", "ru")])]
    m = inspection.language_pair_counts(batches, n=2)
    assert list(m.index) == ["de", "en"] and list(m.columns) == ["de", "en"]  # ru only from batch 3 / an image
    assert m.loc["de", "en"] == 2 and m.loc["en", "en"] == 1 and int(m.to_numpy().sum()) == 3
    full = inspection.language_pair_counts(batches, languages=["en", "de", "ru"])
    assert list(full.index) == ["en", "de", "ru"] and full.loc["ru", "ru"] == 1 and full.loc["en", "ru"] == 0


def test_language_pair_counts_of_real_samplers_fill_diagonal_or_off_diagonal():
    ds = _dataset()
    xx = inspection.language_pair_counts(make_sampler("X-X", ds, 6, seed=0).batches(), n=50).to_numpy()
    xy = inspection.language_pair_counts(make_sampler("X-Y", ds, 6, seed=0).batches(), n=50).to_numpy()
    assert xx.sum() == xy.sum() == 300
    assert np.trace(xx) == 300 and np.trace(xy) == 0


class HashEncoder:
    """Deterministic embeddings: a fixed random unit vector per text (queries get their own)."""

    def __init__(self, seed: int):
        self.seed = seed
        self.calls: list[tuple[str, int, bool]] = []

    def encode(self, texts, kind="passage", batch_size=64, contexts=None, **_):
        self.calls.append((kind, len(texts), contexts is not None))
        out = []
        for t in texts:
            g = torch.Generator().manual_seed(zlib.crc32(f"{self.seed}|{kind}|{t}".encode()))
            out.append(torch.randn(8, generator=g))
        return torch.nn.functional.normalize(torch.stack(out), dim=-1)


def _bench() -> RetrievalBenchmark:
    langs = ["de", "en", "ru"]
    queries = [Query(f"{l}:{x}", x, l, f"question {x} {l}") for x in ("a", "b", "c", "d") for l in langs]
    cands = [Candidate(f"{l}:{x}", l, f"answer {x} {l}", xids=(x,)) for x in ("a", "b", "c", "d") for l in langs]
    cands.append(Candidate("en:a2", "en", "second answer a en", xids=("a",)))
    cands.append(Candidate("ru:none", "ru", "unrelated", xids=()))
    return RetrievalBenchmark("toy", queries, cands)


def test_answer_ranks_are_the_pooled_pessimistic_ranks_best_per_language():
    bench = _bench()
    qi = inspection.pick_query(bench, "en", 0)
    assert bench.queries[qi].qid == "en:a"
    encs = {"X-X": HashEncoder(1), "X-Y": HashEncoder(2)}
    ranks = inspection.answer_ranks(encs, bench, qi)
    assert list(ranks.columns) == inspection.RANK_COLUMNS + ["rank_distance"]
    for label, enc in encs.items():
        q = enc.encode([bench.queries[qi].text], kind="query")
        c = enc.encode([cd.text for cd in bench.candidates], kind="passage")
        scores = (q @ c.T)[0].numpy()
        rel = bench.relevant[qi]
        brute = {}
        for idx in rel:  # pessimistic rank: candidates scoring >= it, itself included
            rank = int((scores >= scores[idx]).sum())
            lang = bench.candidates[idx].lang
            brute[lang] = min(brute.get(lang, rank), rank)
        got = ranks[ranks.strategy == label].set_index("answer language")["rank"].to_dict()
        assert got == brute
        dist = ranks[ranks.strategy == label]["rank_distance"].iloc[0]
        assert dist == max(brute.values()) - min(brute.values())
        codes = np.array([["de", "en", "ru"].index(cd.lang) for cd in bench.candidates])
        assert dist == rank_distance(scores[None], [rel], codes)[0]
    assert ranks.attrs["n_candidates"] == len(bench.candidates) and ranks.attrs["query_lang"] == "en"


def test_answer_ranks_encode_contexts_only_when_asked():
    bench = _bench()
    enc = HashEncoder(0)
    inspection.answer_ranks({"m": enc}, bench, 0)
    inspection.answer_ranks({"m": enc}, bench, 0, use_context=True)
    assert [c for c in enc.calls if c[0] == "passage"] == [("passage", 14, False), ("passage", 14, True)]


def test_rank_table_is_wide_with_a_rank_distance_row():
    ranks = pd.DataFrame({"strategy": ["X-X"] * 3 + ["X-Y"] * 3, "answer language": ["de", "en", "ru"] * 2,
                          "rank": [5, 1, 40, 3, 2, 4], "answer": ["d", "e", "r"] * 2,
                          "rank_distance": [39] * 3 + [2] * 3})
    t = inspection.rank_table(ranks)
    assert list(t.columns) == ["answer", "X-X", "X-Y"]
    assert t.loc["ru", "X-X"] == 40 and t.loc["en", "answer"] == "e"
    assert t.loc["rank distance (max − min)", "X-X"] == 39 and t.loc["rank distance (max − min)", "X-Y"] == 2


def test_pick_query_errors_name_the_problem():
    bench = _bench()
    with pytest.raises(DataError, match="no queries in 'el'"):
        inspection.pick_query(bench, "el")
    with pytest.raises(ConfigError, match=r"\[0, 4\)"):
        inspection.pick_query(bench, "en", 4)
    assert inspection.pick_query(bench, "ru", 3) == 11


def test_run_spec_finds_planned_runs_by_label():
    spec = inspection.run_spec("paper", "runs", "xlm-roberta-base", "hybrid-alpha0.25", 0)
    assert spec.alpha == 0.25 and spec.batch_size == 100
    assert inspection.run_spec("test", "runs", "tiny-xlmr", "X-Y", 1).max_steps == 12
    with pytest.raises(ConfigError, match="plans no run"):
        inspection.run_spec("test", "runs", "tiny-xlmr", "hybrid-alpha0.25", 0)


def test_rank_example_names_the_missing_runs(tmp_path):
    with pytest.raises(DataError, match=r"X-X \(.*\), X-Y \("):
        inspection.rank_example("test", str(tmp_path))


def test_sweep_headline_keeps_the_sweep_model_and_seeds_with_alpha():
    rows = [("xlm-roberta-base", s, seed) for s in ("X-X", "X-Y", "hybrid", "hybrid-alpha0.25") for seed in (0, 1)]
    rows += [("labse", "X-X", 0)]
    head = pd.DataFrame([{"model": m, "strategy": s, "seed": k, "benchmark": "b", "setting": "monolingual",
                          "metric": "mAP", "value": 0.5} for m, s, k in rows])
    d = inspection.sweep_headline(head, "paper")
    assert set(d.model) == {"xlm-roberta-base"} and set(d.seed) == {0}
    assert dict(zip(d.strategy, d.alpha)) == {"X-X": 1.0, "X-Y": 0.0, "hybrid": 0.5, "hybrid-alpha0.25": 0.25}
    assert inspection.sweep_headline(head, "demo").empty


def test_loss_by_mode_splits_batch_kinds_and_halves():
    log = pd.DataFrame({"step": [5, 10, 10, 20, 30, 40], "loss": [np.nan, 4.0, 2.0, 1.0, 3.0, 0.5],
                        "val_loss": [3.0, np.nan, np.nan, np.nan, np.nan, np.nan],
                        "mode": [None, "X-Y", "X-X", "X-X", "X-Y", "X-X"]})
    t = inspection.loss_by_mode(log)
    assert t.loc["X-X", "first half"] == pytest.approx(1.5) and t.loc["X-X", "second half"] == pytest.approx(0.5)
    assert t.loc["X-Y", "first half"] == pytest.approx(4.0) and t.loc["X-Y", "second half"] == pytest.approx(3.0)
    assert t.loc["X-X", "logged steps"] == 3


def test_checkpoint_selection_states_what_was_kept():
    config = {"train": {"val_every": 100, "val_batches": 8, "val_strategy": "X-X", "val_languages": ["en"],
                        "patience": 0}}
    text = inspection.checkpoint_selection(config, {"best_step": 300, "best_val": 1.23456, "steps": 1200})
    assert "every 100 steps, on 8 fixed X-X batches in en" in text
    assert "patience 0: no early stopping, training runs to max_steps" in text
    assert "1.2346 at step 300 of 1200" in text and "holds the weights of step 300" in text
    config["train"]["patience"] = 5
    text = inspection.checkpoint_selection(config, {"best_step": 300, "best_val": 1.0, "steps": 800,
                                                    "stopped_early": True})
    assert "stops after 5 validations in a row" in text and "of 800 (stopped early)" in text
