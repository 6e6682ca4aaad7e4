"""MIRACL dev (PROTOCOL §1.4): topics, qrels, a streamed passage corpus and the evaluation.

Files (TREC format, as published in the ``miracl/miracl`` dataset repository and mirrored by
anserini-tools; read by :mod:`hbkit.datasets.trec`, gzipped or not):

- topics ``topics.miracl-v1.0-{lang}-dev.tsv``: one query per line, ``qid<TAB>text``;
- qrels ``qrels.miracl-v1.0-{lang}-dev.tsv``: ``qid Q0 docid relevance`` (whitespace
  separated; MIRACL uses 0 = judged not relevant, 1 = relevant);
- corpus ``miracl-corpus-v1.0-{lang}/docs-*.jsonl.gz``: one passage per line,
  ``{"docid": "81674#0", "title": ..., "text": ...}``.

Ids are strings everywhere (``81674#0`` = article 81674, passage 0): never cast to int.
Hub copies are fetched with ``huggingface_hub`` (``hf_hub_download`` for topics and qrels,
so its cache, resumed downloads, ``HF_TOKEN`` and ``HF_ENDPOINT`` mirrors apply; the corpus
is streamed through ``hf://`` paths).

**Passage text** (ours): ``title + " " + text`` (the title alone or the text alone when the
other is empty), the usual input of dense retrievers on MIRACL (e.g. mDPR in pyserini);
the encoder adds its own passage prefix. Passages whose title and text are both empty
are skipped with a warning (nothing to encode).

**Evaluation**: the judged queries are encoded (kind "query"), the corpus is read, encoded
and searched chunk by chunk with the exact streaming searcher (:mod:`hbkit.engine.search`; no
chunk is kept), and the top-``k`` run is scored with trec_eval's ``ndcg_cut.10`` and
``recall.100`` (:mod:`hbkit.trec_metrics`). Judged documents missing from the corpus (a
truncated or wrong corpus) cannot be retrieved; they are counted and warned about.

Other collections in the same formats (e.g. Mr. TyDi): read explicit files with
:func:`~hbkit.datasets.trec.load_trec_topics_qrels` and evaluate with
:func:`~hbkit.datasets.trec.evaluate_trec` (both re-exported here).
"""
from __future__ import annotations

import itertools
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from hbkit.datasets.lines import brief
from hbkit.datasets.trec import (DEFAULT_CHUNK_SIZE, TrecTopicsQrels, check_chunk_size, check_evaluation_args,
                                 corpus_files, dense_evaluate, evaluate_trec, jsonl_rows, load_trec_topics_qrels,
                                 passage_chunks, passage_text, read_qrels, read_topics)
from hbkit.errors import DataError, UnknownLanguageError
from hbkit.evaluation import COLUMNS, row_keys
from hbkit.languages import normalize_language

log = logging.getLogger(__name__)

#: The 18 MIRACL languages with a dev set.
MIRACL_LANGUAGES: tuple[str, ...] = ("ar", "bn", "de", "en", "es", "fa", "fi", "fr", "hi", "id", "ja", "ko",
                                     "ru", "sw", "te", "th", "yo", "zh")
#: The 15 languages reported in the paper, in its order.
PAPER_LANGUAGES: tuple[str, ...] = ("sw", "bn", "hi", "ko", "th", "te", "fi", "ja", "es", "fr", "ru", "zh",
                                    "fa", "ar", "id")
#: Hub dataset repositories: topics/qrels and passage corpora.
HUB_DATASET = "miracl/miracl"
HUB_CORPUS = "miracl/miracl-corpus"
BENCHMARK = "miracl-dev"

__all__ = ["MIRACL_LANGUAGES", "PAPER_LANGUAGES", "HUB_DATASET", "HUB_CORPUS", "BENCHMARK", "COLUMNS",
           "DEFAULT_CHUNK_SIZE", "MiraclDev", "read_topics", "read_qrels", "load_miracl_dev", "iter_corpus",
           "passage_text", "evaluate_miracl", "TrecTopicsQrels", "load_trec_topics_qrels", "evaluate_trec"]


def _check_lang(lang: str) -> str:
    code = normalize_language(lang)
    if code not in MIRACL_LANGUAGES:
        raise UnknownLanguageError(f"MIRACL has no dev set for language {lang!r}. Use one of: "
                                   f"{', '.join(MIRACL_LANGUAGES)} (the paper reports {', '.join(PAPER_LANGUAGES)}).")
    return code


