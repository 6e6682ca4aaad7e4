"""Image–text tables, open_clip's published numbers and the generated findings, on hand-made tidy frames."""
from __future__ import annotations

import csv
import hashlib
import math
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hbkit.errors import ConfigError, DataError
from hbkit.evaluation import COLUMNS
from hbkit.kit import image_claims, image_report

REPO = Path(__file__).resolve().parents[1]
SHARED_CSV = REPO.parent / "shared" / "reference" / "openclip_multilingual_retrieval_results.csv"
LANGS = ("en", "es", "ru", "hi")
LANG_OFF = {"en": 0.03, "es": 0.01, "ru": -0.01, "hi": -0.03}  # sums to 0: the mean over languages is the base
SEED_OFF = {0: -0.002, 1: 0.002}
#: strategy -> base value of each measure group (means over languages and seeds equal these exactly)
KEYS = ("mono", "cross", "itm", "rd", "rdz", "mrv", "sp", "ccm", "own", "ccrd", "ccrdz", "ccsp")
BASE = {s: dict(zip(KEYS, v)) for s, v in {
    "zero-shot": (0.10, 0.05, 0.08, 40.0, 38.0, 15.0, 0.30, 0.04, 0.60, 45.0, 44.0, 0.40),
    "X-X": (0.70, 0.40, 0.50, 20.0, 19.0, 8.0, 0.20, 0.30, 0.55, 30.0, 12.0, 0.30),
    "X-Y": (0.60, 0.60, 0.58, 12.0, 11.0, 5.0, 0.10, 0.50, 0.30, 15.0, 10.0, 0.12),
    "hybrid": (0.72, 0.52, 0.60, 14.0, 13.0, 6.0, 0.12, 0.45, 0.40, 20.0, 11.0, 0.18),
    "1-to-K": (0.65, 0.62, 0.55, 13.0, 12.0, 5.5, 0.11, 0.55, 0.28, 14.0, 10.5, 0.10),
}.items()}


def results(base=None, models=(("tiny-clip", 0.0),), seed_scale: float = 1.0,
            benchmark: str = "image-world") -> pd.DataFrame:
    """A tidy image–text results table. ``models``: (name, hit penalty on non-Latin languages)."""
    base = BASE if base is None else base
    rows = []

    def add(model, strat, seed, direction, setting, ql, cl, metric, value):
        rows.append(dict(zip(COLUMNS, (model, strat, seed, benchmark, direction, setting, ql, cl, metric, value,
                                       100))))

    for model, penalty in models:
        for strat, b in base.items():
            for seed in ([0] if strat == "zero-shot" else [0, 1]):
                s = 0.0 if strat == "zero-shot" else SEED_OFF[seed] * seed_scale
                for lang in LANGS:
                    o = LANG_OFF[lang]
                    mono = b["mono"] + o + s - (penalty if lang in ("ru", "hi") else 0.0)
                    for direction, ql, cl in (("text→image", lang, "-"), ("image→text", "-", lang)):
                        for metric, v in (("hit@1", mono - 0.2), ("hit@5", mono), ("hit@10", mono + 0.2),
                                          ("hit_mean", mono), ("mAP", mono - 0.1)):
                            add(model, strat, seed, direction, "monolingual", ql, cl, metric, v)
                    for other in LANGS:
                        if other != lang:
                            add(model, strat, seed, "text→text", "cross-lingual", lang, other, "mAP",
                                b["cross"] + o + s)
                            add(model, strat, seed, "text→text", "cross-lingual", lang, other, "R@1",
                                b["cross"] - 0.1 + o + s)
                    cc = "caption→caption"
                    for metric, v in (("mAP", b["ccm"] + o + s), ("R@10", b["ccm"] + 0.2 + o + s),
                                      ("rank_distance", b["ccrd"] + 100 * (o + s)),
                                      ("rank_distance_z", b["ccrdz"] + 100 * (o + s)), ("MRV", 5.0), ("MRV_z", 4.0),
                                      ("own_language_top10_share", b["own"] + o + s),
                                      ("top10_share_max_minus_min", b["ccsp"] + o + s)):
                        add(model, strat, seed, cc, "multilingual", lang, "all", metric, v)
                    for other in LANGS:
                        add(model, strat, seed, cc, "multilingual", lang, "all", f"top10_share:{other}", 0.25)
                for metric, v in (("mAP", b["itm"] + s), ("R@10", b["itm"] + 0.2 + s), ("rank_distance",
                                  b["rd"] + 100 * s), ("rank_distance_z", b["rdz"] + 100 * s),
                                  ("MRV", b["mrv"] + 100 * s), ("MRV_z", b["mrv"] - 1 + 100 * s),
                                  ("top10_share_max_minus_min", b["sp"] + s)):
                    add(model, strat, seed, "image→text", "multilingual", "-", "all", metric, v)
                for lang in LANGS:
                    add(model, strat, seed, "image→text", "multilingual", "-", "all", f"top10_share:{lang}", 0.25)
    return pd.DataFrame(rows, columns=COLUMNS)


