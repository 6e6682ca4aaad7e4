"""Where the real datasets come from: local folders first, else cached, checksummed downloads.

Set ``HBKIT_DATA`` to a folder holding ``xquad-r/``, ``MLQA_V1/``, ``miracl/`` (topics/qrels) and
``mmarco/`` to run fully offline; otherwise the files are downloaded once into ``HBKIT_CACHE``
(default ``~/.cache/hbkit``) and verified.
"""
from __future__ import annotations

import os
from pathlib import Path

from hbkit.errors import DataError

LAREQA_URL = "https://raw.githubusercontent.com/google-research-datasets/lareqa/{commit}/xquad-r/{lang}.json"
LAREQA_COMMIT = "9bc8c7fb6dd8d01d72a05a93c2cb96882b0d299c"
#: sha256 of LAReQA's xquad-r files at LAREQA_COMMIT.
XQUAD_R_SHA256 = {
    "ar": "c52922d3b8ac1ae03ed5ac38647ad59870dca3dda2beefe18ecdc30729acb69d",
    "de": "16fb0f4bf4916154b585a20c24c66074591c9718a1affe764ff4697572328949",
    "el": "163fd43ee785a30eb534ae2061e9eaa766a7ee4e8ffce5e4b422480c150f64b6",
    "en": "7b0954f39297c27a31fef610f0883337dd2907fa8699151dc922afdd0fa12ffe",
    "es": "f8e836b2d91009c4363e04315f7ede363eedbbb49c67dda60de6c4aa782f58de",
    "hi": "ea45ba8ae4513d1533b222bebdc02a90bc319c055d3aeea68584a053d2e92872",
    "ru": "7f4dff853538b9a5fcc28c070b8bb983a5c5d190ac747b8e005a1ada9cab18f1",
    "th": "c3a041864c3a9fb0b4dd91cfdf99cf36b411b3e704c58a303c97bc6dc786cfe4",
    "tr": "f3e8c13002bbce154a4578f535f7533cb70f3da08840e6b62735935baec7bd94",
    "vi": "e35926bf5cc6fc6ecbdfca49467aabeb454f08d152d7818143a906bd31dde995",
    "zh": "80c2cde7b9c2fb134c303cbb52f2ba396ead9eb0014aec43993543d2ba9e93ed",
}


def data_root() -> Path | None:
    """``$HBKIT_DATA`` if set (a folder of local dataset copies), else None."""
    env = os.environ.get("HBKIT_DATA")
    if not env:
        return None
    path = Path(env).expanduser()
    if not path.is_dir():
        raise DataError(f"HBKIT_DATA={env!r} is not a folder. Point it at the folder holding your local dataset "
                        "copies, or unset it to download.")
    return path


def local_dir(name: str) -> Path | None:
    """``$HBKIT_DATA/<name>`` when it exists."""
    root = data_root()
    if root is not None and (root / name).exists():
        return root / name
    return None


def model_or_local(model: str) -> str:
    """``$HBKIT_MODELS/<model>`` when that folder exists (offline copies of hub models), else ``model``."""
    models_dir = os.environ.get("HBKIT_MODELS")
    if models_dir and (Path(models_dir) / model).is_dir():
        return str(Path(models_dir) / model)
    return model


def xquad_r_dir(languages=None, path: str | os.PathLike | None = None) -> Path:
    """A folder with LAReQA's ``xquad-r/<lang>.json``: ``path``, ``$HBKIT_DATA/xquad-r``, or a verified download."""
    if path is not None:
        return Path(path)
    local = local_dir("xquad-r")
    if local is not None:
        return local
    from hbkit.datasets.download import default_cache_dir, download

    dest = default_cache_dir() / "xquad-r"
    for lang in list(languages or XQUAD_R_SHA256):
        download(LAREQA_URL.format(commit=LAREQA_COMMIT, lang=lang), dest, filename=f"{lang}.json",
                 sha256=XQUAD_R_SHA256[lang])
    return dest
