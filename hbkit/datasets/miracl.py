"""MIRACL dev (PROTOCOL §1.4): topics, qrels, a streamed passage corpus and the evaluation.

Files (TREC format, as published in the ``miracl/miracl`` dataset repository and mirrored by
anserini-tools):

- topics ``topics.miracl-v1.0-{lang}-dev.tsv``: one query per line, ``qid<TAB>text``;
- qrels ``qrels.miracl-v1.0-{lang}-dev.tsv``: ``qid Q0 docid relevance`` (whitespace
  separated; MIRACL uses 0 = judged not relevant, 1 = relevant);
- corpus ``miracl-corpus-v1.0-{lang}/docs-*.jsonl.gz``: one passage per line,
  ``{"docid": "81674#0", "title": ..., "text": ...}``.

Ids are strings everywhere (``81674#0`` = article 81674, passage 0): never cast to int.

**Passage text** (ours): ``title + " " + text`` (the title alone or the text alone when the
other is empty), the usual input of dense retrievers on MIRACL (e.g. mDPR in pyserini);
the encoder adds its own passage prefix. Passages whose title and text are both empty
are skipped with a warning (nothing to encode).

**Evaluation**: the judged queries are encoded (kind "query"), the corpus is read, encoded
and searched chunk by chunk with the exact streaming searcher (:mod:`hbkit.engine.search`; no
chunk is kept), and the top-``k`` run is scored with trec_eval's ``ndcg_cut.10`` and
``recall.100`` (:mod:`hbkit.trec_metrics`). Judged documents missing from the corpus (a
truncated or wrong corpus) cannot be retrieved; they are counted and warned about.
"""
from __future__ import annotations

import gzip
import itertools
import json
import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import pandas as pd

from hbkit.errors import ConfigError, DataError, UnknownLanguageError
from hbkit.evaluation import COLUMNS, row_keys
from hbkit.engine.progress import progress, progress_enabled
from hbkit.engine.search import StreamingTopK
from hbkit.trec_metrics import trec_evaluate

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
DEFAULT_CHUNK_SIZE = 16_384

__all__ = ["MIRACL_LANGUAGES", "PAPER_LANGUAGES", "HUB_DATASET", "HUB_CORPUS", "BENCHMARK", "COLUMNS",
           "MiraclDev", "read_topics", "read_qrels", "load_miracl_dev", "iter_corpus", "passage_text",
           "evaluate_miracl"]


def _check_lang(lang: str) -> str:
    if not isinstance(lang, str) or lang not in MIRACL_LANGUAGES:
        raise UnknownLanguageError(f"MIRACL has no dev set for language {lang!r}. Use one of: "
                                   f"{', '.join(MIRACL_LANGUAGES)} (the paper reports {', '.join(PAPER_LANGUAGES)}).")
    return lang


def _open_binary(path: Path):
    """Open a file for reading bytes, gunzipping it when its name ends in .gz."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _lines(path: str | os.PathLike, what: str) -> Iterator[tuple[int, str]]:
    """(line number, line without its newline) for every non-blank line of a UTF-8 file.

    Lines are decoded one by one so that an encoding error names its line.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{what} file {path} does not exist. Check the path (a MIRACL {what} file is named like "
                        f"'{what}.miracl-v1.0-sw-dev.tsv').")
    lineno = 0
    try:
        with _open_binary(path) as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as exc:
                    raise DataError(f"{path}, line {lineno}: not valid UTF-8 ({exc.reason}). "
                                    "Re-download the file or convert it to UTF-8.") from None
                if lineno == 1:
                    line = line.lstrip("\ufeff")  # byte order mark
                if line.strip():
                    yield lineno, line
    except (OSError, EOFError, gzip.BadGzipFile) as exc:  # e.g. a truncated or corrupt .gz
        raise DataError(f"{path}: could not be read after line {lineno} ({exc}). Re-download the file.") from None