@dataclass(frozen=True)
class MiraclDev(TrecTopicsQrels):
    """One language's dev topics and qrels; ``source`` says where they were read from."""

    lang: str = ""

    def __repr__(self) -> str:
        return f"MiraclDev(lang={self.lang!r}, " + super().__repr__().split("(", 1)[1]


def _file_names(lang: str) -> tuple[str, str]:
    return f"topics.miracl-v1.0-{lang}-dev.tsv", f"qrels.miracl-v1.0-{lang}-dev.tsv"


def _local_dir(root: Path) -> Path:
    """The folder holding topics/ and qrels/: ``root`` itself or ``root/miracl``."""
    for cand in (root, root / "miracl"):
        if (cand / "topics").is_dir() and (cand / "qrels").is_dir():
            return cand
    raise DataError(f"{root} does not look like a MIRACL folder: it needs 'topics/' and 'qrels/' subfolders "
                    "(topics.miracl-v1.0-{lang}-dev.tsv, qrels.miracl-v1.0-{lang}-dev.tsv). Pass the folder that "
                    "holds them, or root=None to download from the hub.")


def _hub_files(lang: str) -> tuple[Path, Path]:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:  # pragma: no cover - installed with datasets
        raise DataError("huggingface_hub is not installed (it comes with `datasets`): pip install datasets, "
                        "or pass root= a local MIRACL folder.") from exc
    out = []
    for sub, name in zip(("topics", "qrels"), _file_names(lang)):
        remote = f"miracl-v1.0-{lang}/{sub}/{name}"
        try:
            out.append(Path(hf_hub_download(HUB_DATASET, remote, repo_type="dataset")))
        except Exception as exc:  # offline, gated, network: all mean "use a local copy"
            raise DataError(
                f"Could not get {remote} from the hub dataset {HUB_DATASET!r}: {brief(exc)}. Either the "
                "machine is offline (HF_HUB_OFFLINE=1?) or the dataset needs its terms accepted and "
                "`huggingface-cli login`. Otherwise download the topics/ and qrels/ files once and pass their "
                "folder: load_miracl_dev(lang, root='/path/to/miracl')."
            ) from exc
    return out[0], out[1]


_TOPICS_FILE = re.compile(r"topics\.miracl-v1\.0-(\w+)-dev\.tsv(?:\.gz)?")


def _local_file(folder: Path, name: str) -> Path:
    """``folder/name``, or its gzipped copy ``name.gz`` when only that exists."""
    plain, gz = folder / name, folder / (name + ".gz")
    return gz if gz.is_file() and not plain.is_file() else plain


def load_miracl_dev(lang: str, root: str | os.PathLike | None = None) -> MiraclDev:
    """Dev topics and qrels of ``lang`` from a local folder, or from the hub when ``root`` is None.

    ``root`` holds ``topics/topics.miracl-v1.0-{lang}-dev.tsv`` and
    ``qrels/qrels.miracl-v1.0-{lang}-dev.tsv`` (either may be gzipped, ``.tsv.gz``; or
    ``root`` has such a ``miracl/`` subfolder). From the hub the same two files are
    downloaded from the ``miracl/miracl`` dataset repository with ``hf_hub_download`` (the
    repository's loading script is not supported by current ``datasets``, the raw TREC
    files are). Every judged query must have a topic; topics without judgements are kept
    but not evaluated. Files of other collections: :func:`load_trec_topics_qrels`.
    """
    lang = _check_lang(lang)
    if root is None:
        topics_path, qrels_path = _hub_files(lang)
        source = f"hub:{HUB_DATASET}"
    else:
        folder = _local_dir(Path(root).expanduser())
        found = sorted({m.group(1) for p in (folder / "topics").iterdir() if (m := _TOPICS_FILE.fullmatch(p.name))})
        if lang not in found:
            raise UnknownLanguageError(f"No MIRACL dev topics for language {lang!r} in {folder / 'topics'}. "
                                       f"Available there: {', '.join(found) or 'none'}.")
        topics_name, qrels_name = _file_names(lang)
        topics_path, qrels_path = _local_file(folder / "topics", topics_name), _local_file(folder / "qrels", qrels_name)
        source = str(folder)
    judged = load_trec_topics_qrels(topics_path, qrels_path)
    unjudged = len(judged.topics) - len(judged.qrels)
    if unjudged:
        log.info("%d MIRACL %s topics have no judgements and are not evaluated.", unjudged, lang)
    return MiraclDev(judged.topics, judged.qrels, source, lang)


