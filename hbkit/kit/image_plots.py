"""Figures of the image–text half: real batches as image thumbnails with their captions, and the
results per language, per language pair and per strategy.

- :func:`batch_thumbnails` / :func:`batch_grids` — sampler batches of an image–caption dataset
  as a grid of images, each with its caption (wrapped, shortened) and language;
- :func:`per_language_bars` — one metric per language, one colour per strategy, per model;
- :func:`language_pair_heatmap` — cross-lingual caption→caption retrieval per language pair;
- :func:`rank_distance_per_language` — caption→caption rank distance per query language, raw
  and z-scored side by side;
- :func:`strategy_summary_plot` — the headline numbers of every setting, one bar per strategy.

Result figures take the tidy table of the image–text evaluation (:data:`hbkit.evaluation.COLUMNS`)
and show means over seeds with error bars of the std over seeds (ddof 1) when there are several.
Every function returns the Figure and, given ``save``, also writes it as a PNG (atomically).
Characters that no installed font can draw are shown as □ and named in a footnote.
"""
from __future__ import annotations

import functools
import textwrap
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hbkit.engine.atomic import atomic_path
from hbkit.errors import ConfigError
from hbkit.evaluation import (
    CROSS_LINGUAL,
    MONOLINGUAL,
    MULTILINGUAL,
    NO_LANGUAGE,
    TEXT_TO_TEXT,
)
from hbkit.kit.image_report import MEASURES, measure_stats, one_benchmark, ordered
from hbkit.language_bias import CAPTION_TO_CAPTION
from hbkit.parallel import ParallelDataset
from hbkit.samplers import Batch

COLORS = {"zero-shot": "#8C8C8C", "X-X": "#4C72B0", "X-Y": "#DD8452", "hybrid": "#55A868", "1-to-K": "#C44E52"}
#: The panels of :func:`strategy_summary_plot` (keys of :data:`hbkit.kit.image_report.MEASURES`).
SUMMARY_MEASURES: tuple[str, ...] = ("mono hit_mean", "cross mAP", "i→t multi mAP", "i→t MRV", "i→t rank_distance",
                                     "i→t top10 spread")
#: Fonts tried after DejaVu Sans for captions in other scripts, when installed.
_EXTRA_FONTS = ("Noto Sans", "Noto Sans Devanagari", "Noto Sans Arabic", "Noto Sans Thai", "Noto Sans CJK SC",
                "Noto Sans CJK JP", "Lohit Devanagari", "FreeSans")


def _save(fig: Figure, save: str | Path | None) -> Figure:
    if save is not None:
        with atomic_path(Path(save)) as tmp, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Glyph .* missing from")
            fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    return fig


def _color(strategy: str, j: int) -> str:
    return COLORS.get(strategy) or plt.get_cmap("tab10")((j + 5) % 10)


@functools.lru_cache(maxsize=1)
def _fonts() -> tuple[tuple[str, ...], frozenset[int]]:
    """Installed caption fonts (DejaVu Sans first) and the code points they can draw together."""
    from matplotlib import font_manager, ft2font

    names = {f.name for f in font_manager.fontManager.ttflist}
    families = ("DejaVu Sans", *(f for f in _EXTRA_FONTS if f in names))
    chars: set[int] = set()
    for fam in families:
        try:
            path = font_manager.findfont(font_manager.FontProperties(family=fam), fallback_to_default=False)
            chars |= set(ft2font.FT2Font(path).get_charmap())
        except (ValueError, RuntimeError, OSError):
            continue
    return families, frozenset(chars)


def _drawable(text: str) -> tuple[str, bool]:
    """``text`` with characters no installed font has replaced by □, and whether any was."""
    chars = _fonts()[1]
    out = "".join(c if c.isspace() or ord(c) in chars else "□" for c in text)
    return out, out != text