def read_topics(path: str | os.PathLike) -> dict[str, str]:
    """``{qid: query text}`` from a TREC topics file: one ``qid<TAB>text`` per line.

    Blank lines are skipped; a line without exactly one tab, with an empty id or text, or a
    repeated id raises :class:`DataError` naming the file and line.
    """
    topics: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for lineno, line in _lines(path, "topics"):
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            hint = " (this looks like a qrels line: pass it to read_qrels)" if len(line.split()) == 4 else ""
            raise DataError(f"{path}, line {lineno}: expected 'qid<TAB>query text', got {line[:80]!r}{hint}. "
                            "Fix or remove the line.")
        qid, text = parts[0].strip(), parts[1].strip()
        if qid in topics:
            raise DataError(f"{path}, line {lineno}: query id {qid!r} already appeared on line {first_line[qid]}. "
                            "Each query must appear once: remove the duplicate.")
        topics[qid], first_line[qid] = text, lineno
    return topics


def read_qrels(path: str | os.PathLike) -> dict[str, dict[str, int]]:
    """``{qid: {docid: relevance}}`` from a TREC qrels file: ``qid iteration docid relevance`` per line.

    Fields are whitespace separated; the iteration field (``Q0``) is ignored; ids stay
    strings. A line without 4 fields, a non-integer relevance or a repeated (qid, docid)
    pair raises :class:`DataError` naming the file and line.
    """
    qrels: dict[str, dict[str, int]] = {}
    for lineno, line in _lines(path, "qrels"):
        parts = line.split()
        if len(parts) != 4:
            raise DataError(f"{path}, line {lineno}: expected 4 fields 'qid Q0 docid relevance', got "
                            f"{len(parts)} in {line[:80]!r}. Fix or remove the line.")
        qid, _, docid, rel = parts
        try:
            value = int(rel)
        except ValueError:
            raise DataError(f"{path}, line {lineno}: relevance {rel!r} is not an integer. "
                            "Use integer judgements (0 = not relevant, 1 = relevant).") from None
        docs = qrels.setdefault(qid, {})
        if docid in docs:
            raise DataError(f"{path}, line {lineno}: document {docid!r} is judged twice for query {qid!r}. "
                            "Keep one judgement per (query, document).")
        docs[docid] = value
    return qrels


@dataclass(frozen=True)
class MiraclDev:
    """One language's dev topics and qrels; ``source`` says where they were read from."""

    lang: str
    topics: dict[str, str]
    qrels: dict[str, dict[str, int]]
    source: str

    @property
    def query_ids(self) -> list[str]:
        """Judged query ids (those with qrels), in file order."""
        return [q for q in self.topics if q in self.qrels]

    def __repr__(self) -> str:
        n_rel = sum(1 for docs in self.qrels.values() for r in docs.values() if r > 0)
        return (f"MiraclDev(lang={self.lang!r}, queries={len(self.topics)}, judged_queries={len(self.query_ids)}, "
                f"relevant={n_rel}, source={self.source!r})")


def _brief(exc: BaseException) -> str:
    """'ErrorClass: first line of the message' without a trailing period."""
    text = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else ""
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


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
                f"Could not get {remote} from the hub dataset {HUB_DATASET!r}: {_brief(exc)}. Either the "
                "machine is offline (HF_HUB_OFFLINE=1?) or the dataset needs its terms accepted and "
                "`huggingface-cli login`. Otherwise download the topics/ and qrels/ files once and pass their "
                "folder: load_miracl_dev(lang, root='/path/to/miracl')."
            ) from exc
    return out[0], out[1]


