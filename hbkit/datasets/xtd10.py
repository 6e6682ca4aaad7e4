"""XTD10 (Aggarwal & Kale 2020): 1000 COCO images with one caption in each of 11 languages.

Layout of https://github.com/adobe-research/Cross-lingual-Test-Dataset-XTD10 (``root``):

- ``XTD10/test_image_names.txt``: the 1000 image names (``COCO_train2014_000000061844.jpg``);
- ``XTD10/test_1kcaptions_{lang}.txt`` for en es it ko pl ru tr zh;
- ``MIC/test_1kcaptions_{de,fr}.txt`` (German and French, from Multilingual Image Captioning);
- ``STAIR/test_1kcaptions_jp.txt`` (Japanese, from STAIR Captions; the file says ``jp``, the
  language code is ``ja``).

Line i of every caption file describes the image on line i of ``test_image_names.txt``
(some files end without a final newline or use CRLF; both are read). **800 of the 1000
images are COCO train2014** and 200 val2014 (:func:`~hbkit.datasets.images.coco_split` tells
them apart): a model trained on COCO train has seen most XTD10 images, which
:func:`~hbkit.datasets.images.check_overlap` detects.

The caption files are downloaded (pinned commit, SHA-256 checked) when no ``root`` is given
and ``$HBKIT_DATA/xtd10`` does not exist. Images: a COCO folder (``images=``, default
``$HBKIT_DATA/coco``), with both train2014 and val2014 images; ``images="download"`` fetches
both archives (19 GB) into the cache. Group ids and ``xid`` are the
image names as listed.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from hbkit.benchmark import RetrievalBenchmark
from hbkit.datasets.images import COCO_HOW_TO_GET, ImageCaptionSet, ImageFolder, build_set, image_folder
from hbkit.datasets.lines import local_lines
from hbkit.errors import DataError
from hbkit.languages import check_languages

__all__ = ["XTD10_LANGUAGES", "XTD10_FILES", "XTD10_IMAGE_NAMES", "XTD10_COMMIT", "XTD10_URL", "XTD10_SHA256",
           "read_xtd10", "load_xtd10", "download_xtd10", "xtd10_image_names"]

#: The 11 XTD10 languages.
XTD10_LANGUAGES: tuple[str, ...] = ("de", "en", "es", "fr", "it", "ja", "ko", "pl", "ru", "tr", "zh")
#: Caption file of each language, relative to the root.
XTD10_FILES: dict[str, str] = {
    **{lang: f"XTD10/test_1kcaptions_{lang}.txt" for lang in ("en", "es", "it", "ko", "pl", "ru", "tr", "zh")},
    "de": "MIC/test_1kcaptions_de.txt", "fr": "MIC/test_1kcaptions_fr.txt", "ja": "STAIR/test_1kcaptions_jp.txt",
}
XTD10_IMAGE_NAMES = "XTD10/test_image_names.txt"
XTD10_COMMIT = "d77ff16148468c84287f3efcbf602a015c5e4954"
XTD10_URL = "https://raw.githubusercontent.com/adobe-research/Cross-lingual-Test-Dataset-XTD10/{commit}"
#: SHA-256 of the files at XTD10_COMMIT.
XTD10_SHA256: dict[str, str] = {
    "MIC/test_1kcaptions_de.txt": "51f1e9fe05d85b7cd33543676ed2fea51b05399cc403a5fca557ca7ecdb9a207",
    "MIC/test_1kcaptions_fr.txt": "84aa16954706a0f654b59788ffb6a3bcb1b1d9d12dc9d7a3de26730bc04664b5",
    "STAIR/test_1kcaptions_jp.txt": "20908aa5763ee7b1bacc1f29aa507532d3dc6a7e6a8c43e6acd2ec72d1e80c10",
    "XTD10/test_1kcaptions_en.txt": "ac5531b6842c1d469fba80aa6f44e2af054e84a41da8f9eaf01d831e943039b9",
    "XTD10/test_1kcaptions_es.txt": "cacc43d4e7af56b02033865531ea70494049f1d0dd3ea89ff2a217e7e190c4f2",
    "XTD10/test_1kcaptions_it.txt": "b4095d3550eb1accf8c9c78314b4bef45847a3929b5c5fe15a1264ea31dec7cc",
    "XTD10/test_1kcaptions_ko.txt": "92d35e082cd081724560c9abdb2b45753ceb52aaabddb9a0f79dc04967a36800",
    "XTD10/test_1kcaptions_pl.txt": "b6af6b7941f44e902b50736dcf9a7221af28e755a259511652c599cf6ae89c78",
    "XTD10/test_1kcaptions_ru.txt": "7d93631ff85b53592091b3cbfd9ca963397e77038fb3d0fdd9374b1b02ae98a3",
    "XTD10/test_1kcaptions_tr.txt": "147e9763dcb6e6ebba0b98fc799f0145c7d90005fa03ca8ec5a7cf29a04dd136",
    "XTD10/test_1kcaptions_zh.txt": "17229ff02ac85dd2d165f8316515a24fbe5100dbf486c22aaa12105dfb3353bf",
    "XTD10/test_image_names.txt": "504a472dfd40e44f2d0facd6320b9dc1c7d64c58aac9840f0b1da4807cb3a30a",
}

_HOW_TO_GET = ("Get the files from https://github.com/adobe-research/Cross-lingual-Test-Dataset-XTD10 (folders XTD10/, "
               "MIC/, STAIR/), or leave path unset to download them")


def download_xtd10(dest: str | os.PathLike | None = None, languages: Sequence[str] | None = None, *,
                   base_url: str | None = None) -> Path:
    """Download (once, SHA-256 checked) the image list and caption files into ``<dest>/xtd10``; returns it.

    ``dest`` defaults to the download cache; ``base_url`` replaces the pinned GitHub address.
    """
    from hbkit.datasets.download import default_cache_dir, download

    folder = (Path(dest).expanduser() if dest is not None else default_cache_dir()) / "xtd10"
    base = (base_url or XTD10_URL.format(commit=XTD10_COMMIT)).rstrip("/")
    langs = check_languages(languages, allowed=XTD10_LANGUAGES, where="XTD10") if languages else XTD10_LANGUAGES
    for rel in [XTD10_IMAGE_NAMES] + [XTD10_FILES[lang] for lang in langs]:
        target = folder / rel
        download(f"{base}/{rel}", target.parent, sha256=XTD10_SHA256[rel], filename=target.name)
    return folder


def _download_coco() -> Path:
    from hbkit.datasets.images import download_coco_images

    download_coco_images("train2014")
    return download_coco_images("val2014")


def _root(path: str | os.PathLike | None, langs: Sequence[str]) -> Path:
    if path is None:
        from hbkit.datasets.sources import local_dir

        return local_dir("xtd10") or download_xtd10(languages=langs)
    root = Path(os.path.expandvars(os.fspath(path))).expanduser()
    if not (root / XTD10_IMAGE_NAMES).is_file() and (root / Path(XTD10_IMAGE_NAMES).name).is_file():
        root = root.parent  # the XTD10/ subfolder was given
    return root


def xtd10_image_names(path: str | os.PathLike | None = None) -> list[str]:
    """The 1000 image names of ``XTD10/test_image_names.txt``, in order."""
    file = _root(path, ()) / XTD10_IMAGE_NAMES
    if not file.is_file():
        raise DataError(f"XTD10 image list not found: {file}. {_HOW_TO_GET}.")
    names = [t.strip() for _, t in local_lines(file)]
    if not names or any(not n for n in names):
        raise DataError(f"{file} is empty or has empty lines: it must name one image per line.")
    return names


def read_xtd10(path: str | os.PathLike | None = None, *, languages: Sequence[str] | str | None = None,
               images: str | os.PathLike | Sequence[str | os.PathLike] | ImageFolder | None = None,
               max_images: int | None = None, verify_images: bool = False) -> ImageCaptionSet:
    """Read XTD10 as an :class:`ImageCaptionSet` (layout in the module doc; arguments as
    :func:`hbkit.datasets.multi30k.read_multi30k`).

    Raises:
        UnknownLanguageError: a language XTD10 lacks (``jp`` suggests ``ja``).
        DataError: a missing file, a caption file whose line count differs from the image
            list, an empty caption, missing or corrupt images.
    """
    if isinstance(languages, str):
        languages = [languages]
    langs = (check_languages(languages, allowed=XTD10_LANGUAGES, where="XTD10") if languages is not None
             else list(XTD10_LANGUAGES))
    root = _root(path, langs)
    names = xtd10_image_names(root)
    list_file = root / XTD10_IMAGE_NAMES
    captions: dict[str, list[list[str]]] = {}
    for lang in langs:
        file = root / XTD10_FILES[lang]
        if not file.is_file():
            raise DataError(f"XTD10 caption file for {lang!r} not found: {file}. {_HOW_TO_GET}.")
        caps = [t.strip() for _, t in local_lines(file)]
        if len(caps) != len(names):
            raise DataError(f"{file} has {len(caps)} lines but the image list {list_file} has {len(names)}: line i "
                            "of a caption file describes image i. Use the files of one release (download them "
                            "again).")
        empty = next((i for i, c in enumerate(caps) if not c), None)
        if empty is not None:
            raise DataError(f"{file}, line {empty + 1}: empty caption (image {names[empty]}). Restore the file from "
                            "the release.")
        captions[lang] = [[c] for c in caps]
    folder = image_folder(images, ["coco"], dataset="XTD10", how_to_get=COCO_HOW_TO_GET, download=_download_coco)
    return build_set("xtd10", names, names, captions, folder, max_images=max_images, verify=verify_images)


def load_xtd10(path: str | os.PathLike | None = None, *, languages: Sequence[str] | str | None = None,
               images: str | os.PathLike | Sequence[str | os.PathLike] | ImageFolder | None = None,
               max_images: int | None = None, verify_images: bool = False) -> RetrievalBenchmark:
    """XTD10 as a benchmark with images and captions as queries and candidates
    (:meth:`~hbkit.datasets.images.ImageCaptionSet.to_benchmark`)."""
    return read_xtd10(path, languages=languages, images=images, max_images=max_images,
                      verify_images=verify_images).to_benchmark()
