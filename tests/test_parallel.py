"""Parallel data and benchmark types: resolution of pairs and clear errors on bad items."""
from __future__ import annotations

import pytest

from hbkit.benchmark import Candidate, Query, RetrievalBenchmark
from hbkit.errors import DataError, UnknownLanguageError
from hbkit.parallel import PairRef, ParallelDataset, ParallelItem


def _ds():
    return ParallelDataset([ParallelItem("g1", "en", "q en", "p en", "n en"),
                            ParallelItem("g1", "de", "q de", "p de", "n de"),
                            ParallelItem("g2", "en", "q2 en", "p2 en")], name="toy")


def test_pairs_take_query_and_passage_sides_from_their_languages():
    ds = _ds()
    assert len(ds) == 2 and ds.num_items == 3 and ds.languages == ["de", "en"]
    assert ds.group_languages == [frozenset({"en", "de"}), frozenset({"en"})]
    pair = ds.pair(PairRef(0, 0, "en", "de"))
    assert (pair.query, pair.positive, pair.negative, pair.group) == ("q en", "p de", "n de", "g1")
    img = ParallelDataset([ParallelItem("img1", "en", "a cat", "img1.jpg"),
                           ParallelItem("img1", "de", "eine Katze", "img1.jpg")], "captions",
                          passage_has_language=False)
    assert img.pair(PairRef(0, 0, "de", None)).positive == "img1.jpg"


@pytest.mark.parametrize("item, msg", [
    (ParallelItem("g", "en", "  ", "p"), r"toy: empty query text for group 'g', language 'en'"),
    (ParallelItem("g", "en", "q", ""), r"empty positive text"),
    (ParallelItem("g", "en", "q", "p", " "), r"negative=None when there is no hard negative"),
])
def test_empty_texts_are_refused(item, msg):
    with pytest.raises(DataError, match=msg):
        ParallelDataset([item], name="toy")


def test_bad_items():
    with pytest.raises(UnknownLanguageError, match="Unknown language code 'xx' in dataset 'toy', group 'g'"):
        ParallelDataset([ParallelItem("g", "xx", "q", "p")], name="toy")
    with pytest.raises(DataError, match="group 'g' has two items in language 'en'"):
        ParallelDataset([ParallelItem("g", "en", "q", "p"), ParallelItem("g", "en", "q2", "p2")], name="toy")
    with pytest.raises(DataError, match="toy: no items"):
        ParallelDataset([], name="toy")
    with pytest.raises(DataError, match=r"no examples in language\(s\) \['ru'\]. Available: \['de', 'en'\]"):
        _ds().restrict(["en", "ru"])
    with pytest.raises(DataError, match="group 'g2' has no item in language 'de'"):
        _ds().item(1, "de")
    assert _ds().restrict(["en"]).languages == ["en"]


def test_benchmark_relevance_by_cross_lingual_id():
    qs = [Query("en:1", "1", "en", "who?"), Query("de:1", "1", "de", "wer?"), Query("en:2", "2", "en", "what?")]
    cs = [Candidate("c0", "en", "He did.", xids=("1",)), Candidate("c1", "de", "Er.", xids=("1",)),
          Candidate("c2", "en", "Nothing.")]
    bench = RetrievalBenchmark("b", qs, cs)
    assert [r.tolist() for r in bench.relevant] == [[0, 1], [0, 1], []]
    assert bench.queries_in("de").tolist() == [1] and bench.candidates_in("en").tolist() == [0, 2]
    with pytest.raises(DataError, match="has no queries"):
        RetrievalBenchmark("b", [], cs)
