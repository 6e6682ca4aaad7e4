"""Image–text figures: real sampler batches of a tiny generated image world as thumbnails, and the
result figures drawing exactly the values of a hand-made tidy table."""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.container import BarContainer
from PIL import Image

from hbkit.datasets.image_world import make_image_world
from hbkit.errors import ConfigError
from hbkit.evaluation import COLUMNS
from hbkit.kit import image_plots
from hbkit.parallel import ParallelDataset, ParallelItem
from hbkit.samplers import make_sampler

PNG = b"\x89PNG\r\n\x1a\n"
LANGS = ("en", "es", "ru", "hi")
OFF = {"en": 0.03, "es": 0.01, "ru": -0.01, "hi": -0.03}
SEEDS = {0: -0.002, 1: 0.002}
STD2 = 0.002 * math.sqrt(2)
#: strategy -> (mono hit_mean, cross mAP, i→t multi mAP, i→t MRV, i→t rank distance, i→t top-10 spread, c→c rank
#: distance, c→c z-scored rank distance)
BASE = {"zero-shot": (0.10, 0.05, 0.08, 15.0, 40.0, 0.30, 45.0, 44.0),
        "X-X": (0.70, 0.40, 0.50, 8.0, 20.0, 0.20, 30.0, 12.0),
        "X-Y": (0.60, 0.60, 0.58, 5.0, 12.0, 0.10, 15.0, 10.0),
        "hybrid": (0.72, 0.52, 0.60, 6.0, 14.0, 0.12, 20.0, 11.0),
        "1-to-K": (0.65, 0.62, 0.55, 5.5, 13.0, 0.11, 14.0, 10.5)}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _results(models=(("tiny-clip", 0.0), ("tiny-clip-latin", 0.1)), benchmark="image-world") -> pd.DataFrame:
    rows = []
    for model, penalty in models:
        for strat, (mono, cross, itm, mrv, rd, sp, ccrd, ccrdz) in BASE.items():
            for seed in ([0] if strat == "zero-shot" else [0, 1]):
                s = 0.0 if strat == "zero-shot" else SEEDS[seed]

                def add(direction, setting, ql, cl, metric, value):
                    rows.append(dict(zip(COLUMNS, (model, strat, seed, benchmark, direction, setting, ql, cl,  # noqa: B023
                                                   metric, value, 50))))

                for lang in LANGS:
                    v = mono + OFF[lang] + s - (penalty if lang in ("ru", "hi") else 0.0)
                    add("text→image", "monolingual", lang, "-", "hit_mean", v)
                    add("image→text", "monolingual", "-", lang, "hit_mean", v)
                    for other in LANGS:
                        if other != lang:
                            add("text→text", "cross-lingual", lang, other, "mAP", cross + OFF[lang] + s)
                    add("caption→caption", "multilingual", lang, "all", "rank_distance", ccrd + 100 * (OFF[lang] + s))
                    add("caption→caption", "multilingual", lang, "all", "rank_distance_z",
                        ccrdz + 100 * (OFF[lang] + s))
                for metric, v in (("mAP", itm + s), ("MRV", mrv + 100 * s), ("rank_distance", rd + 100 * s),
                                  ("top10_share_max_minus_min", sp + s)):
                    add("image→text", "multilingual", "-", "all", metric, v)
    return pd.DataFrame(rows, columns=COLUMNS)


def _bars(ax) -> dict[str, BarContainer]:
    return {c.get_label(): c for c in ax.containers if isinstance(c, BarContainer)}


def _heights(container: BarContainer) -> list[float]:
    return [p.get_height() for p in container.patches]


def _saved(path: Path) -> None:
    assert path.read_bytes().startswith(PNG)
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []  # no temp file left


# ----------------------------------------------------------------------------- batches
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_image_world(seed=0, n_train_images=12, n_test_images=2, languages=("en", "ru", "hi"),
                            out_dir=tmp_path_factory.mktemp("image-world"))


def _first(strategy: str, ds: ParallelDataset):
    return next(iter(make_sampler(strategy, ds, batch_size=6, seed=0)))


