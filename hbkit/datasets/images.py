"""Image folders, image checks, image–caption sets and the train/evaluation leak guard.

**Image identity.** :func:`image_key` maps an image's file name (or key, or path) to a
normalised id, so that one image is recognised under the names different datasets give it:

1. the folder is dropped (``/`` and ``\\``), then a ``#...`` suffix (Multi30K's
   ``test_2017_mscoco.txt`` appends the COCO caption id: ``COCO_val2014_000000398076.jpg#657409``),
   then an image extension (:data:`IMAGE_SUFFIXES`, any case);
2. **COCO**: ``COCO_<split><year>_<12 digits>`` (2014/2015 names such as
   ``COCO_train2014_000000123456``) and a bare 12-digit name (the 2017 release:
   ``000000123456``) -> ``coco:<id>`` (``coco:123456``). COCO ids are unique across its
   train/val/test splits, so the split is not part of the key;
3. **Flickr** (Flickr30K, Multi30K, xFlickr&CO): a bare photo id of 1–11 digits without a
   leading zero (``1000092795``) and the static-URL form ``<photo id>_<secret>[_<size>]``
   (``22439193117_4183a49ec2``, Multi30K's 2017/2018 test images) -> ``flickr:<photo id>``;
4. anything else (Crossmodal-3600's Open Images keys ``000411001ff7dd4f``, your own names)
   -> the remaining name, lower-cased.

**Image folders.** :class:`ImageFolder` finds a listed image in one or several folders:
first as the path ``<folder>/<name>``, else by :func:`image_key` among all image files under
the folders (searched recursively, once, when the first name is not found directly). So a
COCO folder may hold ``train2014/`` and ``val2014/`` subfolders or the 2017 names, and a
Flickr30K folder ``flickr30k-images/``. Missing images are an error naming how many, the
first few, and where to get them; ``verify=True`` also opens every image with PIL
(``Image.verify()``: a cheap header and structure check, not a full decode).

**Image–caption sets.** :class:`ImageCaptionSet` (what the Multi30K, XTD10, xFlickr&CO and
Crossmodal-3600 loaders read) becomes a training :class:`~hbkit.parallel.ParallelDataset`
(:meth:`~ImageCaptionSet.to_dataset`) or a :class:`~hbkit.benchmark.RetrievalBenchmark`
(:meth:`~ImageCaptionSet.to_benchmark`) whose images and captions are both queries and
candidates.

**Leak guard.** :func:`check_overlap` refuses a training set and an evaluation set that share
images (zero-shot means no evaluation image was trained on) unless ``allow_overlap=True``.
"""
from __future__ import annotations

import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from hbkit.benchmark import Candidate, Query, RetrievalBenchmark
from hbkit.datasets.lines import brief, check_count
from hbkit.errors import ConfigError, DataError
from hbkit.languages import check_languages
from hbkit.parallel import IMAGE, ImageRef, ParallelDataset, ParallelItem

__all__ = ["IMAGE_SUFFIXES", "COCO_HOW_TO_GET", "FLICKR30K_HOW_TO_GET", "COCO_IMAGES_URL", "image_key", "coco_split",
           "image_keys", "ImageFolder", "DOWNLOAD", "image_folder", "verify_images", "check_overlap", "ImageCaptionSet",
           "extract_tar", "download_coco_images"]

#: File extensions recognised as images (compared in lower case).
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
#: How many missing names an error lists.
SHOW_MISSING = 5
#: COCO 2014 image archives (``train2014``: 82,783 images, 13 GB; ``val2014``: 40,504 images, 6 GB).
COCO_IMAGES_URL = "http://images.cocodataset.org/zips/{split}.zip"
COCO_HOW_TO_GET = ("COCO images are at https://cocodataset.org/#download (train2014.zip and val2014.zip, e.g. "
                   "hbkit.datasets.images.download_coco_images('val2014')); a folder with train2014/ and val2014/ "
                   "subfolders, or with the 2017 names (000000123456.jpg), works")