STD2 = 0.002 * math.sqrt(2)  # std (ddof 1) of two seeds at base ± 0.002
TWO = (("tiny-clip", 0.0), ("tiny-clip-latin", 0.1))


# ----------------------------------------------------------------------------- table
def test_image_text_table_means_over_languages_then_seeds_zero_shot_first():
    t = image_report.image_text_table(results(models=TWO))
    assert list(t.columns[:3]) == ["model", "strategy", "n_seeds"]
    assert t[["model", "strategy"]].values.tolist() == [[m, s] for m in ("tiny-clip", "tiny-clip-latin")
                                                        for s in ("zero-shot", "X-X", "X-Y", "hybrid", "1-to-K")]
    by = t.set_index(["model", "strategy"])
    for strat, b in BASE.items():
        assert by.at[("tiny-clip", strat), "t→i hit_mean"] == pytest.approx(b["mono"], abs=1e-12)
        assert by.at[("tiny-clip", strat), "i→t hit_mean"] == pytest.approx(b["mono"], abs=1e-12)
        # the penalty of 0.1 on two of four languages lowers the mean over languages by 0.05
        assert by.at[("tiny-clip-latin", strat), "t→i hit_mean"] == pytest.approx(b["mono"] - 0.05, abs=1e-12)
        assert by.at[("tiny-clip", strat), "cross mAP"] == pytest.approx(b["cross"], abs=1e-12)
        assert by.at[("tiny-clip", strat), "i→t rank_distance"] == pytest.approx(b["rd"], abs=1e-9)
        assert by.at[("tiny-clip", strat), "c→c own-language share"] == pytest.approx(b["own"], abs=1e-12)
    assert by.at[("tiny-clip", "X-X"), "t→i hit_mean ±"] == pytest.approx(STD2, rel=1e-9)
    assert by.at[("tiny-clip", "X-X"), "i→t rank_distance ±"] == pytest.approx(100 * STD2, rel=1e-9)
    assert np.isnan(by.at[("tiny-clip", "zero-shot"), "t→i hit_mean ±"])
    assert by.at[("tiny-clip", "X-X"), "n_seeds"] == 2 and by.at[("tiny-clip", "zero-shot"), "n_seeds"] == 1

    cells = image_report.format_table(t).set_index(["model", "strategy"])
    assert cells.at[("tiny-clip", "X-X"), "t→i hit_mean"] == "0.700 ± 0.003"
    assert cells.at[("tiny-clip", "zero-shot"), "t→i hit_mean"] == "0.100"
    assert cells.at[("tiny-clip", "X-X"), "c→c rank_distance"] == "30.0 ± 0.3"


