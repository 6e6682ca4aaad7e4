"""Parallel data and benchmark types: resolution of pairs and clear errors on bad items."""
from __future__ import annotations

import pytest

from hbkit.benchmark import Candidate, Query, RetrievalBenchmark
from hbkit.errors import DataError, UnknownLanguageError
from hbkit.parallel import ImageRef, PairRef, ParallelDataset, ParallelItem


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
    img = ParallelDataset([ParallelItem("img1", "en", "a cat", ImageRef("img1.jpg")),
                           ParallelItem("img1", "de", "eine Katze", ImageRef("img1.jpg"))], "captions")
    assert not img.passage_has_language and img.modality == "image"
    pair = img.pair(PairRef(0, 0, "de", None))
    assert pair.positive == ImageRef("img1.jpg") and pair.modality == "image" and pair.query == "eine Katze"


def test_several_items_per_language_and_shared_image():
    caps = [ParallelItem("i1", "en", f"a cat {k}", ImageRef("1.jpg")) for k in range(5)]
    caps += [ParallelItem("i1", "de", "eine Katze", ImageRef("1.jpg")),
             ParallelItem("i2", "en", "a dog", ImageRef("2.jpg"))]
    ds = ParallelDataset(caps, "coco-toy")
    assert len(ds) == 2 and ds.num_items == 7 and ds.max_items_per_language == 5
    assert ds.count(0, "en") == 5 and ds.count(0, "de") == 1 and ds.count(1, "de") == 0
    assert ds.item(0, "en", 3).query == "a cat 3" and ds.image(0) == ImageRef("1.jpg")
    assert ds.pair(PairRef(0, 0, "en", None, query_item=4)).query == "a cat 4"
    with pytest.raises(DataError, match=r"has 5 item\(s\) in language 'en'; index 5 is out of range"):
        ds.item(0, "en", 5)
    with pytest.raises(DataError, match=r"group 'i1' names two images, '1.jpg' and '9.jpg'"):
        ParallelDataset(caps + [ParallelItem("i1", "fr", "un chat", ImageRef("9.jpg"))], "bad")
    with pytest.raises(DataError, match="some positives are texts and some are images"):
        ParallelDataset(caps + [ParallelItem("t", "en", "q", "p")], "mixed")
    with pytest.raises(DataError, match=r"Wrap each image path or key in hbkit.parallel.ImageRef"):
        ParallelDataset([ParallelItem("i", "en", "a cat", "1.jpg")], "untyped", passage_has_language=False)
    with pytest.raises(DataError, match="image–caption items take no negative"):
        ParallelDataset([ParallelItem("i", "en", "a cat", ImageRef("1.jpg"), "a dog")], "neg")
    # two passages for one question in one language: a text group may also hold several items
    two = ParallelDataset([ParallelItem("g", "en", "q", "p"), ParallelItem("g", "en", "q2", "p2")], name="toy")
    assert two.count(0, "en") == 2 and two.pair(PairRef(0, 0, "en", "en", 1, 1)).positive == "p2"


@pytest.mark.parametrize("item, msg", [
    (ParallelItem("g", "en", "  ", "p"), r"toy: empty query text for group 'g', language 'en'"),
    (ParallelItem("g", "en", "q", ""), r"empty positive for group 'g'"),
    (ParallelItem("g", "en", "q", "p", " "), r"negative=None when there is no hard negative"),
])
def test_empty_texts_are_refused(item, msg):
    with pytest.raises(DataError, match=msg):
        ParallelDataset([item], name="toy")


def test_bad_items():
    with pytest.raises(UnknownLanguageError, match="Unknown language code 'xx' in dataset 'toy', group 'g'"):
        ParallelDataset([ParallelItem("g", "xx", "q", "p")], name="toy")
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
    imgs = RetrievalBenchmark("it", qs + [Query("img:1", "1", None, "", image=ImageRef("1.jpg"))],
                              cs + [Candidate("img:2", None, "", xids=("2",), image=ImageRef("2.jpg"))])
    sub = imgs.subset(["en"])
    assert [q.qid for q in sub.queries] == ["en:1", "en:2", "img:1"]
    assert [c.cid for c in sub.candidates] == ["c0", "c2", "img:2"]
    assert sub.query_modalities == ["image", "text"] and sub.queries[-1].modality == "image"
    with pytest.raises(DataError, match="has no queries"):
        RetrievalBenchmark("b", [], cs)


def test_language_codes_are_normalised_on_the_items():
    ds = ParallelDataset([ParallelItem("g", "EN", "q", "p"), ParallelItem("g", "deu", "q de", "p de")], "codes")
    assert ds.languages == ["de", "en"] and ds.item(0, "en").lang == "en"
    assert ds.pair(PairRef(0, 0, "en", "de")).positive == "p de"
