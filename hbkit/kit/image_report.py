"""Image–text results as tables: the headline numbers per (model, strategy), and open_clip's
published zero-shot numbers beside the zero-shot row.

A *measure* (:data:`MEASURES`) is one headline number of one setting: the rows of one
``metric`` in some ``direction``\\ s and one ``setting``, averaged (macro) over their languages per
seed; e.g. ``"mono hit_mean"`` is hit_mean averaged over the text→image and the image→text
monolingual rows. :func:`measure_stats` then gives mean and std (ddof 1; NaN for one seed) over
seeds. :func:`image_text_table` lays those out with one row per (model, strategy), the zero-shot
row first, as **numbers**: a column ``<measure>`` (mean over seeds) and ``<measure> ±`` (std over
seeds) per measure; :func:`format_table` turns it into ``"0.712 ± 0.004"`` strings for reading.

The published numbers (:func:`published_openclip`) ship as a byte-exact copy of open_clip's
``docs/openclip_multilingual_retrieval_results.csv`` (commit 89fb801): CLIP_benchmark's zero-shot
recall@1/5/10 on Crossmodal-3600 (one caption per image and language) and XTD10.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd

from hbkit.errors import ConfigError, DataError
from hbkit.evaluation import (
    CROSS_LINGUAL,
    IMAGE_TO_TEXT,
    MONOLINGUAL,
    MULTILINGUAL,
    NO_LANGUAGE,
    TEXT_TO_IMAGE,
    TEXT_TO_TEXT,
)
from hbkit.language_bias import CAPTION_TO_CAPTION

ZERO_SHOT = "zero-shot"
#: Row and colour order of strategies; others follow, sorted.
STRATEGY_ORDER: tuple[str, ...] = (ZERO_SHOT, "X-X", "X-Y", "hybrid", "1-to-K")
#: The fine-tuning strategies compared with each other (zero-shot is the starting point).
TRAINED: tuple[str, ...] = ("X-X", "X-Y", "hybrid", "1-to-K")
DEFAULT_OPENCLIP_MODEL = "xlm-roberta-base-ViT-B-32"
DEFAULT_OPENCLIP_TAG = "laion5b_s13b_b90k"
OPENCLIP_FILE = "reference/openclip_multilingual_retrieval_results.csv"
OPENCLIP_SOURCE = ("open_clip docs/openclip_multilingual_retrieval_results.csv (commit 89fb801; "
                   "CLIP_benchmark --recall_k 1 5 10)")
_REQUIRED = ["model", "strategy", "seed", "benchmark", "direction", "setting", "query_lang", "candidate_lang",
             "metric", "value"]


@dataclass(frozen=True)
class Measure:
    """One headline number: ``metric`` of the rows in ``directions`` × ``setting``, averaged over
    their languages; ``better`` is "higher" or "lower"."""

    key: str
    label: str
    directions: tuple[str, ...]
    setting: str
    metric: str
    better: str


def _m(key: str, label: str, directions: str | tuple[str, ...], setting: str, metric: str, better: str) -> Measure:
    return Measure(key, label, (directions,) if isinstance(directions, str) else directions, setting, metric, better)


_ITM = (IMAGE_TO_TEXT, MULTILINGUAL)
_CCM = (CAPTION_TO_CAPTION, MULTILINGUAL)
#: Every measure by key.
MEASURES: dict[str, Measure] = {m.key: m for m in (
    _m("t→i hit_mean", "text→image hit_mean", TEXT_TO_IMAGE, MONOLINGUAL, "hit_mean", "higher"),
    _m("i→t hit_mean", "image→text hit_mean", IMAGE_TO_TEXT, MONOLINGUAL, "hit_mean", "higher"),
    _m("mono hit_mean", "monolingual hit_mean (both directions)", (TEXT_TO_IMAGE, IMAGE_TO_TEXT), MONOLINGUAL,
       "hit_mean", "higher"),
    _m("mono mAP", "monolingual mAP (both directions)", (TEXT_TO_IMAGE, IMAGE_TO_TEXT), MONOLINGUAL, "mAP",
       "higher"),
    _m("cross mAP", "cross-lingual caption→caption mAP", TEXT_TO_TEXT, CROSS_LINGUAL, "mAP", "higher"),
    _m("cross R@1", "cross-lingual caption→caption R@1", TEXT_TO_TEXT, CROSS_LINGUAL, "R@1", "higher"),
    _m("i→t multi mAP", "multilingual image→text mAP", *_ITM, "mAP", "higher"),
    _m("i→t multi R@10", "multilingual image→text R@10", *_ITM, "R@10", "higher"),
    _m("i→t rank_distance", "image→text rank distance", *_ITM, "rank_distance", "lower"),
    _m("i→t rank_distance_z", "image→text rank distance (z-scored)", *_ITM, "rank_distance_z", "lower"),
    _m("i→t MRV", "image→text MRV", *_ITM, "MRV", "lower"),
    _m("i→t MRV_z", "image→text MRV (z-scored)", *_ITM, "MRV_z", "lower"),
    _m("i→t top10 spread", "image→text top-10 language share max − min", *_ITM, "top10_share_max_minus_min",
       "lower"),
    _m("c→c multi mAP", "multilingual caption→caption mAP", *_CCM, "mAP", "higher"),
    _m("c→c multi R@10", "multilingual caption→caption R@10", *_CCM, "R@10", "higher"),
    _m("c→c rank_distance", "caption→caption rank distance", *_CCM, "rank_distance", "lower"),
    _m("c→c rank_distance_z", "caption→caption rank distance (z-scored)", *_CCM, "rank_distance_z", "lower"),
    _m("c→c MRV", "caption→caption MRV", *_CCM, "MRV", "lower"),
    _m("c→c MRV_z", "caption→caption MRV (z-scored)", *_CCM, "MRV_z", "lower"),
    _m("c→c own-language share", "caption→caption own-language top-10 share", *_CCM, "own_language_top10_share",
       "lower"),
    _m("c→c top10 spread", "caption→caption top-10 language share max − min", *_CCM, "top10_share_max_minus_min",
       "lower"),
)}
#: The columns of :func:`image_text_table` by default: one or two numbers per setting.
HEADLINE: tuple[str, ...] = ("t→i hit_mean", "i→t hit_mean", "cross mAP", "i→t multi mAP", "i→t rank_distance",
                             "i→t MRV", "i→t top10 spread", "c→c multi mAP", "c→c rank_distance",
                             "c→c own-language share", "c→c top10 spread")


def ordered(values: Iterable[str], preferred: Sequence[str] = STRATEGY_ORDER) -> list[str]:
    """Distinct ``values``: those in ``preferred`` first, in its order, then the rest sorted."""
    values = list(dict.fromkeys(values))
    return [v for v in preferred if v in values] + sorted(v for v in values if v not in preferred)


def check_results(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` if it has the tidy result columns (:data:`hbkit.evaluation.COLUMNS`), else DataError."""
    missing = [c for c in _REQUIRED if c not in df.columns]
    if missing:
        raise DataError(f"The results table lacks column(s) {missing}: pass the tidy table the image–text "
                        "evaluation writes (columns hbkit.evaluation.COLUMNS).")
    return df


