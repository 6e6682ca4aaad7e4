"""Does hybrid batching carry over to image–text retrieval? Sentences written from the numbers.

:func:`findings_table` computes, per model and benchmark, the numbers behind each finding
(mean over seeds of each measure of :mod:`hbkit.kit.image_report`, std over seeds, gaps) and
writes its sentence; :func:`image_text_findings` returns the sentences. Findings:

1. **best** (per setting): the best fine-tuning strategy, its lead over the runner-up and
   whether that lead exceeds the seed spread (the larger of the two strategies' std over
   seeds; with one seed each there is no spread to judge by); the zero-shot value for scale.
2. **hybrid**: where hybrid lies against X-X and X-Y in each setting.
3. **1-to-K**: its rank in each setting (a 1-to-K batch of B captions holds B/K images).
4. **bias**: caption→caption own-language top-10 share against the uniform 1/L, and rank
   distance raw and z-scored; image→text MRV and top-10 share spread.
5. **models** (when several): per measure, which model is better under how many strategies,
   each model's best strategy, and the Latin-script gap of monolingual hit_mean.

No conclusion is fixed in advance: every comparison word comes from the values.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from hbkit.errors import DataError, UnknownLanguageError
from hbkit.evaluation import IMAGE_TO_TEXT, MONOLINGUAL, NO_LANGUAGE, TEXT_TO_IMAGE
from hbkit.kit.image_report import (
    MEASURES,
    STRATEGY_ORDER,
    TRAINED,
    ZERO_SHOT,
    check_results,
    measure_stats,
    ordered,
)
from hbkit.language_bias import CAPTION_TO_CAPTION
from hbkit.languages import script_of

#: The settings' main measures (keys of :data:`hbkit.kit.image_report.MEASURES`).
SETTING_MEASURES: tuple[str, ...] = ("mono hit_mean", "cross mAP", "i→t multi mAP", "c→c multi mAP")
COMPARE_MEASURES: tuple[str, ...] = ("mono hit_mean", "cross mAP", "i→t multi mAP", "c→c own-language share",
                                     "c→c rank_distance")
_BIAS = ("c→c own-language share", "c→c rank_distance", "c→c rank_distance_z", "i→t MRV", "i→t top10 spread")
TABLE_COLUMNS = ["finding", "topic", "model", "benchmark", "measure", "better", *STRATEGY_ORDER,
                 *(f"{s} std" for s in STRATEGY_ORDER), "gap", "spread", "sentence"]


def _rank(key: str) -> bool:
    """Whether a measure counts ranks (shown with one decimal) rather than fractions (three)."""
    return key in MEASURES and MEASURES[key].metric.startswith(("rank_distance", "MRV"))


def _f(v: float, rank: bool = False) -> str:
    return "nan" if not np.isfinite(v) else f"{v:.1f}" if rank else f"{v:.3f}"


def _signed(v: float, rank: bool = False) -> str:
    return f"{v:+.1f}" if rank else f"{v:+.3f}"


def _ordinal(i: int) -> str:
    return f"{i}{'th' if 10 <= i % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(i % 10, 'th')}"


def _largest(stds: list[float]) -> float:
    """The largest finite std (NaN when none is: one seed each)."""
    finite = [x for x in stds if np.isfinite(x)]
    return max(finite) if finite else np.nan


def _best_first(vals: dict[str, float], better: str) -> list[str]:
    return sorted(vals, key=lambda s: -vals[s] if better == "higher" else vals[s])


def _judge(gap: float, spread: float, rank: bool = False) -> str:
    if not np.isfinite(spread):
        return "one seed only, so no seed spread to judge it by"
    if abs(gap) > spread:
        return f"more than the seed spread ({_f(spread, rank)})"
    return f"within the seed spread ({_f(spread, rank)}): not a clear difference"


class _Book:
    """Collects findings: one sentence and one or more rows of numbers each."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.sentences: list[str] = []

    def add(self, topic: str, sentence: str, rows: list[dict]) -> None:
        i = len(self.sentences)
        self.sentences.append(sentence)
        for r in rows:
            self.rows.append({"finding": i, "topic": topic, **r, "sentence": sentence})