def load_miracl_dev(lang: str, root: str | os.PathLike | None = None) -> MiraclDev:
    """Dev topics and qrels of ``lang`` from a local folder, or from the hub when ``root`` is None.

    ``root`` holds ``topics/topics.miracl-v1.0-{lang}-dev.tsv`` and
    ``qrels/qrels.miracl-v1.0-{lang}-dev.tsv`` (or has such a ``miracl/`` subfolder). From the
    hub the same two files are downloaded from the ``miracl/miracl`` dataset repository
    (``huggingface_hub``, which ``datasets`` installs; the repository's loading script is not
    supported by current ``datasets``, the raw TREC files are). Every judged query must have
    a topic; topics without judgements are kept but not evaluated.
    """
    lang = _check_lang(lang)
    if root is None:
        topics_path, qrels_path = _hub_files(lang)
        source = f"hub:{HUB_DATASET}"
    else:
        folder = _local_dir(Path(root).expanduser())
        found = sorted(m.group(1) for p in (folder / "topics").glob("topics.miracl-v1.0-*-dev.tsv")
                       if (m := re.fullmatch(r"topics\.miracl-v1\.0-(\w+)-dev\.tsv", p.name)))
        if lang not in found:
            raise UnknownLanguageError(f"No MIRACL dev topics for language {lang!r} in {folder / 'topics'}. "
                                       f"Available there: {', '.join(found) or 'none'}.")
        topics_path, qrels_path = (folder / "topics" / _file_names(lang)[0], folder / "qrels" / _file_names(lang)[1])
        source = str(folder)
    topics, qrels = read_topics(topics_path), read_qrels(qrels_path)
    orphans = [q for q in qrels if q not in topics]
    if orphans:
        raise DataError(f"{len(orphans)} judged queries of {qrels_path} have no topic in {topics_path} "
                        f"(e.g. {orphans[:3]}). Use the topics and qrels of the same language and split.")
    unjudged = len(topics) - len(qrels)
    if unjudged:
        log.info("%d MIRACL %s topics have no judgements and are not evaluated.", unjudged, lang)
    return MiraclDev(lang, topics, qrels, source)


def passage_text(title: Any, text: Any) -> str:
    """The text encoded for a passage: ``title + " " + text`` (either alone if the other is empty)."""
    title = title.strip() if isinstance(title, str) else ""
    text = text.strip() if isinstance(text, str) else ""
    return f"{title} {text}" if title and text else (title or text)


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _corpus_files(lang: str, source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise DataError(f"Corpus source {source} does not exist. Pass a .jsonl(.gz) file, a folder of them "
                        "(e.g. a clone of miracl/miracl-corpus), or source=None to stream from the hub.")
    folder = source / f"miracl-corpus-v1.0-{lang}"
    folder = folder if folder.is_dir() else source
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.name.endswith((".jsonl", ".jsonl.gz"))),
                   key=_natural_key)
    if not files:
        raise DataError(f"No .jsonl or .jsonl.gz files in {folder}. Put the MIRACL corpus shards "
                        f"(docs-0.jsonl.gz, ...) there, or pass one file.")
    return files


def _local_rows(files: list[Path]) -> Iterator[tuple[str, str, Any, Any]]:
    """(where, docid, title, text) per passage; ``where`` is 'file, line N' for messages."""
    for path in files:
        for lineno, line in _lines(path, "corpus"):
            where = f"{path}, line {lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not valid JSON ({exc.msg}). Each line must be one passage "
                                '{"docid": ..., "title": ..., "text": ...}; re-download or fix the file.') from None
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected a JSON object per line, got {type(row).__name__}.")
            yield where, row.get("docid"), row.get("title", ""), row.get("text", "")


