"""Figures: strategy × setting bars, rank distance per language, language-pair heatmaps, batch
language histograms and heatmaps, one query's answer ranks, training curves and the α sweep.
Each function returns the figure and, when ``out`` is given, also saves it as a PNG."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hbkit.engine.atomic import atomic_path
from hbkit.errors import ConfigError, DataError

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


def training_curves(logs: dict[str, pd.DataFrame], title: str = "", out: str | Path | None = None,
                    by_mode: bool = False):
    """Training loss (and validation loss where logged) against step; ``logs`` maps a label to a train_log frame.

    With ``by_mode``, the logged training losses are drawn per kind of batch (the ``mode`` column:
    X-X or X-Y), so a hybrid run shows its two kinds of batch as two series. A star marks each run's
    lowest validation loss: the checkpoint the trainer keeps and exports.
    """
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for label, df in logs.items():
        if "loss" in df:
            t = df.dropna(subset=["loss"])
            if by_mode and "mode" in t and t["mode"].notna().any():
                for mode in _order(t["mode"].dropna(), STRATEGY_ORDER):
                    m = t[t["mode"] == mode]
                    axes[0].plot(m.step, m.loss, marker=".", lw=0.8, color=COLORS.get(mode),
                                 label=f"{label}: {mode} batches")
            else:
                axes[0].plot(t.step, t.loss, label=label)
        if "val_loss" in df:
            v = df.dropna(subset=["val_loss"])
            (line,) = axes[1].plot(v.step, v.val_loss, marker="o", label=label)
            if len(v):
                best = v.loc[v.val_loss.idxmin()]
                axes[1].scatter([best.step], [best.val_loss], marker="*", s=160, zorder=4, color=line.get_color(),
                                edgecolor="black", label=f"lowest (step {int(best.step)}): the weights kept")
    axes[0].set_title("training loss")
    axes[1].set_title("validation loss")
    for ax in axes:
        ax.set_xlabel("step")
        ax.set_ylabel("InfoNCE loss")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not measured in this run", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, out)


def loss_parts(log: pd.DataFrame, parts: Sequence[str], title: str = "", out: str | Path | None = None):
    """Each logged loss part (e.g. ALBEF's ``itc`` and ``itm``) against step, one panel per part."""
    present = [p for p in parts if p in log and log[p].notna().any()]
    if not present:
        raise DataError(f"The training log has none of the loss parts {list(parts)}; it holds {list(log.columns)}.")
    fig, axes = plt.subplots(1, len(present), figsize=(4.5 * len(present), 3.2), squeeze=False)
    for ax, part in zip(axes[0], present):
        t = log.dropna(subset=[part])
        ax.plot(t.step, t[part], marker=".", lw=0.8)
        ax.set_title(f"{part} loss")
        ax.set_xlabel("step")
        ax.set_ylabel(part)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, out)


def batch_language_heatmaps(counts: Mapping[str, pd.DataFrame], title: str = "", out: str | Path | None = None):
    """One heatmap per strategy of the share of training pairs per (query language, passage language).

    ``counts`` maps a strategy to the output of :func:`hbkit.kit.inspection.language_pair_counts`
    (rows query language, columns passage language). Cells show the percentage of that strategy's
    pairs; X-X fills the diagonal, X-Y the off-diagonal cells, hybrid both.
    """
    names = list(counts)
    if not names:
        raise ConfigError("counts is empty: pass at least one strategy's language-pair counts.")
    langs = _order([lang for m in counts.values() for lang in [*m.index, *m.columns]], [])
    shares = {}
    for name, m in counts.items():
        m = m.reindex(index=langs, columns=langs, fill_value=0).astype(float)
        total = m.to_numpy().sum()
        shares[name] = 100 * m / total if total else m
    vmax = max(float(s.to_numpy().max()) for s in shares.values()) or 1.0
    cmap = plt.get_cmap("magma_r").with_extremes(bad="white")  # pairs a strategy never draws stay blank
    fig, axes = plt.subplots(1, len(names), figsize=(1.2 + 0.5 * len(langs) * len(names) + 1.0,
                                                     0.42 * len(langs) + 1.3), squeeze=False, layout="constrained")
    im = None
    for j, (ax, name) in enumerate(zip(axes[0], names)):
        s = shares[name]
        im = ax.imshow(np.ma.masked_equal(s.to_numpy(), 0.0), vmin=0, vmax=vmax, cmap=cmap)
        ax.set_xticks(range(len(langs)), langs, fontsize=8)
        ax.set_yticks(range(len(langs)), langs, fontsize=8)
        ax.set_xlabel("passage language")
        if j == 0:
            ax.set_ylabel("query language")
        n_pairs = int(counts[name].to_numpy().sum())
        ax.set_title(f"{name} ({n_pairs:,} pairs)", fontsize=10)
        for i in range(len(langs)):
            for k in range(len(langs)):
                v = s.iat[i, k]
                if v > 0:
                    ax.text(k, i, f"{v:.1f}", ha="center", va="center", fontsize=6,
                            color="white" if v > vmax / 2 else "black")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="share of pairs (%)")
    fig.suptitle(title or "Query language × passage language of the training pairs")
    return _save(fig, out)


