"""Flickr30K 1K and COCO 5K test: the English retrieval test sets of Karpathy's splits.

ALBEF (and CLIP, BLIP, ...) report English image–text retrieval on these two sets: 1,000
Flickr30K images (5 captions each) and 5,000 COCO val2014 images (5 to 7 captions each, 25,010 in
all) of Karpathy & Fei-Fei's split.
:func:`read_karpathy` reads either annotation format in use:

- **ALBEF / LAVIS retrieval JSON** (``flickr30k_test.json``, ``coco_test.json``,
  ``coco_karpathy_test.json``): a list of ``{"image": "<folder>/<file>", "caption": [captions]}``,
  one entry per image (a training file has one caption string per entry; entries of one image
  are merged);
- **Karpathy's dataset JSON** (``dataset_flickr30k.json``, ``dataset_coco.json``):
  ``{"images": [{"filename", "filepath"?, "split", "sentences": [{"raw": ...}]}]}``, of which the
  entries of ``split`` (``"test"`` by default) are read.

Captions are kept as written (a model's own caption cleaning, e.g. ALBEF's, runs in its
tokenizer). Images are looked up in ``images=`` by file name or image id
(:mod:`hbkit.datasets.images`): a Flickr30K folder (``flickr30k-images/``; distributed on
request, see :data:`~hbkit.datasets.images.FLICKR30K_HOW_TO_GET`) or a COCO folder with
``val2014/`` (``images="download"`` fetches COCO's val2014).

When no ``path`` is given, the annotation file is looked for in ``$HBKIT_DATA/karpathy`` (the names
in :data:`KARPATHY_SETS`), else LAVIS's test file is downloaded (no published digest: its shape is
checked instead). Images are looked for in ``$HBKIT_DATA/flickr30k-images`` or
``$HBKIT_DATA/flickr30k``, and ``$HBKIT_DATA/coco``, unless ``images=`` names the folder.

The benchmark names are ``flickr30k-1k`` and ``coco-5k``, the names under which ALBEF's published
numbers are set beside a run (:func:`hbkit.kit.image_report.albef_vs_published`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from hbkit.benchmark import RetrievalBenchmark
from hbkit.datasets.images import (COCO_HOW_TO_GET, FLICKR30K_HOW_TO_GET, ImageCaptionSet, ImageFolder, build_set,
                                   image_folder)
from hbkit.errors import ConfigError, DataError

#: ``$HBKIT_DATA/karpathy``: where annotation files are looked for when no path is given.
LOCAL_DIR = "karpathy"

__all__ = ["KARPATHY_SETS", "LOCAL_DIR", "read_karpathy", "load_karpathy", "download_karpathy"]

_LAVIS = "https://storage.googleapis.com/sfr-vision-language-research/datasets/"
#: dataset -> benchmark name of the whole test split, its number of images, the $HBKIT_DATA image folders looked
#: for, the annotation file names looked for in a folder, LAVIS's test file URL, how to get the images.
KARPATHY_SETS: dict[str, dict[str, Any]] = {
    "flickr30k": {"name": "flickr30k-1k", "images": 1000, "image_dirs": ["flickr30k-images", "flickr30k"],
                  "files": ["flickr30k_test.json", "dataset_flickr30k.json"],
                  "url": _LAVIS + "flickr30k_test.json", "how_to_get": FLICKR30K_HOW_TO_GET},
    "coco": {"name": "coco-5k", "images": 5000, "image_dirs": ["coco"],
             "files": ["coco_test.json", "coco_karpathy_test.json", "dataset_coco.json"],
             "url": _LAVIS + "coco_karpathy_test.json", "how_to_get": COCO_HOW_TO_GET},
}


def _spec(dataset: str) -> dict[str, Any]:
    if dataset not in KARPATHY_SETS:
        raise ConfigError(f"Unknown Karpathy-split dataset {dataset!r}: choose one of {', '.join(KARPATHY_SETS)}.")
    return KARPATHY_SETS[dataset]


def download_karpathy(dataset: str, dest: str | os.PathLike | None = None) -> Path:
    """Download (once) LAVIS's test annotation file of ``dataset`` into ``<dest>/karpathy``; returns the file."""
    from hbkit.datasets.download import default_cache_dir, download

    spec = _spec(dataset)
    folder = (Path(dest).expanduser() if dest is not None else default_cache_dir()) / "karpathy"
    return download(spec["url"], folder)


def _find_file(dataset: str, path: str | os.PathLike | None) -> Path:
    spec = _spec(dataset)
    if path is None:
        from hbkit.datasets.sources import local_dir

        root = local_dir(LOCAL_DIR)
        found = [root / f for f in spec["files"] if root is not None and (root / f).is_file()]
        return found[0] if found else download_karpathy(dataset)
    file = Path(os.path.expandvars(os.fspath(path))).expanduser()
    if file.is_dir():
        found = [file / f for f in spec["files"] if (file / f).is_file()]
        if not found:
            raise DataError(f"No {dataset} annotation file in {file}: looked for {', '.join(spec['files'])}. Pass "
                            "the JSON file itself as path=, or leave path unset to download LAVIS's test file.")
        file = found[0]
    if not file.is_file():
        raise DataError(f"{dataset} annotation file not found: {file}. Pass an ALBEF/LAVIS retrieval JSON or "
                        "Karpathy's dataset JSON as path=, or leave path unset to download LAVIS's test file.")
    return file