def one_benchmark(df: pd.DataFrame, benchmark: str | None = None) -> tuple[pd.DataFrame, str]:
    """The rows of ``benchmark`` (the only one when None) and its name; ConfigError naming the choices."""
    check_results(df)
    names = ordered(df["benchmark"].astype(str), ())
    if not names:
        raise DataError("The results table is empty: evaluate some runs first.")
    if benchmark is None:
        if len(names) > 1:
            raise ConfigError(f"The results hold several benchmarks {names}: pass benchmark= one of them.")
        benchmark = names[0]
    if benchmark not in names:
        raise ConfigError(f"No rows of benchmark {benchmark!r}; the results hold {names}.")
    return df[df["benchmark"] == benchmark], benchmark


def _measures(measures: Iterable[str] | None) -> list[Measure]:
    keys = list(MEASURES) if measures is None else list(measures)
    unknown = [k for k in keys if k not in MEASURES]
    if unknown:
        raise ConfigError(f"Unknown measure(s) {unknown}; choose from {list(MEASURES)}.")
    return [MEASURES[k] for k in keys]


def measure_values(df: pd.DataFrame, measures: Iterable[str] | None = None,
                   benchmark: str | None = None) -> pd.DataFrame:
    """Per seed, each measure averaged over its rows' languages (and directions).

    Columns: model, benchmark, strategy, seed, measure, value, n_rows (rows averaged). Measures
    without rows are left out. ``benchmark``: only that one (all when None).
    """
    d = check_results(df) if benchmark is None else one_benchmark(df, benchmark)[0]
    keys = ["model", "benchmark", "strategy", "seed"]
    parts = []
    for m in _measures(measures):
        rows = d[d["direction"].isin(m.directions) & (d["setting"] == m.setting) & (d["metric"] == m.metric)]
        if rows.empty:
            continue
        g = rows.groupby(keys, sort=False)["value"].agg(value="mean", n_rows="count").reset_index()
        parts.append(g.assign(measure=m.key))
    cols = [*keys, "measure", "value", "n_rows"]
    if not parts:
        return pd.DataFrame(columns=cols)
    return pd.concat(parts, ignore_index=True)[cols]


