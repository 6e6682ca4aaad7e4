"""Dataset registry: a profile's source ``kind`` -> the function that loads it.

A profile names its data as source dicts, e.g. ``{"kind": "mmarco", "languages": ["en", "de"],
"max_groups": 6000}``. :func:`load_training` looks the kind up in :data:`TRAINING` (training
and validation :class:`~hbkit.parallel.ParallelDataset` loaders), :func:`load_benchmark` in
:data:`BENCHMARKS` (:class:`~hbkit.benchmark.RetrievalBenchmark` loaders), and calls the
loader with the source dict (and any keyword context the caller passes, e.g. the profile
for kinds that need it). Built-in kinds:

============  ===============================================================================
mmarco        :func:`~hbkit.datasets.mmarco.load_mmarco` ``(languages, max_groups=, source=)``;
              ``source`` defaults to ``$HBKIT_DATA/mmarco`` when that exists, else the hub
file          :func:`~hbkit.datasets.files.read_parallel_file` ``(path, name=)``; ``$VARS`` in
              ``path`` are expanded
squadshifts   :func:`~hbkit.datasets.squadshifts.load_squadshifts` ``(subset="nyt", max_items=,
              source=)``
xquad-r       :func:`~hbkit.datasets.xquad_r.load_xquad_r` from ``path``, else
              ``$HBKIT_DATA/xquad-r``, else the verified download (``languages=``)
mlqa-r        :func:`~hbkit.datasets.mlqa_r.load_mlqa_r` from ``path``, else
              ``$HBKIT_DATA/MLQA_V1``, else downloaded (``languages=``)
multi30k      training: :func:`~hbkit.datasets.multi30k.load_multi30k`, benchmark:
              :func:`~hbkit.datasets.multi30k.load_multi30k_benchmark` ``(path, split=, languages=,
              images=, task=1, max_images=, verify_images=)``; ``split`` defaults to ``train``
              (training) and ``test_2016_flickr`` (benchmark)
xtd10         benchmark: :func:`~hbkit.datasets.xtd10.load_xtd10` ``(path, languages=, images=,
              max_images=, verify_images=)``
xflickrco     benchmark: :func:`~hbkit.datasets.xflickrco.load_xflickrco` (as xtd10)
xm3600        benchmark: :func:`~hbkit.datasets.xm3600.load_xm3600` (as xtd10, and
              ``first_caption_only=``)
flickr30k     benchmark: :func:`~hbkit.datasets.karpathy.load_karpathy` ``("flickr30k", path, split=,
              images=, max_images=, verify_images=)``: Flickr30K 1K test (Karpathy split, English)
coco          benchmark: the same for COCO 5K test (Karpathy split, English)
============  ===============================================================================

For the image–caption kinds ``path`` (captions) defaults to ``$HBKIT_DATA/<kind>`` or a
download, and ``images`` (a folder or a list of folders; ``$VARS`` expanded) to the dataset's
``$HBKIT_DATA`` image folder (:mod:`hbkit.datasets.images`).

More kinds are added with :func:`register_training` / :func:`register_benchmark`.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Mapping

from hbkit.errors import ConfigError

__all__ = ["TRAINING", "BENCHMARKS", "load_training", "load_benchmark", "register_training", "register_benchmark"]

Loader = Callable[..., Any]


def _required(src: Mapping[str, Any], key: str) -> Any:
    if key not in src:
        raise ConfigError(f"The {src.get('kind')!r} data source needs a {key!r} entry, got {dict(src)}. Add it to "
                          "the profile.")
    return src[key]


def _mmarco(src: Mapping[str, Any], **_context: Any):
    from hbkit.datasets.mmarco import load_mmarco
    from hbkit.datasets.sources import local_dir

    return load_mmarco(_required(src, "languages"), max_groups=src.get("max_groups"),
                       source=src.get("source") or local_dir("mmarco"))


def _file(src: Mapping[str, Any], **_context: Any):
    from hbkit.datasets.files import read_parallel_file

    return read_parallel_file(os.path.expandvars(_required(src, "path")), name=src.get("name"))


def _squadshifts(src: Mapping[str, Any], **_context: Any):
    from hbkit.datasets.squadshifts import load_squadshifts

    return load_squadshifts(src.get("subset", "nyt"), max_items=src.get("max_items"), source=src.get("source"))


def _xquad_r(src: Mapping[str, Any], **_context: Any):
    from hbkit.datasets.sources import xquad_r_dir
    from hbkit.datasets.xquad_r import load_xquad_r

    return load_xquad_r(xquad_r_dir(src.get("languages"), src.get("path")), languages=src.get("languages"))


def _mlqa_r(src: Mapping[str, Any], **_context: Any):
    from hbkit.datasets.mlqa_r import load_mlqa_r
    from hbkit.datasets.sources import local_dir

    root = src.get("path") or local_dir("MLQA_V1")
    return load_mlqa_r(root, languages=src.get("languages"), download=root is None)


def _path(value: Any) -> Any:
    """``$VARS`` expanded in a path or in each path of a list; None stays None."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [os.path.expandvars(os.fspath(v)) for v in value]
    return os.path.expandvars(os.fspath(value))


def _image_args(src: Mapping[str, Any]) -> dict[str, Any]:
    return {"languages": src.get("languages"), "images": _path(src.get("images")),
            "max_images": src.get("max_images"), "verify_images": bool(src.get("verify_images", False))}


