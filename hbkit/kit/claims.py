"""The paper's claims (PROTOCOL §1.4, last paragraph) checked on a set of runs, and a plain-text reading."""
from __future__ import annotations

import numpy as np
import pandas as pd

STRATS = ("X-X", "X-Y", "hybrid")


def _text_only(head: pd.DataFrame) -> pd.DataFrame:
    """The paper's claims are about text retrieval: keep text→text rows (all rows of tables without a direction)."""
    return head[head.direction == "text→text"] if "direction" in head.columns else head


def _means(head: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of the text→text rows: index (model, benchmark, setting, metric), columns per strategy."""
    head = _text_only(head)
    g = head.groupby(["model", "benchmark", "setting", "metric", "strategy"]).value
    return g.agg(["mean", "std", "count"]).reset_index()


def summary_table(head: pd.DataFrame, metrics=("mAP", "R@1", "R@10", "rank_distance")) -> pd.DataFrame:
    """A wide table: rows (model, benchmark, setting, metric), columns strategies, cells "mean ± std (n)"."""
    m = _means(head[head.metric.isin(metrics)])
    m["cell"] = [f"{a:.3f} ± {0.0 if np.isnan(s) else s:.3f} (n={n})" if abs(a) < 10 else
                 f"{a:.1f} ± {0.0 if np.isnan(s) else s:.1f} (n={n})" for a, s, n in zip(m["mean"], m["std"], m["count"])]
    wide = m.pivot_table(index=["model", "benchmark", "setting", "metric"], columns="strategy", values="cell",
                         aggfunc="first")
    return wide[[s for s in STRATS if s in wide.columns]]


def check_claims(head: pd.DataFrame, tolerance: float = 0.01) -> pd.DataFrame:
    """One row per (model, benchmark, claim) with the compared means and whether the claim holds.

    "Near the best" means within ``tolerance`` (absolute mAP) of the best strategy.
    """
    m = _means(head)
    rows = []
    for (model, bench), g in m.groupby(["model", "benchmark"]):
        def v(setting, metric, strat):
            s = g[(g.setting == setting) & (g.metric == metric) & (g.strategy == strat)]["mean"]
            return float(s.iloc[0]) if len(s) else np.nan

        def add(claim, holds, detail):
            rows.append({"model": model, "benchmark": bench, "claim": claim,
                         "holds": bool(holds) if holds is not None else None, "evidence": detail})

        mono = {s: v("monolingual", "mAP", s) for s in STRATS}
        cross = {s: v("cross-lingual", "mAP", s) for s in STRATS}
        multi = {s: v("multilingual", "mAP", s) for s in STRATS}
        rd = {s: v("multilingual", "rank_distance", s) for s in STRATS}
        fmt = lambda d, p=3: ", ".join(f"{k} {x:.{p}f}" for k, x in d.items())  # noqa: E731
        add("X-X beats X-Y monolingually", mono["X-X"] > mono["X-Y"], f"mono mAP: {fmt(mono)}")
        add("X-X is weakest multilingually", multi["X-X"] < min(multi["X-Y"], multi["hybrid"]),
            f"multi mAP: {fmt(multi)}")
        add("X-X has the largest rank distance", rd["X-X"] > max(rd["X-Y"], rd["hybrid"]),
            f"rank distance: {fmt(rd, 1)}")
        add("X-Y beats X-X cross-lingually", cross["X-Y"] > cross["X-X"], f"cross mAP: {fmt(cross)}")
        add("X-Y beats X-X multilingually", multi["X-Y"] > multi["X-X"], f"multi mAP: {fmt(multi)}")
        for name, d in (("monolingual", mono), ("cross-lingual", cross), ("multilingual", multi)):
            best = max(d.values())
            add(f"hybrid is at or near the best {name}ly" if name != "cross-lingual" else
                "hybrid is at or near the best cross-lingually",
                d["hybrid"] >= best - tolerance, f"{name} mAP: {fmt(d)} (tolerance {tolerance})")
        add("hybrid has the smallest rank distance", rd["hybrid"] <= min(rd["X-X"], rd["X-Y"]),
            f"rank distance: {fmt(rd, 1)}")
    return pd.DataFrame(rows)


def reading(head: pd.DataFrame, claims: pd.DataFrame, profile: str = "") -> str:
    """A short plain-English reading of the comparison, generated from the numbers."""
    lines = []
    if profile in ("demo", "test"):
        lines.append(f"Profile '{profile}' is a TOY: a synthetic world and a tiny model. Its numbers show whether "
                     "the paper's pattern can appear, not the paper's results.")
    m = _means(head)
    for (model, bench), g in m.groupby(["model", "benchmark"]):
        lines.append(f"\n{model} on {bench}:")
        for setting in ("monolingual", "cross-lingual", "multilingual"):
            s = g[(g.setting == setting) & (g.metric == "mAP")].sort_values("mean", ascending=False)
            if len(s):
                order = " > ".join(f"{r.strategy} ({r['mean']:.3f})" for _, r in s.iterrows())
                spread = s["std"].max()
                lines.append(f"  {setting} mAP: {order}; largest std over seeds {0 if np.isnan(spread) else spread:.3f}")
        s = g[(g.setting == "multilingual") & (g.metric == "rank_distance")].sort_values("mean")
        if len(s):
            lines.append("  rank distance (lower = less language bias): "
                         + " < ".join(f"{r.strategy} ({r['mean']:.1f})" for _, r in s.iterrows()))
        c = claims[(claims.model == model) & (claims.benchmark == bench)]
        held = int(c.holds.sum())
        lines.append(f"  {held} of {len(c)} of the paper's claims hold here"
                     + (": fails — " + "; ".join(c[~c.holds].claim) if held < len(c) else "."))
    lines.append("\nDifferences smaller than the std over seeds are not evidence either way.")
    return "\n".join(lines)