def _entries(file: Path, data: Any, split: str) -> tuple[list[tuple[str, list[str]]], str]:
    """(image file, captions) per image, in file order, and the split they are: Karpathy's JSON says it;
    an ALBEF/LAVIS file holds one split, named in its file name (``flickr30k_test.json``: "test")."""
    merged: dict[str, list[str]] = {}
    if isinstance(data, dict) and isinstance(data.get("images"), list):  # Karpathy's dataset JSON
        for i, img in enumerate(data["images"]):
            if not isinstance(img, dict) or "filename" not in img or "sentences" not in img:
                raise DataError(f"{file}: images[{i}] lacks 'filename' or 'sentences'; this is not Karpathy's "
                                "dataset JSON (dataset_flickr30k.json / dataset_coco.json).")
            if img.get("split") != split:
                continue
            name = "/".join(p for p in (img.get("filepath"), img["filename"]) if p)
            merged.setdefault(name, []).extend(str(s.get("raw", "")).strip() for s in img["sentences"])
        if not merged:
            splits = sorted({str(img.get("split")) for img in data["images"] if isinstance(img, dict)})
            raise DataError(f"{file}: no image in split {split!r}; the file has {splits}. Pass split= one of them.")
        file_split = split
    elif isinstance(data, list):  # ALBEF / LAVIS retrieval JSON
        for i, entry in enumerate(data):
            if not isinstance(entry, dict) or "image" not in entry or "caption" not in entry:
                raise DataError(f"{file}: entry {i} lacks 'image' or 'caption'; an ALBEF/LAVIS retrieval file is a "
                                "list of {\"image\": ..., \"caption\": [...]} entries.")
            caps = entry["caption"] if isinstance(entry["caption"], list) else [entry["caption"]]
            merged.setdefault(str(entry["image"]), []).extend(str(c).strip() for c in caps)
        stem = file.stem.lower()
        file_split = next((w for w in ("test", "val", "train") if w in stem), stem)
    else:
        raise DataError(f"{file}: neither an ALBEF/LAVIS retrieval JSON (a list of image entries) nor Karpathy's "
                        "dataset JSON (an object with 'images').")
    for name, caps in merged.items():
        if not caps or any(not c for c in caps):
            raise DataError(f"{file}: image {name!r} has an empty caption or none. Restore the file from its release.")
    return list(merged.items()), file_split


def read_karpathy(dataset: str, path: str | os.PathLike | None = None, *, split: str = "test",
                  images: str | os.PathLike | Sequence[str | os.PathLike] | ImageFolder | None = None,
                  max_images: int | None = None, verify_images: bool = False,
                  languages: Sequence[str] | str | None = None) -> ImageCaptionSet:
    """Read the Flickr30K (``dataset="flickr30k"``) or COCO (``"coco"``) Karpathy test set as an
    :class:`ImageCaptionSet` with English captions (layouts in the module doc).

    ``split`` applies to Karpathy's dataset JSON; an ALBEF/LAVIS file holds one split, which its file
    name names (``flickr30k_test.json``, ``coco_karpathy_val.json``; otherwise the file stem stands for
    it). Ids are the image file names without their folder. The set is named ``flickr30k-1k`` / ``coco-5k`` only
    when it is the whole test split of 1,000 / 5,000 images; otherwise (another split, another
    file, ``max_images``) ``<dataset>-<split>-<images>``, so that a subset is never set beside the
    published numbers.

    Raises:
        ConfigError: an unknown dataset; ``languages`` other than English.
        DataError: a missing or malformed file, an empty caption, missing images.
    """
    spec = _spec(dataset)
    if languages is not None and list([languages] if isinstance(languages, str) else languages) != ["en"]:
        raise ConfigError(f"{dataset}'s Karpathy test set has English captions only; drop languages= or pass "
                          f"['en'], got {languages!r}.")
    file = _find_file(dataset, path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{file} is not a readable JSON file ({exc}). Download it again.") from None
    entries, file_split = _entries(file, data, split)
    files = [name for name, _ in entries]
    ids = [Path(name).name for name in files]
    if len(set(ids)) != len(ids):
        raise DataError(f"{file}: two entries name the same image file in different folders.")
    from hbkit.datasets.lines import check_count

    n = len(ids) if check_count("max_images", max_images) is None else min(max_images, len(ids))
    name = spec["name"] if (file_split == "test" and n == spec["images"]) else f"{dataset}-{file_split}-{n}"
    download = None
    if dataset == "coco":
        def download():
            from hbkit.datasets.images import download_coco_images

            return download_coco_images("val2014")
    folder = image_folder(images, spec["image_dirs"], dataset=name, how_to_get=spec["how_to_get"], download=download)
    return build_set(name, ids, files, {"en": [caps for _, caps in entries]}, folder, max_images=max_images,
                     verify=verify_images)


def load_karpathy(dataset: str, path: str | os.PathLike | None = None, *, split: str = "test",
                  images: str | os.PathLike | Sequence[str | os.PathLike] | ImageFolder | None = None,
                  max_images: int | None = None, verify_images: bool = False,
                  languages: Sequence[str] | str | None = None) -> RetrievalBenchmark:
    """:func:`read_karpathy` as a benchmark (images and captions as queries and candidates)."""
    return read_karpathy(dataset, path, split=split, images=images, max_images=max_images,
                         verify_images=verify_images, languages=languages).to_benchmark()