FLICKR30K_HOW_TO_GET = ("Flickr30K images are distributed on request (https://shannon.cs.illinois.edu/DenotationGraph/,"
                        " flickr30k-images.tar.gz) and as copies on Kaggle (e.g. the 'flickr30k' datasets, folder "
                        "flickr30k-images/)")

_COCO = re.compile(r"(?:coco_(?:train|val|test|unlabeled)\d{4}_)?(\d{12})", re.IGNORECASE)
_COCO_SPLIT = re.compile(r"coco_((?:train|val|test|unlabeled)\d{4})_\d{12}", re.IGNORECASE)
_FLICKR = re.compile(r"([1-9]\d{0,10})(?:_[0-9a-f]{6,}(?:_[a-z0-9])?)?", re.IGNORECASE)


def _name_of(value: str | ImageRef | os.PathLike) -> str:
    if isinstance(value, ImageRef):
        value = value.key
    value = os.fspath(value)
    if not isinstance(value, str):
        raise ConfigError(f"An image name must be a string, path or ImageRef, got {type(value).__name__}.")
    return re.split(r"[\\/]", value.strip())[-1].split("#", 1)[0]


def _stem(name: str) -> str:
    lower = name.lower()
    for suffix in IMAGE_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[:-len(suffix)]
    return name


def image_key(name: str | ImageRef | os.PathLike) -> str:
    """The normalised id of an image name, key, path or :class:`ImageRef` (rules in the module doc).

    ``image_key("train2014/COCO_train2014_000000123456.jpg") == image_key("000000123456.jpg") == "coco:123456"``;
    ``image_key("1000092795.jpg") == "flickr:1000092795"``.
    """
    stem = _stem(_name_of(name))
    if not stem:
        raise DataError(f"Empty image name {name!r}: every image needs a file name or key.")
    m = _COCO.fullmatch(stem)
    if m:
        return f"coco:{int(m.group(1))}"
    m = _FLICKR.fullmatch(stem)
    if m:
        return f"flickr:{int(m.group(1))}"
    return stem.lower()


def coco_split(name: str | ImageRef | os.PathLike) -> str | None:
    """The COCO split a 2014-style name states (``"train2014"``, ``"val2014"``), else None."""
    m = _COCO_SPLIT.fullmatch(_stem(_name_of(name)))
    return m.group(1).lower() if m else None


def image_keys(data: Any) -> set[str]:
    """The normalised ids (:func:`image_key`) of the images of ``data``.

    ``data``: a :class:`ParallelDataset` (its groups' images), a :class:`RetrievalBenchmark`
    (the images of its queries and candidates), an :class:`ImageCaptionSet`, or an iterable of
    names, paths or :class:`ImageRef`.
    """
    if isinstance(data, ImageCaptionSet):
        return {image_key(ref) for ref in data.images}
    if isinstance(data, ParallelDataset):
        if data.modality != IMAGE:
            raise ConfigError(f"Dataset {data.name!r} holds text pairs, not images: the leak guard compares image "
                              "sets. Pass an image–caption dataset.")
        return {image_key(data.image(g)) for g in range(len(data))}  # type: ignore[arg-type]
    if isinstance(data, RetrievalBenchmark):
        refs = [x.image for x in (*data.queries, *data.candidates) if x.image is not None]
        if not refs:
            raise ConfigError(f"Benchmark {data.name!r} holds no images: the leak guard compares image sets.")
        return {image_key(r) for r in refs}
    if isinstance(data, (str, bytes, os.PathLike)):
        raise ConfigError("Pass a collection of image names, not a single name, to the leak guard.")
    try:
        return {image_key(x) for x in data}
    except TypeError:
        raise ConfigError(f"Cannot read image ids from {type(data).__name__}: pass a ParallelDataset, "
                          "RetrievalBenchmark, ImageCaptionSet or a list of image names.") from None


