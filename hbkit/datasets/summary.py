"""Summaries of a training mixture (:func:`mix_summary`)."""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from hbkit.errors import ConfigError
from hbkit.languages import check_languages
from hbkit.parallel import ParallelDataset

__all__ = ["mix_summary"]


def mix_summary(datasets: ParallelDataset | Iterable[ParallelDataset] | Mapping[str, ParallelDataset], *,
                languages: Sequence[str] | None = None):
    """A table of a training mixture: one row per dataset.

    Columns: ``name``, ``groups``, ``items`` (all items: a group may hold several per
    language), ``languages`` (comma-separated), ``negatives`` (share of items with a hard
    negative), ``share`` (the dataset's expected share of batches, groups / total groups:
    one dataset per batch, chosen in proportion to its size, PROTOCOL §1.2) and
    ``modality`` (``text`` or ``image`` positives). With ``languages``, counts
    are restricted to those training languages, as the samplers do (a group counts when
    it has at least one of them). A mapping's keys override the names.
    """
    import pandas as pd

    if isinstance(datasets, ParallelDataset):
        named = [(datasets.name, datasets)]
    elif isinstance(datasets, Mapping):
        named = list(datasets.items())
    else:
        named = [(getattr(d, "name", "?"), d) for d in datasets]
    if not named:
        raise ConfigError("mix_summary got no datasets: pass a ParallelDataset or a list of them.")
    keep = set(check_languages(languages, where="mix_summary")) if languages is not None else None
    rows = []
    for name, ds in named:
        if not isinstance(ds, ParallelDataset):
            raise ConfigError(f"mix_summary: {name!r} is a {type(ds).__name__}, not a ParallelDataset.")
        items = [it for it in ds.items() if keep is None or it.lang in keep]
        langs = sorted({it.lang for it in items})
        rows.append({"name": str(name), "groups": len({it.group for it in items}), "items": len(items),
                     "languages": ", ".join(langs),
                     "negatives": (sum(it.negative is not None for it in items) / len(items)) if items else 0.0,
                     "modality": ds.modality})
    frame = pd.DataFrame(rows, columns=["name", "groups", "items", "languages", "negatives", "modality"])
    total = frame["groups"].sum()
    frame.insert(5, "share", frame["groups"] / total if total else 0.0)
    return frame