class _Stats:
    """mean / std / n of (model, benchmark, measure, strategy)."""

    def __init__(self, stats: pd.DataFrame) -> None:
        self.cell = {(r.model, r.benchmark, r.measure, r.strategy): (float(r.mean), float(r.std), int(r.n_seeds))
                     for r in stats.itertuples(index=False)}

    def means(self, model: str, bench: str, measure: str, strategies=TRAINED) -> dict[str, float]:
        return {s: self.cell[(model, bench, measure, s)][0] for s in strategies
                if (model, bench, measure, s) in self.cell}

    def std(self, model: str, bench: str, measure: str, strategy: str) -> float:
        return self.cell.get((model, bench, measure, strategy), (np.nan, np.nan, 0))[1]

    def row(self, model: str, bench: str, measure: str, **extra) -> dict:
        r = {"model": model, "benchmark": bench, "measure": measure, "better": MEASURES[measure].better}
        for s in STRATEGY_ORDER:
            mean, std, _ = self.cell.get((model, bench, measure, s), (np.nan, np.nan, 0))
            r[s], r[f"{s} std"] = mean, std
        return {**r, **extra}


def _best(book: _Book, st: _Stats, model: str, bench: str, key: str, who: str) -> None:
    m, rk = MEASURES[key], _rank(key)
    vals = st.means(model, bench, key)
    if not vals:
        return
    order = _best_first(vals, m.better)
    best = order[0]
    ranking = " > ".join(f"{s} {_f(vals[s], rk)}" for s in order) if m.better == "higher" else \
        " < ".join(f"{s} {_f(vals[s], rk)}" for s in order)
    zs = st.means(model, bench, key, (ZERO_SHOT,))
    tail = f"; zero-shot {_f(zs[ZERO_SHOT], rk)}" if zs else ""
    if len(order) == 1:
        book.add("best", f"{who}{m.label} ({m.better} is better): only {best} was run ({_f(vals[best], rk)}){tail}.",
                 [st.row(model, bench, key)])
        return
    second = order[1]
    gap = abs(vals[best] - vals[second])
    spread = _largest([st.std(model, bench, key, best), st.std(model, bench, key, second)])
    sentence = (f"{who}{m.label} ({m.better} is better): {best} is best with {_f(vals[best], rk)}, ahead of {second} "
                f"({_f(vals[second], rk)}) by {_f(gap, rk)}, {_judge(gap, spread, rk)}. Order: {ranking}{tail}.")
    book.add("best", sentence, [st.row(model, bench, key, gap=gap, spread=spread)])


def _hybrid(book: _Book, st: _Stats, model: str, bench: str, who: str) -> None:
    parts, rows = [], []
    for key in SETTING_MEASURES:
        m, rk = MEASURES[key], _rank(key)
        v = st.means(model, bench, key, ("X-X", "X-Y", "hybrid"))
        if len(v) < 3:
            continue
        xx, xy, h = v["X-X"], v["X-Y"], v["hybrid"]
        lo, hi = min(xx, xy), max(xx, xy)
        if lo <= h <= hi:
            where = (f"between them, {100 * (h - xx) / (xy - xx):.0f}% of the way from X-X to X-Y"
                     if xy != xx else "equal to both")
            margin = np.nan
        else:
            margin = h - hi if h > hi else lo - h
            better = (h > hi) == (m.better == "higher")
            where = f"{'better' if better else 'worse'} than both, by {_f(margin, rk)}"
        parts.append(f"{m.label} {where} (X-X {_f(xx, rk)}, hybrid {_f(h, rk)}, X-Y {_f(xy, rk)})")
        rows.append(st.row(model, bench, key, gap=margin,
                           position=(h - xx) / (xy - xx) if xy != xx else np.nan))
    if parts:
        book.add("hybrid", f"{who}Hybrid against the pure regimes: " + "; ".join(parts) + ".", rows)