def test_batch_thumbnails_show_the_batch_images_captions_and_languages(world, tmp_path):
    ds, root = world.train, Path(world.image_root)
    batch = _first("1-to-K", ds)
    out = tmp_path / "one.png"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig = image_plots.batch_thumbnails(batch, ds, root, n=6, save=out)
        fig.canvas.draw()  # as a notebook shows it: undrawable glyphs were replaced, so no glyph warnings
    assert not [w for w in caught if "Glyph" in str(w.message)]
    _saved(out)
    axes = [ax for ax in fig.axes if ax.images]
    assert len(axes) == 6
    groups = []
    for ax, ref in zip(axes, batch.refs):
        pair = ds.pair(ref)
        with Image.open(root / pair.positive.key) as im:
            assert np.array_equal(ax.images[0].get_array(), np.asarray(im.convert("RGB")))
        assert ax.get_title() == f"{ref.query_lang} · {pair.group}"
        shown = " ".join(ax.get_xlabel().split()).removesuffix(" …")
        if ref.query_lang in ("en", "ru"):  # scripts DejaVu Sans draws: the caption itself, shortened
            assert shown and " ".join(pair.query.split()).startswith(shown)
        else:
            assert len(shown) > 0
        groups.append(pair.group)
    assert groups[0] == groups[1] == groups[2] != groups[3] == groups[4] == groups[5]  # K=3 captions per image
    assert sorted(ax.get_title().split(" · ")[0] for ax in axes[:3]) == ["en", "hi", "ru"]
    assert "1-to-K batch 0: 6 captions of 2 images in 3 language(s) (en, hi, ru)" in fig._suptitle.get_text()


def test_batch_grids_one_row_per_strategy(world, tmp_path):
    ds = world.train
    batches = {s: _first(s, ds) for s in ("X-X", "X-Y", "1-to-K")}
    out = tmp_path / "grid.png"
    fig = image_plots.batch_grids(batches, ds, world.image_root, n=6, save=out)
    _saved(out)
    rows = [[ax for ax in sub.axes if ax.images] for sub in fig.subfigs]
    assert [r[0].get_ylabel() for r in rows] == ["X-X", "X-Y", "1-to-K"]
    assert [len(r) for r in rows] == [6, 6, 6]
    langs = [{ax.get_title().split(" · ")[0] for ax in r} for r in rows]
    assert langs[0] == {batches["X-X"].language} and len(langs[1]) >= 2 and langs[2] == {"en", "hi", "ru"}
    assert "6 captions of 6 images" in fig.subfigs[0]._suptitle.get_text()
    assert "6 captions of 2 images" in fig.subfigs[2]._suptitle.get_text()

    text = ParallelDataset([ParallelItem(g, lang, f"q {g}", f"p {g}") for g in ("g0", "g1") for lang in ("en", "de")],
                           name="txt")
    with pytest.raises(ConfigError, match="holds text pairs, not images"):
        image_plots.batch_thumbnails(next(iter(make_sampler("X-X", text, batch_size=2, seed=0))), text, None)
    with pytest.raises(ConfigError, match="batches is empty"):
        image_plots.batch_grids({}, ds, world.image_root)
    with pytest.raises(ConfigError, match=r"comes from dataset 0, but 0 dataset\(s\) were given"):
        image_plots.batch_thumbnails(batches["X-X"], [], world.image_root)


# ----------------------------------------------------------------------------- results
def test_per_language_bars_draw_means_over_seeds_with_std_error_bars(tmp_path):
    out = tmp_path / "bars.png"
    fig = image_plots.per_language_bars(_results(), "text→image", save=out)
    _saved(out)
    assert [ax.get_title() for ax in fig.axes] == ["tiny-clip", "tiny-clip-latin"]
    ax, latin = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["en", "es", "hi", "ru"]
    assert ax.get_xlabel() == "query language" and "hit_mean" in ax.get_ylabel()
    bars = _bars(ax)
    assert list(bars) == ["zero-shot (n=1)", "X-X (n=2)", "X-Y (n=2)", "hybrid (n=2)", "1-to-K (n=2)"]
    assert _heights(bars["X-X (n=2)"]) == pytest.approx([0.73, 0.71, 0.67, 0.69])
    assert _heights(_bars(latin)["hybrid (n=2)"]) == pytest.approx([0.75, 0.73, 0.59, 0.61])
    seg = bars["X-X (n=2)"].errorbar.lines[2][0].get_segments()[0]
    assert seg[1][1] - seg[0][1] == pytest.approx(2 * STD2)
    assert _heights(bars["zero-shot (n=1)"]) == pytest.approx([0.13, 0.11, 0.07, 0.09])

    i2t = image_plots.per_language_bars(_results(), "image→text")
    assert i2t.axes[0].get_xlabel() == "caption language"
    with pytest.raises(ConfigError, match=r"No 'text→image' rows of metric 'hit@3'.*\['hit_mean'\]"):
        image_plots.per_language_bars(_results(), "text→image", metric="hit@3")
    two = pd.concat([_results(), _results(benchmark="xtd10")])
    with pytest.raises(ConfigError, match="several benchmarks"):
        image_plots.per_language_bars(two, "text→image")
    assert len(image_plots.per_language_bars(two, "text→image", benchmark="xtd10").axes) == 2


