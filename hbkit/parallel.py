"""Parallel training data: items in several languages linked by a group id.

A *group* is one item and all its translations: a question–answer pair in the
text case, an image with its captions in the image–text case. A group may hold
several items per language (five captions of one image). Samplers pick
:class:`PairRef` references ``(dataset, group, query language, passage language,
item indices)``; :meth:`ParallelDataset.pair` resolves them.

The positive side is typed by modality: a passage text (``str``) or an
:class:`ImageRef`. All items of an image group share the same image (checked).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterable, Sequence, Union

from hbkit.errors import DataError
from hbkit.languages import check_language, check_languages

TEXT = "text"
IMAGE = "image"
MODALITIES = (TEXT, IMAGE)


@dataclass(frozen=True)
class ImageRef:
    """A reference to an image: a path, or a key resolved against an image folder."""

    key: str

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key.strip():
            raise DataError(f"An image reference must be a non-empty path or key, got {self.key!r}.")


Positive = Union[str, ImageRef]


def modality_of(value: Positive) -> str:
    """``"image"`` for an :class:`ImageRef`, ``"text"`` for a string."""
    return IMAGE if isinstance(value, ImageRef) else TEXT


@dataclass(frozen=True)
class ParallelItem:
    """One translation of one training item.

    ``query`` is the query text (a question, or a caption); ``positive`` the passage
    that answers it (``str``) or the image it describes (:class:`ImageRef`);
    ``negative`` an optional hard-negative passage in the same language (text only).
    """

    group: str
    lang: str
    query: str
    positive: Positive
    negative: str | None = None

    @property
    def modality(self) -> str:
        """Modality of the positive side: ``"text"`` or ``"image"``."""
        return modality_of(self.positive)


@dataclass(frozen=True)
class PairRef:
    """A reference to one training pair.

    ``passage_lang`` is ``None`` when the passage has no language (an image).
    ``query_item`` / ``passage_item`` pick among several items of one
    (group, language); both are 0 when each language has one item.
    """

    dataset: int
    group: int
    query_lang: str
    passage_lang: str | None
    query_item: int = 0
    passage_item: int = 0


@dataclass(frozen=True)
class TrainingPair:
    """Resolved contents of one :class:`PairRef`."""

    query: str
    positive: Positive
    negative: str | None
    group: str
    query_lang: str
    passage_lang: str | None

    @property
    def modality(self) -> str:
        return modality_of(self.positive)


class ParallelDataset:
    """Items indexed by group and language (several items per language allowed).

    Args:
        items: the items.
        name: a label used in errors and logs.
        passage_has_language: ``False`` for image–text data. Inferred from the items
            when ``None``: image positives have no language.
    """

    def __init__(self, items: Iterable[ParallelItem], name: str = "dataset",
                 passage_has_language: bool | None = None) -> None:
        self.name = name
        self._items: dict[tuple[int, str], list[ParallelItem]] = {}
        self.groups: list[str] = []
        group_index: dict[str, int] = {}
        langs: list[set[str]] = []
        modalities: set[str] = set()
        images: list[ImageRef | None] = []
        for it in items:
            if not isinstance(it, ParallelItem):
                raise DataError(f"{name}: expected ParallelItem objects, got {type(it).__name__}.")
            lang = check_language(it.lang, where=f"dataset {name!r}, group {it.group!r}")
            if lang != it.lang:  # "EN", "eng" -> "en"
                it = dataclasses.replace(it, lang=lang)
            self._check_item(it, name)
            modalities.add(it.modality)
            gi = group_index.get(it.group)
            if gi is None:
                gi = group_index[it.group] = len(self.groups)
                self.groups.append(it.group)
                langs.append(set())
                images.append(it.positive if isinstance(it.positive, ImageRef) else None)
            elif isinstance(it.positive, ImageRef) and it.positive != images[gi]:
                raise DataError(
                    f"{name}: group {it.group!r} names two images, {images[gi].key!r} and {it.positive.key!r}. "
                    "All captions of one group describe the same image: give each image its own group id."
                )
            langs[gi].add(it.lang)
            self._items.setdefault((gi, it.lang), []).append(it)
        if not self.groups:
            raise DataError(f"{name}: no items. Check the data file or the language filter.")
        if len(modalities) > 1:
            raise DataError(f"{name}: some positives are texts and some are images. One dataset holds one kind "
                            "of pair: split the file into a text dataset and an image–caption dataset.")
        self.modality: str = modalities.pop()
        if passage_has_language is None:
            passage_has_language = self.modality == TEXT
        if passage_has_language and self.modality == IMAGE:
            raise DataError(f"{name}: image positives have no language; use passage_has_language=False (or None).")
        if not passage_has_language and self.modality == TEXT:
            raise DataError(f"{name}: passage_has_language=False is for image–caption data, but the positives are "
                            "texts. Wrap each image path or key in hbkit.parallel.ImageRef(...).")
        self.passage_has_language = bool(passage_has_language)
        self._images = images
        self.group_languages: list[frozenset[str]] = [frozenset(s) for s in langs]
        self.languages: list[str] = sorted(set().union(*langs))
        self.max_items_per_language = max(len(v) for v in self._items.values())

    @staticmethod
    def _check_item(it: ParallelItem, name: str) -> None:
        if not isinstance(it.query, str) or not it.query.strip():
            raise DataError(f"{name}: empty query text for group {it.group!r}, language {it.lang!r}. "
                            "Remove the item or fill in the text.")
        if not isinstance(it.positive, (str, ImageRef)) or (isinstance(it.positive, str) and not it.positive.strip()):
            raise DataError(f"{name}: empty positive for group {it.group!r}, language {it.lang!r}: give a passage "
                            "text or an ImageRef. Remove the item or fill it in.")
        if it.negative is not None:
            if isinstance(it.positive, ImageRef):
                raise DataError(f"{name}: group {it.group!r} has a hard-negative text beside an image positive; "
                                "image–caption items take no negative.")
            if not isinstance(it.negative, str) or not it.negative.strip():
                raise DataError(f"{name}: empty negative text for group {it.group!r}, language {it.lang!r}. "
                                "Use negative=None when there is no hard negative.")

    def __len__(self) -> int:
        """Number of groups."""
        return len(self.groups)

    @property
    def num_items(self) -> int:
        return sum(len(v) for v in self._items.values())

    def image(self, group: int) -> ImageRef | None:
        """The image of ``group`` (image–caption data), else ``None``."""
        return self._images[group]

    def count(self, group: int, lang: str) -> int:
        """How many items ``group`` holds in ``lang`` (0 if none)."""
        return len(self._items.get((group, lang), ()))

    def item(self, group: int, lang: str, index: int = 0) -> ParallelItem:
        """Item ``index`` of ``group`` in ``lang``."""
        its = self._items.get((group, lang))
        if not its:
            raise DataError(f"{self.name}: group {self.groups[group]!r} has no item in language {lang!r}.")
        if not 0 <= index < len(its):
            raise DataError(f"{self.name}: group {self.groups[group]!r} has {len(its)} item(s) in language "
                            f"{lang!r}; index {index} is out of range.")
        return its[index]

    def pair(self, ref: PairRef) -> TrainingPair:
        """Resolve a :class:`PairRef`.

        The query comes from ``ref.query_lang`` (item ``query_item``); the positive and
        hard negative from ``ref.passage_lang`` (item ``passage_item``), or the group's
        image when the passage has no language.
        """
        q = self.item(ref.group, ref.query_lang, ref.query_item)
        p = q if ref.passage_lang is None else self.item(ref.group, ref.passage_lang, ref.passage_item)
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
        return ParallelDataset((it for it in self.items() if it.lang in keep), self.name,
                               self.passage_has_language)

    def items(self) -> list[ParallelItem]:
        """All items, grouped by (group, language) in insertion order."""
        return [it for its in self._items.values() for it in its]