def _hub_rows(lang: str) -> Iterator[tuple[str, str, Any, Any]]:
    """Open the hub stream now (so that failures show at once) and return its rows."""
    pattern = f"hf://datasets/{HUB_CORPUS}/miracl-corpus-v1.0-{lang}/docs-*.jsonl.gz"
    try:
        import datasets

        rows = iter(datasets.load_dataset("json", data_files=pattern, split="train", streaming=True))
        first = next(rows, None)
    except Exception as exc:  # offline, gated, network
        raise DataError(
            f"Could not stream the MIRACL {lang} corpus from the hub ({pattern}): {brief(exc)}. "
            "The machine may be offline (HF_HUB_OFFLINE=1?). Download the corpus once (the miracl/miracl-corpus "
            f"dataset, folder miracl-corpus-v1.0-{lang}/) and pass its folder or a file as the corpus source."
        ) from exc
    head = [] if first is None else [first]
    return ((f"{pattern}, passage {n}", r.get("docid"), r.get("title", ""), r.get("text", ""))
            for n, r in enumerate(itertools.chain(head, rows), 1))


def iter_corpus(lang: str, source: str | os.PathLike | None = None,
                chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[tuple[list[str], list[str]]]:
    """Stream a MIRACL corpus as chunks ``(docids, texts)`` of at most ``chunk_size`` passages.

    ``source``: a ``.jsonl``/``.jsonl.gz`` file, a folder of them (read in natural name order;
    a ``miracl-corpus-v1.0-{lang}/`` subfolder is used when present), or None to stream
    ``miracl/miracl-corpus`` from the hub. Only one chunk is held at a time. Texts are
    :func:`passage_text` of title and text; passages with neither are skipped (warning).
    Arguments and the source are checked when called, before the first chunk is read.
    """
    lang = _check_lang(lang)
    chunk_size = check_chunk_size(chunk_size)
    if source is None:
        rows = _hub_rows(lang)
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise DataError(f"Corpus source {path} does not exist. Pass a .jsonl(.gz) file, a folder of them "
                            "(e.g. a clone of miracl/miracl-corpus), or source=None to stream from the hub.")
        rows = jsonl_rows(corpus_files(path, f"miracl-corpus-v1.0-{lang}"))
    return passage_chunks(rows, chunk_size, f"MIRACL {lang}")


def evaluate_miracl(encoder, lang: str, corpus_source: str | os.PathLike | None, root: str | os.PathLike | None = None,
                    *, k: int = 100, batch_size: int = 64, chunk_size: int = DEFAULT_CHUNK_SIZE,
                    meta: Mapping[str, Any] | None = None, show_progress: bool | None = None,
                    return_run: bool = False):
    """nDCG@10 and Recall@100 of ``encoder`` on MIRACL dev ``lang`` (monolingual, trec_eval definitions).

    Args:
        encoder: has ``encode(texts, kind="query"|"passage", batch_size=..., show_progress=...)``
            returning L2-normalised float embeddings (n, d), e.g. :class:`hbkit.models.bi_encoder.BiEncoder`.
        corpus_source: the corpus file/folder (see :func:`iter_corpus`), or None for the hub.
        root: local topics/qrels folder (see :func:`load_miracl_dev`), or None for the hub.
        k: retrieval depth (>= 100 so that Recall@100 is exact).
        chunk_size: passages read, encoded and searched at a time.
        meta: fills ``model``, ``strategy``, ``seed`` (defaults "", "", -1).
        return_run: also return the run ``{qid: {docid: score}}``.

    Returns a tidy table with columns :data:`COLUMNS` (benchmark "miracl-dev", setting
    "monolingual", query_lang = candidate_lang = ``lang``, metrics "nDCG@10" and "R@100"),
    averaged over the judged queries. ``df.attrs`` holds ``n_passages``,
    ``missing_judged_docs`` and ``missing_relevant_docs`` (judged / relevant qrels documents
    not found in the corpus; a warning is issued when there are any). The same evaluation
    from explicit topics, qrels and corpus files of any collection: :func:`evaluate_trec`.
    """
    check_evaluation_args(encoder, k)
    lang = _check_lang(lang)
    base = {**row_keys(meta, BENCHMARK), "setting": "monolingual", "query_lang": lang, "candidate_lang": lang}
    dev = load_miracl_dev(lang, root)
    chunks = iter_corpus(lang, corpus_source, chunk_size)  # checks the source before the slow encoding
    return dense_evaluate(encoder, dev, chunks, base, k=k, batch_size=batch_size, show_progress=show_progress,
                          collection=f"MIRACL {lang}", corpus_label=f"MIRACL {lang} corpus at "
                          f"{corpus_source or HUB_CORPUS}", return_run=return_run,
                          full_corpus_hint=f"Use the full miracl-corpus-v1.0-{lang} corpus for comparable numbers.")
