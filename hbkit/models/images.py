"""Images for image–text models: resolve :class:`~hbkit.parallel.ImageRef` keys, load them with
PIL, preprocess them with the model's transform, and collate image–caption pairs.

An :class:`ImageRef` key is an absolute path, or a path relative to an *image root* (a folder
given to the model or collator); without a root a relative key is taken from the working
directory. A missing or unreadable image raises :class:`~hbkit.errors.DataError` naming the file.

:class:`ImageCaptionCollator` is picklable (a tokenizer, a transform and a folder name), so it
can collate in ``DataLoader`` workers. It deduplicates images by group: pairs of one group (its
captions in several languages under 1-to-K batches) share one image row.

**Image cache** (:class:`ImageCache`, off unless given): keeps each file's preprocessed tensor, so
an image seen again is not decoded again. That is exact only for a *deterministic* transform, such
as open_clip's evaluation transform (resize, centre crop, to tensor, normalise): the cached tensor
is what the transform returns for that file. Never give one with a random transform (open_clip's
training transform, ``augment=True``): every epoch would see the first crop. Entries are keyed by
the file's device, inode, size and modification time, so a file replaced (a new inode, as atomic
writes do) or rewritten (a new modification time) is read again. Each process (each
``DataLoader`` worker) fills its own copy, up to ``max_bytes``.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, Union

import torch

from hbkit.errors import ConfigError, DataError
from hbkit.parallel import ImageRef, TrainingPair

ImageLike = Union[ImageRef, str, os.PathLike]


def resolve_image_path(image: ImageLike, root: str | os.PathLike | None = None) -> Path:
    """The file an image reference names: an absolute key as is, a relative key under ``root``."""
    key = image.key if isinstance(image, ImageRef) else os.fspath(image)
    if not isinstance(key, str) or not key.strip():
        raise DataError(f"An image reference must be a non-empty path or key, got {image!r}.")
    path = Path(key).expanduser()
    if path.is_absolute() or root is None:
        return path
    return Path(root).expanduser() / path


def load_image(image: ImageLike, root: str | os.PathLike | None = None):
    """Open and fully decode an image file (``PIL.Image``, mode as stored).

    Raises DataError naming the file when it is missing, unreadable or not an image."""
    from PIL import Image, UnidentifiedImageError

    path = resolve_image_path(image, root)
    where = f" (key {image.key!r}, image root {os.fspath(root) if root is not None else 'not set'})" \
        if isinstance(image, ImageRef) else ""
    if not path.is_file():
        raise DataError(f"Image file {path} not found{where}. Check the image folder (image_root) and the "
                        "dataset's image keys, or drop the items of this image.")
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"Image file {path}{where} could not be read ({exc.__class__.__name__}: {exc}): it is "
                        "corrupt or not an image. Replace the file or drop the items of this image.") from exc


def group_id(group: str) -> int:
    """A stable signed 64-bit id of a group name (BLAKE2b), the same in every process."""
    digest = hashlib.blake2b(str(group).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


class ImageCache:
    """Preprocessed images by file version, for a deterministic transform (module docstring).

    Holds at most ``max_bytes`` of tensors; once full, further images are decoded as usual and
    not kept (no eviction). ``hits`` / ``misses`` count look-ups of files that exist."""

    def __init__(self, max_bytes: int) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ConfigError(f"max_bytes must be an integer >= 0, got {max_bytes!r}.")
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._store: dict[tuple[int, int, int, int], torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self._store)

    @staticmethod
    def key(path: Path) -> tuple[int, int, int, int] | None:
        """The version of the file at ``path`` (device, inode, size, mtime in ns); None if it cannot be read."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def get(self, key: tuple[int, int, int, int]) -> torch.Tensor | None:
        pixels = self._store.get(key)
        if pixels is None:
            self.misses += 1
        else:
            self.hits += 1
        return pixels

    def put(self, key: tuple[int, int, int, int], pixels: torch.Tensor) -> None:
        size = pixels.untyped_storage().nbytes()  # what keeping it holds (a view keeps its whole storage)
        if key not in self._store and self.nbytes + size <= self.max_bytes:
            self._store[key] = pixels
            self.nbytes += size