def _hub_rows(lang: str) -> Iterator[tuple[str, str, Any, Any]]:
    """Open the hub stream now (so that failures show at once) and return its rows."""
    pattern = f"hf://datasets/{HUB_CORPUS}/miracl-corpus-v1.0-{lang}/docs-*.jsonl.gz"
    try:
        import datasets

        rows = iter(datasets.load_dataset("json", data_files=pattern, split="train", streaming=True))
        first = next(rows, None)
    except Exception as exc:  # offline, gated, network
        raise DataError(
            f"Could not stream the MIRACL {lang} corpus from the hub ({pattern}): {_brief(exc)}. "
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
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk_size must be an integer >= 1, got {chunk_size!r}.")
    rows = _hub_rows(lang) if source is None else _local_rows(_corpus_files(lang, Path(source).expanduser()))
    return _chunks(rows, lang, chunk_size)


def _chunks(rows, lang: str, chunk_size: int) -> Iterator[tuple[list[str], list[str]]]:
    ids: list[str] = []
    texts: list[str] = []
    empty = 0
    for where, docid, title, text in rows:
        if not isinstance(docid, str) or not docid.strip():
            raise DataError(f"{where}: passage without a string 'docid' (got {docid!r}). "
                            "Each passage needs a docid such as '81674#0'.")
        passage = passage_text(title, text)
        if not passage:
            empty += 1
            continue
        ids.append(docid)
        texts.append(passage)
        if len(ids) == chunk_size:
            yield ids, texts
            ids, texts = [], []
    if ids:
        yield ids, texts
    if empty:
        warnings.warn(f"Skipped {empty} MIRACL {lang} passages with empty title and text (nothing to encode).",
                      stacklevel=2)


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
    not found in the corpus; a warning is issued when there are any).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 100:
        raise ConfigError(f"k must be an integer >= 100 (Recall@100 needs the top 100), got {k!r}.")
    if not hasattr(encoder, "encode"):
        raise ConfigError(f"{type(encoder).__name__} has no encode(texts, kind=...) method: pass an hbkit encoder.")
    base = {**row_keys(meta, BENCHMARK), "setting": "monolingual", "query_lang": lang, "candidate_lang": lang}
    show = progress_enabled(show_progress)
    dev = load_miracl_dev(lang, root)
    chunks = iter_corpus(lang, corpus_source, chunk_size)  # checks the source before the slow encoding
    qids = dev.query_ids
    q_emb = encoder.encode([dev.topics[q] for q in qids], kind="query", batch_size=batch_size, show_progress=show)
    searcher = StreamingTopK(q_emb, k)
    judged = {d for docs in dev.qrels.values() for d in docs}
    relevant = {d for docs in dev.qrels.values() for d, r in docs.items() if r > 0}
    seen: set[str] = set()
    bar = progress(total=None, show=show, desc=f"MIRACL {lang} corpus", unit="passage")
    try:
        for ids, texts in chunks:
            emb = encoder.encode(texts, kind="passage", batch_size=batch_size, show_progress=False)
            searcher.add(emb, ids)
            seen.update(judged.intersection(ids))
            bar.update(len(ids))
    finally:
        bar.close()
    if searcher.n_docs == 0:
        raise DataError(f"The MIRACL {lang} corpus at {corpus_source or HUB_CORPUS} holds no passage: "
                        "check the corpus source.")
    missing_judged, missing_relevant = len(judged - seen), len(relevant - seen)
    if missing_judged:
        msg = (f"{missing_judged} of {len(judged)} judged MIRACL {lang} documents ({missing_relevant} of "
               f"{len(relevant)} relevant) are not in the corpus ({searcher.n_docs} passages): they can never "
               "be retrieved, so the scores are not comparable with published ones. Use the full miracl-corpus-v1.0-"
               f"{lang} corpus for comparable numbers.")
        warnings.warn(msg, stacklevel=2)
    run = searcher.to_run(qids)
    scores = trec_evaluate(run, dev.qrels, ndcg_ks=(10,), recall_ks=(100,))
    df = pd.DataFrame([{**base, "metric": name, "value": s.mean, "n_queries": s.n_queries}
                       for name, s in scores.items()], columns=COLUMNS)
    df = df.astype({"seed": "int64", "n_queries": "int64", "value": "float64"})
    df.attrs.update(n_passages=searcher.n_docs, missing_judged_docs=missing_judged,
                    missing_relevant_docs=missing_relevant)
    return (df, run) if return_run else df
