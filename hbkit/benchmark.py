"""Retrieval benchmark types: queries, candidates and cross-lingual relevance.

A query's ``xid`` (cross-lingual id) is shared by all translations of the same
question (or, for image–text, by an image and its captions). A candidate is
relevant to a query when ``xid`` is in the candidate's ``xids``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hbkit.errors import DataError
from hbkit.parallel import IMAGE, TEXT, ImageRef


@dataclass(frozen=True)
class Query:
    """A query: a text in ``lang``, or an image (``image`` set, ``lang`` None, ``text`` empty)."""

    qid: str
    xid: str
    lang: str | None
    text: str
    image: ImageRef | None = None

    @property
    def modality(self) -> str:
        """``"image"`` or ``"text"``."""
        return IMAGE if self.image is not None else TEXT


@dataclass(frozen=True)
class Candidate:
    """A retrieval candidate (an answer sentence, a passage, a caption or an image).

    ``xids`` are the cross-lingual ids of the queries it answers; ``context`` is
    the paragraph the sentence comes from (may be empty).
    """

    cid: str
    lang: str | None
    text: str
    context: str = ""
    xids: tuple[str, ...] = field(default=())
    image: ImageRef | None = None

    @property
    def modality(self) -> str:
        """``"image"`` or ``"text"``."""
        return IMAGE if self.image is not None else TEXT


class RetrievalBenchmark:
    """Queries, candidates and their relevance.

    Attributes:
        query_langs / candidate_langs: sorted languages present.
        relevant: for each query index, an int64 array of relevant candidate indices.
    """

    def __init__(self, name: str, queries: list[Query], candidates: list[Candidate]) -> None:
        if not queries:
            raise DataError(f"{name}: the benchmark has no queries. Check the data files and language filter.")
        if not candidates:
            raise DataError(f"{name}: the benchmark has no candidates. Check the data files and language filter.")
        self.name = name
        self.queries = list(queries)
        self.candidates = list(candidates)
        by_xid: dict[str, list[int]] = {}
        for i, c in enumerate(self.candidates):
            for x in c.xids:
                by_xid.setdefault(x, []).append(i)
        self._by_xid = {k: np.asarray(v, dtype=np.int64) for k, v in by_xid.items()}
        empty = np.zeros(0, dtype=np.int64)
        self.relevant: list[np.ndarray] = [self._by_xid.get(q.xid, empty) for q in self.queries]
        self.query_langs = sorted({q.lang for q in self.queries if q.lang is not None})
        self.candidate_langs = sorted({c.lang for c in self.candidates if c.lang is not None})
        self.query_lang_array = np.array([q.lang or "" for q in self.queries])
        self.candidate_lang_array = np.array([c.lang or "" for c in self.candidates])

    def queries_in(self, lang: str) -> np.ndarray:
        """Indices of the queries in ``lang``."""
        return np.flatnonzero(self.query_lang_array == lang)

    def candidates_in(self, lang: str) -> np.ndarray:
        """Indices of the candidates in ``lang``."""
        return np.flatnonzero(self.candidate_lang_array == lang)

    def subset(self, langs: list[str]) -> "RetrievalBenchmark":
        """The benchmark restricted to the texts in ``langs``; language-less items (images) are kept."""
        keep = set(langs)
        return RetrievalBenchmark(self.name, [q for q in self.queries if q.lang is None or q.lang in keep],
                                  [c for c in self.candidates if c.lang is None or c.lang in keep])

    @property
    def query_modalities(self) -> list[str]:
        return sorted({q.modality for q in self.queries})

    @property
    def candidate_modalities(self) -> list[str]:
        return sorted({c.modality for c in self.candidates})

    def __repr__(self) -> str:
        return (f"RetrievalBenchmark({self.name!r}, {len(self.queries)} queries, {len(self.candidates)} candidates, "
                f"languages={self.query_langs})")