def _one_to_k(book: _Book, st: _Stats, model: str, bench: str, who: str) -> None:
    parts, rows = [], []
    for key in SETTING_MEASURES:
        m, rk = MEASURES[key], _rank(key)
        v = st.means(model, bench, key)
        if "1-to-K" not in v or len(v) < 2:
            continue
        order = _best_first(v, m.better)
        r = order.index("1-to-K")
        other = order[1] if r == 0 else order[0]
        gap = abs(v["1-to-K"] - v[other])
        rel = f"ahead of {other} by {_f(gap, rk)}" if r == 0 else f"behind {other} by {_f(gap, rk)}"
        parts.append(f"{_ordinal(r + 1)} of {len(order)} on {m.label} ({_f(v['1-to-K'], rk)}, {rel})")
        rows.append(st.row(model, bench, key, gap=gap))
    if parts:
        book.add("1-to-K", f"{who}1-to-K (a batch of B captions holds only B/K images, each with its K captions) "
                           "ranks " + "; ".join(parts) + ".", rows)


def _n_languages(df: pd.DataFrame, model: str, bench: str) -> int:
    d = df[(df["model"] == model) & (df["benchmark"] == bench) & (df["direction"] == CAPTION_TO_CAPTION)]
    shares = {m for m in d["metric"].astype(str) if m.startswith("top10_share:")}
    return len(shares) or d["query_lang"].nunique()


def _bias(book: _Book, st: _Stats, df: pd.DataFrame, model: str, bench: str, who: str) -> None:
    key = "c→c own-language share"
    v = st.means(model, bench, key)
    if len(v) >= 2:
        n_lang = _n_languages(df, model, bench)
        uniform = 1.0 / n_lang if n_lang else np.nan
        order = _best_first(v, "higher")
        rng = v[order[0]] - v[order[-1]]
        spread = _largest([st.std(model, bench, key, s) for s in v])
        above = sum(x > uniform for x in v.values())
        differs = "differs by strategy" if np.isfinite(spread) and rng > spread else \
            "does not clearly differ by strategy" if np.isfinite(spread) else "cannot be judged against a seed spread"
        book.add("bias", f"{who}Same-language preference of caption queries (own language's share of the top 10; "
                         f"uniform 1/{n_lang} = {_f(uniform)}): strongest under {order[0]} ({_f(v[order[0]])}), "
                         f"weakest under {order[-1]} ({_f(v[order[-1]])}), a range of {_f(rng)}, "
                         f"{_judge(rng, spread)}; {above} of {len(v)} strategies are above the uniform share, so the "
                         f"text-style bias {differs}.",
                 [st.row(model, bench, key, gap=rng, spread=spread, uniform=uniform)])
    raw, z = st.means(model, bench, "c→c rank_distance"), st.means(model, bench, "c→c rank_distance_z")
    if len(raw) >= 2:
        order = _best_first(raw, "lower")
        r_raw = raw[order[-1]] - raw[order[0]]
        text = (f"{who}Caption→caption rank distance (lower = less bias): "
                + " < ".join(f"{s} {_f(raw[s], True)}" for s in order))
        rows = [st.row(model, bench, "c→c rank_distance", gap=r_raw)]
        if len(z) >= 2:
            zo = _best_first(z, "lower")
            r_z = z[zo[-1]] - z[zo[0]]
            kept = r_z / r_raw if r_raw > 0 else np.nan
            text += ("; z-scored per language (the quality control): " + " < ".join(f"{s} {_f(z[s], True)}" for s in zo)
                     + f". The strategies span {_f(r_raw, True)} raw and {_f(r_z, True)} z-scored")
            if np.isfinite(kept):
                text += (f" ({100 * kept:.0f}% kept): " + ("most of the strategy difference is a per-language score "
                                                           "shift (preference), which z-scoring removes"
                                                           if kept < 0.5 else
                                                           "most of it survives z-scoring, so it reflects retrieval "
                                                           "quality more than preference"))
            rows.append(st.row(model, bench, "c→c rank_distance_z", gap=r_z))
        book.add("bias", text + ".", rows)
    parts, rows = [], []
    for key in ("i→t MRV", "i→t top10 spread"):
        v = st.means(model, bench, key)
        if len(v) >= 2:
            order = _best_first(v, "lower")
            parts.append(f"{MEASURES[key].label} " + " < ".join(f"{s} {_f(v[s], _rank(key))}" for s in order))
            rows.append(st.row(model, bench, key, gap=v[order[-1]] - v[order[0]]))
    if parts:
        book.add("bias", f"{who}Image queries (no language of their own; lower = languages treated more alike): "
                 + "; ".join(parts) + ".", rows)


