"""Figures: strategy × setting bars, rank distance per language, language-pair heatmaps,
batch language histograms and training curves. Each function returns the figure and,
when ``out`` is given, also saves it as a PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hbkit.engine.atomic import atomic_path

STRATEGY_ORDER = ["X-X", "X-Y", "hybrid"]
SETTING_ORDER = ["monolingual", "cross-lingual", "multilingual"]
COLORS = {"X-X": "#4C72B0", "X-Y": "#DD8452", "hybrid": "#55A868"}


def _save(fig, out: str | Path | None):
    if out is not None:
        out = Path(out)
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    return fig


def _order(values: Sequence[str], preferred: Sequence[str]) -> list[str]:
    values = list(dict.fromkeys(values))
    return [v for v in preferred if v in values] + sorted(v for v in values if v not in preferred)


def strategy_bars(headline: pd.DataFrame, metric: str = "mAP", title: str = "", out: str | Path | None = None):
    """Bars of ``metric`` per setting (groups) and strategy (colours); error bars = std over seeds.

    ``headline`` is the output of :func:`hbkit.evaluation.headline` (one row per seed).
    """
    d = headline[headline.metric == metric]
    settings = _order(d.setting, SETTING_ORDER)
    strategies = _order(d.strategy, STRATEGY_ORDER)
    fig, ax = plt.subplots(figsize=(1.8 + 2.2 * len(settings), 3.6))
    width = 0.8 / max(1, len(strategies))
    for j, strat in enumerate(strategies):
        means, errs, ns = [], [], []
        for s in settings:
            vals = d[(d.setting == s) & (d.strategy == strat)].value.to_numpy()
            means.append(vals.mean() if len(vals) else np.nan)
            errs.append(vals.std(ddof=1) if len(vals) > 1 else 0.0)
            ns.append(len(vals))
        x = np.arange(len(settings)) + (j - (len(strategies) - 1) / 2) * width
        ax.bar(x, means, width, yerr=errs, capsize=3, label=f"{strat} (n={max(ns)} seeds)",
               color=COLORS.get(strat))
        for xi, m in zip(x, means):
            if np.isfinite(m):
                ax.text(xi, m, f"{m:.3f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(np.arange(len(settings)), settings)
    ax.set_ylabel(f"{metric} (mean ± std over seeds)")
    ax.set_title(title or f"{metric} by strategy and setting")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return _save(fig, out)


def rank_distance_by_language(results: pd.DataFrame, title: str = "", out: str | Path | None = None):
    """Rank distance (language bias, lower is better) per query language and strategy, mean ± std over seeds."""
    d = results[(results.setting == "multilingual") & (results.metric == "rank_distance")]
    langs = sorted(d.query_lang.unique())
    strategies = _order(d.strategy, STRATEGY_ORDER)
    fig, ax = plt.subplots(figsize=(1.5 + 0.9 * len(langs) * max(1, len(strategies)) / 2, 3.6))
    width = 0.8 / max(1, len(strategies))
    for j, strat in enumerate(strategies):
        g = d[d.strategy == strat].groupby("query_lang").value
        means = g.mean().reindex(langs)
        stds = g.std(ddof=1).reindex(langs).fillna(0.0)
        x = np.arange(len(langs)) + (j - (len(strategies) - 1) / 2) * width
        ax.bar(x, means.to_numpy(), width, yerr=stds.to_numpy(), capsize=2, label=strat, color=COLORS.get(strat))
    ax.set_xticks(np.arange(len(langs)), langs)
    ax.set_xlabel("query language")
    ax.set_ylabel("rank distance (max − min rank of\nparallel answers; lower = less bias)")
    ax.set_title(title or "Language bias in the multilingual setting")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out)


def language_pair_heatmap(results: pd.DataFrame, metric: str = "mAP", title: str = "",
                          out: str | Path | None = None):
    """One heatmap per strategy: rows = query language, columns = candidate language.

    The diagonal is the monolingual setting, the rest cross-lingual; values are means over seeds.
    """
    d = results[results.setting.isin(["monolingual", "cross-lingual"]) & (results.metric == metric)]
    strategies = _order(d.strategy, STRATEGY_ORDER)
    langs = sorted(set(d.query_lang) | set(d.candidate_lang))
    fig, axes = plt.subplots(1, len(strategies), figsize=(0.6 + 0.55 * len(langs) * len(strategies) + 1,
                                                            0.5 * len(langs) + 1.4), squeeze=False)
    vmin, vmax = d.value.min(), d.value.max()
    im = None
    for ax, strat in zip(axes[0], strategies):
        m = (d[d.strategy == strat].groupby(["query_lang", "candidate_lang"]).value.mean()
             .unstack().reindex(index=langs, columns=langs))
        im = ax.imshow(m.to_numpy(), vmin=vmin, vmax=vmax, cmap="viridis")
        ax.set_xticks(range(len(langs)), langs, fontsize=8)
        ax.set_yticks(range(len(langs)), langs, fontsize=8)
        ax.set_xlabel("candidate language")
        ax.set_ylabel("query language")
        ax.set_title(strat)
        for i in range(len(langs)):
            for k in range(len(langs)):
                v = m.iat[i, k]
                if np.isfinite(v):
                    ax.text(k, i, f"{v:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if v < (vmin + vmax) / 2 else "black")
    if im is not None:
        fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label=metric)
    fig.suptitle(title or f"{metric} per language pair (diagonal: monolingual)")
    return _save(fig, out)


def batch_language_histograms(batches, n: int = 6, title: str = "", out: str | Path | None = None):
    """Stacked bars of query/passage languages in the first ``n`` batches (real sampler output).

    ``batches`` is a sequence of objects with ``refs`` (PairRef) and ``mode``.
    """
    batches = list(batches)[:n]
    langs = sorted({r.query_lang for b in batches for r in b.refs} |
                   {r.passage_lang for b in batches for r in b.refs if r.passage_lang})
    cmap = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, len(batches), figsize=(2.0 * len(batches) + 1, 3.2), sharey=True, squeeze=False)
    for ax, b in zip(axes[0], batches):
        for side, xpos in (("query_lang", 0), ("passage_lang", 1)):
            counts = pd.Series([getattr(r, side) for r in b.refs if getattr(r, side)]).value_counts()
            bottom = 0
            for li, lang in enumerate(langs):
                c = int(counts.get(lang, 0))
                if c:
                    ax.bar(xpos, c, bottom=bottom, color=cmap(li % 10), label=lang if xpos == 0 else None)
                    bottom += c
        ax.set_xticks([0, 1], ["query", "passage"])
        ax.set_title(f"batch {b.step} ({b.mode})", fontsize=9)
    axes[0][0].set_ylabel("pairs in batch")
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(i % 10)) for i in range(len(langs))]
    fig.legend(handles, langs, loc="center right", title="language", fontsize=8)
    fig.suptitle(title or "Languages per batch")
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    return _save(fig, out)


def training_curves(logs: dict[str, pd.DataFrame], title: str = "", out: str | Path | None = None):
    """Training loss (and validation loss where logged) against step; ``logs`` maps a label to a train_log frame."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for label, df in logs.items():
        if "loss" in df:
            t = df.dropna(subset=["loss"])
            axes[0].plot(t.step, t.loss, label=label)
        if "val_loss" in df:
            v = df.dropna(subset=["val_loss"])
            axes[1].plot(v.step, v.val_loss, marker="o", label=label)
    axes[0].set_title("training loss")
    axes[1].set_title("validation loss")
    for ax in axes:
        ax.set_xlabel("step")
        ax.set_ylabel("InfoNCE loss")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, out)


def alpha_sweep(headline: pd.DataFrame, metric: str = "mAP", title: str = "", out: str | Path | None = None):
    """``metric`` against α for hybrid runs labelled ``hybrid-alpha<α>`` (α = 0.5 is ``hybrid``), per setting."""
    d = headline[(headline.metric == metric)].copy()
    def alpha_of(label: str) -> float:
        if label == "hybrid":
            return 0.5
        if label.startswith("hybrid-alpha"):
            return float(label[len("hybrid-alpha"):])
        return np.nan
    d["alpha"] = d.strategy.map(alpha_of)
    d = d.dropna(subset=["alpha"])
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for setting in _order(d.setting, SETTING_ORDER):
        g = d[d.setting == setting].groupby("alpha").value
        m, s = g.mean(), g.std(ddof=1).fillna(0.0)
        ax.errorbar(m.index, m.to_numpy(), yerr=s.to_numpy(), marker="o", capsize=3, label=setting)
    ax.set_xlabel("α (probability of an X-X batch)")
    ax.set_ylabel(metric)
    ax.set_title(title or f"{metric} against α")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out)