def test_language_pair_heatmap_blank_diagonal_and_annotated_cells(tmp_path):
    out = tmp_path / "heat.png"
    fig = image_plots.language_pair_heatmap(_results(), "X-Y", save=out)
    _saved(out)
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in panels] == ["tiny-clip", "tiny-clip-latin"]
    grid = panels[0].images[0].get_array()
    assert grid.mask.diagonal().all() and not grid.mask[0, 1]
    assert grid[0, 1] == pytest.approx(0.63) and grid[2, 0] == pytest.approx(0.57)  # en→es, hi→en
    assert sorted(t.get_text() for t in panels[0].texts) == sorted(["0.63"] * 3 + ["0.61"] * 3 + ["0.57"] * 3
                                                                   + ["0.59"] * 3)
    assert panels[0].get_xlabel() == "candidate language" and panels[0].get_ylabel() == "query language"
    one = image_plots.language_pair_heatmap(_results(), "hybrid", model="tiny-clip")
    assert [ax.get_title() for ax in one.axes if ax.images] == ["tiny-clip"]
    with pytest.raises(ConfigError, match="No cross-lingual rows of strategy 'X-Z'"):
        image_plots.language_pair_heatmap(_results(), "X-Z")
    with pytest.raises(ConfigError, match="No rows of model 'nope'"):
        image_plots.language_pair_heatmap(_results(), "X-Y", model="nope")


def test_rank_distance_per_language_raw_and_z_scored_side_by_side(tmp_path):
    out = tmp_path / "rd.png"
    fig = image_plots.rank_distance_per_language(_results(), save=out)
    _saved(out)
    assert len(fig.axes) == 4
    raw, z = fig.axes[0], fig.axes[1]
    assert raw.get_title() == "tiny-clip: rank_distance (raw)" and "rank_distance_z" in z.get_title()
    assert _heights(_bars(raw)["X-X (n=2)"]) == pytest.approx([33.0, 31.0, 27.0, 29.0])
    assert _heights(_bars(z)["X-X (n=2)"]) == pytest.approx([15.0, 13.0, 9.0, 11.0])
    assert "lower = less bias" in raw.get_ylabel()
    only_z = image_plots.rank_distance_per_language(_results(), metric="rank_distance_z")
    assert len(only_z.axes) == 2
    with pytest.raises(ConfigError, match="No caption→caption multilingual rows of metric 'MRV'"):
        image_plots.rank_distance_per_language(_results(), metric="MRV")


def test_strategy_summary_plot_one_bar_per_strategy_and_measure(tmp_path):
    out = tmp_path / "summary.png"
    fig = image_plots.strategy_summary_plot(_results(), save=out)
    _saved(out)
    assert len(fig.axes) == 2 * len(image_plots.SUMMARY_MEASURES)
    order = ["zero-shot", "X-X", "X-Y", "hybrid", "1-to-K"]
    for k, ax in enumerate(fig.axes[:6]):  # tiny-clip: the base values, in the order of SUMMARY_MEASURES
        heights = [p.get_height() for p in ax.patches]
        assert heights == pytest.approx([BASE[s][k] for s in order])
        assert [t.get_text() for t in ax.get_xticklabels()] == order
    assert "(↑)" in fig.axes[0].get_title() and "(↓)" in fig.axes[3].get_title()
    assert [p.get_height() for p in fig.axes[6].patches] == pytest.approx([BASE[s][0] - 0.05 for s in order])
    assert fig.axes[0].get_ylabel().startswith("tiny-clip\n") and fig.axes[6].get_ylabel().startswith("tiny-clip-latin")
    with pytest.raises(ConfigError, match="No rows of the measures"):
        image_plots.strategy_summary_plot(_results(), measures=["c→c MRV"])
