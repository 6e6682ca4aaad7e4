"""Figures draw the data they are given, labelled, and are saved as PNG files."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from hbkit.errors import ConfigError
from hbkit.kit import plots

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _sweep_frame() -> pd.DataFrame:
    """Headline rows for α ∈ {0, .25, .5, 1}: mono rises with α, multi falls; two seeds at α = .5."""
    rows = []
    values = {"monolingual": {0.0: 0.70, 0.25: 0.74, 0.5: 0.78, 1.0: 0.80},
              "multilingual": {0.0: 0.60, 0.25: 0.59, 0.5: 0.58, 1.0: 0.50}}
    for setting, by_alpha in values.items():
        for alpha, v in by_alpha.items():
            seeds = [(0, v - 0.01), (1, v + 0.01)] if alpha == 0.5 else [(0, v)]
            for seed, value in seeds:
                rows.append({"model": "m", "benchmark": "xquad-r", "setting": setting, "metric": "mAP",
                             "strategy": {0.0: "X-Y", 1.0: "X-X", 0.5: "hybrid"}.get(alpha, f"hybrid-alpha{alpha:g}"),
                             "seed": seed, "value": value})
    rows.append({"model": "m", "benchmark": "xquad-r", "setting": "monolingual", "metric": "R@1",
                 "strategy": "X-X", "seed": 0, "value": 0.1})
    return pd.DataFrame(rows)


def test_alpha_of_and_with_alpha_read_run_labels():
    assert [plots.alpha_of(s) for s in ("X-Y", "X-X", "hybrid", "hybrid-alpha0.25")] == [0.0, 1.0, 0.5, 0.25]
    assert plots.alpha_of("hybrid", default_alpha=0.6) == 0.6 and np.isnan(plots.alpha_of("other"))
    d = plots.with_alpha(_sweep_frame())
    assert d.groupby("strategy").alpha.first().to_dict() == {"X-X": 1.0, "X-Y": 0.0, "hybrid": 0.5,
                                                             "hybrid-alpha0.25": 0.25}
    given = d.assign(alpha=0.3)
    assert plots.with_alpha(given) is given  # an existing alpha column is kept


def test_alpha_sweep_plots_mean_metric_against_alpha_per_setting(tmp_path):
    out = tmp_path / "sweep.png"
    fig = plots.alpha_sweep(plots.with_alpha(_sweep_frame()), out=out)
    assert out.read_bytes()[:8] == PNG
    ax = fig.axes[0]
    lines = {c.get_label(): c.lines[0] for c in ax.containers}  # one errorbar per setting
    assert set(lines) == {"monolingual", "multilingual"}
    mono = lines["monolingual"]
    np.testing.assert_allclose(mono.get_xdata(), [0.0, 0.25, 0.5, 1.0])
    np.testing.assert_allclose(mono.get_ydata(), [0.70, 0.74, 0.78, 0.80])  # mean of the two α = .5 seeds
    np.testing.assert_allclose(lines["multilingual"].get_ydata(), [0.60, 0.59, 0.58, 0.50])
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[0] == "0\nX-Y" and labels[-1] == "1\nX-X" and "0.25" in labels
    ends = [c for c in ax.collections if c.get_offsets().shape[0] == 2]  # square markers at α = 0 and 1
    assert len(ends) == 2
    np.testing.assert_allclose(np.sort(ends[0].get_offsets()[:, 0]), [0.0, 1.0])
    assert ax.get_xlabel().startswith("α") and ax.get_ylabel() == "mAP" and ax.get_title() == "xquad-r"


def test_alpha_sweep_needs_an_alpha_column_and_rows():
    with pytest.raises(ConfigError, match="with_alpha"):
        plots.alpha_sweep(_sweep_frame())
    with pytest.raises(ConfigError, match="nDCG@10"):
        plots.alpha_sweep(plots.with_alpha(_sweep_frame()), metric="nDCG@10")


def test_batch_language_heatmaps_show_shares_per_strategy(tmp_path):
    langs = ["de", "en"]
    xx = pd.DataFrame([[30, 0], [0, 10]], index=langs, columns=langs)
    xy = pd.DataFrame([[0, 5], [15, 0]], index=langs, columns=langs)
    out = tmp_path / "heat.png"
    fig = plots.batch_language_heatmaps({"X-X": xx, "X-Y": xy}, title="t", out=out)
    assert out.read_bytes()[:8] == PNG
    axes = [ax for ax in fig.axes if ax.get_images()]
    assert [ax.get_title() for ax in axes] == ["X-X (40 pairs)", "X-Y (20 pairs)"]
    shares = axes[0].get_images()[0].get_array()
    np.testing.assert_allclose(shares.filled(0), [[75, 0], [0, 25]])
    assert bool(shares.mask[0, 1]) and not bool(shares.mask[0, 0])  # never-drawn pairs stay blank
    np.testing.assert_allclose(axes[1].get_images()[0].get_array().filled(0), [[0, 25], [75, 0]])
    assert axes[0].get_xlabel() == "passage language" and axes[0].get_ylabel() == "query language"
    colorbar = [ax for ax in fig.axes if not ax.get_images()]
    assert colorbar and colorbar[0].get_ylabel() == "share of pairs (%)"


def test_answer_ranks_plot_draws_each_strategys_ranks_and_distance(tmp_path):
    ranks = pd.DataFrame({"strategy": ["X-X"] * 3 + ["X-Y"] * 3, "answer language": ["de", "en", "ru"] * 2,
                          "rank": [5, 1, 40, 3, 2, 4], "answer": list("derder"), "rank_distance": [39] * 3 + [2] * 3})
    ranks.attrs.update(query="where?", query_lang="en", n_candidates=420)
    out = tmp_path / "ranks.png"
    fig = plots.answer_ranks(ranks, out=out)
    assert out.read_bytes()[:8] == PNG
    ax = fig.axes[0]
    points = [c for c in ax.collections if c.get_offsets().shape[0] == 3]
    np.testing.assert_allclose(points[0].get_offsets()[:, 1], [5, 1, 40])
    np.testing.assert_allclose(points[1].get_offsets()[:, 1], [3, 2, 4])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["X-X: rank distance 39", "X-Y: rank distance 2"]
    assert ax.get_yscale() == "log" and ax.yaxis_inverted()
    assert "420" in ax.get_ylabel() and "where?" in ax.get_title()


def test_training_curves_by_mode_splits_the_loss_per_batch_kind():
    log = pd.DataFrame({"step": [10, 20, 30, 40, 40], "loss": [3.0, 1.0, 2.5, 0.8, np.nan],
                        "mode": ["X-Y", "X-X", "X-Y", "X-X", None], "val_loss": [np.nan] * 4 + [2.0]})
    fig = plots.training_curves({"hybrid": log}, by_mode=True)
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    assert set(lines) == {"hybrid: X-X batches", "hybrid: X-Y batches"}
    np.testing.assert_allclose(lines["hybrid: X-Y batches"].get_ydata(), [3.0, 2.5])
    np.testing.assert_allclose(lines["hybrid: X-X batches"].get_xdata(), [20, 40])
    np.testing.assert_allclose(fig.axes[1].get_lines()[0].get_ydata(), [2.0])
    star = fig.axes[1].collections[0]
    np.testing.assert_allclose(star.get_offsets(), [[40, 2.0]])
    assert star.get_label() == "lowest (step 40): the weights kept"
    single = plots.training_curves({"hybrid": log})
    assert [ln.get_label() for ln in single.axes[0].get_lines()] == ["hybrid"]
