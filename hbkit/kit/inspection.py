"""Looking inside: real batches as tables, their language pairs counted, and one query's ranks.

- :func:`batch_table` — the first pairs of a sampler batch as text (query, positive, hard negative,
  languages).
- :func:`language_pair_counts` — (query language × passage language) counts over many batches.
- :func:`answer_ranks` / :func:`rank_table` — for one query, the pooled (multilingual) rank of its
  correct answer in every language under one or more encoders: rank distance made visible.
- :func:`run_spec` / :func:`load_benchmark` — the run and benchmark of a profile, as ``make
  replicate`` uses them; :func:`sweep_headline` — the rows of a profile's α sweep.
- :func:`loss_by_mode` / :func:`checkpoint_selection` — what a run's training log and state say.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from hbkit.benchmark import RetrievalBenchmark
from hbkit.engine.checkpoint import is_finished
from hbkit.errors import ConfigError, DataError
from hbkit.metrics import relevant_ranks
from hbkit.parallel import ParallelDataset

BATCH_COLUMNS = ["query", "positive", "hard negative", "query language", "passage language"]
RANK_COLUMNS = ["strategy", "answer language", "rank", "answer"]


def batch_table(batch, datasets: Sequence[ParallelDataset] | ParallelDataset, n: int = 8) -> pd.DataFrame:
    """The first ``n`` pairs of ``batch`` (a :class:`hbkit.samplers.Batch`) as texts.

    ``datasets`` are the sampler's datasets (``batch.dataset`` indexes them). Columns:
    ``BATCH_COLUMNS``; an image passage is shown as its image id, its language as "".
    """
    if isinstance(datasets, ParallelDataset):
        datasets = [datasets]
    if not 0 <= batch.dataset < len(datasets):
        raise ConfigError(f"The batch comes from dataset {batch.dataset}, but {len(datasets)} dataset(s) were "
                          "given: pass the sampler's datasets.")
    ds = datasets[batch.dataset]
    rows = []
    for ref in batch.refs[:n]:
        p = ds.pair(ref)
        positive = p.positive if isinstance(p.positive, str) else str(getattr(p.positive, "id", p.positive))
        rows.append({"query": p.query, "positive": positive, "hard negative": p.negative or "",
                     "query language": p.query_lang, "passage language": p.passage_lang or ""})
    return pd.DataFrame(rows, columns=BATCH_COLUMNS)


def language_pair_counts(batches: Iterable, n: int | None = None,
                         languages: Sequence[str] | None = None) -> pd.DataFrame:
    """Pairs per (query language, passage language) over the first ``n`` batches (all when None).

    Rows: query language; columns: passage language; both sorted (or in the order of
    ``languages``). Image passages (no language) are not counted.
    """
    counts: Counter = Counter()
    for i, b in enumerate(batches):
        if n is not None and i >= n:
            break
        counts.update((r.query_lang, r.passage_lang) for r in b.refs if r.passage_lang is not None)
    langs = list(languages) if languages is not None else sorted({q for q, _ in counts} | {p for _, p in counts})
    m = pd.DataFrame(0, index=pd.Index(langs, name="query language"),
                     columns=pd.Index(langs, name="passage language"), dtype="int64")
    for (q, p), c in counts.items():
        if q in m.index and p in m.columns:
            m.loc[q, p] = c
    return m


# ----------------------------------------------------------------------------- one query's ranks
def pick_query(bench: RetrievalBenchmark, lang: str = "en", index: int = 0) -> int:
    """Index (into ``bench.queries``) of the ``index``-th query in ``lang`` that has a correct
    answer in every candidate language of the benchmark."""
    if lang not in bench.query_langs:
        raise DataError(f"{bench.name} has no queries in {lang!r}; its query languages are {bench.query_langs}.")
    want = set(bench.candidate_langs)
    full = [int(i) for i in bench.queries_in(lang)
            if {bench.candidates[c].lang for c in bench.relevant[i]} >= want]
    if not full:
        raise DataError(f"No {lang!r} query of {bench.name} has a correct answer in every language "
                        f"({', '.join(sorted(want))}).")
    if not 0 <= index < len(full):
        raise ConfigError(f"index must be in [0, {len(full)}): {bench.name} has {len(full)} {lang!r} queries "
                          "with an answer in every language.")
    return full[index]


def answer_ranks(encoders: Mapping[str, object], bench: RetrievalBenchmark, query: int,
                 batch_size: int = 64, use_context: bool = False, show_progress: bool = False) -> pd.DataFrame:
    """Pooled (multilingual) ranks of one query's correct answers, per encoder.

    ``encoders`` maps a label (e.g. "X-X") to an object with ``encode(texts, kind=...)`` returning
    L2-normalised embeddings, as :func:`hbkit.models.load_model` gives. The query is scored against
    all candidates of ``bench`` pooled, as in the multilingual setting (candidates encoded with their
    context paragraph when ``use_context``, as the evaluation does); ranks are 1-based and pessimistic on ties
    (:func:`hbkit.metrics.relevant_ranks`). A language with several correct answers is represented by
    its best-ranked one, as in rank distance. ``show_progress``: a bar while encoding the candidates.
    Returns one row per (encoder, answer language):
    ``RANK_COLUMNS``, plus ``rank_distance`` (max − min rank of that encoder's rows).
    """
    if not 0 <= query < len(bench.queries):
        raise ConfigError(f"query must index bench.queries (0..{len(bench.queries) - 1}), got {query}.")
    rel = np.asarray(bench.relevant[query], dtype=np.int64)
    if len(rel) == 0:
        raise DataError(f"Query {bench.queries[query].qid!r} has no correct answer in {bench.name}.")
    q = bench.queries[query]
    cand_texts = [c.text for c in bench.candidates]
    extra = {"contexts": [c.context for c in bench.candidates]} if use_context else {}
    frames = []
    for label, enc in encoders.items():
        q_emb = np.asarray(enc.encode([q.text], kind="query", batch_size=batch_size, show_progress=False),
                           dtype=np.float32)
        c_emb = np.asarray(enc.encode(cand_texts, kind="passage", batch_size=batch_size,
                                      show_progress=show_progress, **extra), dtype=np.float32)
        ranks = relevant_ranks(q_emb @ c_emb.T, [rel])[0][: len(rel)]
        best: dict[str, tuple[int, int]] = {}
        for cand, rank in zip(rel.tolist(), ranks.tolist()):
            lang = bench.candidates[cand].lang or ""
            if lang not in best or rank < best[lang][0]:
                best[lang] = (int(rank), cand)
        df = pd.DataFrame([{"strategy": label, "answer language": lang, "rank": r,
                            "answer": bench.candidates[c].text} for lang, (r, c) in sorted(best.items())],
                          columns=RANK_COLUMNS)
        df["rank_distance"] = int(df["rank"].max() - df["rank"].min())
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    out.attrs.update(query=q.text, query_lang=q.lang, qid=q.qid, n_candidates=len(bench.candidates))
    return out


def rank_table(ranks: pd.DataFrame) -> pd.DataFrame:
    """:func:`answer_ranks` as a wide table: one row per answer language (the answer text of the
    first encoder beside it), one rank column per encoder, and a last row with each rank distance."""
    labels = list(dict.fromkeys(ranks["strategy"]))
    wide = ranks.pivot(index="answer language", columns="strategy", values="rank")[labels]
    wide.columns.name = None
    first = ranks[ranks["strategy"] == labels[0]].set_index("answer language")["answer"]
    wide.insert(0, "answer", first.reindex(wide.index))
    dist = ranks.groupby("strategy", sort=False)["rank_distance"].first()
    wide.loc["rank distance (max − min)"] = ["", *[int(dist[s]) for s in labels]]
    return wide.astype({s: "int64" for s in labels})


# ----------------------------------------------------------------------------- a profile's runs
def run_spec(profile: str, output_dir: str, model: str, label: str, seed: int):
    """The :class:`~hbkit.kit.experiment.RunSpec` of the planned run of ``profile`` with this model,
    label ("X-X", "X-Y", "hybrid", "hybrid-alpha0.25", ...) and seed: the parameters ``make replicate``
    passes to the notebooks, so its ``run_dir`` is the one that run used."""
    from hbkit.kit.experiment import RunSpec
    from hbkit.kit.replicate import planned_runs

    for params in planned_runs(profile, output_dir):
        if params["model"] == model and params["seed"] == seed:
            spec = RunSpec(**params)
            if spec.label == label:
                return spec
    raise ConfigError(f"Profile {profile!r} plans no run of model {model!r} labelled {label!r} with seed {seed}.")


def load_benchmark(profile: str):
    """The profile's first multilingual benchmark (the demo world's for ``demo``/``test``)."""
    from hbkit.datasets import registry
    from hbkit.kit import experiment  # noqa: F401  (registers the demo kinds)
    from hbkit.kit.profiles import get_profile

    for src in get_profile(profile)["data"]["benchmarks"]:
        if src["kind"] != "miracl":  # MIRACL is monolingual: no pooled multilingual ranks
            return registry.load_benchmark(src, profile=profile)
    raise ConfigError(f"Profile {profile!r} has no multilingual benchmark.")


def rank_example(profile: str, output_dir: str, model: str | None = None, seed: int = 0, query_lang: str = "en",
                 query: int = 0, strategies: Sequence[str] = ("X-X", "X-Y"), batch_size: int = 64) -> pd.DataFrame:
    """:func:`answer_ranks` of one benchmark query under the trained runs of ``strategies`` (same
    model and seed): the ``query``-th ``query_lang`` query of the profile's benchmark that has an
    answer in every language (:func:`pick_query`). ``model`` defaults to the profile's first.

    Raises DataError, naming them, when some of those runs have no trained model yet.
    """
    from hbkit.kit.profiles import get_profile
    from hbkit.models import load_model

    prof = get_profile(profile)
    model = model or prof["models"][0]
    specs = {s: run_spec(profile, output_dir, model, s, seed) for s in strategies}
    missing = [f"{s} ({spec.run_dir})" for s, spec in specs.items() if not is_finished(spec.run_dir)]
    if missing:
        raise DataError(f"no trained model yet for {model} seed {seed} under {', '.join(missing)}; train "
                        "those runs (notebook 02 or `make replicate`) to see their ranks side by side.")
    bench = load_benchmark(profile)
    qi = pick_query(bench, query_lang, query)
    encoders = {s: load_model(spec.run_dir / "model") for s, spec in specs.items()}
    use_context = bool(prof.get("evaluation", {}).get("use_context", False))
    out = answer_ranks(encoders, bench, qi, batch_size=batch_size, use_context=use_context)
    out.attrs.update(model=model, seed=seed, benchmark=bench.name)
    return out


def sweep_headline(head: pd.DataFrame, profile: str) -> pd.DataFrame:
    """The headline rows of the profile's α sweep (its model and seeds) with an ``alpha`` column:
    X-Y runs at α = 0, X-X at 1, ``hybrid`` at the profile's α, ``hybrid-alpha<α>`` at α.
    Empty when the profile has no α sweep."""
    from hbkit.kit.plots import with_alpha
    from hbkit.kit.profiles import get_profile

    prof = get_profile(profile)
    sweep = prof.get("alpha_sweep")
    if not sweep:
        return head.iloc[0:0].assign(alpha=pd.Series(dtype=float))
    d = with_alpha(head, prof["train"]["alpha"])
    keep = (d["model"] == sweep["model"]) & d["seed"].isin(sweep["seeds"]) & d["alpha"].notna()
    return d[keep].reset_index(drop=True)


# ----------------------------------------------------------------------------- a run's training
def loss_by_mode(log: pd.DataFrame) -> pd.DataFrame:
    """Mean logged training loss per kind of batch (``mode``: X-X or X-Y), over the first and the
    second half of the logged steps. ``log`` is a run's ``train_log.csv`` frame."""
    t = log.dropna(subset=["loss"]) if "loss" in log else log.iloc[0:0]
    if t.empty or "mode" not in t:
        return pd.DataFrame(columns=["first half", "second half", "logged steps"])
    half = t["step"] > t["step"].max() / 2
    out = pd.DataFrame({"first half": t[~half].groupby("mode")["loss"].mean(),
                        "second half": t[half].groupby("mode")["loss"].mean(),
                        "logged steps": t.groupby("mode")["loss"].size()})
    out.index.name = "batch kind"
    return out


def checkpoint_selection(config: Mapping, state: Mapping) -> str:
    """How a finished run chose the weights it exported, from its ``config.json`` and ``train_state.json``."""
    t = config.get("train", {})
    langs = t.get("val_languages") or ["every training language"]
    patience = int(t.get("patience", 0) or 0)
    lines = [(f"validation loss: every {t.get('val_every')} steps, on {t.get('val_batches')} fixed "
              f"{t.get('val_strategy', 'X-X')} batches in {', '.join(langs)}"),
             ("patience 0: no early stopping, training runs to max_steps" if patience == 0 else
              f"patience {patience}: training stops after {patience} validations in a row without a lower loss")]
    if state.get("best_step") is None:
        lines.append(f"no validation ran: model/ holds the weights of the last step ({state.get('steps')})")
    else:
        stop = " (stopped early)" if state.get("stopped_early") else ""
        lines.append(f"lowest validation loss {float(state['best_val']):.4f} at step {state['best_step']} of "
                     f"{state.get('steps')}{stop}: model/, which notebook 03 evaluates, holds the weights of "
                     f"step {state['best_step']}")
    return "\n".join(lines)