def answer_ranks(ranks: pd.DataFrame, title: str = "", out: str | Path | None = None):
    """One query's correct answers, one per language: their pooled (multilingual) rank per strategy.

    ``ranks`` is the output of :func:`hbkit.kit.inspection.answer_ranks`. Each strategy's ranks are
    joined by a vertical bar from its best to its worst rank: its length is that query's rank
    distance. The rank axis is logarithmic, rank 1 at the top.
    """
    labels = list(dict.fromkeys(ranks["strategy"]))
    langs = _order(ranks["answer language"], [])
    fig, ax = plt.subplots(figsize=(2.2 + 0.75 * len(langs) + 0.6 * len(labels), 3.9))
    width = 0.6 / max(1, len(labels))
    for j, label in enumerate(labels):
        d = ranks[ranks["strategy"] == label].set_index("answer language")["rank"].reindex(langs)
        x = np.arange(len(langs)) + (j - (len(labels) - 1) / 2) * width
        color = COLORS.get(label, plt.get_cmap("tab10")(j % 10))
        dist = int(d.max() - d.min())
        ax.scatter(x, d.to_numpy(), color=color, zorder=3, label=f"{label}: rank distance {dist}")
        xr = len(langs) + 0.35 * (j - (len(labels) - 1) / 2)
        ax.vlines(xr, d.min(), d.max(), color=color, lw=3)
        ax.text(xr, d.min() / 1.15, str(dist), color=color, ha="center", va="bottom", fontsize=8)
    n = ranks.attrs.get("n_candidates")
    worst = max(int(ranks["rank"].max()), int(n or 0))
    ax.set_yscale("log")
    ax.set_ylim(worst * 1.3, 0.45)  # rank 1 at the top; the bottom is the pool size when known
    ticks = [t for t in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000)
             if t <= worst / 1.5] + [worst]
    ax.set_yticks(ticks, [f"{t:,}" for t in ticks])
    ax.yaxis.set_minor_locator(plt.NullLocator())
    ax.set_ylabel("rank in the pooled candidates" + (f"\n(1 = best of {n:,})" if n else " (1 = best)"))
    ax.set_xticks(np.arange(len(langs) + 1), [*langs, "rank\ndistance"])
    ax.set_xlabel("language of the correct answer")
    ax.set_xlim(-0.6, len(langs) + 0.6)
    q = ranks.attrs.get("query")
    ax.set_title(title or (f"Ranks of one query's correct answers ({ranks.attrs.get('query_lang')}: {q})" if q
                           else "Ranks of one query's correct answers"), fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.36), ncol=len(labels), frameon=False)
    fig.tight_layout()
    return _save(fig, out)


def alpha_of(strategy: str, default_alpha: float = 0.5) -> float:
    """α of a run label: X-Y → 0, X-X → 1, hybrid → ``default_alpha``, ``hybrid-alpha<α>`` → α; else NaN."""
    if strategy == "X-Y":
        return 0.0
    if strategy == "X-X":
        return 1.0
    if strategy == "hybrid":
        return float(default_alpha)
    if strategy.startswith("hybrid-alpha"):
        try:
            return float(strategy[len("hybrid-alpha"):])
        except ValueError:
            return float("nan")
    return float("nan")


def with_alpha(results: pd.DataFrame, default_alpha: float = 0.5) -> pd.DataFrame:
    """``results`` with an ``alpha`` column derived from ``strategy`` by :func:`alpha_of` (kept if present)."""
    if "alpha" in results:
        return results
    out = results.copy()
    out["alpha"] = [alpha_of(s, default_alpha) for s in out["strategy"]]
    return out


def alpha_sweep(results: pd.DataFrame, metric: str = "mAP", title: str = "", out: str | Path | None = None):
    """``metric`` against α (the probability of an X-X batch) per setting, mean ± std over seeds.

    ``results`` is a tidy headline table (:func:`hbkit.evaluation.headline`) with an ``alpha`` column
    (see :func:`with_alpha`; rows without α are left out). α = 0 is X-Y batching and α = 1 is X-X:
    both ends are drawn as squares and named on the axis. One panel per benchmark.
    """
    if "alpha" not in results:
        raise ConfigError("results has no 'alpha' column: add one with plots.with_alpha(results).")
    d = results[(results.metric == metric)].dropna(subset=["alpha"])
    if d.empty:
        raise ConfigError(f"No rows with metric {metric!r} and a value of alpha to plot.")
    benches = _order(d["benchmark"], []) if "benchmark" in d else [None]
    fig, axes = plt.subplots(1, len(benches), figsize=(5.2 * len(benches), 3.6), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, bench in zip(axes[0], benches):
        b = d if bench is None else d[d["benchmark"] == bench]
        for k, setting in enumerate(_order(b.setting, SETTING_ORDER)):
            g = b[b.setting == setting].groupby("alpha").value
            m, s = g.mean(), g.std(ddof=1).fillna(0.0)
            color = cmap(k % 10)
            ax.errorbar(m.index.to_numpy(), m.to_numpy(), yerr=s.to_numpy(), marker="o", capsize=3,
                        color=color, label=setting)
            ends = m[m.index.isin([0.0, 1.0])]
            ax.scatter(ends.index.to_numpy(), ends.to_numpy(), marker="s", s=70, facecolor="none",
                       edgecolor=color, zorder=4)
        ticks = sorted(set(b["alpha"].astype(float)) | {0.0, 1.0})
        ax.set_xticks(ticks, [{0.0: "0\nX-Y", 1.0: "1\nX-X"}.get(t, f"{t:g}") for t in ticks])
        ax.set_xlim(-0.08, 1.08)
        ax.set_xlabel("α (probability of an X-X batch)")
        ax.set_ylabel(metric)
        ax.set_title(bench if bench is not None else "", fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle(title or f"{metric} against α (squares: the pure X-Y and X-X ends)")
    fig.tight_layout()
    return _save(fig, out)