def measure_stats(df: pd.DataFrame, measures: Iterable[str] | None = None,
                  benchmark: str | None = None) -> pd.DataFrame:
    """Mean and std (ddof 1, NaN for one seed) over seeds of :func:`measure_values`.

    Columns: model, benchmark, strategy, measure, mean, std, n_seeds; strategies in
    :data:`STRATEGY_ORDER`.
    """
    v = measure_values(df, measures, benchmark)
    cols = ["model", "benchmark", "strategy", "measure", "mean", "std", "n_seeds"]
    if v.empty:
        return pd.DataFrame(columns=cols)
    g = v.groupby(["model", "benchmark", "strategy", "measure"], sort=False)["value"]
    out = g.agg(mean="mean", std=lambda s: s.std(ddof=1) if len(s) > 1 else np.nan, n_seeds="count").reset_index()
    rank = {s: i for i, s in enumerate(ordered(out["strategy"]))}
    out = out.assign(_r=out["strategy"].map(rank)).sort_values(["model", "benchmark", "_r"], kind="stable")
    return out.drop(columns="_r").reset_index(drop=True)[cols]


def image_text_table(df: pd.DataFrame, measures: Sequence[str] = HEADLINE,
                     benchmark: str | None = None) -> pd.DataFrame:
    """One row per (model, strategy), zero-shot first: the headline numbers of every setting.

    For each measure (:data:`MEASURES`; default :data:`HEADLINE`) a column ``<measure>`` holds the
    mean over seeds of the per-seed mean over languages, and ``<measure> ±`` the std over seeds
    (ddof 1; NaN with one seed). ``n_seeds`` is the most seeds of any measure. With several
    benchmarks (and ``benchmark`` None) a ``benchmark`` column follows ``model``.
    Read it with :func:`format_table` for ``"mean ± std"`` strings.
    """
    stats = measure_stats(df, measures, benchmark)
    if stats.empty:
        raise DataError(f"No rows of the measures {list(measures)} in these results: evaluate image–text runs "
                        "(hbkit.image_text_eval) first.")
    several = stats["benchmark"].nunique() > 1
    index = ["model", "benchmark", "strategy"] if several else ["model", "strategy"]
    rows = []
    for key, g in stats.groupby(index, sort=False):
        row = dict(zip(index, key))
        row["n_seeds"] = int(g["n_seeds"].max())
        by = g.set_index("measure")
        for m in measures:
            row[m] = float(by.at[m, "mean"]) if m in by.index else np.nan
            row[f"{m} ±"] = float(by.at[m, "std"]) if m in by.index else np.nan
        rows.append(row)
    table = pd.DataFrame(rows)
    models = ordered(table["model"], ())
    strat = {s: i for i, s in enumerate(ordered(table["strategy"]))}
    table = table.assign(_m=table["model"].map({m: i for i, m in enumerate(models)}),
                         _s=table["strategy"].map(strat))
    sort = ["_m", "benchmark", "_s"] if several else ["_m", "_s"]
    return table.sort_values(sort, kind="stable").drop(columns=["_m", "_s"]).reset_index(drop=True)


def format_table(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """:func:`image_text_table` with each measure as one ``"mean ± std"`` string (``"mean"`` alone for
    one seed); values of 10 or more (ranks) get one decimal."""
    out = table[[c for c in table.columns if c in ("model", "benchmark", "strategy", "n_seeds")]].copy()
    for c in table.columns:
        if c in MEASURES:
            cells = []
            for m, s in zip(table[c], table[f"{c} ±"] if f"{c} ±" in table else [np.nan] * len(table)):
                p = 1 if np.isfinite(m) and abs(m) >= 10 else digits
                cells.append("" if not np.isfinite(m) else f"{m:.{p}f}" if not np.isfinite(s) else
                             f"{m:.{p}f} ± {s:.{p}f}")
            out[c] = cells
    return out


# ----------------------------------------------------------------------------- published numbers
_DATASETS = {"crossmodal3600": "xm3600", "multilingual_mscoco_captions": "xtd10"}
_TASKS = {"image_retrieval": TEXT_TO_IMAGE, "text_retrieval": IMAGE_TO_TEXT}
_LANGS = {"jp": "ja", "avg": "mean"}
PUBLISHED_COLUMNS = ["model", "pretrained", "benchmark", "direction", "lang", "metric", "value", "source"]


def _read_openclip() -> pd.DataFrame:
    with resources.files("hbkit.kit").joinpath(OPENCLIP_FILE).open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh, dtype={"model": str, "version": str})