# ----------------------------------------------------------------------------- batches
def _dataset(batch: Batch, dataset: ParallelDataset | Sequence[ParallelDataset]) -> ParallelDataset:
    datasets = [dataset] if isinstance(dataset, ParallelDataset) else list(dataset)
    if not 0 <= batch.dataset < len(datasets):
        raise ConfigError(f"The batch comes from dataset {batch.dataset}, but {len(datasets)} dataset(s) were "
                          "given: pass the sampler's datasets.")
    ds = datasets[batch.dataset]
    if ds.passage_has_language:
        raise ConfigError(f"Dataset {ds.name!r} holds text pairs, not images: show its batches with "
                          "hbkit.kit.inspection.batch_table instead.")
    return ds


def _draw_batch(axes: Sequence, batch: Batch, ds: ParallelDataset, image_root: str | Path | None, n: int,
                missing: set[str]) -> None:
    from hbkit.models.images import load_image

    families = _fonts()[0]
    refs = batch.refs[:n]
    for ax, ref in zip(axes, refs):
        p = ds.pair(ref)
        img = np.asarray(load_image(p.positive, image_root).convert("RGB"))
        ax.imshow(img, interpolation="nearest")
        caption, lost = _drawable(p.query)
        if lost:  # □ is wider than a letter: fewer per line
            missing.add(p.query_lang)
        width = 12 if lost else 20
        caption = textwrap.fill(textwrap.shorten(caption, width=3 * width, placeholder=" …"), width=width)
        ax.set_title(f"{p.query_lang} · {p.group}", fontsize=7)
        ax.set_xlabel(caption, fontsize=6.5, fontfamily=list(families))
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(refs):]:
        ax.set_axis_off()


def _batch_label(batch: Batch, n: int) -> str:
    groups = len({r.group for r in batch.refs})
    langs = sorted({r.query_lang for r in batch.refs})
    return (f"{batch.mode} batch {batch.step}: {len(batch.refs)} captions of {groups} images in "
            f"{len(langs)} language(s) ({', '.join(langs)}); first {min(n, len(batch.refs))} shown")


def _footnote(fig: Figure, missing: set[str]) -> None:
    if missing:
        fig.text(0.01, -0.02, f"□: a character of {', '.join(sorted(missing))} captions that no installed font "
                              "can draw (install e.g. a Noto Sans font for that script to see it).", fontsize=7)


def batch_thumbnails(batch: Batch, dataset: ParallelDataset | Sequence[ParallelDataset], image_root: str | Path | None,
                     n: int = 8, title: str | None = None, save: str | Path | None = None) -> Figure:
    """The first ``n`` pairs of one sampler batch (:class:`hbkit.samplers.Batch`) of an image–caption
    dataset: each image with its caption and language (and image id: a 1-to-K batch shows each
    image once per caption language). ``dataset``: the sampler's dataset(s); ``image_root``: the
    folder relative image keys are resolved against."""
    ds = _dataset(batch, dataset)
    cols = max(1, min(n, len(batch.refs), 8))
    rows = -(-min(n, len(batch.refs)) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.45 * cols + 0.4, 2.3 * rows + 0.5), squeeze=False,
                             layout="constrained")
    missing: set[str] = set()
    _draw_batch(axes.ravel().tolist(), batch, ds, image_root, n, missing)
    fig.suptitle(title or _batch_label(batch, n), fontsize=9)
    _footnote(fig, missing)
    return _save(fig, save)