# --------------------------------------------------------------------------- folders

class ImageFolder:
    """One or several folders in which listed images are looked up (see the module doc).

    Args:
        roots: folder(s), searched in order.
        how_to_get: where the images come from (ends up in the missing-image error).
    """

    def __init__(self, roots: str | os.PathLike | Sequence[str | os.PathLike], *, how_to_get: str = "") -> None:
        if isinstance(roots, (str, os.PathLike)):
            roots = [roots]
        self.roots: list[Path] = [Path(os.path.expandvars(os.fspath(r))).expanduser().absolute() for r in roots]
        if not self.roots:
            raise ConfigError("No image folder given: pass images=<folder> (or a list of folders).")
        self.how_to_get = how_to_get
        for root in self.roots:
            if not root.is_dir():
                hint = f" {how_to_get}." if how_to_get else ""
                raise DataError(f"Image folder not found: {root}. Pass the folder holding the images as images=."
                                f"{hint}")
        self._index: dict[str, Path] | None = None

    def __repr__(self) -> str:
        return f"ImageFolder({[str(r) for r in self.roots]})"

    def _files(self) -> Iterator[Path]:
        for root in self.roots:
            seen: set[tuple[int, int]] = set()
            for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
                st = os.stat(dirpath)
                if (st.st_dev, st.st_ino) in seen:  # a symlink loop
                    dirnames[:] = []
                    continue
                seen.add((st.st_dev, st.st_ino))
                dirnames.sort()
                for f in sorted(filenames):
                    if f.lower().endswith(IMAGE_SUFFIXES) and not f.startswith("."):
                        yield Path(dirpath) / f

    def index(self) -> dict[str, Path]:
        """:func:`image_key` -> the first image file with that key (roots in order, then sorted paths)."""
        if self._index is None:
            index: dict[str, Path] = {}
            for path in self._files():
                index.setdefault(image_key(path.name), path)
            self._index = index
        return self._index

    def find(self, name: str) -> Path | None:
        """The file of the listed image ``name`` (a file name, relative or absolute path, or key), or None."""
        clean = name.strip().split("#", 1)[0]
        if clean and os.path.isabs(clean) and os.path.isfile(clean):
            return Path(clean)
        if clean and not os.path.isabs(clean) and ".." not in Path(clean).parts:
            for root in self.roots:
                path = root / clean
                if path.is_file():
                    return path
        return self.index().get(image_key(clean))

    def resolve(self, names: Sequence[str], *, dataset: str = "dataset") -> list[Path]:
        """The files of ``names``, in order; any missing one is a :class:`DataError`."""
        found = [self.find(n) for n in names]
        missing = [n for n, p in zip(names, found) if p is None]
        if missing:
            where = ", ".join(str(r) for r in self.roots)
            shown = ", ".join(repr(n) for n in missing[:SHOW_MISSING]) + (", ..." if len(missing) > SHOW_MISSING
                                                                          else "")
            hint = f" {self.how_to_get}." if self.how_to_get else ""
            raise DataError(f"{dataset}: {len(missing)} of its {len(names)} images are missing from {where} "
                            f"({shown}). Put the images there (looked up by file name, also in subfolders, and by "
                            f"image id: {image_key(missing[0])!r} for {missing[0]!r}) or pass the right folder as "
                            f"images=.{hint}")
        return found  # type: ignore[return-value]


#: ``images="download"``: fetch the dataset's downloadable images into the cache.
DOWNLOAD = "download"