def test_table_benchmarks_and_errors():
    both = pd.concat([results(), results(BASE, benchmark="other")], ignore_index=True)
    t = image_report.image_text_table(both, measures=["mono hit_mean"])
    assert list(t.columns) == ["model", "benchmark", "strategy", "n_seeds", "mono hit_mean", "mono hit_mean ±"]
    assert len(t) == 10 and set(t.benchmark) == {"image-world", "other"}
    one = image_report.image_text_table(both, measures=["mono hit_mean"], benchmark="other")
    assert "benchmark" not in one and len(one) == 5
    with pytest.raises(ConfigError, match=r"No rows of benchmark 'nope'; the results hold \['image-world', 'other'\]"):
        image_report.image_text_table(both, benchmark="nope")
    with pytest.raises(ConfigError, match="Unknown measure"):
        image_report.image_text_table(results(), measures=["mono hit@3"])
    with pytest.raises(DataError, match=r"lacks column\(s\) \['direction'\]"):
        image_report.image_text_table(results().drop(columns="direction"))
    with pytest.raises(ConfigError, match="several benchmarks"):
        image_report.one_benchmark(both)


# ----------------------------------------------------------------------------- published numbers
def _csv_cell(model: str, version: str, column: str) -> float:
    with SHARED_CSV.open(newline="", encoding="utf-8") if SHARED_CSV.exists() else \
            resources.files("hbkit.kit").joinpath(image_report.OPENCLIP_FILE).open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        for row in reader:
            if row[0] == model and row[1] == version:
                return float(row[header.index(column)])
    raise AssertionError(f"no row {model} {version}")


def test_published_openclip_tidy_values_match_the_csv_cells():
    pub = image_report.published_openclip()
    assert list(pub.columns) == image_report.PUBLISHED_COLUMNS
    assert len(pub) == 294  # (36 + mean) * 2 * 3 for XM3600 and (11 + mean) * 2 * 3 for XTD10
    assert set(pub.benchmark) == {"xm3600", "xtd10"} and set(pub.metric) == {"hit@1", "hit@5", "hit@10"}
    assert "jp" not in set(pub.lang) and "ja" in set(pub[pub.benchmark == "xtd10"].lang)
    m, v = "xlm-roberta-base-ViT-B-32", "laion5b_s13b_b90k"
    idx = pub.set_index(["benchmark", "direction", "lang", "metric"]).value
    checks = {("xtd10", "text→image", "ja", "hit@1"): "multilingual_mscoco_captions image_retrieval_recall@1 jp",
              ("xtd10", "image→text", "mean", "hit@10"): "multilingual_mscoco_captions text_retrieval_recall@10 avg",
              ("xm3600", "text→image", "sw", "hit@5"): "crossmodal3600 image_retrieval_recall@5 sw",
              ("xm3600", "image→text", "en", "hit@1"): "crossmodal3600 text_retrieval_recall@1 en"}
    for key, column in checks.items():
        assert idx[key] == _csv_cell(m, v, column)
    assert 0 < pub.value.min() and pub.value.max() <= 1
    large = image_report.published_openclip("xlm-roberta-large-ViT-H-14", "frozen_laion5b_s13b_b90k")
    assert large.set_index(["benchmark", "direction", "lang", "metric"]).value[("xtd10", "text→image", "en",
                                                                                 "hit@1")] == \
        _csv_cell("xlm-roberta-large-ViT-H-14", "frozen_laion5b_s13b_b90k",
                  "multilingual_mscoco_captions image_retrieval_recall@1 en")
    with pytest.raises(ConfigError, match=r"no multilingual retrieval results for model 'ViT-B-32' with pretrained "
                                          r"tag 'nope'.*\(xlm-roberta-large-ViT-H-14, frozen_laion5b_s13b_b90k\)"):
        image_report.published_openclip("ViT-B-32", "nope")