def batch_grids(batches: Mapping[str, Batch], dataset: ParallelDataset | Sequence[ParallelDataset],
                image_root: str | Path | None, n: int = 8, title: str | None = None,
                save: str | Path | None = None) -> Figure:
    """One row per strategy (``batches`` maps a name, e.g. "X-X", to one of its batches) of the first
    ``n`` pairs, as :func:`batch_thumbnails` draws them."""
    if not batches:
        raise ConfigError("batches is empty: pass e.g. {'X-X': batch, 'X-Y': batch, '1-to-K': batch}.")
    cols = max(1, n)
    fig = plt.figure(figsize=(1.45 * cols + 0.8, 2.5 * len(batches) + 0.4), layout="constrained")
    missing: set[str] = set()
    for sub, (name, batch) in zip(np.atleast_1d(fig.subfigures(len(batches), 1)), batches.items()):
        row = np.atleast_1d(sub.subplots(1, cols))
        _draw_batch(row.tolist(), batch, _dataset(batch, dataset), image_root, n, missing)
        row[0].set_ylabel(name, fontsize=10, fontweight="bold")
        sub.suptitle(f"{name} — {_batch_label(batch, n)}", fontsize=8, x=0.01, ha="left")
    fig.suptitle(title or "One batch per strategy: images and the captions paired with them", fontsize=10)
    _footnote(fig, missing)
    return _save(fig, save)