def published_openclip(model: str = DEFAULT_OPENCLIP_MODEL, pretrained: str = DEFAULT_OPENCLIP_TAG) -> pd.DataFrame:
    """open_clip's published zero-shot multilingual retrieval numbers of one (model, pretrained tag).

    Tidy: model, pretrained, benchmark ("xm3600" for crossmodal3600, "xtd10" for
    multilingual_mscoco_captions), direction ("text→image" for image_retrieval, "image→text" for
    text_retrieval), lang (ISO; "jp" read as "ja", the per-dataset "avg" as "mean"), metric
    ("hit@1", "hit@5", "hit@10": CLIP_benchmark's recall@k counts a hit if any relevant item is in
    the top k), value (a fraction), source. The file's overall ``avg`` column (over both
    datasets, directions and k) is left out.
    """
    raw = _read_openclip()
    row = raw[(raw["model"] == model) & (raw["version"] == pretrained)]
    if row.empty:
        pairs = ", ".join(f"({m}, {v})" for m, v in zip(raw["model"], raw["version"]))
        raise ConfigError(f"open_clip publishes no multilingual retrieval results for model {model!r} with "
                          f"pretrained tag {pretrained!r}. Pass one of the available (model, pretrained) pairs: "
                          f"{pairs}.")
    rec = row.iloc[0]
    rows = []
    for col in raw.columns[2:]:
        parts = col.split(" ")
        if len(parts) != 3:  # the overall "avg"
            continue
        dataset, task_k, lang = parts
        task, k = task_k.rsplit("_recall@", 1)
        rows.append({"model": model, "pretrained": pretrained, "benchmark": _DATASETS.get(dataset, dataset),
                     "direction": _TASKS[task], "lang": _LANGS.get(lang, lang), "metric": f"hit@{k}",
                     "value": float(rec[col]), "source": OPENCLIP_SOURCE})
    out = pd.DataFrame(rows, columns=PUBLISHED_COLUMNS)
    return out.sort_values(["benchmark", "direction", "lang", "metric"], kind="stable").reset_index(drop=True)


def _published_family(benchmark: str) -> str | None:
    for family in ("xtd10", "xm3600"):
        if benchmark.startswith(family):
            return family
    return None


COMPARISON_COLUMNS = ["model", "pretrained", "benchmark", "published_benchmark", "direction", "lang", "metric",
                      "ours", "published", "diff", "same_protocol"]


