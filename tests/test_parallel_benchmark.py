"""benchmark_from_parallel on hand-made datasets: exact queries, candidates and relevance."""
from __future__ import annotations

import numpy as np
import pytest

from hbkit.datasets.parallel_benchmark import benchmark_from_parallel
from hbkit.errors import ConfigError, DataError, UnknownLanguageError
from hbkit.evaluation import evaluate_embeddings
from hbkit.parallel import ImageRef, ParallelDataset, ParallelItem


def _bitext() -> ParallelDataset:
    rows = [("g1", "en", "Hello."), ("g1", "de", "Hallo."), ("g1", "fr", "Bonjour."),
            ("g2", "en", "Thanks."), ("g2", "de", "Danke."),
            ("g3", "fr", "Merci."),
            ("g4", "en", "Good night."), ("g4", "en", "Night!"), ("g4", "fr", "Bonne nuit.")]
    return ParallelDataset([ParallelItem(g, lang, s, s) for g, lang, s in rows], name="tatoeba")


def _relevant(bench) -> dict[str, list[str]]:
    return {q.qid: sorted(bench.candidates[i].cid for i in rel) for q, rel in zip(bench.queries, bench.relevant)}


def test_bitext_default_candidates_are_the_other_languages():
    bench = benchmark_from_parallel(_bitext(), ["en"])
    assert bench.name == "tatoeba" and bench.query_langs == ["en"] and bench.candidate_langs == ["de", "fr"]
    assert [c.cid for c in bench.candidates] == ["de:g1:0", "fr:g1:0", "de:g2:0", "fr:g3:0", "fr:g4:0"]
    assert [c.text for c in bench.candidates] == ["Hallo.", "Bonjour.", "Danke.", "Merci.", "Bonne nuit."]
    assert _relevant(bench) == {"en:g1:0": ["de:g1:0", "fr:g1:0"], "en:g2:0": ["de:g2:0"],
                                "en:g4:0": ["fr:g4:0"], "en:g4:1": ["fr:g4:0"]}
    assert [q.text for q in bench.queries] == ["Hello.", "Thanks.", "Good night.", "Night!"]
    assert {q.xid for q in bench.queries} == {"g1", "g2", "g4"}
    # explicit candidate languages; a query whose group has no candidate there is left out
    de = benchmark_from_parallel(_bitext(), "fr", "de", name="fr-de")
    assert de.name == "fr-de" and [q.qid for q in de.queries] == ["fr:g1:0"]
    assert _relevant(de) == {"fr:g1:0": ["de:g1:0"]}


def test_bitext_never_meets_its_own_sentence():
    with pytest.raises(ConfigError, match=r"group 'g1' in 'en' has the same text as query and positive \(a bitext\).*"
                                          r"benchmark_from_parallel\(ds, \['en'\]\)"):
        benchmark_from_parallel(_bitext())
    with pytest.raises(ConfigError, match="'de' is both a query and a candidate language"):
        benchmark_from_parallel(_bitext(), ["en", "de"], ["de", "fr"])


def test_question_answer_pairs_keep_their_own_answer():
    ds = ParallelDataset([ParallelItem("q1", "en", "Who wrote it?", "Ann wrote it."),
                          ParallelItem("q1", "de", "Wer schrieb es?", "Ann schrieb es."),
                          ParallelItem("q2", "en", "When?", "In 1990."),
                          ParallelItem("q2", "en", "In which year?", "In 1990.")], name="qa")
    bench = benchmark_from_parallel(ds)
    assert bench.query_langs == ["de", "en"] and bench.candidate_langs == ["de", "en"]
    assert [c.cid for c in bench.candidates] == ["en:q1:0", "de:q1:0", "en:q2:0", "en:q2:1"]
    assert _relevant(bench) == {"en:q1:0": ["de:q1:0", "en:q1:0"], "de:q1:0": ["de:q1:0", "en:q1:0"],
                                "en:q2:0": ["en:q2:0", "en:q2:1"], "en:q2:1": ["en:q2:0", "en:q2:1"]}
    # evaluated: a perfect embedding (one direction per group) gives mAP 1 in every setting
    group_axis = {"q1": 0, "q2": 1}
    q = np.eye(2, dtype=np.float32)[[group_axis[x.xid] for x in bench.queries]]
    c = np.eye(2, dtype=np.float32)[[group_axis[x.xids[0]] for x in bench.candidates]]
    df = evaluate_embeddings(bench, q, c)
    assert set(df[df.metric == "mAP"].value) == {1.0}
    assert set(df.setting) == {"monolingual", "cross-lingual", "multilingual"}


def test_image_captions_give_caption_to_image_retrieval():
    ds = ParallelDataset([ParallelItem("i1", "en", "a cat", ImageRef("cat.jpg")),
                          ParallelItem("i1", "de", "eine Katze", ImageRef("cat.jpg")),
                          ParallelItem("i2", "en", "a dog", ImageRef("dog.jpg"))], name="caps")
    bench = benchmark_from_parallel(ds, ["de", "en"])
    assert [(c.cid, c.lang, c.image) for c in bench.candidates] == [("image:i1", None, ImageRef("cat.jpg")),
                                                                    ("image:i2", None, ImageRef("dog.jpg"))]
    assert _relevant(bench) == {"en:i1:0": ["image:i1"], "de:i1:0": ["image:i1"], "en:i2:0": ["image:i2"]}
    with pytest.raises(ConfigError, match="candidates are the images"):
        benchmark_from_parallel(ds, candidate_languages=["en"])


def test_errors():
    with pytest.raises(UnknownLanguageError, match=r"'ja' in query languages of dataset 'tatoeba'.*de, en, fr"):
        benchmark_from_parallel(_bitext(), ["ja"])
    disjoint = ParallelDataset([ParallelItem("a", "de", "x", "x"), ParallelItem("b", "fr", "y", "y")], "tatoeba")
    with pytest.raises(DataError, match=r"no query in \['de'\] has a candidate of its group in \['fr'\]"):
        benchmark_from_parallel(disjoint, "de", "fr")
    with pytest.raises(ConfigError, match="needs a ParallelDataset"):
        benchmark_from_parallel([ParallelItem("a", "de", "x", "x")])