# ----------------------------------------------------------------------------- results
def _seed_stats(d: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per seed the mean over the remaining rows, then mean / std (ddof 1, 0 for one seed) over seeds."""
    per = d.groupby([*keys, "seed"], sort=False)["value"].mean().reset_index()
    g = per.groupby(keys, sort=False)["value"]
    return g.agg(mean="mean", std=lambda s: s.std(ddof=1) if len(s) > 1 else 0.0, n="count").reset_index()


def _bars(ax, stats: pd.DataFrame, groups: list[str], group_col: str, strategies: list[str]) -> None:
    width = 0.8 / max(1, len(strategies))
    for j, strat in enumerate(strategies):
        s = stats[stats["strategy"] == strat].set_index(group_col).reindex(groups)
        x = np.arange(len(groups)) + (j - (len(strategies) - 1) / 2) * width
        n = int(s["n"].max()) if s["n"].notna().any() else 0
        ax.bar(x, s["mean"].to_numpy(dtype=float), width, yerr=s["std"].fillna(0.0).to_numpy(dtype=float),
               capsize=2, color=_color(strat, j), label=f"{strat} (n={n})")
    ax.set_xticks(np.arange(len(groups)), groups)


def _models(d: pd.DataFrame, model: str | None) -> list[str]:
    models = ordered(d["model"], ())
    if model is not None:
        if model not in models:
            raise ConfigError(f"No rows of model {model!r}; the results hold {models}.")
        return [model]
    return models


def per_language_bars(df: pd.DataFrame, direction: str, metric: str = "hit_mean", benchmark: str | None = None,
                      setting: str | None = None, save: str | Path | None = None) -> Figure:
    """``metric`` per language of ``direction`` rows, one colour per strategy (zero-shot included when
    present), one panel per model. The language is the query's, or the candidates' for image
    queries; cross-lingual rows are averaged over candidate languages. ``setting`` defaults to
    monolingual when the direction has it."""
    d, benchmark = one_benchmark(df, benchmark)
    d = d[(d["direction"] == direction) & (d["metric"] == metric)]
    if d.empty:
        have = ordered(df.loc[df["direction"] == direction, "metric"], ())
        raise ConfigError(f"No {direction!r} rows of metric {metric!r} in {benchmark}; its metrics are {have}.")
    settings = ordered(d["setting"], (MONOLINGUAL, CROSS_LINGUAL, MULTILINGUAL))
    setting = setting or (MONOLINGUAL if MONOLINGUAL in settings else settings[0] if len(settings) == 1 else None)
    if setting not in settings:
        raise ConfigError(f"Pass setting= one of {settings} for {direction!r} {metric}.")
    d = d[d["setting"] == setting]
    d = d.assign(lang=d["query_lang"].where(d["query_lang"] != NO_LANGUAGE, d["candidate_lang"]))
    langs, models, strategies = ordered(d["lang"], ()), ordered(d["model"], ()), ordered(d["strategy"])
    fig, axes = plt.subplots(1, len(models), figsize=(1.6 + 0.45 * len(langs) * len(strategies) * len(models),
                                                      3.6), squeeze=False, sharey=True)
    for ax, model in zip(axes[0], models):
        stats = _seed_stats(d[d["model"] == model], ["strategy", "lang"])
        _bars(ax, stats, langs, "lang", strategies)
        ax.set_title(model, fontsize=10)
        ax.set_xlabel("caption language" if (d["query_lang"] == NO_LANGUAGE).all() else "query language")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel(f"{metric} (mean ± std over seeds)")
    fig.suptitle(f"{direction} {setting} {metric} per language ({benchmark})", fontsize=10)
    fig.tight_layout()
    return _save(fig, save)


def language_pair_heatmap(df: pd.DataFrame, strategy: str, metric: str = "mAP", model: str | None = None,
                          benchmark: str | None = None, save: str | Path | None = None) -> Figure:
    """Cross-lingual caption→caption ``metric`` per (query language, candidate language) under
    ``strategy``, mean over seeds, annotated; the diagonal (same language) is blank. One panel per
    model (only ``model`` when given)."""
    d, benchmark = one_benchmark(df, benchmark)
    d = d[(d["direction"] == TEXT_TO_TEXT) & (d["setting"] == CROSS_LINGUAL) & (d["metric"] == metric)]
    if d.empty:
        raise ConfigError(f"No cross-lingual text→text rows of metric {metric!r} in {benchmark}.")
    if strategy not in set(d["strategy"]):
        raise ConfigError(f"No cross-lingual rows of strategy {strategy!r}; the results hold {ordered(d['strategy'])}.")
    d = d[d["strategy"] == strategy]
    models = _models(d, model)
    langs = ordered([*d["query_lang"], *d["candidate_lang"]], ())
    fig, axes = plt.subplots(1, len(models), figsize=(1.4 + (0.55 * len(langs) + 1.2) * len(models),
                                                      0.5 * len(langs) + 1.5), squeeze=False, layout="constrained")
    vmin, vmax = float(d["value"].min()), float(d["value"].max())
    cmap = plt.get_cmap("viridis").with_extremes(bad="white")
    im = None
    for ax, name in zip(axes[0], models):
        m = (d[d["model"] == name].groupby(["query_lang", "candidate_lang"])["value"].mean().unstack()
             .reindex(index=langs, columns=langs))
        grid = np.array(m.to_numpy(dtype=float), copy=True)
        np.fill_diagonal(grid, np.nan)
        im = ax.imshow(np.ma.masked_invalid(grid), vmin=vmin, vmax=vmax, cmap=cmap)
        ax.set_xticks(range(len(langs)), langs, fontsize=8)
        ax.set_yticks(range(len(langs)), langs, fontsize=8)
        ax.set_xlabel("candidate language")
        ax.set_ylabel("query language")
        ax.set_title(name, fontsize=10)
        for i in range(len(langs)):
            for k in range(len(langs)):
                if np.isfinite(grid[i, k]):
                    ax.text(k, i, f"{grid[i, k]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if grid[i, k] < (vmin + vmax) / 2 else "black")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label=f"{metric} (mean over seeds)")
    fig.suptitle(f"Cross-lingual caption→caption {metric} under {strategy} ({benchmark})", fontsize=10)
    return _save(fig, save)


def rank_distance_per_language(df: pd.DataFrame, metric: str = "rank_distance", benchmark: str | None = None,
                               save: str | Path | None = None) -> Figure:
    """Caption→caption (multilingual) ``metric`` per query language by strategy, with its z-scored
    control (``<metric>_z``) in a panel beside it when present; one row of panels per model.
    Lower is less language bias."""
    d, benchmark = one_benchmark(df, benchmark)
    d = d[(d["direction"] == CAPTION_TO_CAPTION) & (d["setting"] == MULTILINGUAL)]
    metrics = [metric] + ([f"{metric}_z"] if not metric.endswith("_z") and (d["metric"] == f"{metric}_z").any()
                          else [])
    d = d[d["metric"].isin(metrics)]
    if not (d["metric"] == metric).any():
        raise ConfigError(f"No caption→caption multilingual rows of metric {metric!r} in {benchmark}: "
                          "evaluate with the caption→caption setting on (hbkit.image_text_eval).")
    langs, models, strategies = ordered(d["query_lang"], ()), ordered(d["model"], ()), ordered(d["strategy"])
    fig, axes = plt.subplots(len(models), len(metrics), squeeze=False,
                             figsize=(1.4 + 0.42 * len(langs) * len(strategies) * len(metrics), 3.2 * len(models)))
    for row, model in zip(axes, models):
        for ax, met in zip(row, metrics):
            stats = _seed_stats(d[(d["model"] == model) & (d["metric"] == met)], ["strategy", "query_lang"])
            _bars(ax, stats, langs, "query_lang", strategies)
            ax.set_title(f"{model}: {met}" + (" (z-scored per language: quality control)" if met.endswith("_z")
                                               else " (raw)"), fontsize=9)
            ax.set_xlabel("query language")
            ax.set_ylabel(f"{met} (lower = less bias)")
            ax.legend(fontsize=7)
    fig.suptitle(f"Caption→caption language bias per query language ({benchmark})", fontsize=10)
    fig.tight_layout()
    return _save(fig, save)


def strategy_summary_plot(df: pd.DataFrame, benchmark: str | None = None,
                          measures: Sequence[str] = SUMMARY_MEASURES, save: str | Path | None = None) -> Figure:
    """A compact overview: one panel per measure (default :data:`SUMMARY_MEASURES`: monolingual
    hit_mean of both directions, cross-lingual mAP, multilingual image→text mAP, MRV, rank
    distance and top-10 language share spread), one row per model, one bar per strategy (mean ±
    std over seeds of the per-seed mean over languages)."""
    d, benchmark = one_benchmark(df, benchmark)
    stats = measure_stats(d, measures)
    if stats.empty:
        raise ConfigError(f"No rows of the measures {list(measures)} in {benchmark}.")
    shown = [m for m in measures if m in set(stats["measure"])]
    models, strategies = ordered(stats["model"], ()), ordered(stats["strategy"])
    fig, axes = plt.subplots(len(models), len(shown), squeeze=False,
                             figsize=(0.6 + (0.32 * len(strategies) + 1.2) * len(shown), 2.7 * len(models) + 0.6))
    for row, model in zip(axes, models):
        for ax, key in zip(row, shown):
            m = MEASURES[key]
            rank = m.metric.startswith(("rank_distance", "MRV"))
            s = stats[(stats["model"] == model) & (stats["measure"] == key)]
            for j, strat in enumerate(strategies):
                r = s[s["strategy"] == strat]
                if len(r):
                    mean, std = float(r["mean"].iloc[0]), float(r["std"].fillna(0.0).iloc[0])
                    ax.bar(j, mean, 0.75, yerr=std, capsize=2, color=_color(strat, j))
                    ax.text(j, mean, f"{mean:.1f}" if rank else f"{mean:.3f}", ha="center", va="bottom", fontsize=6)
            ax.set_xticks(range(len(strategies)), strategies, rotation=45, ha="right", fontsize=7)
            ax.set_title(textwrap.fill(f"{m.label} ({'↑' if m.better == 'higher' else '↓'})", 26), fontsize=8)
            ax.tick_params(axis="y", labelsize=7)
        row[0].set_ylabel(f"{model}\n(mean ± std over seeds)", fontsize=8)
    fig.suptitle(f"Image–text retrieval by strategy ({benchmark}; ↑ higher is better, ↓ lower is better)",
                 fontsize=10)
    fig.tight_layout()
    return _save(fig, save)