def test_shipped_openclip_csv_is_the_byte_exact_reference():
    shipped = resources.files("hbkit.kit").joinpath(image_report.OPENCLIP_FILE).read_bytes()
    assert hashlib.sha256(shipped).hexdigest().startswith("1c8b9b82834c90a8")
    if not SHARED_CSV.exists():
        pytest.skip(f"{SHARED_CSV} not found: the shared reference folder is not next to the repo")
    assert hashlib.sha256(shipped).hexdigest() == hashlib.sha256(SHARED_CSV.read_bytes()).hexdigest()


def _zero_shot(benchmark: str, values: dict[tuple[str, str, str], float], model="xlm-roberta-base-ViT-B-32"):
    rows = []
    for (direction, lang, metric), v in values.items():
        ql, cl = (lang, "-") if direction == "text→image" else ("-", lang)
        rows.append(dict(zip(COLUMNS, (model, "zero-shot", 0, benchmark, direction, "monolingual", ql, cl, metric,
                                       v, 1000))))
    return pd.DataFrame(rows, columns=COLUMNS)


def test_zero_shot_vs_published_aligns_languages_and_explains_empty_results():
    toy = image_report.zero_shot_vs_published(results())
    assert toy.empty and list(toy.columns) == image_report.COMPARISON_COLUMNS
    assert "No zero-shot rows on an xtd10 / xm3600 benchmark" in toy.attrs["note"]
    assert "['image-world']" in toy.attrs["note"]

    df = pd.concat([_zero_shot("xtd10", {("text→image", "ja", "hit@1"): 0.5, ("text→image", "en", "hit@1"): 0.6,
                                         ("text→image", "yo", "hit@1"): 0.1}),
                    _zero_shot("xm3600", {("image→text", "de", "hit@5"): 0.7}),
                    results()], ignore_index=True)
    cmp = image_report.zero_shot_vs_published(df)
    m, v = "xlm-roberta-base-ViT-B-32", "laion5b_s13b_b90k"
    ja = _csv_cell(m, v, "multilingual_mscoco_captions image_retrieval_recall@1 jp")
    en = _csv_cell(m, v, "multilingual_mscoco_captions image_retrieval_recall@1 en")
    by = cmp.set_index(["benchmark", "direction", "lang", "metric"])
    assert by.at[("xtd10", "text→image", "ja", "hit@1"), "published"] == ja
    assert by.at[("xtd10", "text→image", "ja", "hit@1"), "diff"] == pytest.approx(0.5 - ja)
    assert np.isnan(by.at[("xtd10", "text→image", "yo", "hit@1"), "published"])
    mean = by.loc[("xtd10", "text→image", "mean", "hit@1")]
    assert mean["ours"] == pytest.approx(0.55) and mean["published"] == pytest.approx((ja + en) / 2)
    assert by.at[("xm3600", "image→text", "de", "hit@5"), "published"] == \
        _csv_cell(m, v, "crossmodal3600 text_retrieval_recall@5 de")
    assert not by.at[("xm3600", "image→text", "de", "hit@5"), "same_protocol"]
    assert by.at[("xtd10", "text→image", "ja", "hit@1"), "same_protocol"]
    assert "['yo']" in cmp.attrs["note"] and "same_protocol" in cmp.attrs["note"]

    first = image_report.zero_shot_vs_published(_zero_shot("xm3600-first", {("image→text", "de", "hit@5"): 0.7}))
    assert first.same_protocol.all() and set(first.published_benchmark) == {"xm3600"}
    other = image_report.zero_shot_vs_published(_zero_shot("xtd10", {("text→image", "en", "hit@1"): 0.6},
                                                           model="my-clip"))
    assert other.empty and "pass ours_model=" in other.attrs["note"]
    assert len(image_report.zero_shot_vs_published(_zero_shot("xtd10", {("text→image", "en", "hit@1"): 0.6},
                                                                model="my-clip"), ours_model="my-clip")) == 2


# ----------------------------------------------------------------------------- findings
def _swap(base: dict, a: str = "X-X", b: str = "X-Y") -> dict:
    out = dict(base)
    out[a], out[b] = base[b], base[a]
    return out