def image_folder(images: str | os.PathLike | Sequence[str | os.PathLike] | ImageFolder | None,
                 defaults: Sequence[str], *, dataset: str, how_to_get: str,
                 download: Callable[[], str | os.PathLike | Sequence[str | os.PathLike]] | None = None) -> ImageFolder:
    """The :class:`ImageFolder` for a loader's ``images=`` argument.

    ``images`` is a folder, a list of folders, or an ImageFolder; when None, the folders
    ``$HBKIT_DATA/<d>`` of ``defaults`` that exist are used (a DataError names them when none does);
    ``"download"`` calls ``download()`` (the folders it returns are used), a DataError when the
    dataset's images cannot be downloaded.
    """
    if isinstance(images, ImageFolder):
        return images
    if isinstance(images, str) and images == DOWNLOAD:
        if download is None:
            raise DataError(f"{dataset}: its images cannot be downloaded automatically. {how_to_get}; pass the folder "
                            "as images=.")
        images = download()
    if images is None:
        from hbkit.datasets.sources import local_dir

        found = [p for p in (local_dir(d) for d in defaults) if p is not None and p.is_dir()]
        if not found:
            env = " or ".join(f"$HBKIT_DATA/{d}" for d in defaults)
            raise DataError(f"{dataset} needs its images: pass images=<folder> (or put them in {env}). {how_to_get}.")
        images = found
    return ImageFolder(images, how_to_get=how_to_get)


def verify_images(paths: Iterable[str | os.PathLike | ImageRef], *, dataset: str = "dataset") -> int:
    """Open every image with PIL and run ``Image.verify()``; returns the number checked.

    A file PIL cannot read (corrupt, truncated header, not an image) is a :class:`DataError`
    naming it. ``verify()`` reads the header and checks what the format allows without
    decoding the pixels, so it is cheap but does not catch every truncated file.
    """
    from PIL import Image

    n = 0
    for p in paths:
        path = p.key if isinstance(p, ImageRef) else os.fspath(p)
        try:
            with Image.open(path) as im:
                im.verify()
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for bad files
            raise DataError(f"{dataset}: the image {path} cannot be read ({brief(exc)}); the file is corrupt, "
                            "truncated or not an image. Download it again or replace it, then reload.") from exc
        n += 1
    return n


# --------------------------------------------------------------------------- leak guard

def _label(data: Any, given: str | None, default: str) -> str:
    if given is not None:
        return given
    return str(getattr(data, "name", default))


def check_overlap(train: Any, evaluation: Any, *, train_name: str | None = None, eval_name: str | None = None,
                  allow_overlap: bool = False) -> dict[str, Any]:
    """Refuse a training set and an evaluation set that share images (the leak guard).

    Args:
        train, evaluation: a ParallelDataset, RetrievalBenchmark, ImageCaptionSet or a list of
            image names / paths / ImageRefs; images are compared by :func:`image_key`
            (``COCO_train2014_000000123456.jpg`` and ``000000123456.jpg`` are one image).
        train_name, eval_name: labels for the message and record (default: the objects' ``name``).
        allow_overlap: evaluate anyway; the caller must record the returned record with the results.

    Returns:
        ``{"train", "evaluation", "train_images", "eval_images", "overlap", "allow_overlap",
        "allowed", "examples"}``: the two labels, the number of distinct images of each, how many
        evaluation images are training images, the flag given, whether a non-zero overlap was
        let through, and up to five shared ids (sorted).

    Raises:
        DataError: the sets share images and ``allow_overlap`` is False.
    """
    tname, ename = _label(train, train_name, "training set"), _label(evaluation, eval_name, "evaluation set")
    a, b = image_keys(train), image_keys(evaluation)
    shared = sorted(a & b)
    record = {"train": tname, "evaluation": ename, "train_images": len(a), "eval_images": len(b),
              "overlap": len(shared), "allow_overlap": bool(allow_overlap),
              "allowed": bool(shared) and bool(allow_overlap), "examples": shared[:SHOW_MISSING]}
    if shared and not allow_overlap:
        raise DataError(f"{len(shared)} of the {len(b)} images of the evaluation set {ename!r} are also in the "
                        f"training set {tname!r} (e.g. {', '.join(shared[:3])}): evaluating on them is not zero-shot. "
                        "Train without these images or evaluate on another benchmark; to evaluate anyway pass "
                        "allow_overlap=True and record the override with the results.")
    return record