def zero_shot_vs_published(df: pd.DataFrame, model: str = DEFAULT_OPENCLIP_MODEL,
                           pretrained: str = DEFAULT_OPENCLIP_TAG, ours_model: str | None = None) -> pd.DataFrame:
    """Our zero-shot monolingual hit@1/5/10 beside open_clip's published numbers, per language.

    Uses the rows with strategy "zero-shot" and model ``ours_model`` (default ``model``) on
    benchmarks whose name starts with "xtd10" or "xm3600" (e.g. "xm3600-first", first caption
    only, which is what CLIP_benchmark evaluates; ``same_protocol`` is False for XM3600 with all
    captions). Columns :data:`COMPARISON_COLUMNS`; ``diff`` = ours − published (fractions; NaN where
    open_clip has no number for that language). A ``lang`` "mean" row per (benchmark, direction,
    metric) averages both sides over the languages both have, so it is not open_clip's own avg
    (see :func:`published_openclip`). ``attrs["note"]`` says what was compared, or, when the
    result is empty, why.
    """
    pub = published_openclip(model, pretrained)
    ours_model = model if ours_model is None else ours_model
    check_results(df)
    d = df[(df["strategy"] == ZERO_SHOT) & df["direction"].isin([TEXT_TO_IMAGE, IMAGE_TO_TEXT])
           & (df["setting"] == MONOLINGUAL) & df["metric"].isin(["hit@1", "hit@5", "hit@10"])]
    family = d["benchmark"].astype(str).map(_published_family)
    d = d[family.notna()].assign(published_benchmark=family[family.notna()])
    empty = pd.DataFrame(columns=COMPARISON_COLUMNS)
    if d.empty:
        have = ordered(df["benchmark"].astype(str), ())
        empty.attrs["note"] = (f"No zero-shot rows on an xtd10 / xm3600 benchmark (the results hold {have}): "
                               "open_clip publishes numbers for XTD10 and Crossmodal-3600 only, and the toy image "
                               "world has no published counterpart. Evaluate the zero-shot model on xtd10 or "
                               "xm3600 (first caption only) to compare.")
        return empty
    if not (d["model"] == ours_model).any():
        empty.attrs["note"] = (f"The zero-shot rows on xtd10 / xm3600 are of model(s) {ordered(d['model'], ())}, "
                               f"not {ours_model!r}: pass ours_model= one of them.")
        return empty
    d = d[d["model"] == ours_model]
    lang = d["query_lang"].where(d["query_lang"] != NO_LANGUAGE, d["candidate_lang"])
    keys = ["benchmark", "published_benchmark", "direction", "lang", "metric"]
    ours = d.assign(lang=lang).groupby(keys, sort=False)["value"].mean().rename("ours").reset_index()
    ref = pub.rename(columns={"benchmark": "published_benchmark", "value": "published"})
    cmp = ours.merge(ref[["published_benchmark", "direction", "lang", "metric", "published"]],
                     on=["published_benchmark", "direction", "lang", "metric"], how="left")
    both = cmp.dropna(subset=["published"])
    mean = both.groupby(["benchmark", "published_benchmark", "direction", "metric"], sort=False)[
        ["ours", "published"]].mean().reset_index().assign(lang="mean")
    cmp = pd.concat([cmp, mean], ignore_index=True)
    cmp["diff"] = cmp["ours"] - cmp["published"]
    cmp["same_protocol"] = ~((cmp["published_benchmark"] == "xm3600") & ~cmp["benchmark"].str.contains("first"))
    cmp = cmp.assign(model=ours_model, pretrained=pretrained)
    cmp = cmp.sort_values(["benchmark", "direction", "metric"], kind="stable").reset_index(drop=True)
    out = cmp[COMPARISON_COLUMNS]
    unmatched = sorted(set(cmp.loc[cmp["published"].isna(), "lang"]))
    out.attrs["note"] = (f"Zero-shot {ours_model} against open_clip's {model} ({pretrained}), {OPENCLIP_SOURCE}. "
                         "'mean' rows average over the languages both sides have."
                         + (f" No published number for {unmatched}." if unmatched else "")
                         + (" XM3600 with all captions is not CLIP_benchmark's protocol (first caption only): "
                            "see same_protocol." if not out["same_protocol"].all() else ""))
    return out


def albef_published() -> pd.DataFrame:
    """ALBEF's published Flickr30K and COCO retrieval numbers (percent), as shipped in
    ``hbkit/kit/reference/albef_published_retrieval.csv``: model, pretraining (4M / 14M), setting
    (fine-tuned / zero-shot), dataset, metric (TR@k: image→text, IR@k: text→image), value, source."""
    from importlib.resources import files

    return pd.read_csv(files("hbkit.kit").joinpath("reference/albef_published_retrieval.csv"))


#: Released ALBEF checkpoints (hbkit.models.albef.CHECKPOINTS) -> (pre-training data, fine-tuned on).
ALBEF_RELEASES: dict[str, tuple[str, str | None]] = {"albef-4m": ("4M", None), "albef-14m": ("14M", None),
                                                     "albef-coco": ("14M", "COCO"),
                                                     "albef-flickr30k": ("14M", "Flickr30K")}
#: Benchmark names of the Karpathy test sets (hbkit.datasets.karpathy) -> the published table's dataset.
ALBEF_DATASETS = {"flickr30k-1k": "Flickr30K 1K test", "coco-5k": "COCO 5K test"}
ALBEF_COMPARISON_COLUMNS = ["model", "scoring", "checkpoint", "pretraining", "setting", "dataset", "metric", "ours",
                            "published", "diff", "source"]


def _albef_setting(fine_tuned_on: str | None, dataset: str) -> str | None:
    """The published setting an evaluation of a checkpoint fine-tuned on ``fine_tuned_on`` matches."""
    if fine_tuned_on is not None and dataset.startswith(fine_tuned_on):
        return "fine-tuned"
    if fine_tuned_on == "COCO" and dataset.startswith("Flickr30K"):
        return "zero-shot (COCO fine-tuned model)"
    return None