def test_findings_state_the_best_strategy_the_hybrid_position_and_1_to_k():
    s = image_claims.image_text_findings(results())
    text = "\n".join(s)
    assert ("tiny-clip on image-world: monolingual hit_mean (both directions) (higher is better): hybrid is best "
            "with 0.720, ahead of X-X (0.700) by 0.020, more than the seed spread (0.003). Order: hybrid 0.720 > "
            "X-X 0.700 > 1-to-K 0.650 > X-Y 0.600; zero-shot 0.100.") in s
    assert "cross-lingual caption→caption mAP (higher is better): 1-to-K is best with 0.620, ahead of X-Y" in text
    assert ("Hybrid against the pure regimes: monolingual hit_mean (both directions) better than both, by 0.020 "
            "(X-X 0.700, hybrid 0.720, X-Y 0.600); cross-lingual caption→caption mAP between them, 60% of the way "
            "from X-X to X-Y") in text
    assert "1-to-K (a batch of B captions holds only B/K images, each with its K captions)" in text
    assert "1st of 4 on cross-lingual caption→caption mAP (0.620, ahead of X-Y by 0.020)" in text
    assert "ranks 3rd of 4 on monolingual hit_mean (both directions) (0.650, behind hybrid by 0.070)" in text
    assert ("own language's share of the top 10; uniform 1/4 = 0.250): strongest under X-X (0.550), weakest under "
            "1-to-K (0.280), a range of 0.270") in text
    assert "4 of 4 strategies are above the uniform share, so the text-style bias differs by strategy" in text
    assert "12% kept): most of the strategy difference is a per-language score shift" in text
    assert "image→text MRV X-Y 5.0 < 1-to-K 5.5 < hybrid 6.0 < X-X 8.0" in text
    assert not any(" vs " in x for x in s)  # one model: no comparison


def test_swapping_strategies_values_flips_the_sentences():
    orig = "\n".join(image_claims.image_text_findings(results()))
    swapped = "\n".join(image_claims.image_text_findings(results(_swap(BASE))))
    assert "hybrid is best with 0.720, ahead of X-X (0.700)" in orig
    assert "hybrid is best with 0.720, ahead of X-Y (0.700)" in swapped
    assert "between them, 60% of the way from X-X to X-Y" in orig and "40% of the way" in swapped
    positions = image_claims.findings_table(results()).query("topic == 'hybrid'").set_index("measure").position
    assert positions["cross mAP"] == pytest.approx(0.6) and positions["mono hit_mean"] == pytest.approx(-0.2)
    assert "strongest under X-X (0.550)" in orig and "strongest under X-Y (0.550)" in swapped
    flipped = dict(BASE, hybrid=dict(BASE["hybrid"], mono=0.50))
    assert "monolingual hit_mean (both directions) worse than both, by 0.100" in "\n".join(
        image_claims.image_text_findings(results(flipped)))
    rd = {k: dict(v, ccrdz=v["ccrd"] - 5) for k, v in BASE.items()}
    assert "(100% kept): most of it survives z-scoring" in "\n".join(image_claims.image_text_findings(results(rd)))


def test_gaps_within_the_seed_spread_are_called_unclear():
    s = "\n".join(image_claims.image_text_findings(results(seed_scale=20.0)))  # std over seeds 0.057
    assert "ahead of X-X (0.700) by 0.020, within the seed spread (0.057): not a clear difference" in s
    one_seed = results()
    one_seed = one_seed[one_seed.seed == 0]
    assert "one seed only, so no seed spread to judge it by" in "\n".join(image_claims.image_text_findings(one_seed))


