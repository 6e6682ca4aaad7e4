"""SQuADShifts (Miller et al. 2020) as an English validation :class:`~hbkit.parallel.ParallelDataset`.

Used for the early-stopping validation loss (PROTOCOL §1.3): the subsets ``new_wiki``,
``nyt``, ``reddit`` and ``amazon`` exist only as a test set. The hub dataset
``squadshifts`` (now ``ludwigschmidt/squadshifts``) is built by a loading script that
current ``datasets`` refuse to run and holds no data files of its own, so with
``source=None`` hbkit downloads the official SQuAD-format JSON files from the project's
GitHub repository (:data:`SQUADSHIFTS_URL`) with :func:`hbkit.datasets.download.download`:
resumable, cached in ``$HBKIT_CACHE/squadshifts`` and checked against
:data:`SQUADSHIFTS_SHA256` (the digests the ``datasets`` loading script recorded for these
URLs). ``source`` may be such a file or a folder holding it.

Per question **(ours)**:

- query = the question; positive = the context sentence where the first answer starts
  (sentences by :func:`hbkit.datasets.sentences.split_sentences`, as in XQuAD-R/MLQA-R);
- hard negative = the nearest other sentence of the same paragraph (next, then previous,
  then further out) that differs from the positive and does not contain an answer text;
  when the paragraph has none, the first such sentence of the nearest other paragraph of
  the same article; when there is none either, the question is skipped (the trainer
  drops the hard negatives of a whole batch when one pair lacks one);
- one question per positive sentence (the first in file order): two questions with the
  same positive in one validation batch would be false negatives;
- ``max_items`` picks evenly spaced questions over the file, so a small validation set
  still spans many articles.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from hbkit.datasets.lines import brief, check_count
from hbkit.datasets.sentences import split_sentences
from hbkit.datasets.squad_json import read_squad_json
from hbkit.errors import ConfigError, DataError
from hbkit.parallel import ParallelDataset, ParallelItem

log = logging.getLogger(__name__)

__all__ = ["SQUADSHIFTS_SUBSETS", "SQUADSHIFTS_URL", "SQUADSHIFTS_FILES", "SQUADSHIFTS_SHA256", "load_squadshifts"]

#: The SQuADShifts subsets and their official files under :data:`SQUADSHIFTS_URL`.
SQUADSHIFTS_SUBSETS: tuple[str, ...] = ("new_wiki", "nyt", "reddit", "amazon")
SQUADSHIFTS_URL = "https://raw.githubusercontent.com/modestyachts/squadshifts-website/master/datasets/"
SQUADSHIFTS_FILES: dict[str, str] = {"new_wiki": "new_wiki_v1.0.json", "nyt": "nyt_v1.0.json",
                                     "reddit": "reddit_v1.0.json", "amazon": "amazon_reviews_v1.0.json"}
#: sha256 of the official files (as recorded for these URLs in the ``datasets`` loading script's metadata).
SQUADSHIFTS_SHA256: dict[str, str] = {
    "new_wiki": "1d50a0ca4cdab88d038b52ea8a2d0510af6038d7f41a0a256b9659237769d0ee",
    "nyt": "fd55ae252cc735a695fab4473d4cd605b154183ac3b3eb63068f53cfc86f36d6",
    "reddit": "b4ac346dbf1816fdec80fdcf91d06a4b754fa51e47960fa8614a94f37ea42a4b",
    "amazon": "9db7bdee84a91f0fb80b9e74f365042fbbb217cb8e0a7e73bb071245472589b6",
}


def _squadshifts_file(subset: str, source: str | os.PathLike | None) -> Path:
    filename = SQUADSHIFTS_FILES[subset]
    if source is None:
        from hbkit.datasets import download as dl

        try:
            return dl.download(SQUADSHIFTS_URL + filename, dl.default_cache_dir() / "squadshifts",
                               sha256=SQUADSHIFTS_SHA256[subset])
        except DataError as exc:
            raise DataError(f"{exc} For SQuADShifts, you can also pass the file: load_squadshifts({subset!r}, "
                            f"source='/path/to/{filename}').") from exc
    path = Path(source).expanduser()
    if path.is_dir():
        for cand in (path / filename, path / "datasets" / filename):
            if cand.is_file():
                return cand
        raise DataError(f"No {filename} in {path}. Pass the SQuADShifts {subset} file itself or its folder "
                        f"(download it from {SQUADSHIFTS_URL + filename}).")
    if not path.is_file():
        raise DataError(f"SQuADShifts file not found: {path}. Download {SQUADSHIFTS_URL + filename} or pass "
                        "source=None to download it.")
    return path


def _read_squad(path: Path) -> list[list[tuple[str, list[tuple[str, str, list[tuple[str, int]]]]]]]:
    """Articles -> paragraphs (context, questions (id, question, answers (text, start)))."""
    data = read_squad_json(path, "SQuADShifts file", "Download it again, or pass source=None to download it.")
    articles = []
    try:
        for a_index, article in enumerate(data["data"]):
            paragraphs = []
            for para in article["paragraphs"]:
                context = para["context"]
                if not isinstance(context, str):
                    raise TypeError(f"context of article {a_index} is {type(context).__name__}")
                qas = []
                for qa in para["qas"]:
                    answers = [(str(a["text"]), int(a["answer_start"])) for a in qa.get("answers", [])]
                    qas.append((str(qa["id"]), str(qa["question"]), answers))
                paragraphs.append((context, qas))
            articles.append(paragraphs)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path} does not have the SQuAD structure data/paragraphs/(context, qas/(id, question, "
                        f"answers/(text, answer_start))): {brief(exc)}.") from exc
    return articles


def load_squadshifts(subset: str = "nyt", *, source: str | os.PathLike | None = None,
                     max_items: int | None = None) -> ParallelDataset:
    """An English SQuADShifts subset as a validation :class:`ParallelDataset` (``"squadshifts-<subset>"``).

    Args:
        subset: one of :data:`SQUADSHIFTS_SUBSETS`.
        source: the subset's SQuAD-format JSON file or a folder holding it; None downloads
            it (cached in ``$HBKIT_CACHE/squadshifts``).
        max_items: keep this many questions, evenly spaced over the file.

    Every item has a hard negative (module doc for the construction).
    """
    if subset not in SQUADSHIFTS_SUBSETS:
        raise ConfigError(f"Unknown SQuADShifts subset {subset!r}: use one of {', '.join(SQUADSHIFTS_SUBSETS)}.")
    max_items = check_count("max_items", max_items)
    path = _squadshifts_file(subset, source)
    articles = _read_squad(path)

    items: list[ParallelItem] = []
    used_positives: set[tuple[int, int, int]] = set()
    no_negative = unanswerable = repeated = 0
    for a_index, paragraphs in enumerate(articles):
        spans_cache: dict[int, list[tuple[int, int]]] = {}

        def spans_of(p: int) -> list[tuple[int, int]]:
            if p not in spans_cache:
                spans_cache[p] = split_sentences(paragraphs[p][0], "en")
            return spans_cache[p]

        for p_index, (context, qas) in enumerate(paragraphs):
            for qid, question, answers in qas:
                if not question.strip() or not answers:
                    unanswerable += 1
                    continue
                start = answers[0][1]
                spans = spans_of(p_index)
                if not spans or not 0 <= start < len(context):
                    raise DataError(f"{path}: question {qid!r} has answer_start {start} outside its context "
                                    f"({len(context)} characters). The file is damaged: download it again.")
                s_index = max(i for i, (a, _) in enumerate(spans) if a <= start) if spans[0][0] <= start else 0
                if (a_index, p_index, s_index) in used_positives:
                    repeated += 1
                    continue
                positive = context[slice(*spans[s_index])]
                answer_texts = [t for t, _ in answers if t.strip()]

                def usable(text: str) -> bool:
                    return bool(text.strip()) and text != positive and not any(t in text for t in answer_texts)

                negative = None
                for d in range(1, len(spans)):
                    for j in (s_index + d, s_index - d):
                        if 0 <= j < len(spans) and usable(context[slice(*spans[j])]):
                            negative = context[slice(*spans[j])]
                            break
                    if negative is not None:
                        break
                if negative is None:  # nearest other paragraph of the same article
                    others = sorted((k for k in range(len(paragraphs)) if k != p_index),
                                    key=lambda k: (abs(k - p_index), k < p_index))
                    for k in others:
                        other = paragraphs[k][0]
                        negative = next((other[a:b] for a, b in spans_of(k) if usable(other[a:b])), None)
                        if negative is not None:
                            break
                if negative is None:
                    no_negative += 1
                    continue
                used_positives.add((a_index, p_index, s_index))
                items.append(ParallelItem(f"squadshifts-{subset}:{qid}", "en", question, positive, negative))
    if repeated or no_negative or unanswerable:
        log.info("SQuADShifts %s: skipped %d questions whose answer sentence an earlier question already has, %d "
                 "without a usable negative sentence, %d without a question or answer.", subset, repeated,
                 no_negative, unanswerable)
    if not items:
        raise DataError(f"{path} yielded no usable question (each needs an answer and a context or article with "
                        "another sentence). Check that it is a SQuADShifts file.")
    if max_items is not None and max_items < len(items):
        n = len(items)
        items = [items[k * n // max_items] for k in range(max_items)]
    return ParallelDataset(items, name=f"squadshifts-{subset}")

