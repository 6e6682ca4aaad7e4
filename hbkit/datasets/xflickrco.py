"""xFlickr&CO (IGLUE, Bugliarello et al. 2022): 2000 images, captions in 8 languages.

Layout of ``datasets/xFlickrCO/`` in https://github.com/e-bug/iglue (``root`` may be that folder,
its ``annotations/`` folder, or the repository root):

- ``annotations/{lang}/test.jsonl`` for de en es id ja ru tr zh; one JSON object per line::

      {"sentences": ["Der Mann trägt eine orange Wollmütze."], "id": "1007129816", "img_path": "1007129816.jpg"}

  ``sentences`` holds the image's caption(s) in that language (one in the release), ``id`` the
  source id (a string for Flickr30K, an integer for COCO, so ids of the two sources can
  collide), ``img_path`` the image file name.

The 2000 images are 1000 Flickr30K images (exactly Multi30K's ``test_2016_flickr`` images, so
the two benchmarks are not independent) and 1000 COCO val2014 images
(``COCO_val2014_000000391895.jpg``). Group ids and ``xid`` are the ``img_path`` names, unique
across both sources; images are ordered by first appearance, reading the languages in the
order given (default :data:`XFLICKRCO_LANGUAGES`). Only images with a caption in one of the
requested languages are kept.

The annotation files are downloaded (pinned commit, SHA-256 checked) when no ``root`` is given
and ``$HBKIT_DATA/xflickrco`` does not exist. Images: ``images=`` (default
``$HBKIT_DATA/flickr30k-images`` and ``$HBKIT_DATA/coco``, both searched).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from hbkit.benchmark import RetrievalBenchmark
from hbkit.datasets.images import (COCO_HOW_TO_GET, FLICKR30K_HOW_TO_GET, ImageCaptionSet, ImageFolder, build_set,
                                   image_folder)
from hbkit.datasets.lines import local_lines
from hbkit.errors import DataError
from hbkit.languages import check_languages

__all__ = ["XFLICKRCO_LANGUAGES", "XFLICKRCO_COMMIT", "XFLICKRCO_URL", "XFLICKRCO_SHA256", "read_xflickrco",
           "load_xflickrco", "download_xflickrco"]

#: The 8 xFlickr&CO languages.
XFLICKRCO_LANGUAGES: tuple[str, ...] = ("de", "en", "es", "id", "ja", "ru", "tr", "zh")
XFLICKRCO_COMMIT = "d8ac1dfbac5eb34164fcb451b81e3e84c784e8f0"
XFLICKRCO_URL = "https://raw.githubusercontent.com/e-bug/iglue/{commit}/datasets/xFlickrCO"
#: SHA-256 of ``annotations/{lang}/test.jsonl`` at XFLICKRCO_COMMIT.
XFLICKRCO_SHA256: dict[str, str] = {
    "de": "647785be2836736b0065199424898aeec964a5cc4b436ec26e371026e8509d87",
    "en": "96f102fceef19da2d35a905a42970de88bd6d0d3d8182b05e496bb11a27ee6cd",
    "es": "9b968f6df79a64a39f52f130f32f0c7581dfc25c63523334ae12eee94b23ce10",
    "id": "d392e97e8ca2ff9c8a7968715ff67efabacd4a039e4134b4b8e645fa9ba7b9b2",
    "ja": "b5a08a6ce93a4184b94ff94c87e34794fee828d3414b85fe2b52bb8a19689636",
    "ru": "50514b959489443ccca3bb2a135333f92d46d958337a40f10e89b4135ea2690d",
    "tr": "a5aff0830de3158a873992c944ae4b6782b527e405a12ef5b7c89b0b0636526b",
    "zh": "393319895e096f81e376460bcd1289d2664c592b2a9b6f3bf5bdc17c51499698",
}

_HOW_TO_GET = ("Get the files from https://github.com/e-bug/iglue (datasets/xFlickrCO/annotations/<lang>/test.jsonl), "
               "or leave path unset to download them")
_ROW = '{"sentences": ["..."], "id": "...", "img_path": "....jpg"}'


def download_xflickrco(dest: str | os.PathLike | None = None, languages: Sequence[str] | None = None, *,
                       base_url: str | None = None) -> Path:
    """Download (once, SHA-256 checked) ``annotations/{lang}/test.jsonl`` into ``<dest>/xflickrco``; returns it."""
    from hbkit.datasets.download import default_cache_dir, download

    folder = (Path(dest).expanduser() if dest is not None else default_cache_dir()) / "xflickrco"
    base = (base_url or XFLICKRCO_URL.format(commit=XFLICKRCO_COMMIT)).rstrip("/")
    langs = (check_languages(languages, allowed=XFLICKRCO_LANGUAGES, where="xFlickr&CO") if languages
             else XFLICKRCO_LANGUAGES)
    for lang in langs:
        download(f"{base}/annotations/{lang}/test.jsonl", folder / "annotations" / lang,
                 sha256=XFLICKRCO_SHA256[lang], filename="test.jsonl")
    return folder


def _annotations(path: str | os.PathLike | None, langs: Sequence[str]) -> Path:
    if path is None:
        from hbkit.datasets.sources import local_dir

        path = local_dir("xflickrco") or download_xflickrco(languages=langs)
    root = Path(os.path.expandvars(os.fspath(path))).expanduser()
    for cand in (root / "annotations", root, root / "datasets" / "xFlickrCO" / "annotations"):
        if cand.is_dir() and any((cand / lang / "test.jsonl").is_file() for lang in XFLICKRCO_LANGUAGES):
            return cand
    raise DataError(f"No xFlickr&CO annotations under {root}: expected annotations/<lang>/test.jsonl. {_HOW_TO_GET}.")


def _rows(file: Path) -> list[tuple[str, str, list[str]]]:
    """``(where, img_path, sentences)`` per line of one test.jsonl."""
    out = []
    for lineno, line in local_lines(file):
        if not line.strip():
            continue
        where = f"{file}, line {lineno}"
        try:
            row: Any = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno}). Each line must be one "
                            f"object like {_ROW}.") from None
        if not isinstance(row, dict) or "img_path" not in row or "sentences" not in row:
            keys = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise DataError(f"{where}: expected an object with 'sentences' and 'img_path', got {keys}. Each line "
                            f"must be like {_ROW}.")
        img, sents = row["img_path"], row["sentences"]
        if not isinstance(img, str) or not img.strip():
            raise DataError(f"{where}: 'img_path' must be a non-empty file name, got {img!r}.")
        if isinstance(sents, str):
            sents = [sents]
        if not isinstance(sents, list) or not sents or not all(isinstance(s, str) and s.strip() for s in sents):
            raise DataError(f"{where}: 'sentences' must be a non-empty list of non-empty captions, got {sents!r}. "
                            "Fix or remove the line.")
        out.append((where, img.strip(), [s.strip() for s in sents]))
    if not out:
        raise DataError(f"{file} has no rows. Each line must be one object like {_ROW}.")
    return out


def read_xflickrco(path: str | os.PathLike | None = None, *, languages: Sequence[str] | str | None = None,
                   images: str | os.PathLike | Sequence[str | os.PathLike] | ImageFolder | None = None,
                   max_images: int | None = None, verify_images: bool = False) -> ImageCaptionSet:
    """Read xFlickr&CO's test split as an :class:`ImageCaptionSet` (layout in the module doc).

    Several rows for one image in one language are merged (their sentences kept in order).

    Raises:
        UnknownLanguageError: a language xFlickr&CO lacks.
        DataError: a missing or malformed file, missing or corrupt images.
    """
    if isinstance(languages, str):
        languages = [languages]
    langs = (check_languages(languages, allowed=XFLICKRCO_LANGUAGES, where="xFlickr&CO") if languages is not None
             else list(XFLICKRCO_LANGUAGES))
    ann = _annotations(path, langs)
    order: dict[str, int] = {}
    per_lang: dict[str, dict[int, list[str]]] = {}
    for lang in langs:
        file = ann / lang / "test.jsonl"
        if not file.is_file():
            raise DataError(f"xFlickr&CO annotations for {lang!r} not found: {file}. {_HOW_TO_GET}.")
        caps = per_lang[lang] = {}
        for _, img, sents in _rows(file):
            caps.setdefault(order.setdefault(img, len(order)), []).extend(sents)
    files = list(order)
    captions = {lang: [caps.get(i, []) for i in range(len(files))] for lang, caps in per_lang.items()}
    folder = image_folder(images, ["flickr30k-images", "coco"], dataset="xFlickr&CO",
                          how_to_get=f"{FLICKR30K_HOW_TO_GET}; {COCO_HOW_TO_GET} (val2014)")
    return build_set("xflickrco", files, files, captions, folder, max_images=max_images, verify=verify_images)


def load_xflickrco(path: str | os.PathLike | None = None, *, languages: Sequence[str] | str | None = None,
                   images: str | os.PathLike | Sequence[str | os.PathLike] | ImageFolder | None = None,
                   max_images: int | None = None, verify_images: bool = False) -> RetrievalBenchmark:
    """xFlickr&CO as a benchmark with images and captions as queries and candidates."""
    return read_xflickrco(path, languages=languages, images=images, max_images=max_images,
                          verify_images=verify_images).to_benchmark()
