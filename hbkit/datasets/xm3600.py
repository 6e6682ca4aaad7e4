"""Crossmodal-3600 (XM3600, Thapliyal et al. 2022): 3600 images, human captions in 36 languages.

Files (https://google.github.io/crossmodal-3600/):

- ``captions.jsonl`` (inside ``captions.zip``): one image per line::

      {"image/key": "000411001ff7dd4f",
       "ar": {"caption": ["...", "..."], "caption/tokenized": [...], "caption/tokenized/lowercase": [...]},
       "bn": {...}, ..., "zh": {...}}

  ``image/key`` is the Open Images id; every other key is a language code (ISO 639-1, or
  ``fil`` and ``quz``) whose object's ``caption`` list holds that language's captions of the
  image (usually two; other fields are not used). Language keys are normalised
  (:func:`hbkit.languages.check_language`);
- ``images.tgz``: the images, ``<image/key>.jpg``.

**All captions are used** (several per image and language; group = image, so a batch never
holds two captions of one image). ``first_caption_only=True`` keeps only the first caption of
each (image, language), the protocol of CLIP_benchmark's XM3600 retrieval; the caller records
which was used.

``root`` is the folder holding ``captions.jsonl`` (or the file itself); when None,
``$HBKIT_DATA/xm3600``, else ``captions.zip`` is downloaded (its host publishes no checksum;
the content is checked: every line must parse and name an image). Images: ``images=``, default
an ``images/`` folder next to ``captions.jsonl`` or next to its folder, ``$HBKIT_DATA/xm3600/images``
or ``$HBKIT_DATA/xm3600-images``;
:func:`download_xm3600` with ``images=True`` (or ``images="download"``) fetches and unpacks
``images.tgz``.
Group ids and ``xid`` are the image keys.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from hbkit.benchmark import RetrievalBenchmark
from hbkit.datasets.images import ImageCaptionSet, ImageFolder, build_set, extract_tar, image_folder
from hbkit.datasets.lines import local_lines
from hbkit.errors import DataError, UnknownLanguageError
from hbkit.languages import check_languages, normalize_language

__all__ = ["XM3600_LANGUAGES", "XM3600_CAPTIONS_URL", "XM3600_IMAGES_URL", "read_xm3600", "load_xm3600",
           "download_xm3600"]

#: The 36 XM3600 languages.
XM3600_LANGUAGES: tuple[str, ...] = (
    "ar", "bn", "cs", "da", "de", "el", "en", "es", "fa", "fi", "fil", "fr", "he", "hi", "hr", "hu", "id", "it",
    "ja", "ko", "mi", "nl", "no", "pl", "pt", "quz", "ro", "ru", "sv", "sw", "te", "th", "tr", "uk", "vi", "zh")
XM3600_CAPTIONS_URL = "https://google.github.io/crossmodal-3600/web-data/captions.zip"
XM3600_IMAGES_URL = "https://open-images-dataset.s3.amazonaws.com/crossmodal-3600/images.tgz"
KEY = "image/key"

_HOW_TO_GET = (f"Get captions.zip from {XM3600_CAPTIONS_URL} (it holds captions.jsonl), or leave path unset to "
               "download it")
_IMAGES_HOW_TO_GET = (f"The images are {XM3600_IMAGES_URL} (<image/key>.jpg; "
                      "hbkit.datasets.xm3600.download_xm3600(images=True) fetches and unpacks it)")
_ROW = '{"image/key": "...", "<lang>": {"caption": ["...", ...]}, ...}'


def download_xm3600(dest: str | os.PathLike | None = None, *, captions: bool = True, images: bool = False,
                    captions_url: str | None = None, images_url: str | None = None) -> Path:
    """Download and unpack ``captions.zip`` and/or (``images=True``) ``images.tgz`` into ``<dest>/xm3600``.

    Returns that folder: ``captions/captions.jsonl`` and ``images/``. Cached: a finished
    download or extraction is not repeated. ``dest`` defaults to the download cache.
    """
    from hbkit.datasets.download import default_cache_dir, download, extract_zip

    folder = (Path(dest).expanduser() if dest is not None else default_cache_dir()) / "xm3600"
    if captions:
        archive = download(captions_url or XM3600_CAPTIONS_URL, folder / "archives", filename="captions.zip")
        extract_zip(archive, folder / "captions")
    if images:
        tgz = download(images_url or XM3600_IMAGES_URL, folder / "archives", filename="images.tgz")
        extract_tar(tgz, folder / "images")
    return folder


def _captions_file(path: str | os.PathLike | None) -> Path:
    if path is None:
        from hbkit.datasets.sources import local_dir

        path = local_dir("xm3600") or download_xm3600()
    root = Path(os.path.expandvars(os.fspath(path))).expanduser()
    for cand in (root, root / "captions.jsonl", root / "captions" / "captions.jsonl"):
        if cand.is_file():
            return cand
    raise DataError(f"XM3600 captions not found at {root}: expected captions.jsonl there. {_HOW_TO_GET}.")


def _caption_list(value: Any, where: str, lang: str) -> list[str]:
    caps = value.get("caption") if isinstance(value, dict) else None
    if isinstance(caps, str):
        caps = [caps]
    if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
        raise DataError(f"{where}: the {lang!r} entry must be an object with a 'caption' list of strings, got "
                        f"{str(value)[:80]!r}. Each line must be like {_ROW}.")
    return [c.strip() for c in caps if c.strip()]


def read_xm3600(path: str | os.PathLike | None = None, *, languages: Sequence[str] | str | None = None,
                images: str | os.PathLike | Sequence[str | os.PathLike] | ImageFolder | None = None,
                first_caption_only: bool = False, max_images: int | None = None,
                verify_images: bool = False) -> ImageCaptionSet:
    """Read XM3600 as an :class:`ImageCaptionSet` (format in the module doc).

    Args:
        languages: caption languages (default: all 36).
        first_caption_only: keep the first caption per image and language (CLIP_benchmark).
        images, max_images, verify_images: as :func:`hbkit.datasets.multi30k.read_multi30k`.

    Raises:
        UnknownLanguageError: a code that is not an XM3600 language, or one absent from the file.
        DataError: a missing file, a malformed line, a repeated image key, missing or corrupt images.
    """
    if isinstance(languages, str):
        languages = [languages]
    langs = (check_languages(languages, allowed=XM3600_LANGUAGES, where="XM3600") if languages is not None
             else list(XM3600_LANGUAGES))
    file = _captions_file(path)
    ids: list[str] = []
    captions: dict[str, list[list[str]]] = {lang: [] for lang in langs}
    present: set[str] = set()
    for lineno, line in local_lines(file):
        if not line.strip():
            continue
        where = f"{file}, line {lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno}). Each line must be one "
                            f"object like {_ROW}.") from None
        key = row.get(KEY) if isinstance(row, dict) else None
        if not isinstance(key, str) or not key.strip():
            raise DataError(f"{where}: no {KEY!r} string (the image id). Each line must be like {_ROW}.")
        entries = {normalize_language(k) or k: v for k, v in row.items() if k != KEY}
        present.update(entries)
        ids.append(key.strip())
        for lang in langs:
            caps = _caption_list(entries[lang], where, lang) if lang in entries else []
            captions[lang].append(caps[:1] if first_caption_only else caps)
    if not ids:
        raise DataError(f"{file} has no lines. Each line must be like {_ROW}.")
    if len(set(ids)) != len(ids):
        dup = next(k for k in ids if ids.count(k) > 1)
        raise DataError(f"{file}: the image key {dup!r} appears on several lines; each image must be one line.")
    absent = [lang for lang in langs if lang not in present]
    if absent:
        raise UnknownLanguageError(f"{file} has no captions in {absent}. Available: "
                                   f"{sorted(k for k in present if k in XM3600_LANGUAGES)}.")
    if images is None:  # next to captions.jsonl, or beside the captions/ folder download_xm3600 makes
        images = next((d for d in (file.parent / "images", file.parent.parent / "images") if d.is_dir()), None)
    folder = image_folder(images, ["xm3600/images", "xm3600-images"], dataset="XM3600", how_to_get=_IMAGES_HOW_TO_GET,
                          download=lambda: download_xm3600(captions=False, images=True) / "images")
    name = "xm3600-first" if first_caption_only else "xm3600"
    return build_set(name, ids, [f"{k}.jpg" for k in ids], captions, folder, max_images=max_images,
                     verify=verify_images)


def load_xm3600(path: str | os.PathLike | None = None, *, languages: Sequence[str] | str | None = None,
                images: str | os.PathLike | Sequence[str | os.PathLike] | ImageFolder | None = None,
                first_caption_only: bool = False, max_images: int | None = None,
                verify_images: bool = False) -> RetrievalBenchmark:
    """XM3600 as a benchmark with images and captions as queries and candidates."""
    return read_xm3600(path, languages=languages, images=images, first_caption_only=first_caption_only,
                       max_images=max_images, verify_images=verify_images).to_benchmark()