def test_findings_table_and_model_comparison():
    df = results(models=TWO)
    table = image_claims.findings_table(df)
    sentences = image_claims.image_text_findings(df)
    assert list(table.columns[:len(image_claims.TABLE_COLUMNS)]) == image_claims.TABLE_COLUMNS
    assert sorted(set(table.finding)) == list(range(len(sentences)))
    assert all(table.sentence == [sentences[i] for i in table.finding])
    best = table[(table.topic == "best") & (table.model == "tiny-clip") & (table.measure == "mono hit_mean")].iloc[0]
    assert best["hybrid"] == pytest.approx(0.72) and best["X-X"] == pytest.approx(0.70)
    assert best["gap"] == pytest.approx(0.02) and best["spread"] == pytest.approx(STD2)
    assert best["X-X std"] == pytest.approx(STD2) and best["zero-shot"] == pytest.approx(0.10)
    own = table[(table.model == "tiny-clip") & (table.measure == "c→c own-language share")].iloc[0]
    assert own["uniform"] == pytest.approx(0.25) and own["gap"] == pytest.approx(0.27)

    cmp = table[(table.topic == "models") & (table.measure == "mono hit_mean")].iloc[0]
    assert cmp["model"] == "tiny-clip − tiny-clip-latin"
    for s in BASE:
        assert cmp[s] == pytest.approx(0.05)
    assert cmp["sentence"] == ("tiny-clip vs tiny-clip-latin on image-world: monolingual hit_mean (both directions) "
                               "(higher is better): tiny-clip is better under 5, tiny-clip-latin under 0 of 5 "
                               "strategies, the rest within the seed spread (difference tiny-clip − tiny-clip-latin "
                               "+0.050 under every strategy); the best strategy is hybrid for both.")
    mixed = pd.concat([results(), results(_swap(BASE, "X-X", "hybrid"), models=(("tiny-clip-latin", 0.0),))])
    s = "\n".join(image_claims.image_text_findings(mixed))
    assert ("monolingual hit_mean (both directions) (higher is better): tiny-clip is better under 1, tiny-clip-latin "
            "under 1 of 5 strategies, the rest within the seed spread (difference tiny-clip − tiny-clip-latin from "
            "-0.020 under X-X to +0.020 under hybrid); the best strategy is hybrid for tiny-clip but X-X for "
            "tiny-clip-latin.") in s
    gap = table[table.measure == "Latin − other scripts, mono hit_mean"].set_index("model")
    assert gap.at["tiny-clip", "X-X"] == pytest.approx(0.04) and gap.at["tiny-clip-latin", "X-X"] == pytest.approx(0.14)
    assert "tiny-clip +0.040, tiny-clip-latin +0.140; the gap is larger for tiny-clip-latin." in gap["sentence"].iloc[0]

    only = image_claims.image_text_findings(df, model="tiny-clip-latin")
    assert only and all(x.startswith("tiny-clip-latin on image-world") for x in only)
    with pytest.raises(DataError, match="No rows of model 'nope'"):
        image_claims.findings_table(df, model="nope")


def test_family_models_takes_trained_models_in_profile_order_and_says_when_a_family_is_missing():
    df = results(models=(("tiny-albef", 0.0), ("tiny-albef-itc", 0.0), ("tiny-clip-latin", 0.0),
                         ("tiny-clip", 0.0)))
    zero_only = df[(df.model == "tiny-clip") & (df.strategy == "zero-shot")].assign(model="albef-4m-english")
    pick = image_claims.family_models(pd.concat([df, zero_only]), "demo-image")
    assert pick["clips"] == ["tiny-clip", "tiny-clip-latin"] and pick["albefs"] == ["tiny-albef"]  # profile order
    assert (pick["clip"], pick["albef"]) == ("tiny-clip", "tiny-albef")  # not the zero-shot-only English ALBEF
    alone = image_claims.family_models(df[df.model.str.startswith("tiny-albef")], "albef-colab")
    assert alone["clip"] is None and alone["albef"] == "tiny-albef"
    assert "has fine-tuned ALBEF runs (tiny-albef) but no CLIP run: the family comparison is skipped" in alone["note"]
