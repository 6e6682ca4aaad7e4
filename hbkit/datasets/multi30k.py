"""Multi30K (Elliott et al. 2016): Flickr30K images with captions in English, German, French and Czech.

Layout of https://github.com/multi30k/dataset (folder ``data/``; ``root`` may be that folder,
a folder holding ``task1/`` / ``task2/``, or a task folder itself):

**Task 1** (translations: line i of every language describes the same image):

- ``task1/raw/{split}.{lang}.gz`` (or without ``.gz``): one caption per line;
- ``task1/image_splits/{split}.txt``: line i = the image of caption line i. Flickr30K names
  (``1000092795.jpg``); ``test_2017_flickr`` / ``test_2018_flickr`` use Flickr static names
  (``22439193117_4183a49ec2.jpg``) and ``test_2017_mscoco`` COCO names with the caption id
  (``COCO_val2014_000000398076.jpg#657409``, the ``#...`` is dropped).

=================  ======  ==============  =====================================
split              images  languages       images from
=================  ======  ==============  =====================================
train              29,000  en de fr cs     Flickr30K
val                 1,014  en de fr cs     Flickr30K
test_2016_flickr    1,000  en de fr cs     Flickr30K
test_2017_flickr    1,000  en de fr        Flickr (WMT 2017 test images)
test_2017_mscoco      461  en de fr        COCO (267 train2014, 194 val2014)
test_2018_flickr    1,071  en de fr cs     Flickr (WMT 2018 test images)
=================  ======  ==============  =====================================

**Task 2** (independent descriptions): ``task2/raw/{split}.{n}.{lang}.gz`` for n = 1..5 and
``task2/image_splits/{split}_images.txt``; splits ``train`` (29,000), ``val`` (1,014),
``test_2016`` (1,000), languages en and de: five captions per image and language, not
translations of each other.

The caption files are downloaded (pinned commit, SHA-256 checked) when no ``root`` is given
and ``$HBKIT_DATA/multi30k`` does not exist. Images come from a local folder
(``images=``, default ``$HBKIT_DATA/flickr30k-images``; ``$HBKIT_DATA/coco`` for
``test_2017_mscoco``, where ``images="download"`` fetches COCO train2014 and val2014): Flickr30K
is distributed on request, see :data:`~hbkit.datasets.images.FLICKR30K_HOW_TO_GET`.
Group ids and ``xid`` are the image names as listed (``1000092795.jpg``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from hbkit.benchmark import RetrievalBenchmark
from hbkit.datasets.images import (COCO_HOW_TO_GET, FLICKR30K_HOW_TO_GET, ImageCaptionSet, ImageFolder, build_set,
                                   image_folder)
from hbkit.datasets.lines import local_lines
from hbkit.errors import ConfigError, DataError
from hbkit.languages import check_languages
from hbkit.parallel import ParallelDataset

__all__ = ["MULTI30K_SPLITS", "MULTI30K_COMMIT", "MULTI30K_URL", "MULTI30K_SHA256", "read_multi30k",
           "load_multi30k", "load_multi30k_benchmark", "download_multi30k", "multi30k_files"]

#: task -> split -> caption languages.
MULTI30K_SPLITS: dict[int, dict[str, tuple[str, ...]]] = {
    1: {"train": ("en", "de", "fr", "cs"), "val": ("en", "de", "fr", "cs"),
        "test_2016_flickr": ("en", "de", "fr", "cs"), "test_2017_flickr": ("en", "de", "fr"),
        "test_2017_mscoco": ("en", "de", "fr"), "test_2018_flickr": ("en", "de", "fr", "cs")},
    2: {"train": ("en", "de"), "val": ("en", "de"), "test_2016": ("en", "de")},
}
#: Captions per image and language in task 2.
TASK2_CAPTIONS = 5
MULTI30K_COMMIT = "a3d2e0d26b56f3846f66a952536ffed4e401d05a"
MULTI30K_URL = "https://raw.githubusercontent.com/multi30k/dataset/{commit}/data"
#: SHA-256 of the files at MULTI30K_COMMIT, by path below ``data/``.
MULTI30K_SHA256: dict[str, str] = {
    "task1/image_splits/test_2016_flickr.txt": "871e8ecafc66fb13e044ecccf669d04a865b4c58553227df86b933f0337a1563",
    "task1/image_splits/test_2017_flickr.txt": "7bef9b1eb747593c23a8597e830ac804d28180d1226c1d6e5bc3f08ccc561e85",
    "task1/image_splits/test_2017_mscoco.txt": "8f976b3c0beed9d96c918fb41e36178f1af11f0ff61d964592b80f932cb5c6d8",
    "task1/image_splits/test_2018_flickr.txt": "8922c98be3e2b6866cd27d90e855214c2d9437fb9ebe406cdcde0edb786b4b95",
    "task1/image_splits/train.txt": "97ee57e160a46c7d0e75298ebf57967e1245698a6f8806436ff07e61d1a41221",
    "task1/image_splits/val.txt": "db26f03eaf833ec47bfaea129ed053b68cbcfc5d1f9a09c4cdf7c88fbfea7108",
    "task1/raw/test_2016_flickr.cs.gz": "200a4a74cc9560f051924abb9803be008d1908d77f747e9141aeb86dfd2797f1",
    "task1/raw/test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    "task1/raw/test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
    "task1/raw/test_2016_flickr.fr.gz": "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90",
    "task1/raw/test_2017_flickr.de.gz": "a2c89666db00c495cd8513b9d708d5a3acc205d7de312ef2bf5fb7ebc1540aee",
    "task1/raw/test_2017_flickr.en.gz": "76a444ee25172e72695cddb13ae4a3bda59430617be88e0bb46b60504f054074",
    "task1/raw/test_2017_flickr.fr.gz": "3ba671ceb2299f3304ffafefea7a833d08632fbaf0ba18546f8a2ec2391af496",
    "task1/raw/test_2017_mscoco.de.gz": "799e4854c25d601cb6cb6be29eabe5667734c61ace2f495e03e429031a0bc338",
    "task1/raw/test_2017_mscoco.en.gz": "aab300bfb4427697987e02cd0aacd44bfe8aa50456231b6474c08038bbed2b58",
    "task1/raw/test_2017_mscoco.fr.gz": "754f3072ba9f124569ba5258b32730fc1d214bbf8e0c6dfb2b74401676220db0",
    "task1/raw/test_2018_flickr.cs.gz": "7d0a9db904f94c554a8c58049a9f3a5357c27f46cc3d710d70cb0b4a2585b8c2",
    "task1/raw/test_2018_flickr.de.gz": "ddd0130c7d97482dc5197a02141dae8dd79f20f03586c480d675c09a32daf608",
    "task1/raw/test_2018_flickr.en.gz": "ef4f4844037d4c5dea75c9a8ed5fd78905967a26f67c255e230cc9780032654d",
    "task1/raw/test_2018_flickr.fr.gz": "fb2b83fcceb937a4f7e3e93c1c51c22aba92f1e342391e6b5ba392b16a920501",
    "task1/raw/train.cs.gz": "a65adb8b32e3bc664f21ecba7a6e7f6950fd1f405e135f7c312faabdb6255077",
    "task1/raw/train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "task1/raw/train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "task1/raw/train.fr.gz": "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c",
    "task1/raw/val.cs.gz": "b63226e05c4bd5dd6a42897d74b86a1b9d2c31498252c572b1ea7f7996927fcc",
    "task1/raw/val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "task1/raw/val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "task1/raw/val.fr.gz": "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9",
    "task2/image_splits/test_2016_images.txt": "871e8ecafc66fb13e044ecccf669d04a865b4c58553227df86b933f0337a1563",
    "task2/image_splits/train_images.txt": "97ee57e160a46c7d0e75298ebf57967e1245698a6f8806436ff07e61d1a41221",
    "task2/image_splits/val_images.txt": "db26f03eaf833ec47bfaea129ed053b68cbcfc5d1f9a09c4cdf7c88fbfea7108",
    "task2/raw/test_2016.1.de.gz": "cf83315ea2e76c517fb41553ff25c7128d071397928a6b66a5d81479aeea950b",
    "task2/raw/test_2016.1.en.gz": "bf64274c8e1f73ba57d47409f707a640b3874a06e7e83adfb5a6d4c055bc6b29",
    "task2/raw/test_2016.2.de.gz": "327af090d22ddf624fe638f34e815b249bdfa033e3e48f55474e21d6b28efaa8",
    "task2/raw/test_2016.2.en.gz": "36c12dac199e336e74ebe91c5240a1c6cefce7af2a3f3a2054d184947932bc3c",
    "task2/raw/test_2016.3.de.gz": "b3236b4834c944cd42e6942da9041fee210cb2875574deefd41f130e5651a61b",
    "task2/raw/test_2016.3.en.gz": "2188662d22b01c5ecf7ae6a7c003b45fc83c510d34999c2340078e75088b0f1f",
    "task2/raw/test_2016.4.de.gz": "3843a960dc2c026d5d371c720cce830b6709d03c2f29e17b2923af11497da2c0",
    "task2/raw/test_2016.4.en.gz": "dcb6a0ad2ae40f54a1f9e9f20d3146c7f0a662feece2e78d2d511667bf229f08",
    "task2/raw/test_2016.5.de.gz": "c861f68362c443b07c8f919a9bd8c8ecd7f5fccf2b13bf4d4bd8e7fe8783880e",
    "task2/raw/test_2016.5.en.gz": "60e31317f0d960aed273d8ec527411935fb1ff3dee2c9cc9572259739ff193c0",
    "task2/raw/train.1.de.gz": "0002241b52aba5160c08d644ea0d64a9bf46a2dfffcf619c9e3cdaa55b357004",
    "task2/raw/train.1.en.gz": "a0e057f07a9733199c0d755d77f6d583dc6f40a3180734b1130a216e2fdf3a3b",
    "task2/raw/train.2.de.gz": "ac7c29258b90aec0b64d677c5bfc831fc402e6296d0aa9cc7a3433ddbff85c37",
    "task2/raw/train.2.en.gz": "d79dd70a9eafb2d1fe40151621278c4ae69b3c148c5052a53d7c7a41bf3ba023",
    "task2/raw/train.3.de.gz": "ec5e6508813814aa31311b34e26e24f903dd7701f8d0668313259b7f975d7aa0",
    "task2/raw/train.3.en.gz": "86e16fdcc699bcb6bca0f87c3cf1051f7de5ee3674dd588cedc5200194282749",
    "task2/raw/train.4.de.gz": "bcee8ac6eb47d8a7dc8cff47d9a0fbd80b4363cfda22021bacd297f9604221a4",
    "task2/raw/train.4.en.gz": "3771b84e010ad6197806d2a1188cb07c12149e3e0d178dd5966dee5763733686",
    "task2/raw/train.5.de.gz": "dccb0ca6ff25e0b1f0d385f59fb809184e0db89622d88371725e3ec46d43bfc0",
    "task2/raw/train.5.en.gz": "73988689307fe836994eae59735dc840c15da9775455fa76e6ed22606a042a91",
    "task2/raw/val.1.de.gz": "a6b9ad98bdab8882d2ac40d1bc05db89341947162c07d2d0d27e80f01897ba05",
    "task2/raw/val.1.en.gz": "4ce8f8ffbef4a1c066e3f35a5ffc764666c26c318a733d9bdc6349577f1c6f9c",
    "task2/raw/val.2.de.gz": "dbbf0f8fa54fdb4a3c64d22a1c0773ade3f775c39e4513ab5ca6d683025086dc",
    "task2/raw/val.2.en.gz": "4103944d652127e5af33ba2761d71cb6c0e1509c1a67d4387dc67ad768cfb752",
    "task2/raw/val.3.de.gz": "5eac83b577fe9bc781e60b609545123804e9dd29de4c2bd1b9e178ad8b29a1da",
    "task2/raw/val.3.en.gz": "6ecd848713d98faa9c6db2e9e457a778335358e6e3a4743cf4e929a0516e399a",
    "task2/raw/val.4.de.gz": "1c3054cfd1e47f17d8a20fcec6615cfd26d7dc2c8c4ef4625cd9db9f4e4590ea",
    "task2/raw/val.4.en.gz": "bfab4f0cbdac6233f206bbbfbd324dc02b258e291c3f410a69f9884171008788",
    "task2/raw/val.5.de.gz": "185d6cb907313e6a6eef76f09c657e5748e08ee3c7a5b26200186e171e2c8344",
    "task2/raw/val.5.en.gz": "4b6a6541b7b58d545eff7feead4187aeb0439a7178a7bed6951121e0ecbaee66",
}

_HOW_TO_GET = ("Get the caption files from https://github.com/multi30k/dataset (folder data/), or leave path unset "
               "to download them")


def _check_split(task: int, split: str) -> tuple[str, ...]:
    if task not in MULTI30K_SPLITS:
        raise ConfigError(f"Multi30K task {task!r}: use 1 (translations, en/de/fr/cs) or 2 (five independent "
                          "captions per image, en/de).")
    splits = MULTI30K_SPLITS[task]
    if split not in splits:
        raise ConfigError(f"Multi30K task {task} has no split {split!r}. Use one of: {', '.join(splits)}.")
    return splits[split]


def multi30k_files(task: int, split: str, languages: Sequence[str]) -> list[str]:
    """Paths below ``data/`` of the image list and caption files of one split (``.gz`` names)."""
    _check_split(task, split)
    if task == 1:
        return [f"task1/image_splits/{split}.txt"] + [f"task1/raw/{split}.{lang}.gz" for lang in languages]
    return [f"task2/image_splits/{split}_images.txt"] + [f"task2/raw/{split}.{n}.{lang}.gz" for lang in languages
                                                         for n in range(1, TASK2_CAPTIONS + 1)]


def download_multi30k(task: int = 1, splits: Sequence[str] | None = None, languages: Sequence[str] | None = None,
                      dest: str | os.PathLike | None = None, *, base_url: str | None = None) -> Path:
    """Download (once, SHA-256 checked) the caption files of ``splits`` into ``<dest>/multi30k``.

    Returns that folder (it holds ``task{task}/raw`` and ``task{task}/image_splits``). ``dest``
    defaults to the download cache; ``base_url`` replaces the pinned GitHub address (a mirror).
    """
    from hbkit.datasets.download import default_cache_dir, download

    folder = (Path(dest).expanduser() if dest is not None else default_cache_dir()) / "multi30k"
    base = (base_url or MULTI30K_URL.format(commit=MULTI30K_COMMIT)).rstrip("/")
    for split in (list(splits) if splits is not None else list(MULTI30K_SPLITS.get(task, {}))):
        langs = _check_split(task, split)
        wanted = check_languages(languages, allowed=langs, where=f"Multi30K {split}") if languages else langs
        for rel in multi30k_files(task, split, wanted):
            target = folder / rel
            download(f"{base}/{rel}", target.parent, sha256=MULTI30K_SHA256.get(rel), filename=target.name)
    return folder


def _task_dir(root: Path, task: int) -> Path:
    for cand in (root, root / f"task{task}", root / "data" / f"task{task}"):
        if (cand / "raw").is_dir() and (cand / "image_splits").is_dir():
            return cand
    raise DataError(f"No Multi30K task {task} files under {root}: expected task{task}/raw/ and "
                    f"task{task}/image_splits/ (the data/ folder of the repository). {_HOW_TO_GET}.")


def _download_coco() -> Path:
    from hbkit.datasets.images import download_coco_images

    download_coco_images("train2014")
    return download_coco_images("val2014")


def _lines(path: Path) -> list[str]:
    return [text.strip() for _, text in local_lines(path)]


def _existing(base: Path) -> Path:
    """``base`` (``x.gz``) or the same file without ``.gz``."""
    for cand in (base, base.with_name(base.name[:-3]) if base.name.endswith(".gz") else base):
        if cand.is_file():
            return cand
    raise DataError(f"Multi30K file not found: {base} (or without .gz). {_HOW_TO_GET}.")


def _read_captions(path: Path, n_images: int, image_list: Path) -> list[str]:
    caps = _lines(path)
    if len(caps) != n_images:
        raise DataError(f"{path} has {len(caps)} lines but its image list {image_list} has {n_images}: line i of a "
                        "caption file describes the image on line i of the list. Use the files of one release "
                        "(download them again).")
    for i, cap in enumerate(caps):
        if not cap:
            raise DataError(f"{path}, line {i + 1}: empty caption (image {i + 1} of {image_list.name}). Restore the "
                            "file from the release.")
    return caps


def read_multi30k(path: str | os.PathLike | None = None, split: str = "train", *,
                  languages: Sequence[str] | str | None = None,
                  images: str | os.PathLike | Sequence[str | os.PathLike] | ImageFolder | None = None,
                  task: int = 1, max_images: int | None = None, verify_images: bool = False) -> ImageCaptionSet:
    """Read one Multi30K split as an :class:`ImageCaptionSet` (layout in the module doc).

    Args:
        path: the ``data/`` folder (or a folder with ``task1/``, or a task folder); default
            ``$HBKIT_DATA/multi30k``, else the verified download.
        split: a split of ``task`` (:data:`MULTI30K_SPLITS`).
        languages: caption languages (default: all of the split).
        images: image folder(s), searched by file name then by image id (see
            :mod:`hbkit.datasets.images`).
        max_images: keep the first ``max_images`` images of the list.
        verify_images: open every image with PIL (slow for 29k images; off by default).

    Raises:
        ConfigError: unknown task or split. UnknownLanguageError: a language the split lacks.
        DataError: missing or misaligned files, empty captions, missing or corrupt images.
    """
    langs_available = _check_split(task, split)
    if isinstance(languages, str):
        languages = [languages]
    langs = (check_languages(languages, allowed=langs_available, where=f"Multi30K task {task} {split}")
             if languages is not None else list(langs_available))
    if path is None:
        from hbkit.datasets.sources import local_dir

        path = local_dir("multi30k") or download_multi30k(task, [split], langs)
    tdir = _task_dir(Path(os.path.expandvars(os.fspath(path))).expanduser(), task)
    list_file = tdir / "image_splits" / (f"{split}.txt" if task == 1 else f"{split}_images.txt")
    if not list_file.is_file():
        raise DataError(f"Multi30K image list not found: {list_file}. {_HOW_TO_GET}.")
    files = _lines(list_file)
    if not files or any(not f for f in files):
        raise DataError(f"{list_file} is empty or has empty lines: it must name one image per line.")
    ids = [f.split("#", 1)[0] for f in files]
    captions: dict[str, list[list[str]]] = {}
    for lang in langs:
        if task == 1:
            caps = _read_captions(_existing(tdir / "raw" / f"{split}.{lang}.gz"), len(files), list_file)
            captions[lang] = [[c] for c in caps]
        else:
            per = [_read_captions(_existing(tdir / "raw" / f"{split}.{n}.{lang}.gz"), len(files), list_file)
                   for n in range(1, TASK2_CAPTIONS + 1)]
            captions[lang] = [list(c) for c in zip(*per)]
    if len(set(ids)) != len(ids):  # one image listed twice: merge its captions
        order: dict[str, int] = {}
        merged: dict[str, list[list[str]]] = {lang: [] for lang in langs}
        first_files: list[str] = []
        for i, gid in enumerate(ids):
            j = order.setdefault(gid, len(order))
            if j == len(first_files):
                first_files.append(files[i])
                for lang in langs:
                    merged[lang].append([])
            for lang in langs:
                merged[lang][j].extend(captions[lang][i])
        ids, files, captions = list(order), first_files, merged
    coco = split == "test_2017_mscoco"
    folder = image_folder(images, ["coco"] if coco else ["flickr30k-images"], dataset=f"Multi30K {split}",
                          how_to_get=COCO_HOW_TO_GET if coco else FLICKR30K_HOW_TO_GET,
                          download=_download_coco if coco else None)
    name = f"multi30k-{split}" if task == 1 else f"multi30k-task2-{split}"
    return build_set(name, ids, files, captions, folder, max_images=max_images, verify=verify_images)


def load_multi30k(path: str | os.PathLike | None = None, split: str = "train", *,
                  languages: Sequence[str] | str | None = None,
                  images: str | os.PathLike | Sequence[str | os.PathLike] | ImageFolder | None = None,
                  task: int = 1, max_images: int | None = None, verify_images: bool = False) -> ParallelDataset:
    """A Multi30K split as training data: group = image name, one item per caption, positive =
    ``ImageRef(<image path>)`` (arguments as :func:`read_multi30k`; training default ``train``)."""
    return read_multi30k(path, split, languages=languages, images=images, task=task, max_images=max_images,
                         verify_images=verify_images).to_dataset()


def load_multi30k_benchmark(path: str | os.PathLike | None = None, split: str = "test_2016_flickr", *,
                            languages: Sequence[str] | str | None = None,
                            images: str | os.PathLike | Sequence[str | os.PathLike] | ImageFolder | None = None,
                            task: int = 1, max_images: int | None = None,
                            verify_images: bool = False) -> RetrievalBenchmark:
    """A Multi30K split as a benchmark with images and captions as queries and candidates
    (:meth:`ImageCaptionSet.to_benchmark`; arguments as :func:`read_multi30k`)."""
    return read_multi30k(path, split, languages=languages, images=images, task=task, max_images=max_images,
                         verify_images=verify_images).to_benchmark()