def _script_gap(df: pd.DataFrame, model: str, bench: str) -> dict[str, float]:
    """Per strategy: mean monolingual hit_mean of Latin-script languages minus the other scripts'."""
    d = df[(df["model"] == model) & (df["benchmark"] == bench) & (df["setting"] == MONOLINGUAL)
           & df["direction"].isin([TEXT_TO_IMAGE, IMAGE_TO_TEXT]) & (df["metric"] == "hit_mean")]
    lang = d["query_lang"].where(d["query_lang"] != NO_LANGUAGE, d["candidate_lang"])

    def latin(code: str) -> bool | None:
        try:
            return script_of(code) == "Latin"
        except UnknownLanguageError:
            return None

    d = d.assign(latin=lang.map(latin)).dropna(subset=["latin"])
    out = {}
    for s, g in d.groupby("strategy"):
        by = g.groupby("latin")["value"].mean()
        if True in by.index and False in by.index:
            out[s] = float(by[True] - by[False])
    return out


def _models(book: _Book, st: _Stats, df: pd.DataFrame, a: str, b: str, bench: str) -> None:
    who = f"{a} vs {b} on {bench}: "
    for key in COMPARE_MEASURES:
        m, rk = MEASURES[key], _rank(key)
        va, vb = st.means(a, bench, key, STRATEGY_ORDER), st.means(b, bench, key, STRATEGY_ORDER)
        common = [s for s in STRATEGY_ORDER if s in va and s in vb]
        if not common:
            continue
        diff = {s: va[s] - vb[s] for s in common}
        sign = 1.0 if m.better == "higher" else -1.0
        spread = {s: _largest([st.std(a, bench, key, s), st.std(b, bench, key, s)]) for s in common}
        clear = {s: abs(diff[s]) > (spread[s] if np.isfinite(spread[s]) else 1e-12) for s in common}
        wins = sum(clear[s] and sign * diff[s] > 0 for s in common)
        losses = sum(clear[s] and sign * diff[s] < 0 for s in common)
        lo, hi = min(diff, key=diff.get), max(diff, key=diff.get)
        span = (f"{_signed(diff[lo], rk)} under every strategy" if abs(diff[hi] - diff[lo]) < 5e-4 else
                f"from {_signed(diff[lo], rk)} under {lo} to {_signed(diff[hi], rk)} under {hi}")
        ta, tb = [s for s in TRAINED if s in va], [s for s in TRAINED if s in vb]
        best = ""
        if ta and tb:
            ba, bb = _best_first({s: va[s] for s in ta}, m.better)[0], _best_first({s: vb[s] for s in tb}, m.better)[0]
            best = (f"; the best strategy is {ba} for both" if ba == bb else
                    f"; the best strategy is {ba} for {a} but {bb} for {b}")
        row = {"model": f"{a} − {b}", "benchmark": bench, "measure": key, "better": m.better,
               **{s: diff.get(s, np.nan) for s in STRATEGY_ORDER}}
        book.add("models", f"{who}{m.label} ({m.better} is better): {a} is better under {wins}, {b} under {losses} "
                           f"of {len(common)} strategies, the rest within the seed spread (difference {a} − {b} "
                           f"{span}){best}.", [row])
    ga, gb = _script_gap(df, a, bench), _script_gap(df, b, bench)
    if ga and gb:
        ma, mb = float(np.mean(list(ga.values()))), float(np.mean(list(gb.values())))
        larger = a if abs(ma) > abs(mb) else b
        rows = [{"model": name, "benchmark": bench, "measure": "Latin − other scripts, mono hit_mean",
                 "better": "lower", **{s: g.get(s, np.nan) for s in STRATEGY_ORDER}} for name, g in ((a, ga), (b, gb))]
        book.add("models", f"{who}script gap (monolingual hit_mean of Latin-script languages minus the other "
                           f"scripts', mean over strategies): {a} {_signed(ma)}, {b} {_signed(mb)}; the gap is larger "
                           f"for {larger}.", rows)


