"""Our numbers beside the paper's (Elmahdy et al. 2024, Tables 1–8, 12, 13).

The paper's values ship with hbkit in ``hbkit/kit/reference/elmahdy2024_tables.csv`` (tidy:
table, model, dataset, setting, metric, strategy, query_language, value; ``mean`` and
``median`` rows aggregate over languages). :func:`compare_with_paper` aligns a tidy
results table (hbkit.evaluation format) with it: one row per paper number, with our
mean and std over seeds and the difference.
"""
from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

#: our model names -> the paper's
MODEL_NAMES = {"xlm-roberta-base": "xlm-r", "xlm-roberta-large": "xlm-r", "labse": "labse"}
#: our metric names -> the paper's
METRIC_NAMES = {"mAP": "map", "R@1": "recall@1", "R@10": "recall@10", "rank_distance": "rank_distance",
                "nDCG@10": "ndcg@10", "R@100": "recall@100"}
STRATEGY_NAMES = {"X-X": "x-x", "X-Y": "x-y", "hybrid": "hybrid"}
#: Table 1 (mAP summary) and 2 are the ``mean`` rows of Tables 3–6.
SUMMARY_TABLES = {"T1": ("map", ("T3", "T4", "T5", "T6"))}


def load_reference() -> pd.DataFrame:
    """The paper's numbers as a tidy DataFrame."""
    with resources.files("hbkit.kit").joinpath("reference/elmahdy2024_tables.csv").open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh)


def ours_by_language(results: pd.DataFrame) -> pd.DataFrame:
    """Per seed: per-query-language values (cross-lingual averaged over candidate languages),
    plus ``mean`` (macro) and ``median`` rows over query languages, in the paper's naming."""
    from hbkit.evaluation import per_query_language

    per = per_query_language(results)
    if "direction" in per.columns:  # the paper's tables are text retrieval
        per = per[per.direction == "text→text"]
    keys = ["model", "strategy", "seed", "benchmark", "setting", "metric"]
    agg = []
    for name, fn in (("mean", "mean"), ("median", "median")):
        a = per.groupby(keys, as_index=False).value.agg(fn)
        a["query_lang"] = name
        agg.append(a)
    out = pd.concat([per[keys + ["query_lang", "value"]], *agg], ignore_index=True)
    out["model"] = out.model.map(lambda m: MODEL_NAMES.get(m, m))
    out["metric"] = out.metric.map(lambda m: METRIC_NAMES.get(m, m.lower()))
    out["strategy"] = out.strategy.map(lambda s: STRATEGY_NAMES.get(s, s))
    return out.rename(columns={"benchmark": "dataset", "query_lang": "query_language"})


def compare_with_paper(results: pd.DataFrame, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per paper number that we also measured: paper, ours (mean, std, n seeds), difference.

    Columns: table, model, dataset, setting, metric, strategy, query_language, paper, ours, ours_std,
    n_seeds, diff (ours − paper).
    """
    ref = load_reference() if reference is None else reference
    ours = ours_by_language(results)
    keys = ["model", "dataset", "setting", "metric", "strategy", "query_language"]
    stats = ours.groupby(keys).value.agg(ours="mean", ours_std=lambda v: v.std(ddof=1) if len(v) > 1 else np.nan,
                                         n_seeds="count").reset_index()
    cmp = ref.rename(columns={"value": "paper"}).merge(stats, on=keys, how="inner")
    cmp["diff"] = cmp.ours - cmp.paper
    return cmp[["table", *keys, "paper", "ours", "ours_std", "n_seeds", "diff"]]


def paper_table(cmp: pd.DataFrame, table: str, metric: str | None = None) -> pd.DataFrame:
    """A wide view of one of the paper's tables: rows query language, columns (setting, strategy),
    cells "ours ± std (paper, Δ)"."""
    d = cmp[cmp.table == table]
    if metric is not None:
        d = d[d.metric == metric]
    cell = [f"{o:.3f} ± {0 if np.isnan(s) else s:.3f} (paper {p:.3f}, Δ {df:+.3f})" if abs(p) < 10 else
            f"{o:.1f} ± {0 if np.isnan(s) else s:.1f} (paper {p:.1f}, Δ {df:+.1f})"
            for o, s, p, df in zip(d.ours, d.ours_std, d.paper, d["diff"])]
    d = d.assign(cell=cell)
    return d.pivot_table(index="query_language", columns=["setting", "metric", "strategy"], values="cell",
                         aggfunc="first")


def table1(cmp: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 1: mean mAP per model, strategy, dataset and setting, ours beside the paper's."""
    d = cmp[(cmp.metric == "map") & (cmp.query_language == "mean") & cmp.table.isin(["T3", "T4", "T5", "T6"])]
    return d.pivot_table(index=["model", "strategy"], columns=["dataset", "setting"],
                         values=["ours", "paper"], aggfunc="first")


def pretraining_table(head: pd.DataFrame, tlm_head: pd.DataFrame,
                      metrics: tuple[str, ...] = ("mAP", "rank_distance")) -> pd.DataFrame:
    """The demo beside the ``demo-tlm`` profile: mean over seeds of ``metrics`` per setting, pre-training
    (MLM, MLM + TLM) and strategy (columns X-X, X-Y, hybrid), from two :func:`hbkit.evaluation.headline` tables."""
    both = pd.concat([head.assign(pretraining="MLM"), tlm_head.assign(pretraining="MLM + TLM")], ignore_index=True)
    if "direction" in both.columns:
        both = both[both.direction == "text→text"]
    both = both[both.metric.isin(metrics) & both.strategy.isin(["X-X", "X-Y", "hybrid"])]
    table = both.pivot_table(index=["setting", "metric", "pretraining"], columns="strategy", values="value",
                             aggfunc="mean")
    return table[[s for s in ("X-X", "X-Y", "hybrid") if s in table.columns]]