# --------------------------------------------------------------------------- image–caption sets

@dataclass(frozen=True)
class ImageCaptionSet:
    """Images with their captions per language, as read from a dataset's files.

    Attributes:
        name: the dataset label (e.g. ``"multi30k-test_2016_flickr"``).
        ids: image ids in file order (the group ids / ``xid``; unique).
        images: the resolved image of each id (:class:`ImageRef` of its absolute path).
        captions: language -> one tuple of captions per image (aligned with ``ids``; may be
            empty for an image without a caption in that language).
    """

    name: str
    ids: tuple[str, ...]
    images: tuple[ImageRef, ...]
    captions: Mapping[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.images):
            raise DataError(f"{self.name}: {len(self.ids)} image ids but {len(self.images)} images.")
        if len(set(self.ids)) != len(self.ids):
            raise DataError(f"{self.name}: image ids repeat; merge the captions of one image under one id.")
        for lang, caps in self.captions.items():
            if len(caps) != len(self.ids):
                raise DataError(f"{self.name}: {len(caps)} caption lists in {lang!r} for {len(self.ids)} images.")
        if not self.ids:
            raise DataError(f"{self.name}: no images. Check the files and max_images.")

    @property
    def languages(self) -> list[str]:
        """Languages with at least one caption, sorted."""
        return sorted(lang for lang, caps in self.captions.items() if any(caps))

    def num_captions(self, lang: str | None = None) -> int:
        """Captions in ``lang`` (all languages when None)."""
        langs = self.captions if lang is None else [lang]
        return sum(len(c) for la in langs for c in self.captions.get(la, ()))

    def _langs(self, languages: Sequence[str] | str | None) -> list[str]:
        if languages is None:
            return self.languages
        if isinstance(languages, str):
            languages = [languages]
        return check_languages(languages, allowed=self.languages, where=self.name)

    def to_dataset(self, languages: Sequence[str] | str | None = None) -> ParallelDataset:
        """A training ParallelDataset: group = image id, one item per caption (query = caption,
        positive = the image), in image order, then language order, then caption order."""
        langs = self._langs(languages)
        items = [ParallelItem(gid, lang, cap, ref)
                 for i, (gid, ref) in enumerate(zip(self.ids, self.images))
                 for lang in langs for cap in self.captions[lang][i]]
        return ParallelDataset(items, name=self.name, passage_has_language=False)

    def to_benchmark(self, languages: Sequence[str] | str | None = None) -> RetrievalBenchmark:
        """A RetrievalBenchmark with images and captions both as queries and as candidates.

        - each image: ``Query("image:<id>", xid=<id>, lang=None, text="", image=ref)`` and
          ``Candidate("image:<id>", None, "", xids=(<id>,), image=ref)``;
        - caption ``k`` of an image in ``lang``: ``Query("<lang>:<id>:<k>", xid=<id>, lang, text)``
          and ``Candidate("<lang>:<id>:<k>", lang, text, xids=(<id>,))``.

        So an image and all its captions are relevant to each other, and the evaluator produces
        text→image and image→text rows (per language and pooled) and text→text rows (caption ->
        captions of the same image). A caption's query and candidate share one id (qid == cid), so
        an evaluation that must leave the query's own caption out can do so; the text→text
        monolingual and multilingual rows include it.
        """
        langs = self._langs(languages)
        queries: list[Query] = []
        candidates: list[Candidate] = []
        for gid, ref in zip(self.ids, self.images):
            queries.append(Query(f"image:{gid}", gid, None, "", image=ref))
            candidates.append(Candidate(f"image:{gid}", None, "", xids=(gid,), image=ref))
        for lang in langs:
            for i, gid in enumerate(self.ids):
                for k, cap in enumerate(self.captions[lang][i]):
                    cid = f"{lang}:{gid}:{k}"
                    queries.append(Query(cid, gid, lang, cap))
                    candidates.append(Candidate(cid, lang, cap, xids=(gid,)))
        return RetrievalBenchmark(self.name, queries, candidates)


