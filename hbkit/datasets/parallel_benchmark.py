"""A retrieval benchmark from parallel data: :func:`benchmark_from_parallel`.

Any :class:`~hbkit.parallel.ParallelDataset` (your own file, a held-out split of a
training corpus, a Tatoeba-style bitext) becomes a
:class:`~hbkit.benchmark.RetrievalBenchmark` for the evaluator of :mod:`hbkit.evaluation`:
queries are the items' query texts, candidates their positives, and a candidate is
relevant to every query of its group (``xid`` = group id), in every language.
"""
from __future__ import annotations

import logging
from typing import Sequence

from hbkit.benchmark import Candidate, Query, RetrievalBenchmark
from hbkit.errors import ConfigError, DataError
from hbkit.languages import check_languages
from hbkit.parallel import IMAGE, ParallelDataset

log = logging.getLogger(__name__)

__all__ = ["benchmark_from_parallel"]


def _languages(value: Sequence[str] | str | None, ds: ParallelDataset, what: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    return check_languages(value, allowed=ds.languages, where=f"{what} of dataset {ds.name!r}")


def _is_bitext(it) -> bool:
    return isinstance(it.positive, str) and it.query == it.positive


def benchmark_from_parallel(ds: ParallelDataset, query_languages: Sequence[str] | str | None = None,
                            candidate_languages: Sequence[str] | str | None = None,
                            name: str | None = None) -> RetrievalBenchmark:
    """A :class:`RetrievalBenchmark` from a ParallelDataset: queries in some languages, candidates in others.

    Args:
        ds: the parallel data.
        query_languages: languages whose items' query texts become queries (default: all).
        candidate_languages: languages whose items' positives become candidates (default:
            all, or for a bitext the languages that are not query languages; see below).
            Must be None for image–caption data.
        name: the benchmark's name (default: the dataset's name).

    Construction: one query per item in a query language, ``Query(qid="<lang>:<group>:<k>",
    xid=<group>, lang, text=item.query)`` (``k`` numbers the items of one group and
    language from 0); one candidate per item in a candidate language,
    ``Candidate(cid="<lang>:<group>:<k>", lang, text=item.positive, xids=(<group>,))``. A
    candidate is relevant to all queries of its group, so the evaluator's monolingual
    setting (candidates of the query's language) has the query's own positive as relevant,
    which is right for question–answer pairs. A query whose group has no candidate is left
    out. For image–caption data the candidates are the group images (one per group,
    ``cid="image:<group>"``, no language): caption -> image retrieval.

    **Bitext** (an item whose positive is its query text, as in Tatoeba, where every
    sentence is both query and answer): such an item, taken as a candidate, would be its
    own query's answer. The evaluator ranks a query against a pool of candidates shared by
    all queries, so that candidate cannot be removed for one query only, and leaving it in
    the pool while marking it not relevant would put an identical, "wrong" text at rank 1
    of the pooled setting. hbkit therefore never puts a bitext query and its own sentence
    in one benchmark: for a bitext, ``candidate_languages`` defaults to the languages that
    are not query languages (``benchmark_from_parallel(ds, ["de"])`` is de -> all other
    languages: cross-lingual per language, and the multilingual setting over their pool);
    query and candidate languages that share such an item raise :class:`ConfigError`
    (build one benchmark per query language instead).

    Raises:
        ConfigError: bitext items in languages that are both query and candidate
            languages, or candidate languages for image data.
        UnknownLanguageError: a language the dataset does not have.
        DataError: no query has a candidate of its group.
    """
    if not isinstance(ds, ParallelDataset):
        raise ConfigError(f"benchmark_from_parallel needs a ParallelDataset, got {type(ds).__name__}.")
    bench_name = name if name is not None else ds.name
    q_given = _languages(query_languages, ds, "query languages")
    c_given = _languages(candidate_languages, ds, "candidate languages")
    qlangs = q_given if q_given is not None else list(ds.languages)
    items = ds.items()
    image = ds.modality == IMAGE
    if image and c_given is not None:
        raise ConfigError(f"{ds.name!r} is image–caption data: its candidates are the images, which have no "
                          "language. Leave candidate_languages=None.")
    if not image and c_given is None:
        bitext_langs = {it.lang for it in items if it.lang in qlangs and _is_bitext(it)}
        others = [lang for lang in ds.languages if lang not in qlangs]
        clangs = others if bitext_langs and others else list(ds.languages)
    else:
        clangs = c_given if c_given is not None else []
    if not image:
        clash = next((it for it in items if it.lang in qlangs and it.lang in clangs and _is_bitext(it)), None)
        if clash is not None:
            example = next((lang for lang in ds.languages if lang != clash.lang), None)
            fix = (f"e.g. benchmark_from_parallel(ds, [{clash.lang!r}]) for {clash.lang} -> the other languages"
                   if example is not None else "this dataset has one language only, so it cannot be a bitext "
                                                "benchmark")
            raise ConfigError(
                f"{ds.name!r}: the item of group {clash.group!r} in {clash.lang!r} has the same text as query and "
                f"positive (a bitext), and {clash.lang!r} is both a query and a candidate language, so the query's own "
                "sentence would be among its candidates (the evaluator cannot leave it out of a shared pool). Use "
                f"candidate languages other than the query languages: {fix}, one benchmark per query language.")

    counters: dict[tuple[str, str], int] = {}
    numbered = []
    for it in items:
        k = counters.get((it.group, it.lang), 0)
        counters[(it.group, it.lang)] = k + 1
        numbered.append((k, it))
    candidates: list[Candidate] = []
    if image:
        for g, group in enumerate(ds.groups):
            candidates.append(Candidate(cid=f"image:{group}", lang=None, text="", xids=(group,), image=ds.image(g)))
    else:
        keep = set(clangs)
        candidates = [Candidate(cid=f"{it.lang}:{it.group}:{k}", lang=it.lang, text=it.positive, xids=(it.group,))
                      for k, it in numbered if it.lang in keep]
    with_candidates = {c.xids[0] for c in candidates}
    keep_q = set(qlangs)
    queries = [Query(qid=f"{it.lang}:{it.group}:{k}", xid=it.group, lang=it.lang, text=it.query)
               for k, it in numbered if it.lang in keep_q]
    dropped = sum(q.xid not in with_candidates for q in queries)
    queries = [q for q in queries if q.xid in with_candidates]
    if dropped:
        log.info("%s: %d queries have no candidate of their group in %s and are left out.", bench_name, dropped,
                 clangs or "the images")
    if not queries:
        raise DataError(f"{ds.name!r}: no query in {qlangs} has a candidate of its group in "
                        f"{clangs if not image else 'the images'}. Choose languages the same groups have.")
    return RetrievalBenchmark(bench_name, queries, candidates)
