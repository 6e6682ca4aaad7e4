"""Progress bars that can be switched off (env ``HBKIT_PROGRESS=0`` or ``show=False``)."""
from __future__ import annotations

import os
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_enabled(show: bool | None = None) -> bool:
    """``show`` if given, else on unless the environment variable HBKIT_PROGRESS is "0"."""
    if show is not None:
        return bool(show)
    return os.environ.get("HBKIT_PROGRESS", "1") != "0"


def progress(iterable: Iterable[T] | None = None, show: bool | None = None, **kw) -> "tqdm":
    """A ``tqdm.auto`` bar, disabled when progress is off."""
    return tqdm(iterable, disable=not progress_enabled(show), **kw)