def build_set(name: str, ids: Sequence[str], files: Sequence[str], captions: Mapping[str, Sequence[Sequence[str]]],
              folder: ImageFolder, *, max_images: int | None = None, verify: bool = False) -> ImageCaptionSet:
    """Resolve the images of ``ids`` (listed as ``files``) and build an :class:`ImageCaptionSet`.

    ``max_images`` keeps the first images (in file order); ``verify`` runs :func:`verify_images`.
    """
    max_images = check_count("max_images", max_images)
    n = len(ids) if max_images is None else min(max_images, len(ids))
    paths = folder.resolve(list(files[:n]), dataset=name)
    if verify:
        verify_images(paths, dataset=name)
    caps = {lang: tuple(tuple(c) for c in per_image[:n]) for lang, per_image in captions.items()}
    return ImageCaptionSet(name, tuple(ids[:n]), tuple(ImageRef(str(p)) for p in paths), caps)


# --------------------------------------------------------------------------- archives

EXTRACTED_MARKER = ".hbkit-extracted"


def extract_tar(path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Unpack a ``.tar``/``.tgz``/``.tar.gz`` archive into ``out_dir`` atomically and return ``out_dir``.

    As :func:`hbkit.datasets.download.extract_zip`: unpacked into a temporary folder renamed when
    complete (a marker file records the archive); a finished folder is returned as is. Members
    with absolute paths, ``..``, links or device files are refused.

    Raises:
        DataError: the archive is missing, corrupt or truncated, or holds an unsafe member.
    """
    from hbkit.engine.atomic import atomic_dir

    archive = Path(path).expanduser()
    out = Path(out_dir).expanduser()
    marker = out / EXTRACTED_MARKER
    if marker.is_file() and marker.read_text(encoding="utf-8").strip() == archive.name:
        return out
    if not archive.is_file():
        raise DataError(f"Archive not found: {archive}. Download it first or fix the path.")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"Cannot extract {archive.name} into {out}: it exists and was not made from this archive. "
                        "Pass a new folder, or delete it if it is a leftover.")
    try:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for m in members:
                target = Path(m.name)
                if target.is_absolute() or ".." in target.parts or not (m.isfile() or m.isdir()):
                    raise DataError(f"{archive} holds the unsafe member {m.name!r} (a link, device or a path outside "
                                    "the target folder); refusing to extract. Check where the archive came from.")
            with atomic_dir(out) as tmp:
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(tmp, members=members, filter="data")
                else:  # pragma: no cover - Python without extraction filters; members were checked above
                    tf.extractall(tmp, members=members)
                (tmp / EXTRACTED_MARKER).write_text(archive.name + "\n", encoding="utf-8")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"{archive} is not a complete tar archive ({brief(exc)}); the download may be truncated. "
                        "Delete it and download it again.") from exc
    return out


def download_coco_images(split: str, dest: str | os.PathLike | None = None) -> Path:
    """Download and unpack one COCO 2014 image archive; returns the COCO folder (``<dest>/coco``).

    ``split``: ``"train2014"`` or ``"val2014"``; the images land in ``<dest>/coco/<split>/<split>/``
    (``dest`` defaults to the download cache). The archives are not checksummed by their host;
    :func:`extract_zip` checks every member's CRC.
    """
    from hbkit.datasets.download import default_cache_dir, download, extract_zip

    if split not in ("train2014", "val2014"):
        raise ConfigError(f"COCO split {split!r}: use 'train2014' or 'val2014'.")
    root = (Path(dest).expanduser() if dest is not None else default_cache_dir()) / "coco"
    archive = download(COCO_IMAGES_URL.format(split=split), root / "archives")
    extract_zip(archive, root / split)
    return root
