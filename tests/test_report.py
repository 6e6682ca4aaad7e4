"""The paper's reference numbers ship with the package and line up with our tidy results."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hbkit.kit.report import compare_with_paper, load_reference, paper_table, table1


def test_reference_has_the_papers_headline_numbers():
    ref = load_reference()
    assert len(ref) == 1044
    row = ref[(ref.table == "T3") & (ref.setting == "monolingual") & (ref.metric == "map") &
              (ref.strategy == "hybrid") & (ref.query_language == "mean")]
    assert row.value.item() == pytest.approx(0.798, abs=1e-3)  # PROTOCOL Table 1, XLM-R hybrid XQuAD-R mono
    rd = ref[(ref.table == "T7") & (ref.model == "xlm-r") & (ref.strategy == "x-x") & (ref.query_language == "mean")]
    assert rd.value.item() == pytest.approx(410.2, abs=0.1)


def _fake_results(ref, offsets):
    """Tidy per-language results built from the paper's per-language numbers + a known offset per seed."""
    per = ref[(ref.table == "T3") & ~ref.query_language.isin(["mean", "median"])]
    rows = []
    langs = sorted(per.query_language.unique())
    for seed, off in enumerate(offsets):
        for _, r in per.iterrows():
            strat = {"x-x": "X-X", "x-y": "X-Y", "hybrid": "hybrid"}[r.strategy]
            metric = {"map": "mAP", "recall@1": "R@1", "recall@10": "R@10"}[r.metric]
            cands = [r.query_language] if r.setting == "monolingual" else (
                ["all"] if r.setting == "multilingual" else [c for c in langs if c != r.query_language])
            for c in cands:  # cross-lingual: the same value for every candidate language
                rows.append(dict(model="xlm-roberta-base", strategy=strat, seed=seed, benchmark="xquad-r",
                                 setting=r.setting, query_lang=r.query_language, candidate_lang=c, metric=metric,
                                 value=r.value + off, n_queries=1190))
    return pd.DataFrame(rows)


def test_compare_with_paper_aligns_and_measures_differences():
    ref = load_reference()
    cmp = compare_with_paper(_fake_results(ref, [0.01, 0.03]))
    t3 = cmp[cmp.table == "T3"]
    assert len(t3) == len(ref[ref.table == "T3"])  # every T3 number found, mean and median rows included
    per_lang = t3[~t3.query_language.isin(["mean", "median"])]
    assert np.allclose(per_lang["diff"], 0.02)
    assert np.allclose(per_lang.ours_std, np.std([0.01, 0.03], ddof=1))
    assert (t3.n_seeds == 2).all()
    mean_rows = t3[t3.query_language == "mean"]
    # the paper's mean rows are rounded means of its per-language rows: ours agree within rounding
    assert (mean_rows["diff"] - 0.02).abs().max() < 0.002
    wide = paper_table(cmp, "T3", metric="map")
    assert "paper 0.798" in wide.loc["mean", ("monolingual", "map", "hybrid")]
    t1 = table1(cmp)
    assert t1.loc[("xlm-r", "hybrid"), ("paper", "xquad-r", "monolingual")] == pytest.approx(0.798, abs=1e-3)


def test_pretraining_table_puts_the_two_profiles_side_by_side():
    import pandas as pd

    from hbkit.kit.report import pretraining_table

    def head(offset):
        return pd.DataFrame([dict(model="m", strategy=s, seed=k, benchmark="b", direction="text→text",
                                  setting="monolingual", metric="mAP", value=v + offset + k / 10)
                             for s, v in (("X-X", 0.9), ("X-Y", 0.8), ("hybrid", 0.85)) for k in (0, 1)])
    t = pretraining_table(head(0.0), head(-0.5))
    assert list(t.columns) == ["X-X", "X-Y", "hybrid"]
    assert t.loc[("monolingual", "mAP", "MLM"), "X-Y"] == pytest.approx(0.85)  # mean of 0.8 and 0.9 over seeds
    assert t.loc[("monolingual", "mAP", "MLM + TLM"), "X-X"] == pytest.approx(0.45)