def _book(df: pd.DataFrame, model: str | None, benchmark: str | None) -> _Book:
    check_results(df)
    d = df if model is None else df[df["model"] == model]
    if d.empty:
        raise DataError(f"No rows of model {model!r}; the results hold {ordered(df['model'], ())}.")
    keys = sorted(set(SETTING_MEASURES) | set(COMPARE_MEASURES) | set(_BIAS))
    stats = measure_stats(d, keys, benchmark)
    if stats.empty:
        raise DataError("No image–text rows of the settings' measures in these results: evaluate image–text "
                        "runs (hbkit.image_text_eval) first.")
    st, book = _Stats(stats), _Book()
    models, benches = ordered(stats["model"], ()), ordered(stats["benchmark"], ())
    for bench in benches:
        for name in models:
            who = f"{name} on {bench}: "
            for key in SETTING_MEASURES:
                _best(book, st, name, bench, key, who)
            _hybrid(book, st, name, bench, who)
            _one_to_k(book, st, name, bench, who)
            _bias(book, st, d, name, bench, who)
        for i, a in enumerate(models):
            for b in models[i + 1:]:
                _models(book, st, d, a, b, bench)
    return book


def findings_table(df: pd.DataFrame, model: str | None = None, benchmark: str | None = None) -> pd.DataFrame:
    """The numbers behind each sentence of :func:`image_text_findings`, one or more rows per finding.

    Columns :data:`TABLE_COLUMNS`, then ``position`` (hybrid rows: (hybrid − X-X) / (X-Y − X-X), 0 at
    X-X, 1 at X-Y) and ``uniform`` (the 1/L share, own-language row): the mean over seeds per
    strategy and its std, ``gap`` (the lead, margin or range the sentence states), ``spread``
    (the std it is judged against). In a model comparison row (``model`` "A −
    B") the strategy columns hold A's mean minus B's.
    """
    book = _book(df, model, benchmark)
    table = pd.DataFrame(book.rows)
    for c in TABLE_COLUMNS:
        if c not in table:
            table[c] = np.nan
    return table[[*TABLE_COLUMNS, *(c for c in table.columns if c not in TABLE_COLUMNS)]]


def image_text_findings(df: pd.DataFrame, model: str | None = None, benchmark: str | None = None) -> list[str]:
    """Plain sentences answering "does hybrid batching carry over to image–text?", per model
    (only ``model`` when given) and benchmark, generated from the values (see the module doc)."""
    return _book(df, model, benchmark).sentences


