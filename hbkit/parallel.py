"""Parallel training data: items in several languages linked by a group id.

A *group* is one item and all its translations (a question–answer pair in the
text case, an image with its captions in the image–text case). Samplers pick
``(group, query language, passage language)`` triples; :class:`ParallelDataset`
turns them into texts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from .errors import DataError
from .languages import check_language, check_languages


@dataclass(frozen=True)
class ParallelItem:
    """One translation of one training item.

    ``positive`` is the passage that answers ``query``; ``negative`` an optional
    hard negative in the same language. For image–text data the passage side has
    no language: build the dataset with ``passage_has_language=False`` and put the
    image reference (path or key) in ``positive``.
    """

    group: str
    lang: str
    query: str
    positive: str
    negative: str | None = None


@dataclass(frozen=True)
class PairRef:
    """A reference to one training pair: dataset, group and the two sides' languages.

    ``passage_lang`` is ``None`` when the passage has no language (an image).
    """

    dataset: int
    group: int
    query_lang: str
    passage_lang: str | None


@dataclass(frozen=True)
class TrainingPair:
    """Resolved texts of one :class:`PairRef`."""

    query: str
    positive: str
    negative: str | None
    group: str
    query_lang: str
    passage_lang: str | None


class ParallelDataset:
    """Items indexed by group and language.

    Args:
        items: the items; a ``(group, lang)`` combination may appear once.
        name: a label used in errors and logs.
        passage_has_language: ``False`` for image–text data (the positive is the
            same for every language of a group).
    """

    def __init__(self, items: Iterable[ParallelItem], name: str = "dataset",
                 passage_has_language: bool = True) -> None:
        self.name = name
        self.passage_has_language = passage_has_language
        self._items: dict[tuple[int, str], ParallelItem] = {}
        self.groups: list[str] = []
        group_index: dict[str, int] = {}
        langs: list[set[str]] = []
        for it in items:
            if not isinstance(it, ParallelItem):
                raise DataError(f"{name}: expected ParallelItem objects, got {type(it).__name__}.")
            check_language(it.lang, where=f"dataset {name!r}, group {it.group!r}")
            for field in ("query", "positive"):
                value = getattr(it, field)
                if not isinstance(value, str) or not value.strip():
                    raise DataError(
                        f"{name}: empty {field} text for group {it.group!r}, language {it.lang!r}. "
                        "Remove the item or fill in the text."
                    )
            if it.negative is not None and not it.negative.strip():
                raise DataError(
                    f"{name}: empty negative text for group {it.group!r}, language {it.lang!r}. "
                    "Use negative=None when there is no hard negative."
                )
            gi = group_index.get(it.group)
            if gi is None:
                gi = group_index[it.group] = len(self.groups)
                self.groups.append(it.group)
                langs.append(set())
            if it.lang in langs[gi]:
                raise DataError(f"{name}: group {it.group!r} has two items in language {it.lang!r}; keep one.")
            langs[gi].add(it.lang)
            self._items[(gi, it.lang)] = it
        if not self.groups:
            raise DataError(f"{name}: no items. Check the data file or the language filter.")
        self.group_languages: list[frozenset[str]] = [frozenset(s) for s in langs]
        self.languages: list[str] = sorted(set().union(*langs))

    def __len__(self) -> int:
        """Number of groups."""
        return len(self.groups)

    @property
    def num_items(self) -> int:
        return len(self._items)

    def item(self, group: int, lang: str) -> ParallelItem:
        try:
            return self._items[(group, lang)]
        except KeyError:
            raise DataError(f"{self.name}: group {self.groups[group]!r} has no item in language {lang!r}.") from None

    def pair(self, ref: PairRef) -> TrainingPair:
        """Resolve a :class:`PairRef` into texts.

        The query comes from ``ref.query_lang``; the positive and hard negative from
        ``ref.passage_lang`` (any language's positive when the passage has none).
        """
        q = self.item(ref.group, ref.query_lang)
        if ref.passage_lang is None:
            p = q
        else:
            p = self.item(ref.group, ref.passage_lang)
        return TrainingPair(q.query, p.positive, p.negative, q.group, ref.query_lang, ref.passage_lang)

    def restrict(self, languages: Sequence[str]) -> "ParallelDataset":
        """A copy holding only ``languages``; each must have at least one item."""
        languages = check_languages(languages, where=f"dataset {self.name!r}")
        missing = [lang for lang in languages if lang not in self.languages]
        if missing:
            raise DataError(
                f"{self.name}: no examples in language(s) {missing}. Available: {self.languages}. "
                "Drop them from the language list or add data for them."
            )
        keep = set(languages)
        return ParallelDataset((it for it in self._items.values() if it.lang in keep), self.name,
                               self.passage_has_language)

    def items(self) -> list[ParallelItem]:
        return list(self._items.values())