def _transformed(image: ImageLike, path: Path, transform: Callable[[Any], torch.Tensor],
                 root: str | os.PathLike | None) -> torch.Tensor:
    pixels = transform(load_image(image, root))
    if not isinstance(pixels, torch.Tensor) or pixels.ndim != 3:
        raise DataError(f"The image transform returned {type(pixels).__name__} for {path}; a (3, H, W) "
                        "tensor is expected.")
    return pixels


def preprocess_images(images: Sequence[ImageLike], transform: Callable[[Any], torch.Tensor],
                      root: str | os.PathLike | None = None, cache: ImageCache | None = None) -> torch.Tensor:
    """Load and transform images into one float tensor (n, 3, H, W).

    With ``cache``, a file already preprocessed is taken from it (deterministic ``transform`` only)."""
    if not images:
        raise DataError("No images to preprocess.")
    out = []
    for image in images:
        path = resolve_image_path(image, root)
        key = cache.key(path) if cache is not None else None
        pixels = cache.get(key) if key is not None else None
        if pixels is None:
            pixels = _transformed(image, path, transform, root)
            if key is not None:
                cache.put(key, pixels)
        out.append(pixels)
    return torch.stack(out)


def image_batches(images: Sequence[ImageLike], transform: Callable[[Any], torch.Tensor],
                  root: str | os.PathLike | None = None, batch_size: int = 64) -> Iterator[torch.Tensor]:
    """Preprocessed images in input order, ``batch_size`` at a time: tensors (<=batch_size, 3, H, W)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    for start in range(0, len(images), batch_size):
        yield preprocess_images(images[start:start + batch_size], transform, root)


@dataclass(frozen=True)
class ImageCaptionCollator:
    """Collates image–caption :class:`~hbkit.parallel.TrainingPair` into a batch.

    Output (B pairs, M <= B distinct images; a group is one image):

    - ``text``: what ``tokenize`` returns for the B captions (open_clip: token ids (B, context_length));
    - ``images``: (M, 3, H, W) preprocessed images, one per group, in order of first appearance;
    - ``image_index``: (B,) long, the image row of each caption;
    - ``text_groups`` (B,) and ``image_groups`` (M,): int64 group ids (:func:`group_id`),
      with which the loss finds every caption's image and every image's captions;
    - ``n_pairs``: B.

    Picklable when ``tokenize`` and ``transform`` are (open_clip's tokenizers and transforms are).
    ``cache``: an :class:`ImageCache` of preprocessed images, only for a deterministic ``transform``.
    """

    tokenize: Callable[[list[str]], Any]
    transform: Callable[[Any], torch.Tensor]
    image_root: str | None = None
    cache: ImageCache | None = field(default=None, compare=False, repr=False)

    def __call__(self, pairs: Sequence[TrainingPair]) -> dict:
        if not pairs:
            raise DataError("Cannot collate an empty batch of image–caption pairs.")
        rows: dict[str, int] = {}
        images: list[ImageRef] = []
        index: list[int] = []
        for p in pairs:
            if not isinstance(p.positive, ImageRef):
                raise DataError(f"An image–text model got a text positive for group {p.group!r} "
                                f"({str(p.positive)[:40]!r}...): train text pairs with the text bi-encoder, or "
                                "wrap image paths in hbkit.parallel.ImageRef.")
            if not isinstance(p.query, str) or not p.query.strip():
                raise DataError(f"Empty caption for group {p.group!r} ({p.query_lang}): every caption must "
                                "contain characters. Remove empty rows from the data.")
            row = rows.get(p.group)
            if row is None:
                row = rows[p.group] = len(images)
                images.append(p.positive)
            elif images[row] != p.positive:
                raise DataError(f"Group {p.group!r} names two images in one batch, {images[row].key!r} and "
                                f"{p.positive.key!r}: all captions of a group describe one image.")
            index.append(row)
        groups = list(rows)
        return {
            "text": self.tokenize([p.query for p in pairs]),
            "images": preprocess_images(images, self.transform, self.image_root, self.cache),
            "image_index": torch.tensor(index, dtype=torch.long),
            "text_groups": torch.tensor([group_id(p.group) for p in pairs], dtype=torch.long),
            "image_groups": torch.tensor([group_id(g) for g in groups], dtype=torch.long),
            "n_pairs": len(pairs),
        }