def strategy_agreement(df: pd.DataFrame, a: str, b: str, benchmark: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Where two models (e.g. a CLIP and an ALBEF) agree on which batch strategy is best.

    Per benchmark and measure of :data:`SETTING_MEASURES` and :data:`COMPARE_MEASURES`: each model's
    fine-tuning strategies ranked best first (by mean over seeds), whether the best is the same,
    and whether hybrid lies between X-X and X-Y for each. Returns the table and one sentence per
    benchmark, written from the values."""
    check_results(df)
    missing = [m for m in (a, b) if m not in set(df["model"])]
    if missing:
        raise DataError(f"No rows of model(s) {missing}; the results hold {ordered(df['model'], ())}.")
    keys = list(dict.fromkeys(SETTING_MEASURES + COMPARE_MEASURES))
    stats = measure_stats(df[df["model"].isin([a, b])], keys, benchmark)
    st = _Stats(stats)
    rows, sentences = [], []
    for bench in ordered(stats["benchmark"], ()):
        agree, differ = [], []
        for key in keys:
            m = MEASURES[key]
            va, vb = ({s: v for s, v in st.means(x, bench, key, STRATEGY_ORDER).items() if s in TRAINED}
                      for x in (a, b))
            if not va or not vb:
                continue
            ra, rb = _best_first(va, m.better), _best_first(vb, m.better)

            def between(v: dict) -> bool | None:
                if not {"X-X", "X-Y", "hybrid"} <= set(v):
                    return None
                lo, hi = sorted((v["X-X"], v["X-Y"]))
                return bool(lo <= v["hybrid"] <= hi)
            row = {"benchmark": bench, "measure": key, "better": m.better, f"{a} order": " > ".join(ra),
                   f"{b} order": " > ".join(rb), "same best": ra[0] == rb[0],
                   f"hybrid between X-X and X-Y ({a})": between(va), f"hybrid between X-X and X-Y ({b})": between(vb)}
            rows.append(row)
            (agree if ra[0] == rb[0] else differ).append(
                f"{m.label}: {ra[0]}" if ra[0] == rb[0] else f"{m.label}: {ra[0]} for {a}, {rb[0]} for {b}")
        if agree or differ:
            parts = []
            if agree:
                parts.append(f"{a} and {b} agree on the best strategy for {len(agree)} of {len(agree) + len(differ)} "
                             f"measures ({'; '.join(agree)})")
            if differ:
                parts.append(f"they differ on {len(differ)} ({'; '.join(differ)})")
            sentences.append(f"On {bench}: " + ", and ".join(parts) + ".")
    return pd.DataFrame(rows), sentences


def family_models(df: pd.DataFrame, profile: str) -> dict:
    """The models notebook 11 compares: ``{"clips": [...], "albefs": [...], "clip": str | None,
    "albef": str | None, "note": str}``. Only models with fine-tuned runs count (a zero-shot-only
    baseline such as the English ALBEF does not), in the profile's model order; ``clip`` / ``albef``
    are the first of each (for the toy, the CLIP trained on the ALBEF's caption mixture). ALBEF's
    ITC-only rows (``<model>-itc``) are not separate models. The note names what is compared, or
    which family is missing."""
    from hbkit.kit.experiment import ITC_ONLY
    from hbkit.kit.image_text import model_family
    from hbkit.kit.profiles import get_profile

    check_results(df)
    trained = set(df.loc[df["strategy"].isin(TRAINED), "model"].astype(str))
    order = list(get_profile(profile)["models"]) + sorted(trained)
    models = [m for m in dict.fromkeys(order) if m in trained and not m.endswith(ITC_ONLY)]
    clips = [m for m in models if model_family(m) == "clip"]
    albefs = [m for m in models if model_family(m) == "albef"]
    clip, albef = (clips or [None])[0], (albefs or [None])[0]
    if clip and albef:
        note = (f"Comparing CLIP {clip} with ALBEF {albef} (and its ITC-only rows, {albef}{ITC_ONLY}). "
                f"CLIP models: {', '.join(clips)}; ALBEF models: {', '.join(albefs)}.")
    else:
        have, lack = ("ALBEF", "CLIP") if albef else ("CLIP", "ALBEF")
        note = (f"Profile {profile!r} has fine-tuned {have} runs ({', '.join(clips or albefs) or 'none'}) but no "
                f"{lack} run: the family comparison is skipped, the {have} results are shown alone. Add a {lack} "
                "model to the profile to compare the families.")
    return {"clips": clips, "albefs": albefs, "clip": clip, "albef": albef, "note": note}