def _multi30k_training(src: Mapping[str, Any], **_context: Any):
    from hbkit.datasets.multi30k import load_multi30k

    return load_multi30k(_path(src.get("path")), src.get("split", "train"), task=src.get("task", 1),
                         **_image_args(src))


def _multi30k_benchmark(src: Mapping[str, Any], **_context: Any):
    from hbkit.datasets.multi30k import load_multi30k_benchmark

    return load_multi30k_benchmark(_path(src.get("path")), src.get("split", "test_2016_flickr"),
                                   task=src.get("task", 1), **_image_args(src))


def _xtd10(src: Mapping[str, Any], **_context: Any):
    from hbkit.datasets.xtd10 import load_xtd10

    return load_xtd10(_path(src.get("path")), **_image_args(src))


def _xflickrco(src: Mapping[str, Any], **_context: Any):
    from hbkit.datasets.xflickrco import load_xflickrco

    return load_xflickrco(_path(src.get("path")), **_image_args(src))


def _xm3600(src: Mapping[str, Any], **_context: Any):
    from hbkit.datasets.xm3600 import load_xm3600

    return load_xm3600(_path(src.get("path")), first_caption_only=bool(src.get("first_caption_only", False)),
                       **_image_args(src))


def _karpathy(dataset: str) -> Loader:
    def load(src: Mapping[str, Any], **_context: Any):
        from hbkit.datasets.karpathy import load_karpathy

        return load_karpathy(dataset, _path(src.get("path")), split=src.get("split", "test"), **_image_args(src))

    load.__qualname__ = load.__name__ = f"_{dataset}"
    return load


#: Training and validation data kinds -> loader(src, **context) returning a ParallelDataset.
TRAINING: dict[str, Loader] = {"mmarco": _mmarco, "file": _file, "squadshifts": _squadshifts,
                               "multi30k": _multi30k_training}
#: Benchmark kinds -> loader(src, **context) returning a RetrievalBenchmark.
BENCHMARKS: dict[str, Loader] = {"xquad-r": _xquad_r, "mlqa-r": _mlqa_r, "multi30k": _multi30k_benchmark,
                                 "xtd10": _xtd10, "xflickrco": _xflickrco, "xm3600": _xm3600,
                                 "flickr30k": _karpathy("flickr30k"), "coco": _karpathy("coco")}


def _same_definition(a: Loader, b: Loader) -> bool:
    """The same function, or the same definition imported again (a reloaded module)."""
    if a is b:
        return True
    key = lambda f: (getattr(f, "__module__", None), getattr(f, "__qualname__", None))  # noqa: E731
    return key(a)[1] is not None and "<lambda>" not in key(a)[1] and "<locals>" not in key(a)[1] and key(a) == key(b)


def _register(table: dict[str, Loader], what: str, kind: str, fn: Loader, replace: bool) -> None:
    if not isinstance(kind, str) or not kind.strip() or kind != kind.strip():
        raise ConfigError(f"A {what} kind must be a non-empty name without surrounding spaces, got {kind!r}.")
    if not callable(fn):
        raise ConfigError(f"The loader for {what} kind {kind!r} must be callable as fn(src, **context), got "
                          f"{type(fn).__name__}.")
    if kind in table and not replace and not _same_definition(table[kind], fn):
        raise ConfigError(f"The {what} kind {kind!r} is already registered (to {getattr(table[kind], '__name__', '?')}"
                          "). Pass replace=True to swap the loader, or choose another kind name.")
    table[kind] = fn


def register_training(kind: str, fn: Loader, *, replace: bool = False) -> None:
    """Add a training/validation data kind: ``fn(src, **context)`` returns a ParallelDataset.

    Registering the same function again (or the same definition from a reloaded module)
    replaces it silently; another function for a taken kind needs ``replace=True``.
    """
    _register(TRAINING, "training data", kind, fn, replace)


def register_benchmark(kind: str, fn: Loader, *, replace: bool = False) -> None:
    """Add a benchmark kind: ``fn(src, **context)`` returns a RetrievalBenchmark (as :func:`register_training`)."""
    _register(BENCHMARKS, "benchmark", kind, fn, replace)


def _lookup(table: dict[str, Loader], what: str, src: Any) -> Loader:
    if not isinstance(src, Mapping):
        raise ConfigError(f"A {what} source must be a dict like {{'kind': ..., ...}}, got {type(src).__name__} "
                          f"{src!r}.")
    if "kind" not in src:
        raise ConfigError(f"The {what} source {dict(src)} has no 'kind'. Use one of: {', '.join(sorted(table))}.")
    kind = src["kind"]
    if kind not in table:
        raise ConfigError(f"Unknown {what} kind {kind!r}. Valid kinds: {', '.join(sorted(table))} (add one with "
                          f"register_{'benchmark' if table is BENCHMARKS else 'training'}(kind, fn)).")
    return table[kind]


def load_training(src: Mapping[str, Any], **context: Any):
    """The ParallelDataset described by a training or validation source dict (see the module doc)."""
    return _lookup(TRAINING, "training data", src)(src, **context)


def load_benchmark(src: Mapping[str, Any], **context: Any):
    """The RetrievalBenchmark described by a benchmark source dict (see the module doc)."""
    return _lookup(BENCHMARKS, "benchmark", src)(src, **context)