def albef_vs_published(df: pd.DataFrame, checkpoints: dict[str, str]) -> pd.DataFrame:
    """A released checkpoint's English retrieval beside ALBEF's published numbers (percent).

    ``df``: results of :func:`hbkit.kit.english_reference.evaluate_reference` (any rows on the
    ``flickr30k-1k`` / ``coco-5k`` benchmarks, monolingual setting); ``checkpoints``: model ->
    released checkpoint name (:data:`ALBEF_RELEASES`). TR@k is our image→text hit@k (an image
    query is answered when any of its 5 captions is in the top k, ALBEF's text-retrieval recall),
    IR@k text→image hit@k, both times 100. ``scoring`` is "ITC+ITM" for the re-scored rows and
    "ITC" for the ``-itc`` rows (ALBEF publishes only the re-scored ones: the ITC rows' published
    value is that same number, for reading the gain of re-scoring). ``diff`` = ours − published.
    A checkpoint whose evaluation has no published counterpart (the pre-trained-only ones) gets
    NaN in ``published``. ``attrs["note"]`` says what was compared, or why nothing was.
    """
    from hbkit.kit.experiment import ITC_ONLY

    check_results(df)
    pub = albef_published()
    d = df[df["benchmark"].isin(list(ALBEF_DATASETS)) & (df["setting"] == MONOLINGUAL)
           & df["direction"].isin([TEXT_TO_IMAGE, IMAGE_TO_TEXT]) & df["metric"].isin(["hit@1", "hit@5", "hit@10"])]
    empty = pd.DataFrame(columns=ALBEF_COMPARISON_COLUMNS)
    if d.empty:
        empty.attrs["note"] = ("No rows on flickr30k-1k / coco-5k (the whole Karpathy test sets): ALBEF publishes "
                               "English retrieval on those only. Evaluate a released checkpoint there "
                               "(hbkit.kit.english_reference) to compare.")
        return empty
    base = d["model"].str.removesuffix(ITC_ONLY)
    unknown = sorted(set(base) - set(checkpoints))
    if unknown:
        raise ConfigError(f"No checkpoint named for model(s) {unknown}: pass checkpoints={{model: checkpoint}} "
                          f"with one of {', '.join(ALBEF_RELEASES)} each "
                          "(hbkit.kit.english_reference.reference_checkpoints gives a profile's).")
    rows = []
    for (model, bench, direction, metric), g in d.groupby(["model", "benchmark", "direction", "metric"], sort=False):
        name = model.removesuffix(ITC_ONLY)
        ckpt = checkpoints[name]
        if ckpt not in ALBEF_RELEASES:
            raise ConfigError(f"{ckpt!r} (of model {name!r}) is not a released ALBEF checkpoint: choose one of "
                              f"{', '.join(ALBEF_RELEASES)}.")
        pretraining, tuned = ALBEF_RELEASES[ckpt]
        dataset = ALBEF_DATASETS[bench]
        label = ("TR@" if direction == IMAGE_TO_TEXT else "IR@") + metric.split("@")[1]
        setting = _albef_setting(tuned, dataset)
        match = pub[(pub["pretraining"] == pretraining) & (pub["setting"] == setting) & (pub["dataset"] == dataset)
                    & (pub["metric"] == label)]
        rows.append({"model": name, "scoring": "ITC" if model.endswith(ITC_ONLY) else "ITC+ITM",
                     "checkpoint": ckpt, "pretraining": pretraining, "setting": setting or "(none published)",
                     "dataset": dataset, "metric": label, "ours": 100 * float(g["value"].mean()),
                     "published": float(match["value"].iloc[0]) if len(match) else np.nan,
                     "source": match["source"].iloc[0] if len(match) else ""})
    out = pd.DataFrame(rows, columns=[c for c in ALBEF_COMPARISON_COLUMNS if c != "diff"])
    out.insert(ALBEF_COMPARISON_COLUMNS.index("diff"), "diff", out["ours"] - out["published"])
    order = {m: i for i, m in enumerate(["TR@1", "TR@5", "TR@10", "IR@1", "IR@5", "IR@10"])}
    out = out.sort_values(["model", "dataset", "scoring", "metric"], key=lambda s: s.map(order) if s.name == "metric"
                          else s, kind="stable").reset_index(drop=True)
    out.attrs["note"] = ("Released ALBEF checkpoints evaluated here on the English Karpathy test sets, ITC top-k "
                         "re-scored by ITM (ITC+ITM rows; ITC rows are the first stage), beside ALBEF's published "
                         "numbers (percent).")
    return out
